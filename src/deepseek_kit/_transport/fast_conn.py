"""One HTTP/1.1 client connection of `HttpToolsTransport`: an asyncio.Protocol fed to httptools'
response parser (llhttp, the C parser uvicorn uses), and the `ByteSource` over one response.

Hand-written rather than aiohttp's client because the gateway pays the client's per-request cost
on every call (docs/gateway.md, "Performance"): here a request is one `transport.write`, the status
and headers come from C callbacks, and the body is a list of chunks joined on read. Framing
(Content-Length, chunked, read-to-close), keep-alive rules (HTTP/1.0, `Connection: close`) and
1xx interim responses are llhttp's; what is left here is the state of one exchange, flow control
(reading is paused above `HIGH_WATER` unread bytes) and gzip/deflate decoding with zlib, inflated
at most `INFLATE_STEP` bytes per read so a compression bomb meets the body cap of the layer above.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable
from typing import Any, cast

__all__ = ["HIGH_WATER", "MAX_HEAD", "Conn", "ConnectionLost", "Source"]

#: Unread body bytes buffered before the socket stops being read (resumed by the next read()).
HIGH_WATER = 256 * 1024
#: Most bytes read before the response headers are complete (aiohttp allows 8 KiB per line).
MAX_HEAD = 64 * 1024
#: Largest piece a compressed body inflates to per read().
INFLATE_STEP = 256 * 1024


class ConnectionLost(ConnectionError):
    """The connection broke (reset, closed mid-body, aborted, not HTTP) while a response was read.
    Its message names the reason and never holds request headers."""


class Stale(Exception):
    """Internal: the connection closed before any byte of the response arrived (on a reused
    connection the request is then sent again on a new one)."""


def _decoder(encoding: str) -> Any:
    """A zlib decompressobj for a Content-Encoding, or None for identity."""
    enc = encoding.strip().lower()
    if enc in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if enc == "deflate":
        return _Deflate()
    return None


class _Deflate:
    """HTTP "deflate" is zlib-wrapped by the RFC but raw deflate from some servers (aiohttp and
    browsers accept both): the first byte tells which."""

    __slots__ = ("_z",)

    def __init__(self) -> None:
        self._z: Any = None

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._z is None:
            if not data:
                return b""
            zlib_header = (data[0] & 0x0F) == 8 and (data[0] >> 4) <= 7
            self._z = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
        out: bytes = self._z.decompress(data, max_length)
        return out

    @property
    def unconsumed_tail(self) -> bytes:
        return self._z.unconsumed_tail if self._z is not None else b""

    @property
    def eof(self) -> bool:
        return self._z is not None and bool(self._z.eof)

    def flush(self) -> bytes:
        return self._z.flush() if self._z is not None else b""


class Conn(asyncio.Protocol):
    """One kept-alive connection. `begin()` sends a request and arms the header waiter; the parser
    callbacks fill status, headers and body chunks; `read()` hands the chunks out."""

    def __init__(self, parser_cls: Callable[[Any], Any], key: Any,
                 on_lost: Callable[[Conn], None]) -> None:
        self.key = key
        self._on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.lost = False  # connection_lost seen (or we closed it)
        self.idle = False  # in the pool
        self.idle_since = 0.0  # loop time it went back to the pool
        self.uses = 0  # requests sent on it
        self.loop = asyncio.get_running_loop()
        # One parser for the connection's life: llhttp reads keep-alive responses one after the
        # other (a new parser per response was ~3% of the gateway's CPU: it looks up every callback).
        self.parser = parser_cls(self)
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.head: asyncio.Future[None] | None = None
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.got_bytes = False
        self.head_bytes = 0
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.paused = False
        self.error: str | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.z: Any = None
        self.ztail = b""
        self._interim = False

    # --- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        if self.idle or self.head is None:  # in the pool: the server sent what nobody asked for
            self.close()
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except Exception as exc:  # httptools' parser errors (the message is kept)
            why = f"not a valid HTTP response ({type(exc).__name__}: {exc})"
        else:
            if not self.headers_done:
                self.head_bytes += len(data)
                if self.head_bytes > MAX_HEAD:  # llhttp itself buffers a header of any length
                    self._fail(f"the response headers are over {MAX_HEAD >> 10} KiB")
                    self.close()
                    return
            if self.waiter is not None and (self.chunks or self.complete):
                self._wake()
            return
        self._fail(why)
        self.close()

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.idle:
            self.idle = False
            self._on_lost(self)
            return
        head = self.head
        if head is None:
            return
        if not head.done():
            if self.got_bytes:
                self._fail(_lost_reason(exc, "before the response headers were complete"))
            head.set_exception(Stale() if not self.got_bytes else ConnectionLost(self.error or ""))
            return
        if not self.complete and self.error is None:
            if exc is None and not self._framed():
                self.complete = True  # no Content-Length, not chunked: the body ends at close
            else:
                self._fail(_lost_reason(exc, "before the end of the response body"))
        if self.waiter is not None:
            self._wake()

    def pause_writing(self) -> None:  # a large request body: asyncio buffers it (one write)
        pass

    def resume_writing(self) -> None:
        pass

    # --- httptools callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:  # bytes after the response: the connection is not reusable
            self.keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._interim or self.headers_done:
            return
        k = name.decode("latin-1").lower()
        if k not in self.headers:  # the first value, as a multidict's get() gives
            self.headers[k] = value.decode("utf-8", "replace")

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim response (100 Continue, 103): the real one follows
            self._interim = True
            self.headers = {}
            return
        self.status = status
        self.headers_done = True
        self.keep_alive = self.parser.should_keep_alive()
        enc = self.headers.get("content-encoding")
        if enc is not None:
            self.z = _decoder(enc)
        head = self.head
        if head is not None and not head.done():
            head.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if not self.complete:
            self.complete = True
            if self.waiter is not None:
                self._wake()

    # --- the exchange -----------------------------------------------------------------------------

    def begin(self, data: bytes) -> asyncio.Future[None]:
        """Send one request (`data`: head and body) and return the future of its headers."""
        if self.uses:
            self._reset()
        self.uses += 1
        self.idle = False
        self.head = head = self.loop.create_future()
        assert self.transport is not None
        self.transport.write(data)
        return head

    def _framed(self) -> bool:
        h = self.headers
        return "content-length" in h or "chunked" in h.get("transfer-encoding", "").lower()

    def _fail(self, why: str) -> None:
        if self.error is None:
            self.error = why

    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def read(self) -> bytes:
        while True:
            chunks = self.chunks
            if chunks:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                self.chunks = []
                self.buffered = 0
                if self.paused:
                    self.paused = False
                    if self.transport is not None and not self.lost:
                        self.transport.resume_reading()
                if self.z is None:
                    return data
                out = self._inflate(data)
                if out:
                    return out
                continue
            if self.ztail:
                out = self._inflate(b"")
                if out:
                    return out
                continue
            if self.error is not None:
                raise ConnectionLost(self.error)
            if self.complete:
                if self.z is not None:
                    rest: bytes = self.z.flush()
                    self.z = None
                    if rest:
                        return rest
                return b""
            self.waiter = self.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None

    def _inflate(self, data: bytes) -> bytes:
        buf = self.ztail + data if self.ztail else data
        try:
            out: bytes = self.z.decompress(buf, INFLATE_STEP)
        except zlib.error as exc:
            why = f"could not decode the {self.headers.get('content-encoding')} body ({exc})"
        else:
            self.ztail = self.z.unconsumed_tail
            return out
        self._fail(why)
        self.ztail = b""
        self.chunks = []
        self.close()
        raise ConnectionLost(why)

    def at_eof(self) -> bool:
        return (self.complete and not self.chunks and not self.ztail and self.error is None
                and (self.z is None or bool(self.z.eof)))

    def reusable(self) -> bool:
        return (self.complete and self.keep_alive and not self.lost and self.error is None
                and not self.chunks and not self.ztail and self.transport is not None
                and not self.transport.is_closing())

    def abort(self, why: str = "the connection was aborted") -> None:
        self._fail(why)
        self.close()
        self._wake()

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.abort()


def _lost_reason(exc: BaseException | None, when: str) -> str:
    if exc is None:
        return f"the server closed the connection {when}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror[:1].lower() + exc.strerror[1:]} {when}"
    return f"{type(exc).__name__} {when}"


class Source:
    """The `ByteSource` of one response: reads go to the connection until `release()` (the pool
    may take it back) or `abort()` (closed); after either, the source is detached."""

    __slots__ = ("_conn", "_done")

    def __init__(self, conn: Conn, done: Callable[[Conn, bool], None]) -> None:
        self._conn: Conn | None = conn
        self._done = done

    async def read(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise ConnectionLost("the response was already closed")
        return await conn.read()

    def at_eof(self) -> bool:
        conn = self._conn
        return conn is None or conn.at_eof()

    def release(self) -> None:
        conn = self._conn
        if conn is not None:
            self._conn = None
            self._done(conn, conn.reusable())

    def abort(self) -> None:
        conn = self._conn
        if conn is not None:
            self._conn = None
            conn.abort()
            self._done(conn, False)
