"""The one I/O seam: `Transport.open(request)` gives status, headers and a byte source.

`AiohttpTransport` is the default. aiohttp is imported on first use, not at `import deepseek_kit`
(it costs ~100 ms of import time; see bench/). `MockTransport(handler)` serves canned responses from
a function, for pure-logic unit tests only: everything that streams, times out or disconnects is
tested against the real emulator over loopback.

A byte source only reads and aborts; everything above it (keep-alive stripping, SSE, timeouts,
error mapping) is shared by both transports in `_http.py`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Union

from ._errors import APIConnectionError, UsageError
from ._request import Request

if TYPE_CHECKING:
    import aiohttp

__all__ = ["AiohttpTransport", "ByteSource", "MockResponse", "MockTransport", "RawResponse", "Transport"]


class ByteSource(Protocol):
    async def read(self) -> bytes:
        """The next bytes of the body; b"" at the end."""

    def abort(self) -> None:
        """Drop the connection now (a pending read() wakes with an error or EOF)."""

    def release(self) -> None:
        """The body was read to the end: return the connection to the pool."""

    def at_eof(self) -> bool:
        """True when nothing more will come (the end of the body has been read)."""


@dataclass
class RawResponse:
    status: int
    headers: Mapping[str, str]
    source: ByteSource


class Transport(Protocol):
    async def open(self, request: Request) -> RawResponse: ...

    async def aclose(self) -> None: ...


# ---------------------------------------------------------------------------------------------


class _AiohttpSource:
    __slots__ = ("_content", "_resp")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self._content = resp.content

    async def read(self) -> bytes:
        return await self._content.readany()

    def abort(self) -> None:
        self._resp.close()

    def release(self) -> None:
        self._resp.release()

    def at_eof(self) -> bool:
        return self._content.at_eof()


class AiohttpTransport:
    """HTTP/1.1 keep-alive pool over aiohttp.

    `max_connections` bounds open sockets (aiohttp queues the rest); `trust_env=False` by default
    so that stray proxy variables don't break loopback and private deployments (deepseek-api.md
    §8.21); pass `trust_env=True` to honour HTTP(S)_PROXY.
    """

    def __init__(
        self,
        *,
        max_connections: int = 1000,
        trust_env: bool = False,
        ssl: Any = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._max = max_connections
        self._trust_env = trust_env
        self._ssl = ssl
        self._session = session
        self._own_session = session is None
        self._aiohttp: Any = None
        self._errors: tuple[type[BaseException], ...] = ()
        self._timeouts: dict[float | None, Any] = {}  # aiohttp.ClientTimeout per connect limit

    def _ensure(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if self._session is not None and not self._own_session:
                raise UsageError("the aiohttp session given to AiohttpTransport was closed")
            import aiohttp

            self._aiohttp = aiohttp
            connector = aiohttp.TCPConnector(
                limit=self._max, limit_per_host=0, ttl_dns_cache=300, enable_cleanup_closed=False,
                ssl=self._ssl if self._ssl is not None else True,
            )
            # No aiohttp-level read timeouts: they are re-armed by keep-alive bytes. Our Watchdog
            # does first-token/idle/total; only connect is left to aiohttp (set per request).
            self._session = aiohttp.ClientSession(
                connector=connector, trust_env=self._trust_env,
                timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
                auto_decompress=True, raise_for_status=False,
            )
        if not self._errors:
            import aiohttp

            self._aiohttp = aiohttp
            self._errors = (aiohttp.ClientError, OSError)
        return self._session

    async def open(self, request: Request) -> RawResponse:
        session = self._ensure()
        t = request.timeout
        ct = self._timeouts.get(t.connect)
        if ct is None:
            ct = self._timeouts[t.connect] = self._aiohttp.ClientTimeout(
                total=None, sock_read=None, connect=None, sock_connect=t.connect)
        try:
            resp = await session.request(
                request.method, request.url, data=request.body, headers=request.headers,
                timeout=ct, allow_redirects=False,
            )
        except asyncio.TimeoutError as exc:
            from ._errors import APITimeoutError

            raise APITimeoutError("connect", t.connect or 0.0) from exc
        except self._errors as exc:
            raise APIConnectionError(_describe(exc, request)) from exc
        return RawResponse(resp.status, resp.headers, _AiohttpSource(resp))

    async def aclose(self) -> None:
        if self._session is not None and self._own_session and not self._session.closed:
            await self._session.close()

    @property
    def read_errors(self) -> tuple[type[BaseException], ...]:
        self._ensure()
        return self._errors


def _describe(exc: BaseException, request: Request) -> str:
    """A one-line human reason; never includes headers (they carry the key)."""
    reason = str(exc) or type(exc).__name__
    return f"Could not reach {request.origin}: {reason}"


# ---------------------------------------------------------------------------------------------

MockBody = Union[bytes, str, Iterable[bytes], AsyncIterator[bytes]]  # noqa: UP007 (runtime alias, py3.10)


@dataclass
class MockResponse:
    status: int = 200
    body: MockBody = b""
    headers: dict[str, str] = field(default_factory=dict)


class _MockSource:
    def __init__(self, body: MockBody) -> None:
        if isinstance(body, str):
            body = body.encode()
        if isinstance(body, bytes):
            self._sync: Iterable[bytes] | None = iter([body] if body else [])
            self._async: AsyncIterator[bytes] | None = None
        elif isinstance(body, AsyncIterator):
            self._sync, self._async = None, body
        else:
            self._sync, self._async = iter(body), None
        self.aborted = False

    async def read(self) -> bytes:
        if self.aborted:
            raise APIConnectionError("connection aborted")
        if self._async is not None:
            try:
                return await self._async.__anext__()
            except StopAsyncIteration:
                return b""
        assert self._sync is not None
        return next(iter(self._sync), b"")

    def abort(self) -> None:
        self.aborted = True

    def release(self) -> None:
        pass

    def at_eof(self) -> bool:
        return False


Handler = Callable[[Request], MockResponse | Awaitable[MockResponse]]


class MockTransport:
    """Calls `handler(request)` instead of the network; records every request in `.requests`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []

    async def open(self, request: Request) -> RawResponse:
        self.requests.append(request)
        out = self.handler(request)
        if inspect.isawaitable(out):
            out = await out
        assert isinstance(out, MockResponse)
        headers = {k.lower(): v for k, v in out.headers.items()}
        return RawResponse(out.status, headers, _MockSource(out.body))

    async def aclose(self) -> None:
        pass
