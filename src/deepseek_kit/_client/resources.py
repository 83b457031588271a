"""OpenAI-shaped resources: `chat.completions`, `models`, `user`, `beta.completions`.

Each builds a JSON body from keyword arguments (only what the caller set goes on the wire;
`extra_body` fields pass through untouched), sends it through the client's pipeline and decodes
the answer into msgspec structs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, overload

import msgspec

from deepseek_kit._transport.timeouts import Timeout
from deepseek_kit._wire.dialects import decode_chat_completion
from deepseek_kit._wire.errors import APIConnectionError, UsageError, redact
from deepseek_kit._wire.types import (
    Balance,
    ChatCompletion,
    ChatCompletionMessage,
    Completion,
    ModelList,
    SafeDecoder,
    balance_decoder,
    completion_decoder,
    model_list_decoder,
)

from .params import (
    ALL_PARAMS,
    FIM_PARAMS,
    FIM_WIRE_ORDER,
    WIRE_ORDER,
    ChatParams,
    FimParams,
    Message,
    check_params,
)
from .resume import Resumer, supports_prefix_completion
from .stream import AsyncCompletionStream, AsyncStream

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from deepseek_kit._steps.router import RouterStep
    from deepseek_kit._transport.request import Response

    from .resume import Resumption


class PipelineClient(Protocol):
    """What the resources need of the client that owns them (`AsyncClient` passes itself): its
    pipeline entry `request`, its defaults and its secrets (to redact them from errors). A
    protocol, not the class, so the resources do not import the client that imports them."""

    base_url: str
    timeout: Timeout
    resumption: Resumption
    prefix_completion: bool | None
    router: RouterStep | None

    async def request(self, method: str, path: str, *, body: bytes | None = None, stream: bool = False,
                      beta: bool = False, timeout: Timeout | float | Any | None = ...,
                      max_retries: int | None = None, extra_headers: Mapping[str, str] | None = None,
                      options: dict[str, Any] | None = None) -> Response: ...

    def _secrets(self) -> tuple[str | None, ...]: ...

__all__ = ["Beta", "Chat", "ChatCompletions", "Completions", "Models", "User"]

NOT_GIVEN: Any = msgspec.UNSET
_INCLUDE_USAGE = {"include_usage": True}
_encode = msgspec.json.Encoder().encode



def _thinking(value: Any) -> Any:
    """Accept True/False, "enabled"/"disabled", {"type": ...} or None (sent as null)."""
    if value is True:
        return {"type": "enabled"}
    if value is False:
        return {"type": "disabled"}
    if isinstance(value, str):
        return {"type": value}
    return value


def _message(m: Any) -> Any:
    """Dicts pass through. An assistant message struct (e.g. a previous answer) becomes a dict
    that keeps reasoning_content and tool_calls and sends `content: ""` instead of omitting it:
    DeepSeek requires the key, and some gateways reject null (docs/deepseek-api-notes.md#request-fields)."""
    if isinstance(m, ChatCompletionMessage):
        return m.to_param()
    if isinstance(m, msgspec.Struct):
        return msgspec.to_builtins(m)
    return m


def _is_strict(t: Any) -> bool:
    fn = t.get("function") if isinstance(t, Mapping) else getattr(t, "function", None)
    strict = fn.get("strict") if isinstance(fn, Mapping) else getattr(fn, "strict", None)
    return strict is True


def _body(fields: dict[str, Any], extra_body: Mapping[str, Any] | None) -> bytes:
    body = {k: v for k, v in fields.items() if v is not NOT_GIVEN}
    if extra_body is not None and not isinstance(extra_body, Mapping):
        raise UsageError(f"extra_body must be a mapping of extra JSON fields, got "
                         f"{type(extra_body).__name__}")
    if extra_body:
        body.update(extra_body)
    try:
        return _encode(body)
    except (TypeError, msgspec.EncodeError) as exc:
        raise UsageError(f"request body is not JSON-serialisable: {exc}") from None


def _decode(resp: Response, decoder: SafeDecoder[Any], what: str) -> Any:
    try:
        return decoder.decode(resp.body)
    except msgspec.DecodeError as exc:
        snippet = redact(resp.body[:200].decode("utf-8", "replace"))
        raise APIConnectionError(f"the server sent a malformed {what} ({exc}): {snippet!r}") from None


def _endpoint_names(client: PipelineClient, endpoints: Any) -> frozenset[str] | None:
    """The per-call `endpoints=` as the router's `only_endpoints` set, checked against the client's
    endpoints (a typo would otherwise surface as "no endpoint" at the first call)."""
    if endpoints is None:
        return None
    if isinstance(endpoints, (str, bytes)) or not isinstance(endpoints, Iterable):
        raise UsageError(f"endpoints must be a collection of endpoint names, e.g. {{'deepseek'}}, "
                         f"not {endpoints!r}")
    names = frozenset(endpoints)
    router = client.router
    if router is None:
        raise UsageError("endpoints= picks among the client's endpoints: create the client with "
                         "endpoints=[Endpoint(...), ...]")
    known = [lv.name for lv in router.live]
    unknown = sorted(names - set(known))
    if unknown or not names:
        what = f"unknown {unknown!r}" if unknown else "empty"
        raise UsageError(f"endpoints={sorted(names)!r}: {what}; the client's endpoints are {known!r}")
    return names


class ChatCompletions:
    def __init__(self, client: PipelineClient) -> None:
        self._client = client

    @overload
    async def create(self, *, model: str, messages: Iterable[Message], stream: Literal[False] = False,
                     **params: Unpack[ChatParams]) -> ChatCompletion: ...

    @overload
    async def create(self, *, model: str, messages: Iterable[Message], stream: Literal[True],
                     **params: Unpack[ChatParams]) -> AsyncStream: ...

    @overload
    async def create(self, *, model: str, messages: Iterable[Message], stream: bool,
                     **params: Unpack[ChatParams]) -> ChatCompletion | AsyncStream: ...

    async def create(self, *, model: str, messages: Iterable[Message], stream: bool = False,
                     _only_endpoints: frozenset[str] | None = None,
                     **params: Unpack[ChatParams]) -> ChatCompletion | AsyncStream:
        """POST /chat/completions: a `ChatCompletion`, or with `stream=True` an `AsyncStream` of
        chunks. Only the arguments you give go on the wire (None is sent as null); the semantics
        are DeepSeek's (https://api-docs.deepseek.com/api/create-chat-completion,
        docs/deepseek-api-notes.md "Parameters"; other servers: docs/dialects.md).

        - model: "deepseek-flash" or "deepseek-v4-pro" (legacy names are served as Flash).
        - messages: at least one; dicts pass through, a previous answer's message is sent back with
          its `reasoning_content` and tool calls (required with tools in thinking mode).
        - stream: server-sent events; usage arrives on the last chunk (`stream_options` is set to
          include it unless given).
        - thinking: True/False, "enabled"/"disabled" or {"type": ...}; on by default on DeepSeek.
        - reasoning_effort: "low", "high" (default) or "max"; other OpenAI words are mapped.
        - max_tokens: caps reasoning and answer together.
        - response_format: {"type": "json_object"} for JSON mode (say "json" in the prompt).
        - stop: a string or up to 16 strings that end the answer.
        - stream_options: {"include_usage": bool}; streams only.
        - temperature: 0 to 2 (default 1); ignored in thinking mode.
        - top_p: 0 to 1 (default 1).
        - frequency_penalty, presence_penalty: accepted, no effect on current models.
        - tools: up to 128 function definitions (dicts, e.g. `Tool.schema()`, or `ToolParam`
          structs); a `strict` one sends the call to the /beta base URL.
        - tool_choice: "none", "auto", "required" or {"type": "function", ...}; thinking mode
          rejects the last two (HTTP 400).
        - logprobs, top_logprobs: log probabilities of the answer's tokens (top 0 to 20).
        - user_id: DeepSeek's per-end-user id ([A-Za-z0-9_-], at most 512 bytes): isolates
          safety checks, the context cache and scheduling.
        - extra_body: more JSON fields, merged into the body as given.
        - extra_headers: more HTTP headers for this call.
        - timeout: a `Timeout` or seconds for this call (default: the client's).
        - max_retries: retries for this call (default: the client's `RetryPolicy`).
        - resume: continue a broken stream through prefix completion: None = the client's
          `Resumption` rule (by default only where the server supports prefix completion), True =
          this call even where undeclared, False = not.
        - cache: this call's client-cache rule: True/False or "force"/"skip"/"refresh"
          (docs/cache.md).
        - endpoints: names of the client's `Endpoint`s this call may use (routing and failover
          stay among them), e.g. `endpoints={"deepseek"}`; default: all of them.

        The pipeline's other per-call keys (`deadline`, `failover`, `route`; docs/architecture.md)
        are set by the steps themselves: a call's deadline is its `timeout`'s `total`.

        A last assistant message with `prefix: True` (chat prefix completion, Beta) is sent to the
        /beta base URL automatically."""
        if type(model) is not str or not model:
            raise UsageError("model is required, e.g. model='deepseek-flash'")
        if type(messages) is list and all(type(m) is dict for m in messages):
            msgs: list[Any] = messages  # the common case: plain dicts pass through untouched
        elif isinstance(messages, (str, bytes)) or not isinstance(messages, Iterable):  # type: ignore[unreachable]  # caller input
            raise UsageError("messages must be a list of {'role': ..., 'content': ...} messages")
        else:
            msgs = [_message(m) for m in messages]
        if not msgs:
            raise UsageError("messages must contain at least one message")
        p: dict[str, Any] = params  # type: ignore[assignment]  # read by name below
        if p and not p.keys() <= ALL_PARAMS:
            check_params("chat.completions.create()", p)
        if stream and "stream_options" not in p:
            # DeepSeek always sends usage; vLLM, SGLang, Ollama and llama.cpp only when asked
            # (docs/dialects.md). Never with stream=False: vLLM rejects stream_options then.
            p["stream_options"] = _INCLUDE_USAGE
        last = msgs[-1]
        beta = type(last) is dict and bool(last.get("prefix"))
        if not beta and isinstance(last, Mapping):
            beta = bool(last.get("prefix"))
        tools = p.get("tools")
        if tools is not None and tools is not NOT_GIVEN and (
                isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence)):
            raise UsageError("tools must be a list of tool definitions ({'type': 'function', "
                             f"'function': {{...}}}}), got {type(tools).__name__}")
        if not beta and tools:
            # strict function calling is a /beta feature (docs/deepseek-api-notes.md#tool-calls)
            beta = any(_is_strict(t) for t in tools)
        fields: dict[str, Any] = {"model": model, "messages": msgs}
        if stream:
            fields["stream"] = True
        if p:
            for k in WIRE_ORDER:  # a fixed order: the same arguments always give the same bytes
                v = p.get(k, NOT_GIVEN)
                if v is not NOT_GIVEN:
                    fields[k] = _thinking(v) if k == "thinking" else v
        body = _body(fields, p.get("extra_body"))
        timeout = p.get("timeout", ...)
        max_retries = p.get("max_retries")
        extra_headers = p.get("extra_headers")
        cache = p.get("cache")
        started = asyncio.get_running_loop().time() if stream else 0.0
        options: dict[str, Any] | None = None if cache is None else {"cache": cache}
        only = _endpoint_names(self._client, p.get("endpoints"))
        if _only_endpoints is not None:  # a continuation: only endpoints with prefix completion
            only = _only_endpoints if only is None else only & _only_endpoints
        if only is not None:
            options = {**(options or {}), "only_endpoints": only}
        resp = await self._client.request("POST", "/chat/completions", body=body, stream=stream, beta=beta,
                                          timeout=timeout, max_retries=max_retries,
                                          extra_headers=extra_headers, options=options)
        if stream:
            scope = self._resume_scope(resp, p.get("resume"))
            if scope is None:
                return AsyncStream(resp)
            # What a continuation is created with (`_client/resume.py` adds its own).
            again = {"model": model, "messages": msgs,
                     **{k: v for k, v in p.items() if k != "resume" and k != "cache"}}
            total = (self._client.timeout if timeout is ... else Timeout.coerce(timeout)).total
            resumer: Resumer[AsyncStream] = Resumer(
                self.create, self._client.timeout, again, self._client.resumption, scope or None,
                None if total is None else started + total)
            return AsyncStream(resp, resumer)
        # Normalizes other servers' dialects (reasoning vs reasoning_content, 200s carrying an error).
        return decode_chat_completion(resp.status, resp.headers, resp.body, secrets=self._client._secrets())

    def _resume_scope(self, resp: Response, resume: bool | None) -> frozenset[str] | None:
        """Whether this stream may be resumed (None: not), and where its continuations may go:
        the names of the endpoints that support prefix completion (empty: anywhere, no router).
        See `_client/resume.py` for the rule."""
        client = self._client
        enabled = client.resumption.enabled
        if resume is False or (resume is None and enabled is False):
            return None
        forced = resume is True or enabled is True
        router = client.router
        if router is None:
            if forced or supports_prefix_completion(client.base_url, client.prefix_completion):
                return frozenset()
            return None
        able = frozenset(lv.name for lv in router.live
                         if supports_prefix_completion(lv.ep.base_url, lv.ep.prefix_completion))
        if not forced and resp.endpoint not in able:
            return None
        # Forced with no endpoint declared: continue where the stream came from.
        return able or frozenset({resp.endpoint} if resp.endpoint else ())


class Chat:
    def __init__(self, client: PipelineClient) -> None:
        self.completions = ChatCompletions(client)


class Completions:
    """FIM completion (Beta): POST /beta/completions. Non-thinking mode only on DeepSeek."""

    def __init__(self, client: PipelineClient) -> None:
        self._client = client

    @overload
    async def create(self, *, model: str, prompt: str, stream: Literal[False] = False,
                     **params: Unpack[FimParams]) -> Completion: ...

    @overload
    async def create(self, *, model: str, prompt: str, stream: Literal[True],
                     **params: Unpack[FimParams]) -> AsyncCompletionStream: ...

    @overload
    async def create(self, *, model: str, prompt: str, stream: bool,
                     **params: Unpack[FimParams]) -> Completion | AsyncCompletionStream: ...

    async def create(self, *, model: str, prompt: str, stream: bool = False,
                     **params: Unpack[FimParams]) -> Completion | AsyncCompletionStream:
        """POST /beta/completions (fill in the middle): a `Completion`, or with `stream=True` an
        `AsyncCompletionStream`. Only the arguments you give go on the wire.

        - model: "deepseek-flash" (FIM runs in non-thinking mode).
        - prompt: the text before the gap; suffix: the text after it.
        - echo, logprobs, max_tokens, stop, stream_options, temperature, top_p,
          frequency_penalty, presence_penalty: as in OpenAI's completions API
          (https://api-docs.deepseek.com/api/create-completion).
        - extra_body, extra_headers, timeout, max_retries, cache, endpoints: as in
          `chat.completions.create`.

        Raises `UsageError` for a prompt that is not a string and `TypeError` for an unknown
        keyword (naming its close match)."""
        if not isinstance(prompt, str):
            raise UsageError("prompt must be a string")
        p: dict[str, Any] = params  # type: ignore[assignment]  # read by name below
        if p and not p.keys() <= FIM_PARAMS:
            check_params("beta.completions.create()", p, FIM_PARAMS)
        fields: dict[str, Any] = {"model": model, "prompt": prompt}
        if stream:
            fields["stream"] = True
        for k in FIM_WIRE_ORDER:
            v = p.get(k, NOT_GIVEN)
            if v is not NOT_GIVEN:
                fields[k] = v
        body = _body(fields, p.get("extra_body"))
        cache = p.get("cache")
        options: dict[str, Any] = {} if cache is None else {"cache": cache}
        only = _endpoint_names(self._client, p.get("endpoints"))
        if only is not None:
            options["only_endpoints"] = only
        resp = await self._client.request("POST", "/completions", body=body, stream=stream, beta=True,
                                          timeout=p.get("timeout", ...), max_retries=p.get("max_retries"),
                                          extra_headers=p.get("extra_headers"), options=options or None)
        if stream:
            return AsyncCompletionStream(resp)
        return _decode(resp, completion_decoder, "completion")  # type: ignore[no-any-return]


class Beta:
    def __init__(self, client: PipelineClient) -> None:
        self.completions = Completions(client)


class Models:
    def __init__(self, client: PipelineClient) -> None:
        self._client = client

    async def list(self, *, timeout: Any = ..., max_retries: int | None = None,
                   extra_headers: Mapping[str, str] | None = None) -> ModelList:
        """GET /models."""
        resp = await self._client.request("GET", "/models", timeout=timeout, max_retries=max_retries,
                                          extra_headers=extra_headers)
        return _decode(resp, model_list_decoder, "model list")  # type: ignore[no-any-return]


class User:
    def __init__(self, client: PipelineClient) -> None:
        self._client = client

    async def balance(self, *, timeout: Any = ..., max_retries: int | None = None,
                      extra_headers: Mapping[str, str] | None = None) -> Balance:
        """GET /user/balance (amounts are decimal strings)."""
        resp = await self._client.request("GET", "/user/balance", timeout=timeout, max_retries=max_retries,
                                          extra_headers=extra_headers)
        return _decode(resp, balance_decoder, "balance")  # type: ignore[no-any-return]
