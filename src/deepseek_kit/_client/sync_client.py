"""`Client`: the synchronous twin, a thin shell over `AsyncClient`.

It owns a private event loop on a daemon thread and runs each call there, so there is exactly one
implementation of every behaviour (timeouts, retries, streaming). A sync stream pulls one chunk per
round-trip to the loop thread; `Client` is safe to share between threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, Generic, Literal, ParamSpec, TypeVar, overload

from deepseek_kit._steps.metrics.summary import Metrics
from deepseek_kit._steps.router import EndpointHealth
from deepseek_kit._transport.timeouts import Timeout
from deepseek_kit._wire.errors import UsageError
from deepseek_kit._wire.types import Balance, ChatCompletion, ChatCompletionChunk, Completion, ModelList

from .client import AsyncClient
from .params import ChatParams, FimParams, Message
from .stream import AsyncCompletionStream, AsyncStream

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Client", "CompletionStream", "Stream"]

T = TypeVar("T")


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="deepseek-kit-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if not self.loop.is_running() and self.loop.is_closed():
            coro.close()
            raise UsageError("this client is closed; create a new Client")
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result()
        except KeyboardInterrupt:
            fut.cancel()
            raise

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


S = TypeVar("S", AsyncStream, AsyncCompletionStream)


class _SyncStream(Generic[S]):
    def __init__(self, runner: _LoopThread, inner: S) -> None:
        self._runner = runner
        self._inner: S = inner

    def __iter__(self) -> _SyncStream[S]:
        return self

    def __next__(self) -> Any:
        return self._next()

    def _next(self) -> Any:
        try:
            return self._runner.run(self._inner.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        """Stop reading and drop the connection (leaving the `with` block does it for you)."""
        self._runner.loop.call_soon_threadsafe(self._inner.close)

    def __enter__(self) -> _SyncStream[S]:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def trace_id(self) -> str | None:
        """DeepSeek's `x-ds-trace-id` for this call (quote it when reporting a problem), or None."""
        return self._inner.trace_id


class Stream(_SyncStream[AsyncStream]):
    """A chat-completion stream for synchronous code, returned by `Client().chat.completions.create(
    ..., stream=True)`: iterate it for `ChatCompletionChunk`s inside `with`, then read the whole answer
    with `get_final_completion()`. Errors are those of `AsyncStream`.

        with client.chat.completions.create(model="deepseek-flash", messages=msgs, stream=True) as s:
            for chunk in s:
                print(chunk.choices[0].delta.content or "", end="")
        answer = s.get_final_completion()

    The client builds it (you never construct one): `runner` is the client's event-loop thread
    and `inner` the `AsyncStream` read on it."""

    def __next__(self) -> ChatCompletionChunk:
        return self._next()  # type: ignore[no-any-return]

    def get_final_completion(self) -> ChatCompletion:
        """The assembled completion (content, reasoning, tool calls, usage); mid-stream, what has
        arrived so far."""
        return self._inner.get_final_completion()

    def until_done(self) -> ChatCompletion:
        """Read the rest of the stream and return the final completion."""
        for _ in self:
            pass
        return self.get_final_completion()


class CompletionStream(_SyncStream[AsyncCompletionStream]):
    """A FIM stream (`client.beta.completions.create(..., stream=True)`) for synchronous code:
    iterate it for `Completion` chunks inside `with`; `text()` joins what has arrived. The client
    builds it: `runner` is the client's event-loop thread and `inner` the `AsyncCompletionStream`
    read on it."""

    def __next__(self) -> Completion:
        return self._next()  # type: ignore[no-any-return]

    def text(self, index: int = 0) -> str:
        """The text of choice `index` received so far (all of it once the stream is read)."""
        return self._inner.text(index)


class _ChatCompletions:
    def __init__(self, c: Client) -> None:
        self._c = c

    @overload
    def create(self, *, model: str, messages: Iterable[Message], stream: Literal[False] = False,
               **params: Unpack[ChatParams]) -> ChatCompletion: ...

    @overload
    def create(self, *, model: str, messages: Iterable[Message], stream: Literal[True],
               **params: Unpack[ChatParams]) -> Stream: ...

    @overload
    def create(self, *, model: str, messages: Iterable[Message], stream: bool,
               **params: Unpack[ChatParams]) -> ChatCompletion | Stream: ...

    def create(self, **kwargs: Any) -> ChatCompletion | Stream:
        """Same arguments as `AsyncClient.chat.completions.create` (documented there, defined once
        in `ChatParams`); returns a ChatCompletion, or a `Stream` when `stream=True`."""
        out: ChatCompletion | AsyncStream = self._c._run(self._c._async.chat.completions.create(**kwargs))
        if isinstance(out, AsyncStream):
            return Stream(self._c._runner, out)
        return out


class _Chat:
    def __init__(self, c: Client) -> None:
        self.completions = _ChatCompletions(c)


class _Completions:
    def __init__(self, c: Client) -> None:
        self._c = c

    @overload
    def create(self, *, model: str, prompt: str, stream: Literal[False] = False,
               **params: Unpack[FimParams]) -> Completion: ...

    @overload
    def create(self, *, model: str, prompt: str, stream: Literal[True],
               **params: Unpack[FimParams]) -> CompletionStream: ...

    @overload
    def create(self, *, model: str, prompt: str, stream: bool,
               **params: Unpack[FimParams]) -> Completion | CompletionStream: ...

    def create(self, **kwargs: Any) -> Completion | CompletionStream:
        """Same arguments as `AsyncClient.beta.completions.create` (FIM, defined once in
        `FimParams`); returns a Completion, or a `CompletionStream` when `stream=True`."""
        out: Completion | AsyncCompletionStream = self._c._run(
            self._c._async.beta.completions.create(**kwargs))
        if isinstance(out, AsyncCompletionStream):
            return CompletionStream(self._c._runner, out)
        return out


class _Beta:
    def __init__(self, c: Client) -> None:
        self.completions = _Completions(c)


class _Models:
    def __init__(self, c: Client) -> None:
        self._c = c

    def list(self, *, timeout: Timeout | float | None = None, max_retries: int | None = None,
             extra_headers: Mapping[str, str] | None = None) -> ModelList:
        """GET /models (as `AsyncClient.models.list`)."""
        return self._c._run(self._c._async.models.list(
            timeout=self._c._async.timeout if timeout is None else timeout, max_retries=max_retries,
            extra_headers=extra_headers))


class _User:
    def __init__(self, c: Client) -> None:
        self._c = c

    def balance(self, *, timeout: Timeout | float | None = None, max_retries: int | None = None,
                extra_headers: Mapping[str, str] | None = None) -> Balance:
        """GET /user/balance (as `AsyncClient.user.balance`)."""
        return self._c._run(self._c._async.user.balance(
            timeout=self._c._async.timeout if timeout is None else timeout, max_retries=max_retries,
            extra_headers=extra_headers))


P = ParamSpec("P")


def _same_arguments_as(
    source: Callable[P, Any],
) -> Callable[[Callable[..., None]], Callable[Concatenate[Client, P], None]]:
    """Give `Client.__init__` the parameters of `AsyncClient` (one list, written once): for mypy
    through the ParamSpec, so `Client(max_retrys=3)` is a type error as it is for AsyncClient, and
    for `help()`/`inspect` through `__signature__`."""

    def apply(init: Callable[..., None]) -> Callable[Concatenate[Client, P], None]:
        sig = inspect.signature(source)
        me = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
        init.__signature__ = sig.replace(parameters=[me, *sig.parameters.values()])  # type: ignore[attr-defined]
        return init

    return apply


class Client:
    """Synchronous DeepSeek client; same arguments as `AsyncClient`. Use `with Client() as c:`."""

    @_same_arguments_as(AsyncClient)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Create the client and start its event-loop thread.

        The arguments of `AsyncClient`, with the same meaning; the client runs on a private
        event-loop thread, stopped by `close()` or the `with` block. Every argument is optional;
        config-file keys of the same name fill what is left out.

        - api_key, base_url: else DEEPSEEK_API_KEY / DEEPSEEK_BASE_URL, else the config file
          (`deepseek_kit.config`), else no key and https://api.deepseek.com.
        - profile, config_file: which `[profiles.NAME]` table and which file to read.
        - timeout: a `Timeout`, or seconds for every phase; max_retries or retry=`RetryPolicy`.
        - default_headers: sent with every request (framing headers are refused).
        - beta_base_url: where prefix completion and FIM go (default: base_url + "/beta").
        - transport: a `Transport` in place of the network; max_connections, trust_env and proxy
          configure the default `AiohttpTransport` instead.
        - steps, inner_steps: your own `Step`s, seen once per call or once per attempt.
        - auth: an `AuthProvider` (`KeyRotation`, `OAuth2ClientCredentials`) in place of the key.
        - endpoints, routing: several `Endpoint`s and how a call picks one (`Routing`).
        - resumption, prefix_completion: how a broken stream is continued through prefix
          completion, and whether base_url supports it (None: only DeepSeek's own host).
        - limits: a `Limits` (rate, tokens, calls in flight); cache: True or a `CachePolicy`;
          metrics: True or a `MetricsConfig`; logs: True or a `LogConfig` (the request log).
        - holidays: the calendar that decides peak hours for costs.
        - max_response_bytes, max_event_bytes: caps on a body and on one stream event.

        Raises `UsageError` (saying what to set) when there is no key for DeepSeek's own API or a
        value is invalid.

            with Client() as client:
                answer = client.chat.completions.create(
                    model="deepseek-flash", messages=[{"role": "user", "content": "Hi"}])
                print(answer.choices[0].message.content)"""
        self._runner = _LoopThread()
        try:
            self._async = self._runner.run(self._make(*args, **kwargs))
        except BaseException:
            self._runner.stop()
            raise
        self.chat = _Chat(self)
        self.beta = _Beta(self)
        self.models = _Models(self)
        self.user = _User(self)

    @staticmethod
    async def _make(*args: Any, **kwargs: Any) -> AsyncClient:
        return AsyncClient(*args, **kwargs)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coro)

    @property
    def base_url(self) -> str:
        """The API base URL requests go to (after the arguments, environment and config file)."""
        return self._async.base_url

    @property
    def metrics(self) -> Metrics:
        """The same in-process summary as `AsyncClient.metrics`."""
        return self._async.metrics

    def endpoints(self) -> list[EndpointHealth]:
        """Each endpoint's health now, as `AsyncClient.endpoints()`."""
        return self._async.endpoints()

    @property
    def async_client(self) -> AsyncClient:
        """The async core this client runs on (router, cache and limits state live there)."""
        return self._async

    def __repr__(self) -> str:
        return repr(self._async).replace("AsyncClient", "Client", 1)

    def close(self) -> None:
        """Close the client (as `AsyncClient.close()`) and stop its event-loop thread; safe to call twice."""
        if not self._runner.loop.is_closed():
            self._runner.run(self._async.close())
            self._runner.stop()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        runner = getattr(self, "_runner", None)
        if runner is not None and not runner.loop.is_closed():
            with contextlib.suppress(RuntimeError):
                runner.loop.call_soon_threadsafe(runner.loop.stop)
