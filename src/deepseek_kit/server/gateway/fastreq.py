"""The fast path's request and stream sink (fastproto.py serves them): `FastRequest`, what the
gateway reads from a hot request (the relay's `Inbound`) with its body as it arrives, inflated and
capped; `FastStream`, the stream sink framed as aiohttp frames it.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Mapping
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Protocol

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE

from .errors import GatewayError
from .relay import timeout_at

__all__ = ["SERVER", "FastRequest", "FastStream", "Headers", "date_header", "reason"]

SERVER = SERVER_SOFTWARE.encode()  # the Server header aiohttp sends
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


def reason(status: int) -> bytes:
    return _REASONS.get(status, b"Unknown")


class Headers(dict[str, str]):
    """A request's headers by lower-case name, looked up in any case; of a repeated header the
    first wins (as `CIMultiDict.get`). A plain dict underneath: built at C speed, where aiohttp's
    CIMultiDict costs about twice as much per request."""

    __slots__ = ()

    def get(self, key: str, default: Any = None) -> Any:
        return dict.get(self, key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key.lower() if isinstance(key, str) else key)

    def __getitem__(self, key: str) -> str:
        return dict.__getitem__(self, key.lower())


class _Conn(Protocol):
    """The connection a request came on (fastproto.HotProtocol)."""

    remote: str | None

    async def send(self, data: bytes) -> None: ...

    def send_nowait(self, data: bytes) -> None: ...


_date_cache: list[Any] = [0, b""]


def date_header() -> bytes:
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True).encode()
    return bytes(_date_cache[1])  # the same object: bytes(b) does not copy


class FastRequest:
    """One hot request (the relay's `Inbound`): what the gateway reads, its body as it arrives."""

    __slots__ = ("_cap", "_done", "_error", "_inflate", "_over", "_parts", "_proto", "_size", "_waiter",
                 "content_length", "expect", "headers", "keep_alive", "method", "path", "remote", "route",
                 "stream", "version")

    def __init__(self, proto: _Conn, route: tuple[str, bool], headers: Headers,
                 version: str, keep_alive: bool, cap: int) -> None:
        self.method = "POST"
        self.route = route
        self.path = ""
        self.remote = proto.remote
        self.headers = headers
        cl = headers.get("Content-Length")
        self.content_length = int(cl) if cl is not None and cl.isdigit() else None
        self.version = version
        self.keep_alive = keep_alive
        self.expect = False
        self.stream: FastStream | None = None
        self._proto = proto
        self._parts: list[bytes] = []
        self._size = 0
        self._cap = cap
        self._over = False
        self._done = False
        self._waiter: asyncio.Future[None] | None = None
        self._error: str | None = None
        self._inflate: Any = None
        enc = headers.get("Content-Encoding", "").strip().lower()
        if enc == "gzip":
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            self._inflate = "deflate"  # zlib-wrapped or raw: decided on the first byte, like aiohttp

    # -- fed by the protocol -------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if self._over or self._error is not None:
            return
        inflate = self._inflate
        if inflate is not None:
            if inflate == "deflate":
                inflate = self._inflate = zlib.decompressobj(
                    zlib.MAX_WBITS if data[0] & 0x0F == 8 else -zlib.MAX_WBITS)
            room = self._cap - self._size
            try:
                # max_length: a small gzip bomb never inflates past the cap in memory
                data = inflate.decompress(data, room + 1)
            except zlib.error:
                self._fail("ContentEncodingError")
                return
            if inflate.unconsumed_tail:
                self._over = True
                self._parts.clear()
                return
        self._size += len(data)
        if self._size > self._cap:
            self._over = True
            self._parts.clear()
            return
        self._parts.append(data)

    def finish(self) -> None:
        if self._inflate is not None and not isinstance(self._inflate, str) and not self._over \
                and self._error is None:
            tail = self._inflate.flush()
            if not self._inflate.eof:
                self._error = "ContentEncodingError"
            elif tail:
                self.feed_plain(tail)
        self._done = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def feed_plain(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._cap:
            self._over = True
            self._parts.clear()
        else:
            self._parts.append(data)

    def _fail(self, why: str) -> None:
        self._error = why
        self._parts.clear()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- the relay's Inbound ---------------------------------------------------------------------

    async def read_capped(self, cap: int, timeout: float) -> bytes:
        if not self._done and not self._over and self._error is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with timeout_at(asyncio.get_running_loop().time() + timeout):
                    await self._waiter
            except asyncio.TimeoutError:
                raise GatewayError(408, f"the request body did not arrive within {timeout:g} s",
                                   code="request_timeout") from None
            finally:
                self._waiter = None
        if self._over or self._size > cap:
            raise GatewayError(413, f"request body is over the gateway's limit of {cap:,} bytes "
                               "(counted after decompression)", code="request_too_large")
        if self._error is not None:
            raise GatewayError(400, f"the request body could not be read ({self._error})")
        parts = self._parts
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def stream_sink(self, headers: Mapping[str, str]) -> web.StreamResponse:
        self.stream = FastStream(self, headers)
        return self.stream


class FastStream(web.StreamResponse):
    """The relay's stream sink on the fast path: chunked on HTTP/1.1 (one chunk per write, the
    terminating chunk at write_eof, as aiohttp frames it), close-delimited on HTTP/1.0; a write
    waits while the transport's buffer is over its high-water mark.

    The status line and headers go out with the first chunk when it is written in the same turn
    of the event loop as `prepare` (the relay's case: it prepares once the first token is in), so
    the caller wakes once for its first token instead of twice; otherwise on their own, at the end
    of that turn."""

    def __init__(self, request: FastRequest, headers: Mapping[str, str]) -> None:
        super().__init__(status=200)
        self._fr = request
        self._extra = headers
        self._started = False
        self._ended = False
        self._chunked = request.version == "1.1"
        self._head: bytes | None = None  # prepared, not sent yet

    @property
    def prepared(self) -> bool:
        return self._started

    async def prepare(self, request: Any) -> None:
        if self._started:
            return
        self._started = True
        req = self._fr
        if not self._chunked:
            req.keep_alive = False  # HTTP/1.0: the end of the stream is the close
        head = [b"HTTP/", req.version.encode(), b" 200 OK\r\n"]
        for k, v in self._extra.items():
            head += (k.encode("latin-1"), b": ", v.encode("latin-1"), b"\r\n")
        if self._chunked:
            head.append(b"Transfer-Encoding: chunked\r\n")
        head += (b"Date: ", date_header(), b"\r\nServer: ", SERVER, b"\r\n")
        if not req.keep_alive:
            head.append(b"Connection: close\r\n")
        head.append(b"\r\n")
        self._head = b"".join(head)
        asyncio.get_running_loop().call_soon(self._head_alone)

    def _head_alone(self) -> None:
        head, self._head = self._head, None
        if head is not None:
            self._fr._proto.send_nowait(head)

    def _with_head(self, data: bytes) -> bytes:
        """`data`, behind the head when the head has not gone out yet."""
        head, self._head = self._head, None
        return data if head is None else head + data

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if self._ended:
            raise RuntimeError("cannot write after write_eof")
        if self._chunked:
            data = b"%x\r\n%b\r\n" % (len(data), bytes(data))
        await self._fr._proto.send(self._with_head(bytes(data)))

    async def write_eof(self, data: bytes = b"") -> None:
        if self._ended:
            return
        if data:
            await self.write(data)
        self._ended = True
        if self._chunked:
            await self._fr._proto.send(self._with_head(b"0\r\n\r\n"))
        else:
            self._head_alone()
