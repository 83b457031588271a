"""The one I/O seam: `Transport.open(request)` gives status, headers and a byte source.

`AiohttpTransport` is the default. aiohttp is imported on first use, not at `import deepseek_kit`
(it costs ~100 ms of import time; see bench/). `MockTransport(handler)` serves canned responses from
a function, for pure-logic unit tests only: everything that streams, times out or disconnects is
tested against the real emulator over loopback.

A byte source only reads and aborts; everything above it (keep-alive stripping, SSE, timeouts,
error mapping) is shared by both transports in `_transport/attempt.py`.

Proxies (docs/proxies.md), like httpx and openai-python: an explicit `proxy=` URL is used for every
request; otherwise, with `trust_env=True` (the default), HTTP_PROXY / HTTPS_PROXY / ALL_PROXY and
NO_PROXY (any case) choose the proxy per URL, following `urllib.request` (a NO_PROXY entry matches
the host and its subdomains, `*` matches all). NO_PROXY is all that bypasses the proxy: loopback
addresses are not special, so `NO_PROXY=127.0.0.1,localhost` is needed for a local server when a
proxy is set (docs/proxies.md). The choice is made here, once per scheme and host, rather than by
aiohttp's own `trust_env`, which looks the environment up in a worker thread on every request and
also reads ~/.netrc (whose credentials aiohttp refuses to combine with our Authorization header).
Credentials in a proxy URL become a Proxy-Authorization header and never appear in messages.
"""

from __future__ import annotations

import asyncio
import inspect
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Union

from deepseek_kit._wire.errors import APIConnectionError, UsageError

from .events import ByteSource
from .request import Request

# Request bodies above this are sent file-like (aiohttp's own threshold for its large-body warning).
_LARGE_BODY = 1024 * 1024

if TYPE_CHECKING:
    import aiohttp

__all__ = ["AiohttpTransport", "MockResponse", "MockTransport", "RawResponse", "Transport"]


@dataclass
class RawResponse:
    """What `Transport.open` returns: the status, the response headers (looked up in lower case:
    give a case-insensitive mapping or lower-case keys) and the body as a `ByteSource`, not yet read."""

    status: int
    headers: Mapping[str, str]
    source: ByteSource


class Transport(Protocol):
    """The network seam: send one HTTP request, hand back its status, headers and an unread body.

    `AsyncClient(transport=...)` replaces the network with any object that has these two methods
    (no base class needed). The pipeline calls `open` once per attempt, as its last step: retries,
    failover, timeouts, keep-alive handling, SSE parsing and error mapping all happen above it, the
    same for every transport. `AiohttpTransport` is the default; `MockTransport` serves canned
    answers for pure-logic tests.

        class Recording:
            def __init__(self) -> None:
                self.inner = AiohttpTransport()
                self.urls: list[str] = []

            async def open(self, request: Request) -> RawResponse:
                self.urls.append(request.url)
                return await self.inner.open(request)

            async def aclose(self) -> None:
                await self.inner.aclose()

        client = AsyncClient(transport=Recording())

    Who closes what: the transport owns its connections and its pool until `open` returns; from
    then on the `ByteSource` in the `RawResponse` belongs to the caller, which ends it with
    `release()` (body read to the end: the connection may be reused) or `abort()` (stop early,
    timeout, oversize body: the connection must be dropped). The transport never closes a source
    it has handed out, and `aclose()` is the client's job (see below).

    A byte source (the `ByteSource` protocol) has four methods, all called on the client's event
    loop: `async read() -> bytes`, the next chunk of the body, b"" at the end; `abort()`, drop the
    connection now (sync, callable at any time and more than once; a `read()` pending in another
    task must then wake, with an error or b""); `release()`, the body was read to the end; and
    `at_eof() -> bool`, True once nothing more will come (returning False until a `read()` gave
    b"" is correct, it only costs one more read).

    Optional attribute `read_errors`: a tuple of exception types that a source's `read()` may
    raise when the connection breaks (aiohttp's `ClientError` for the default transport). They,
    `OSError`, `asyncio.IncompleteReadError` and `APIConnectionError` are turned into
    `APIConnectionError` (or `StreamError` mid-stream); anything else propagates as a bug.
    """

    async def open(self, request: Request) -> RawResponse:
        """Send `request` and return once the status line and headers have arrived.

        Receives a `Request` ready for the wire: absolute `url`, `method`, final `headers`
        (Authorization included: never log them or put them in an exception), `body` as bytes
        or None, `timeout.connect` as the connect limit (the other limits are enforced above:
        leave reads without a timeout). `request.stream` needs nothing special: a stream and a
        non-stream call are opened the same way, the caller reads the body differently.

        Returns a `RawResponse` for every status, 4xx and 5xx included (the caller reads the
        error body and raises the typed error): do not raise for status and do not follow
        redirects. The source yields the body as sent, after any Content-Encoding is undone,
        and no byte of it has been read yet.

        Raises `APIConnectionError` when no response arrives (refused, reset, DNS, TLS, proxy),
        its message one line naming the host and the reason, and `APITimeoutError("connect",
        limit)` when `timeout.connect` passes. Raise them outside the `except` block that caught
        the library's error (no `__context__`): such errors often hold the request headers.

        Cancellation: while the headers are awaited the caller may cancel the task (the
        first-token and total limits do so, as does the user). Let `CancelledError` propagate,
        leaving nothing open: no connection half-acquired, no response left to the caller.
        """
        ...

    async def aclose(self) -> None:
        """Close the pool and every idle connection. `AsyncClient.close()` calls it, also for a
        transport passed in with `transport=`; it must be safe to call more than once. Sources
        already handed out are not waited for."""
        ...


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


class _Proxy:
    """One proxy: the URL aiohttp connects to (no credentials), the Proxy-Authorization header
    when the URL carried credentials, and a display form for messages (no credentials)."""

    __slots__ = ("args", "auth", "display")

    def __init__(self, url: str, what: str = "proxy") -> None:
        from urllib.parse import unquote, urlsplit

        try:
            p = urlsplit(url)
            port = p.port
        except ValueError as exc:
            raise UsageError(f"{what} is not a valid URL ({exc}): {_mask_userinfo(url)!r}") from None
        if p.scheme not in ("http", "https") or not p.hostname:
            raise UsageError(f"{what} must be an http:// URL with a host, e.g. http://127.0.0.1:3128; "
                             f"got {_mask_userinfo(url)!r}")
        host = f"[{p.hostname}]" if ":" in p.hostname else p.hostname
        netloc = host if port is None else f"{host}:{port}"
        self.display = f"{p.scheme}://{netloc}"
        self.args: dict[str, Any] = {"proxy": self.display + (p.path if p.path not in ("", "/") else "")}
        self.auth: str | None = None
        if p.username is not None:
            import base64

            cred = f"{unquote(p.username)}:{unquote(p.password or '')}".encode()
            self.auth = "Basic " + base64.b64encode(cred).decode()
            # aiohttp sends proxy_headers on the CONNECT of https targets only; http targets get
            # the header on the request itself (`headers_for`).
            self.args["proxy_headers"] = {"Proxy-Authorization": self.auth}

    def headers_for(self, url: str, headers: dict[str, str]) -> dict[str, str]:
        if self.auth is None or url.startswith("https:"):
            return headers
        return {**headers, "Proxy-Authorization": self.auth}


def _mask_userinfo(url: str) -> str:
    at = url.find("@")
    start = url.find("://")
    return url if at < 0 or start < 0 or at < start else url[: start + 3] + "****@" + url[at + 1:]


def env_proxy(url: str) -> str | None:
    """The proxy URL the environment sets for `url` (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY), or None."""
    import urllib.request
    from urllib.parse import urlsplit

    getproxies_environment = urllib.request.getproxies_environment
    proxy_bypass_environment = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]

    proxies = getproxies_environment()
    if not proxies:
        return None
    p = urlsplit(url)
    netloc = p.netloc.rpartition("@")[2]
    if proxy_bypass_environment(netloc, proxies):
        return None
    return proxies.get(p.scheme) or proxies.get("all") or None


class AiohttpTransport:
    """HTTP/1.1 keep-alive pool over aiohttp.

    `max_connections` bounds open sockets (aiohttp queues the rest). `proxy="http://host:port"`
    sends every request through that proxy; otherwise `trust_env=True` (the default, like httpx)
    honours HTTP_PROXY / HTTPS_PROXY / NO_PROXY, and `trust_env=False` ignores them (see the module
    docstring). `ssl`: aiohttp's `ssl=` for every connection (an `ssl.SSLContext` for a private CA;
    default: verify against the system's CAs). `session`: an `aiohttp.ClientSession` of yours to
    send through (its own settings then apply; `aclose()` leaves it open).

        client = AsyncClient(transport=AiohttpTransport(ssl=ssl.create_default_context(cafile="ca.pem")))
    """

    def __init__(
        self,
        *,
        max_connections: int = 1000,
        trust_env: bool = True,
        proxy: str | None = None,
        ssl: Any = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if type(max_connections) is not int or max_connections < 1:
            raise UsageError(f"max_connections must be an integer >= 1, got {max_connections!r}")
        self._max = max_connections
        self._trust_env = trust_env
        self._proxy = _Proxy(proxy) if proxy else None
        self._env_proxies: dict[tuple[str, str], _Proxy | None] = {}  # (scheme, netloc) -> proxy
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
                connector=connector, trust_env=False,  # proxies from the environment: _proxy_for
                timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
                auto_decompress=True, raise_for_status=False,
            )
        if not self._errors:
            import aiohttp

            self._aiohttp = aiohttp
            self._errors = (aiohttp.ClientError, OSError)
        return self._session

    async def open(self, request: Request) -> RawResponse:
        """`Transport.open` over the pool: the session is created on first use, the proxy
        chosen per scheme and host (see the module docstring)."""
        session = self._ensure()
        t = request.timeout
        ct = self._timeouts.get(t.connect)
        if ct is None:
            ct = self._timeouts[t.connect] = self._aiohttp.ClientTimeout(
                total=None, sock_read=None, connect=None, sock_connect=t.connect)
        # Errors are raised after the except blocks, never chained: aiohttp's exceptions hold the
        # request headers, Authorization included, and error trackers record the whole chain
        # (docs/attack-round-2026-12.md, S1). The message names the reason instead.
        proxy = self._proxy_for(request.url)
        headers = request.headers if proxy is None else proxy.headers_for(request.url, request.headers)
        body: Any = request.body
        if body is not None and len(body) > _LARGE_BODY:
            # aiohttp sends a bytes body in one write and warns (ResourceWarning) above 1 MiB; a
            # file-like body is streamed in pieces. A new one per attempt: retries resend it whole.
            body = io.BytesIO(body)
        try:
            resp = await session.request(
                request.method, request.url, data=body, headers=headers,
                timeout=ct, allow_redirects=False, **(proxy.args if proxy is not None else _NO_ARGS),
            )
        except asyncio.TimeoutError:
            failed: APIConnectionError = _timeout_error(t.connect)
        except self._errors as exc:
            failed = APIConnectionError(_describe(exc, request, proxy))
        else:
            got: Mapping[str, str] = resp.headers
            if not all(v.isascii() for v in got.values()):
                got = _clean_headers(got)
            return RawResponse(resp.status, got, _AiohttpSource(resp))
        raise failed

    def _proxy_for(self, url: str) -> _Proxy | None:
        if self._proxy is not None or not self._trust_env:
            return self._proxy
        scheme, _, rest = url.partition("://")
        key = (scheme, rest.split("/", 1)[0])
        try:
            return self._env_proxies[key]
        except KeyError:
            pass
        found = env_proxy(url)
        if found and "://" not in found:
            found = "http://" + found  # HTTP_PROXY=host:port, as curl and httpx accept it
        what = ("the proxy set in the environment (HTTP_PROXY / HTTPS_PROXY / ALL_PROXY; "
                "trust_env=False ignores it)")
        proxy = self._env_proxies[key] = _Proxy(found, what) if found else None
        return proxy

    async def aclose(self) -> None:
        """Close the session this transport created (a `session=` passed in is left to its owner)."""
        if self._session is not None and self._own_session and not self._session.closed:
            await self._session.close()

    @property
    def read_errors(self) -> tuple[type[BaseException], ...]:
        """The exceptions a body read may raise when the connection breaks (aiohttp's
        `ClientError` and `OSError`), which the caller turns into `APIConnectionError`."""
        self._ensure()
        return self._errors


_NO_ARGS: dict[str, Any] = {}


def _clean_headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    """Response headers with invalid UTF-8 replaced by U+FFFD. aiohttp decodes header bytes with
    `surrogateescape`, and a lone surrogate in a trace id or a message cannot be written to SQLite,
    a terminal or JSON (a hostile header killed the logs
    writer thread; docs/attack-round-2026-12.md, round 2)."""
    from multidict import CIMultiDict

    return CIMultiDict(
        (k, v if v.isascii() else v.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
        for k, v in headers.items())


def _timeout_error(connect: float | None) -> APIConnectionError:
    from deepseek_kit._wire.errors import APITimeoutError

    return APITimeoutError("connect", connect or 0.0)


def _describe(exc: BaseException, request: Request, proxy: _Proxy | None = None) -> str:
    """A one-line human reason; never includes headers (they carry the key) nor proxy credentials."""
    via = f" through the proxy {proxy.display}" if proxy is not None else ""
    return f"Could not reach {request.origin}{via}: {_plain_reason(exc)}"


def _plain_reason(exc: BaseException) -> str:
    """aiohttp's "Cannot connect to host h:p ssl:default [Connect call failed ('h', p)]" says the host
    twice and the cause in a socket call's words; the message already names the URL, so keep only
    the cause: "connection refused", "connection timed out", or the OS's own text."""
    os_err = getattr(exc, "os_error", None)
    if isinstance(os_err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(os_err, TimeoutError):
        return "connection timed out"
    if isinstance(os_err, OSError) and os_err.strerror:
        return os_err.strerror[:1].lower() + os_err.strerror[1:]
    return str(exc) or type(exc).__name__


# ---------------------------------------------------------------------------------------------

MockBody = Union[bytes, str, Iterable[bytes], AsyncIterator[bytes]]  # noqa: UP007 (runtime alias, py3.10)


@dataclass
class MockResponse:
    """A canned answer for `MockTransport`: the status, the body (bytes, str, an iterable or an
    async iterator of byte chunks, each chunk one read; chunks of SSE text make a stream) and the
    response headers.

        MockResponse(429, '{"error": {"message": "Rate limit reached"}}', {"Retry-After": "1"})
    """

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
        """Record `request` in `.requests`, call the handler (sync or async) and serve its
        `MockResponse`; header names are lower-cased."""
        self.requests.append(request)
        out = self.handler(request)
        if inspect.isawaitable(out):
            out = await out
        assert isinstance(out, MockResponse)
        headers = {k.lower(): v for k, v in out.headers.items()}
        return RawResponse(out.status, headers, _MockSource(out.body))

    async def aclose(self) -> None:
        """Nothing to close."""
