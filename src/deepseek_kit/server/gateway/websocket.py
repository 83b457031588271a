"""WebSocket streaming: `GET /v1/chat/stream` and `/chat/stream` (docs/gateway.md, "WebSocket streaming").

The caller authenticates at the handshake with `Authorization: Bearer <key or access token>` (a
refusal is the usual DeepSeek-shaped 401 JSON answer; nothing is upgraded). Then each text message
is one chat request, handled exactly like `POST /chat/completions` with `"stream": true`
(`Gateway.completions`: admission, limits, budget hold, the relay with its failover, first-token
deadline and resumption, settlement, access line, metrics). Each SSE `data:` payload of the answer
goes out as one text message, the upstream's bytes unchanged; no `[DONE]` message: after the last
chunk the server waits `ws_linger` seconds for another request and, when none came, closes with 1000.

Errors: one `{"error": {...}}` message, then a close whose code says what kind (`close_code`).
Requests on a connection run one at a time; messages that arrive during an answer wait their turn
(at most `MAX_PENDING`). The client leaving (close frame, reset, missed pongs) cancels the call in
flight, which closes the upstream stream and settles what was used. Each send waits for the socket
(aiohttp's writer drains past 64 KiB), so a slow reader slows the relay, which stops reading the
upstream: no buffer grows without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from aiohttp import WSMessage, WSMsgType, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_request import BaseRequest

from .admission import Admission
from .config import GatewayConfig
from .errors import GatewayError, error_body
from .relay import timeout_at

__all__ = ["MAX_PENDING", "add_websocket_routes", "close_code"]

log = logging.getLogger("deepseek_kit.gateway")

#: Requests that may wait on one connection while an answer is streamed; one more is refused with
#: a 1008 close (a client must not queue without bound).
MAX_PENDING = 8
#: Seconds the server waits for the client's reply to its close frame.
_CLOSE_TIMEOUT = 5.0
#: Close reasons are at most 123 bytes (RFC 6455 section 5.5).
_REASON_MAX = 123


class _GatewayLike(Protocol):
    """What this module uses of app.py's Gateway (a protocol: app.py imports this module)."""

    config: GatewayConfig
    admission: Admission

    async def completions(self, request: web.Request, path: str, beta: bool, *, message: bytes | None = None,
                          out: web.StreamResponse | None = None) -> web.StreamResponse: ...


def close_code(status: int) -> int:
    """The close code that follows an error message for an HTTP-like `status` (RFC 6455 section 7.4)."""
    if status in (400, 415, 422):
        return 1007  # the request data is invalid
    if status == 413:
        return 1009  # too big
    if status in (429, 503):
        return 1013  # try again later
    if status >= 500:
        return 1011  # upstream or internal error
    return 1008  # auth, permission, budget, other policy


class _Sink(web.StreamResponse):
    """The relay's output for one WebSocket request. The relay writes SSE frames (`data: <payload>`
    plus a blank line, several per write); each payload goes out as one text message, its bytes
    unchanged. `[DONE]` is dropped (the close or the next request says the answer ended) and an
    error event is kept for the connection to send with its close code."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        super().__init__()
        self._ws = ws
        self.error: bytes | None = None

    async def prepare(self, request: BaseRequest) -> AbstractStreamWriter | None:
        return None  # the handshake is long done

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        # A payload is JSON on one line, so a blank line ends a frame (the relay never splits one).
        for frame in bytes(data).split(b"\n\n"):
            if not frame.startswith(b"data: "):
                continue
            payload = frame[6:]
            if payload == b"[DONE]":
                continue
            if payload[:8] == b'{"error"':
                self.error = payload
                continue
            # send_frame: the payload's UTF-8 bytes as they are (no decode and encode again); it
            # waits for the socket to drain when aiohttp's writer holds more than its limit.
            await self._ws.send_frame(payload, WSMsgType.TEXT)

    async def write_eof(self, data: bytes = b"") -> None:
        return None


class _Connection:
    """One upgraded connection: a reader task takes the client's messages (and sees it leave), the
    handler task serves them in order."""

    def __init__(self, gw: _GatewayLike, request: web.Request, ws: web.WebSocketResponse, path: str,
                 beta: bool) -> None:
        self.gw, self.request, self.ws, self.path, self.beta = gw, request, ws, path, beta
        self.inbox: asyncio.Queue[WSMessage | None] = asyncio.Queue()  # None: look at the flags
        self.gone = asyncio.Event()
        self.overflow = False

    async def read(self) -> None:
        try:
            while True:
                msg = await self.ws.receive()
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    if self.inbox.qsize() >= MAX_PENDING:
                        self.overflow = True
                        break
                    self.inbox.put_nowait(msg)
                    continue
                break  # CLOSE, CLOSING, CLOSED, ERROR (missed pongs, a reset): the client is gone
        finally:
            self.gone.set()
            self.inbox.put_nowait(None)

    async def run(self, shutting: list[bool]) -> None:
        cfg = self.gw.config
        loop = asyncio.get_running_loop()
        first = True
        while not self.ws.closed:
            if self.overflow:
                await self._fail(GatewayError(429, f"more than {MAX_PENDING} requests are waiting on this "
                                              "connection; wait for an answer before sending more",
                                              code="too_many_pending_requests"), 1008)
                return
            if shutting[0]:
                await self._close(1001, "gateway shutting down")
                return
            try:
                async with timeout_at(loop.time() + (cfg.ws_idle if first else cfg.ws_linger)):
                    msg = await self.inbox.get()
            except asyncio.TimeoutError:
                await self._close(1000, f"no request within {cfg.ws_idle:g} s" if first else "done")
                return
            if msg is None:
                continue  # gone, overflow or shutdown: the checks above (a closed socket ends the loop)
            if msg.type is WSMsgType.BINARY:
                await self._fail(GatewayError(400, "send the chat request as a JSON text message, not binary",
                                              code="invalid_request_error"), 1003)
                return
            data = msg.data.encode()
            if len(data) > cfg.max_body_bytes:
                await self._fail(GatewayError(413, f"the request message of {len(data):,} bytes is over the "
                                              f"gateway's limit of {cfg.max_body_bytes:,} bytes",
                                              code="request_too_large"), 1009)
                return
            if not await self.serve(data):
                return
            first = False

    async def serve(self, message: bytes) -> bool:
        """One request; True when the connection may take another."""
        sink = _Sink(self.ws)
        task = asyncio.ensure_future(self.gw.completions(self.request, self.path, self.beta, message=message,
                                                         out=sink))
        gone = asyncio.ensure_future(self.gone.wait())
        try:
            await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done() and self.gone.is_set():
                # The client left (or queued too much): cancel the call; its upstream stream is
                # closed and what was used is settled in Gateway.completions' finally.
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await task
                return self.overflow  # run() sends the overflow error
            try:
                await task
            except GatewayError as err:
                await self._fail(err, close_code(err.status))
                return False
            except ConnectionError:
                return False  # the socket broke while sending
            except Exception as exc:  # a bug: never a traceback or a secret to the caller
                log.exception("gateway: unexpected error on a WebSocket request")
                await self._fail(GatewayError(500, f"internal gateway error ({type(exc).__name__})"), 1011)
                return False
        finally:
            gone.cancel()
            if not task.done():  # this handler was cancelled (the connection was lost)
                task.cancel()
            task.add_done_callback(_retrieve)
        if sink.error is not None:
            # the stream broke after its first chunk (or a shutdown ended it): the relay's error object
            code = 1001 if b"gateway_shutdown" in sink.error else 1011
            await self._send(sink.error)
            await self._close(code, "gateway shutting down" if code == 1001 else "upstream stream broke")
            return False
        return True

    async def _send(self, payload: bytes) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_frame(payload, WSMsgType.TEXT)

    async def _fail(self, err: GatewayError, code: int) -> None:
        await self._send(error_body(err.message, err.type, err.code, err.param))
        await self._close(code, err.code)

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.close(code=code, message=reason.encode()[:_REASON_MAX])


def _retrieve(task: asyncio.Future[Any]) -> None:
    # A call that ended after its connection's handler: its error (a write to the lost socket) is
    # expected, not "never retrieved".
    if not task.cancelled():
        task.exception()


def add_websocket_routes(app: web.Application, gw: _GatewayLike) -> None:
    """Register `GET /v1/chat/stream` and `GET /chat/stream` (and close idle connections at shutdown)."""
    shutting = [False]  # set by the app's shutdown (a list: the handlers share it)
    connections: set[_Connection] = set()

    async def handle(request: web.Request) -> web.StreamResponse:
        # Refused before the upgrade: a plain DeepSeek-shaped 401/403 JSON answer (the middleware).
        await gw.admission.authenticate(request.headers.get("Authorization"), request.remote)
        cap = gw.config.max_body_bytes
        # aiohttp refuses frames over max_msg_size itself (close 1009, no message); up to twice the
        # cap a request gets the same 413 error message as over HTTP first.
        ws = web.WebSocketResponse(heartbeat=gw.config.ws_heartbeat, max_msg_size=2 * cap,
                                   timeout=_CLOSE_TIMEOUT)
        if not ws.can_prepare(request).ok:
            raise GatewayError(426, "this route streams over WebSocket: connect with a WebSocket client "
                               "(Upgrade: websocket)", type="invalid_request_error", code="upgrade_required")
        await ws.prepare(request)
        conn = _Connection(gw, request, ws, "/chat/completions", beta=False)
        connections.add(conn)
        reader = asyncio.ensure_future(conn.read())
        try:
            await conn.run(shutting)
        finally:
            connections.discard(conn)
            if not ws.closed:
                await conn._close(1000, "done")
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        return ws

    async def shutdown(app: web.Application) -> None:
        # Connections waiting for a request are closed at once; one streaming an answer is closed
        # after it (the relay gives that answer `shutdown_grace`).
        shutting[0] = True
        for conn in list(connections):
            conn.inbox.put_nowait(None)

    app.on_shutdown.insert(0, shutdown)
    app.router.add_get("/v1/chat/stream", handle)
    app.router.add_get("/chat/stream", handle)
