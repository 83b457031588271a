"""The gateway's fast HTTP/1.1 path: an asyncio protocol that serves the hot routes itself.

`POST /chat/completions` (also under `/v1` and `/beta`) and `POST /beta/completions` are parsed
with httptools (the llhttp C parser uvicorn uses) and handed to `Gateway.completions` as a small
`FastRequest`; the answer is written as one status-line-plus-headers write, then the body
(`Content-Length`) or the stream (chunked on HTTP/1.1, one chunk per write, as aiohttp frames it;
close-delimited on HTTP/1.0). Any other request (GET routes, admin, dashboard, OAuth, WebSocket
upgrades, OPTIONS, unknown paths, a `br` body, anything malformed) hands the connection over to
aiohttp at that request's first byte: aiohttp's protocol takes the transport and every byte
received from there on, and keeps the connection. Why hand-written: aiohttp's server spends more
CPU per request on its request/response objects, middlewares and router than the gateway spends on
its own work (docs/gateway.md, Performance); this path does the same HTTP work for a fraction.

Kept from the aiohttp path: the errors middleware (DeepSeek-shaped errors, a 500 logged with no
secret, CORS headers when configured), the body cap counted after gzip/deflate inflation, chunked
bodies, `Expect: 100-continue`, the slow-body timeout (408, in `Gateway.read_body`), the keep-alive
timeout, pipelined requests answered in order, `Connection: close` and HTTP/1.0, and the handler
task cancelled when the caller goes away (aiohttp's handler_cancellation).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

import httptools
from aiohttp import web

from .app import GATEWAY_KEY, Gateway, _cors_headers
from .errors import GatewayError, error_response
from .fastreq import SERVER, FastRequest, FastStream, Headers, date_header, reason
from .relay import timeout_at

__all__ = ["HotProtocol", "protocol_factory"]

log = logging.getLogger("deepseek_kit.gateway")

#: path -> (the upstream path, beta): the routes this protocol serves itself (app.py has the same)
HOT_ROUTES: dict[bytes, tuple[str, bool]] = {
    b"/chat/completions": ("/chat/completions", False),
    b"/v1/chat/completions": ("/chat/completions", False),
    b"/beta/chat/completions": ("/chat/completions", True),
    b"/beta/completions": ("/completions", True),
}
# aiohttp's limits (web_protocol.RequestHandler defaults): past them, aiohttp answers the request
MAX_LINE = 8190
MAX_FIELD = 8190
MAX_HEADERS = 128
MAX_HEAD = 64 * 1024  # bytes of one request's head buffered before aiohttp is asked to judge it
MAX_QUEUED = 16  # pipelined requests waiting behind the one served: reading pauses past it
class _Stop(Exception):
    """Internal: stop parsing here; the connection goes to aiohttp."""


class HotProtocol(asyncio.Protocol):
    """One client connection, until it is handed over to aiohttp (see the module docstring)."""

    def __init__(self, gw: Gateway, server: web.Server, keepalive: float) -> None:
        self.gw = gw
        self.server = server
        self.keepalive = keepalive
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.remote: str | None = None
        self.parser = httptools.HttpRequestParser(self)
        # Bytes received since the parser was last between requests at the end of a read: the
        # current request's first byte is at `_start` (None: not known, see _find_start).
        self._raw = bytearray()
        self._start: int | None = 0
        self._next: int | None = None
        self._head_end = 0
        self._url = b""
        self._names: list[bytes] = []
        self._values: list[bytes] = []
        self._in_message = False
        self._parsing: FastRequest | None = None  # the request whose body is arriving
        self._queue: deque[FastRequest] = deque()
        self._task: asyncio.Task[None] | None = None
        self._handover: bytearray | None = None  # bytes for aiohttp once the queue is done
        self._closing = False
        self._paused = False
        self._drain: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not registered as asyncio.Transport subclasses)
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if isinstance(peer, (tuple, list)) and peer else None
        # Registered with aiohttp's server so runner.cleanup() closes and waits for it like its own
        # connections (pre_shutdown -> close(), shutdown() -> shutdown(timeout)).
        self.server._connections[self] = self.transport  # type: ignore[index,assignment]
        self._last = self.loop.time()
        self._idle()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.server._connections.pop(self, None)  # type: ignore[call-overload]
        self.transport = None
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()  # the caller went away: as aiohttp's handler_cancellation
        self._queue.clear()
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(ConnectionResetError("the client closed the connection"))

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._handover is not None:
            self._handover += data
            if len(self._handover) > MAX_HEAD and not self._reading_paused and self.transport is not None:
                self._reading_paused = True  # aiohttp takes over after the answer in flight
                self.transport.pause_reading()
            return
        self._last = self.loop.time()
        raw = self._raw
        raw += data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # an Upgrade request was handed over at its headers (on_headers_complete)
        except httptools.HttpParserError as exc:  # also _Stop: a request for aiohttp
            self._bad(exc)
            return
        if not self._in_message:
            raw.clear()
            self._start = 0
        elif self._parsing is not None:
            # inside a hot request's body: only where the next request starts matters
            n = len(raw)
            raw.clear()
            if self._next is not None:
                self._next -= n
            self._head_end = 0
        elif self._parsing is None and len(raw) - (self._start or 0) > MAX_HEAD:
            self._give_up()  # a head this big: aiohttp's limits answer it

    # -- httptools callbacks -----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = True
        self._url = b""
        self._names = []
        self._values = []

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_LINE:
            raise _Stop

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) > MAX_FIELD or len(self._names) >= MAX_HEADERS:
            raise _Stop
        self._names.append(name)
        self._values.append(value)

    def on_headers_complete(self) -> None:
        parser = self.parser
        url = self._url
        q = url.find(b"?")
        route = HOT_ROUTES.get(url if q < 0 else url[:q])
        if route is None or parser.get_method() != b"POST" or parser.should_upgrade():
            raise _Stop
        headers = Headers()
        # backwards, so that the first of a repeated header is the one kept; names are llhttp-checked
        # tokens (ASCII), values decoded as aiohttp decodes them
        for n, v in zip(reversed(self._names), reversed(self._values), strict=True):
            headers[n.decode("latin-1").lower()] = v.decode("utf-8", "surrogateescape")
        enc = headers.get("Content-Encoding")
        if enc is not None and enc.strip().lower() == "br":
            raise _Stop  # aiohttp decodes brotli when it is installed, else answers it
        expect = headers.get("Expect")
        if expect is not None and expect.lower() != "100-continue":
            raise _Stop  # aiohttp's answer: 417
        te = headers.get("Transfer-Encoding")
        chunked = te is not None and "chunked" in te.lower()
        version = parser.get_http_version()
        req = FastRequest(self, route, headers, version, parser.should_keep_alive(),
                          self.gw.config.max_body_bytes)
        req.path = (url if q < 0 else url[:q]).decode("ascii", "replace")
        req.expect = expect is not None and version == "1.1"
        self._parsing = req
        # where the next request starts in _raw (exact for Content-Length bodies)
        start = self._start
        if start is not None and not chunked:
            end = self._raw.find(b"\r\n\r\n", start)
            self._next = end + 4 + (req.content_length or 0) if end >= 0 else None
        else:
            self._next = None
        self._head_end = self._raw.find(b"\r\n\r\n", start or 0) + 4
        self._queue.append(req)
        if self._task is None:
            self._serve_next()
        elif len(self._queue) > MAX_QUEUED and self.transport is not None and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def on_body(self, body: bytes) -> None:
        if self._parsing is not None:
            self._parsing.feed(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        req = self._parsing
        self._parsing = None
        self._start = self._next
        if req is not None:
            req.finish()

    # -- hand-over to aiohttp --------------------------------------------------------------------

    def _find_start(self) -> int | None:
        """The current request's first byte in _raw; after a chunked request pipelined in the same
        read its end is not known, so look for this request's line after that request's head."""
        if self._start is not None:
            return self._start
        line = self.parser.get_method() + b" " + self._url
        at = self._raw.find(line, self._head_end)
        return at if at >= 0 else None

    def _bad(self, exc: Exception) -> None:
        """The parser stopped: a request for aiohttp (handed over) or bytes that are not HTTP."""
        if self._parsing is not None:  # broken framing inside a hot request's body
            self._parsing._fail(type(exc).__name__)
            self._parsing.keep_alive = False
            self._parsing = None
            self._handover = bytearray()  # nothing more is read from this connection
            self._closing = True
            return
        self._give_up()

    def _give_up(self) -> None:
        start = self._find_start()
        if start is None:
            # the request's first byte cannot be found: this connection cannot be served on
            if self.transport is not None:
                self.transport.close()
            self._handover = bytearray()
            return
        self._handover = bytearray(self._raw[start:])
        self._raw = bytearray()
        if self._task is None:
            self._hand_over()

    def _hand_over(self) -> None:
        transport = self.transport
        data = self._handover
        if transport is None or data is None or transport.is_closing():
            return
        if self._timer is not None:
            self._timer.cancel()
        self.server._connections.pop(self, None)  # type: ignore[call-overload]
        self.transport = None
        handler = self.server()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self._reading_paused:
            transport.resume_reading()
        if self._closing:
            handler.close()
        if data:
            handler.data_received(bytes(data))

    # -- serving -------------------------------------------------------------------------------

    def _serve_next(self) -> None:
        req = self._queue.popleft()
        if self._reading_paused and len(self._queue) <= MAX_QUEUED // 2 and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        self._task = self.loop.create_task(self._serve(req))

    async def _serve(self, req: FastRequest) -> None:
        gw = self.gw
        path, beta = req.route
        origin = req.headers.get("Origin")
        origins = gw.config.cors_origins
        cors = origin is not None and (origin in origins or "*" in origins)
        keep = False
        try:
            if req.expect and self.transport is not None and not req._done:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            try:
                resp = await gw.completions(req, path, beta)
            except GatewayError as err:
                resp = error_response(err)
            except (asyncio.CancelledError, ConnectionResetError):
                raise
            except Exception as exc:  # a bug: never a traceback or a secret to the caller
                if req.stream is not None and req.stream.prepared:
                    raise
                log.exception("gateway: unexpected error on %s %s", req.method, req.path)
                resp = error_response(GatewayError(500, f"internal gateway error ({type(exc).__name__})"))
            if isinstance(resp, FastStream):
                await resp.write_eof()
            else:
                if req.stream is not None and req.stream.prepared:
                    raise RuntimeError("a response after the stream began")
                if not req._done:
                    req.keep_alive = False  # the rest of its body is not read: close after the answer
                self._answer(req, resp, origin if cors else None)
            keep = req.keep_alive and not self._closing
        except asyncio.CancelledError:
            pass  # the caller went away, or the shutdown's grace ran out
        except ConnectionResetError:
            pass
        except Exception:
            log.exception("gateway: unexpected error on %s %s", req.method, req.path)
        finally:
            self._task = None
            self._done_with(keep)

    def _done_with(self, keep: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        if not keep:
            transport.close()
            return
        if self._queue:
            self._serve_next()
        elif self._handover is not None:
            self._hand_over()
        else:
            self._last = self.loop.time()
            self._idle()

    def _answer(self, req: FastRequest, resp: web.StreamResponse, origin: str | None) -> None:
        """A whole answer (web.Response: the relay's non-stream answer or an error) in one write."""
        assert isinstance(resp, web.Response)
        body = resp.body
        data = body if isinstance(body, bytes) else b""
        status = resp.status
        head = [b"HTTP/", req.version.encode(), b" %d %b\r\n" % (status, reason(status))]
        for k, v in resp.headers.items():
            head += (k.encode("latin-1"), b": ", v.encode("latin-1"), b"\r\n")
        if origin is not None:
            for k, v in _cors_headers(origin, preflight=False).items():
                head += (k.encode("latin-1"), b": ", v.encode("latin-1"), b"\r\n")
        head += (b"Content-Length: %d\r\nDate: " % len(data), date_header(), b"\r\nServer: ", SERVER, b"\r\n")
        if not req.keep_alive or self._closing:
            head.append(b"Connection: close\r\n")
        elif req.version == "1.0":
            head.append(b"Connection: keep-alive\r\n")
        head += (b"\r\n", data)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(head))

    async def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("Cannot write to closing transport")
        transport.write(data)
        if self._paused:
            self._drain = self.loop.create_future()
            try:
                await self._drain
            finally:
                self._drain = None

    def send_nowait(self, data: bytes) -> None:
        """A small write that does not wait for the buffer to drain (a stream's head); dropped
        when the caller has gone."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    # -- keep-alive and shutdown -------------------------------------------------------------------

    def _idle(self) -> None:
        # one timer, re-armed lazily: a request does not cancel and schedule a handle
        if self._timer is None and self.keepalive > 0:
            self._timer = self.loop.call_at(self._last + self.keepalive, self._check_idle)

    def _check_idle(self) -> None:
        self._timer = None
        if self.transport is None:
            return
        # a head that never completes counts as idle (as in aiohttp); a body that does not is the
        # handler's 408
        busy = self._task is not None or bool(self._queue)
        due = self._last + self.keepalive
        if not busy and self.loop.time() >= due:
            self.transport.close()
        elif not busy:
            self._timer = self.loop.call_at(due, self._check_idle)

    def close(self) -> None:
        """aiohttp's pre_shutdown: no new requests; an idle connection is closed now, a busy one
        after its answer."""
        self._closing = True
        if self._task is None and not self._queue and self.transport is not None:
            self.transport.close()

    async def shutdown(self, timeout: float | None = 15.0) -> None:
        """aiohttp's shutdown: wait for the request in flight (up to `timeout`), then close."""
        self._closing = True
        task = self._task
        if task is not None and not task.done():
            try:
                async with timeout_at(None if timeout is None else self.loop.time() + timeout):
                    await asyncio.shield(task)
            except (asyncio.CancelledError, asyncio.TimeoutError):
                task.cancel()
        if self.transport is not None:
            self.transport.close()


def protocol_factory(app: web.Application, server: web.Server, keepalive: float) -> Callable[[], HotProtocol]:
    """The listener's protocol factory for `app` (a gateway app) whose aiohttp side is `server`."""
    gw = app[GATEWAY_KEY]
    return lambda: HotProtocol(gw, server, keepalive)
