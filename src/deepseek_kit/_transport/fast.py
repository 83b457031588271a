"""`HttpToolsTransport`: the `Transport` contract on asyncio protocols and httptools' C parser.

The gateway's transport for its upstreams (docs/gateway.md, "Performance"): aiohttp's client spends
several times more CPU per request than the exchange needs (session, connector, request and
response objects, a stream reader per body). This pool does the same work, a protocol per
connection (`fast_conn.py`) and a keep-alive pool here, and is optional: httptools comes with
`pip install 'deepseek-kit[gateway]'`, the library default stays `AiohttpTransport`.

Proxies are not spoken here: when `proxy=` is given, or the environment sets a proxy for a URL
(the `AiohttpTransport` rules: HTTP_PROXY / HTTPS_PROXY / ALL_PROXY / NO_PROXY, `trust_env`), that
request goes through an internal `AiohttpTransport`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as _ssl
from collections import deque
from collections.abc import Mapping
from typing import Any

from deepseek_kit._wire.errors import APIConnectionError, UsageError

from .fast_conn import Conn, ConnectionLost, Source, Stale
from .request import Request
from .transports import AiohttpTransport, RawResponse, _describe, _Proxy, _timeout_error, env_proxy

__all__ = ["HttpToolsTransport", "gateway_transport"]

_NEEDS_BODY = frozenset(("POST", "PUT", "PATCH"))
_MAX_ORIGINS = 1024


class _Origin:
    """What is known of one `scheme://host:port`: where to connect, the Host header, the TLS
    context, and whether its requests go through a proxy (the fallback transport)."""

    __slots__ = ("host", "host_header", "key", "port", "proxied", "ssl")

    def __init__(self, host: str, port: int, host_header: str, ssl: _ssl.SSLContext | None,
                 proxied: bool) -> None:
        self.host = host
        self.port = port
        self.host_header = host_header
        self.ssl = ssl
        self.proxied = proxied
        self.key = (ssl is not None, host, port)


class _Failed(Exception):
    """Carries an OSError to `transports._plain_reason` (which reads `os_error`, as aiohttp's
    connection errors have it), so both transports word connect failures the same way."""

    def __init__(self, exc: OSError) -> None:
        super().__init__(str(exc))
        self.os_error = exc


class _ProxiedSource:
    """The fallback's source, its read errors turned into `ConnectionLost` (so `read_errors`
    stays one fixed tuple whichever way a request went)."""

    __slots__ = ("_errors", "_src")

    def __init__(self, src: Any, errors: tuple[type[BaseException], ...]) -> None:
        self._src = src
        self._errors = errors

    async def read(self) -> bytes:
        try:
            data: bytes = await self._src.read()
        except self._errors as exc:
            why = f"the connection broke ({type(exc).__name__})"
        else:
            return data
        raise ConnectionLost(why)

    def abort(self) -> None:
        self._src.abort()

    def release(self) -> None:
        self._src.release()

    def at_eof(self) -> bool:
        return bool(self._src.at_eof())


class HttpToolsTransport:
    """HTTP/1.1 keep-alive pool on asyncio protocols and httptools (llhttp), for less CPU per
    request than `AiohttpTransport`; the gateway uses it for its upstreams when httptools is
    installed (`pip install 'deepseek-kit[gateway]'`).

    `max_connections` bounds the connections in use at once (further requests wait their turn,
    first come first served; idle kept-alive connections do not count). `proxy=` and, with
    `trust_env=True`, the proxy variables of the environment send the matching requests through an
    internal `AiohttpTransport` (no proxy protocol is spoken here). `ssl`: an `ssl.SSLContext`
    for https connections (default: `ssl.create_default_context()`, the system's CAs).
    `keepalive_timeout`: seconds an idle connection is kept for reuse (aiohttp's default, 15 s):
    older ones are closed rather than used, since a load balancer may have dropped them silently.

        client = AsyncClient(transport=HttpToolsTransport(max_connections=200))

    A pooled connection the server closed while idle is noticed before use; when a reused
    connection fails before any byte of the answer arrived, the request is sent once more on a
    new connection (as aiohttp does). Responses come with `Content-Encoding` gzip or deflate
    undone (`Accept-Encoding: gzip, deflate` is sent unless the request sets its own).
    """

    #: What a body `read()` raises when the connection breaks (see `Transport`).
    read_errors: tuple[type[BaseException], ...] = (ConnectionLost,)

    def __init__(self, *, max_connections: int = 1000, trust_env: bool = True, proxy: str | None = None,
                 ssl: _ssl.SSLContext | None = None, keepalive_timeout: float = 15.0) -> None:
        try:
            import httptools  # type: ignore[import-untyped,unused-ignore]
        except ImportError:
            raise UsageError("HttpToolsTransport needs the httptools package: "
                             "pip install 'deepseek-kit[gateway]'") from None
        if type(max_connections) is not int or max_connections < 1:
            raise UsageError(f"max_connections must be an integer >= 1, got {max_connections!r}")
        if (type(keepalive_timeout) not in (int, float) or not 0 <= keepalive_timeout < float("inf")):
            raise UsageError(f"keepalive_timeout must be a number of seconds >= 0, got {keepalive_timeout!r}")
        if proxy is not None:
            _Proxy(proxy)  # a malformed proxy URL is a UsageError now, not at the first request
        self._parser_cls = httptools.HttpResponseParser
        self._max = max_connections
        self._keepalive = float(keepalive_timeout)
        self._trust_env = trust_env
        self._proxy = proxy
        self._ssl = ssl
        self._in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._idle: dict[tuple[bool, str, int], list[Conn]] = {}
        self._origins: dict[str, _Origin] = {}
        self._fallback: AiohttpTransport | None = None
        self._closed = False

    async def open(self, request: Request) -> RawResponse:
        """`Transport.open`: one write of the request on a pooled or new connection, back once
        the status line and headers are parsed."""
        url = request.url
        slash = url.find("/", url.find("://") + 3)
        origin_url, target = (url, "/") if slash < 0 else (url[:slash], url[slash:])
        o = self._origins.get(origin_url)
        if o is None:
            o = self._origin(origin_url, url)
        if o.proxied:
            return await self._via_proxy(request)
        data = _encode(request, o.host_header, target)
        self._closed = False
        if self._in_use < self._max and not self._waiters:
            self._in_use += 1
        else:
            await self._wait_slot()
        out: RawResponse | APIConnectionError | None = None
        try:
            out = await self._exchange(o, data, request)
        finally:
            if not isinstance(out, RawResponse):
                self._free_slot()
        if isinstance(out, RawResponse):
            return out
        raise out

    async def _exchange(self, o: _Origin, data: bytes, request: Request) -> RawResponse | APIConnectionError:
        """Send on a kept-alive connection if one is idle, else on a new one; a reused connection
        that turns out closed before answering is replaced once. Errors are returned, not raised,
        so the caller raises them outside any `except` block (no chained context)."""
        conn = self._pop_idle(o.key)
        reused = conn is not None
        while True:
            if conn is None:
                made = await self._connect(o, request)
                if isinstance(made, APIConnectionError):
                    return made
                conn = made
            head = conn.begin(data)
            try:
                await head
            except Stale:
                conn.close()
                if reused:  # closed by the server while idle: nothing was answered, send it again
                    conn, reused = None, False
                    continue
                return APIConnectionError(_describe(ConnectionLost(
                    "the server closed the connection before answering"), request))
            except ConnectionLost as exc:
                conn.close()
                return APIConnectionError(_describe(ConnectionLost(str(exc)), request))
            except BaseException:  # cancelled while waiting for the headers: drop the connection
                conn.close()
                raise
            return RawResponse(conn.status, conn.headers, Source(conn, self._done))

    async def _connect(self, o: _Origin, request: Request) -> Conn | APIConnectionError:
        loop = asyncio.get_running_loop()
        parser_cls, on_lost = self._parser_cls, self._on_lost
        coro = loop.create_connection(lambda: Conn(parser_cls, o.key, on_lost), o.host, o.port,
                                      ssl=o.ssl, server_hostname=o.host if o.ssl is not None else None)
        limit = request.timeout.connect
        try:
            if limit is None:
                _, conn = await coro
            else:
                _, conn = await asyncio.wait_for(coro, limit)
        except asyncio.TimeoutError:  # also TLS handshakes that never finish
            failed = _timeout_error(limit)
        except OSError as exc:  # refused, reset, DNS, TLS (ssl.SSLError is an OSError)
            failed = APIConnectionError(_describe(_Failed(exc), request))
        else:
            return conn
        return failed

    def _origin(self, origin_url: str, url: str) -> _Origin:
        from urllib.parse import urlsplit

        try:
            p = urlsplit(origin_url)
            port = p.port
        except ValueError as exc:
            raise UsageError(f"not a valid URL ({exc}): {origin_url!r}") from None
        scheme = p.scheme.lower()
        if scheme not in ("http", "https") or not p.hostname:
            raise UsageError(f"HttpToolsTransport sends http:// and https:// URLs with a host, "
                             f"got {origin_url!r}")
        default = 443 if scheme == "https" else 80
        host = p.hostname
        shown = f"[{host}]" if ":" in host else host
        host_header = shown if port is None or port == default else f"{shown}:{port}"
        proxied = self._proxy is not None or (self._trust_env and bool(env_proxy(url)))
        ctx = None
        if scheme == "https":
            ctx = self._ssl if self._ssl is not None else _default_context()
        o = _Origin(host, port or default, host_header, ctx, proxied)
        if len(self._origins) >= _MAX_ORIGINS:
            self._origins.clear()
        self._origins[origin_url] = o
        return o

    async def _via_proxy(self, request: Request) -> RawResponse:
        if self._fallback is None:
            self._fallback = AiohttpTransport(max_connections=self._max, trust_env=self._trust_env,
                                              proxy=self._proxy, ssl=self._ssl)
        raw = await self._fallback.open(request)
        return RawResponse(raw.status, raw.headers, _ProxiedSource(raw.source, self._fallback.read_errors))

    # --- the pool -----------------------------------------------------------------------------------

    def _pop_idle(self, key: tuple[bool, str, int]) -> Conn | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have timed out
            conn.idle = False
            t = conn.transport
            if conn.lost or t is None or t.is_closing():
                conn.close()
                continue
            if conn.loop.time() - conn.idle_since <= self._keepalive:
                return conn
            for old in (conn, *idle):  # idle too long, and every one below it longer still
                old.idle = False
                old.close()
            idle.clear()
        return None

    def _done(self, conn: Conn, reusable: bool) -> None:
        """A source was released (`reusable`: the body was complete and keep-alive allowed) or
        aborted: the connection goes back to the pool or is closed; the slot goes to the next."""
        if reusable and not self._closed:
            conn.idle = True
            conn.idle_since = conn.loop.time()
            conn.head = None
            self._idle.setdefault(conn.key, []).append(conn)
        else:
            conn.close()
        self._free_slot()

    def _on_lost(self, conn: Conn) -> None:
        idle = self._idle.get(conn.key)
        if idle is not None:
            with contextlib.suppress(ValueError):
                idle.remove(conn)

    async def _wait_slot(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self._free_slot()  # handed a slot just as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)
            raise

    def _free_slot(self) -> None:
        waiters = self._waiters
        while waiters:
            w = waiters.popleft()
            if not w.done():
                w.set_result(None)  # the slot passes to the first waiter: the count stays
                return
        self._in_use -= 1

    async def aclose(self) -> None:
        """Close every idle connection (and the proxy fallback's pool); connections handed out
        close when their source is released. Safe to call more than once."""
        self._closed = True
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.idle = False
                conn.close()
        if self._fallback is not None:
            await self._fallback.aclose()


def _encode(request: Request, host_header: str, target: str) -> bytes:
    """The request head and body as one buffer (one write). Header values with CR or LF are
    refused: they would split the request (aiohttp refuses them too)."""
    headers: Mapping[str, str] = request.headers
    text = "".join([f"{k}: {v}\r\n" for k, v in headers.items()])
    if text.count("\n") != len(headers) or text.count("\r") != len(headers):
        raise UsageError("a request header name or value contains a CR or LF character")
    low = "\n" + text.lower()
    extra = "" if "\nhost:" in low else f"Host: {host_header}\r\n"
    if "\naccept-encoding:" not in low:
        extra += "Accept-Encoding: gzip, deflate\r\n"  # what aiohttp sends
    body = request.body
    if "\ncontent-length:" not in low and (body is not None or request.method in _NEEDS_BODY):
        extra += f"Content-Length: {len(body) if body is not None else 0}\r\n"
    if "#" in target:
        target = target.split("#", 1)[0]
    if not target.isascii() or " " in target:
        from urllib.parse import quote

        target = quote(target, safe="/:?=&%@+,;!$'()*~[]")
    head = f"{request.method} {target} HTTP/1.1\r\n{extra}{text}\r\n".encode()
    return head + body if body else head


_CONTEXT: list[_ssl.SSLContext] = []


def _default_context() -> _ssl.SSLContext:
    if not _CONTEXT:  # loading the system's CAs takes milliseconds: once per process
        _CONTEXT.append(_ssl.create_default_context())
    return _CONTEXT[0]


def gateway_transport(max_connections: int = 1000) -> HttpToolsTransport | None:
    """`HttpToolsTransport` when httptools is installed, else None (`AsyncClient` then uses its
    default `AiohttpTransport`)."""
    try:
        return HttpToolsTransport(max_connections=max_connections)
    except UsageError:
        return None
