"""Sans-IO Server-Sent Events: an incremental decoder and an encoder, shared by client and server.

The decoder follows the WHATWG event-stream rules: lines end in CRLF, LF or CR (a CR at the end of
one network chunk may pair with an LF at the start of the next); `:` lines are comments (DeepSeek's
`: keep-alive` while a request is queued, https://api-docs.deepseek.com/quick_start/rate_limit); `data:`
lines of one event are
joined with LF; a blank line dispatches the event; one space after the colon is dropped.

It works on bytes, never on decoded text: UTF-8 continuation bytes are never CR or LF, so a
multi-byte character split across network chunks is simply reassembled, and U+2028/U+2029 inside
JSON strings (which `str.splitlines` would wrongly treat as line breaks) pass through untouched.

Hand-written (no library): the hot path must cost well under a microsecond per event, and the
common DeepSeek frame `data: {...}\\n\\n` takes a fast path with no per-line field parsing.

Linear in the bytes fed, whatever the server sends: while an event is unfinished, only the new
chunk (and the seam with the bytes before it) is searched for the blank line, and the pieces are
joined once when it comes. An unfinished event larger than `max_event` bytes (default 16 MiB)
raises `SSEError`: a line that never ends must not grow memory and CPU until a timeout fires
(docs/attack-round-2026-12.md, C6).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["DEFAULT_MAX_EVENT", "DONE", "SSEDecoder", "SSEError", "ServerSentEvent", "encode_comment",
           "encode_data", "encode_event"]

DONE = b"[DONE]"
#: Largest unfinished event the decoder buffers (a DeepSeek chunk is a few hundred bytes).
DEFAULT_MAX_EVENT = 16 << 20


class SSEError(ValueError):
    """The event stream cannot be decoded within the limits (an event larger than `max_event`)."""


class ServerSentEvent(NamedTuple):
    """One dispatched event. `data` is the raw payload bytes (several data lines joined by LF);
    `event`, `id` and `retry` are the SSE fields of those names when the server sent them."""

    data: bytes
    event: str | None = None
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Feed bytes as they arrive; get back the events completed so far.

    `feed()` returns the data payloads (bytes) of completed events — the hot path, with no object
    per event; `feed_events()` returns full `ServerSentEvent`s (event name, id, retry).
    `comments` counts comment lines seen (keep-alives); they never produce events, so callers that
    time "real" progress are not fooled by them.

    Only raw bytes of an unfinished event are buffered: an event is parsed once its terminating
    blank line has arrived, so the common frame `data: {...}\n\n` costs one split and one slice.
    `max_event`: the largest unfinished event buffered, in bytes (default 16 MiB).
    """

    __slots__ = ("_buf", "_id", "_more", "_pending_cr", "_retry", "_size", "comments", "max_event")

    def __init__(self, max_event: int = DEFAULT_MAX_EVENT) -> None:
        self._buf = b""  # the start of an unfinished event
        self._more: list[bytes] = []  # later pieces of it, joined once its blank line arrives
        self._size = 0  # len(self._buf) + the lengths in self._more
        self._id: str | None = None
        self._retry: int | None = None
        self._pending_cr = False
        self.comments = 0
        self.max_event = max_event

    def _pending(self) -> bytes:
        if self._more:
            self._buf = b"".join([self._buf, *self._more])
            self._more = []
        return self._buf

    def _keep(self, size: int) -> None:
        """Record the unfinished event's size; past `max_event`, drop it and raise SSEError."""
        if size > self.max_event:
            self._buf, self._more, self._size = b"", [], 0
            raise SSEError(f"an event grew past {self.max_event} bytes without ending "
                           "(max_event_bytes; a stream chunk is a few hundred bytes)")
        self._size = size

    def _blocks(self, chunk: bytes) -> list[bytes]:
        """Complete event blocks (text between blank lines), LF-normalised."""
        if self._pending_cr:
            # The previous chunk ended with CR: a leading LF here belongs to that CRLF.
            self._pending_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\r" in chunk:
            if chunk[-1:] == b"\r":
                self._pending_cr = True
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if not chunk:  # only the LF of a CRLF split across chunks
            return []
        if self._buf:
            # Only the new bytes and the seam can hold the blank
            # line (linear, docs/attack-round-2026-12.md, C6).
            last = self._more[-1] if self._more else self._buf
            if b"\n\n" not in chunk and not (chunk[:1] == b"\n" and last[-1:] == b"\n"):
                self._more.append(chunk)
                self._keep(self._size + len(chunk))
                return []
            buf = self._pending() + chunk
        elif b"\n\n" not in chunk:
            self._buf = chunk
            self._keep(len(chunk))
            return []
        else:
            buf = chunk
        blocks = buf.split(b"\n\n")
        rest = self._buf = blocks.pop()
        n = self._size = len(rest)
        if n > self.max_event:
            self._keep(n)
        return blocks

    def feed(self, chunk: bytes) -> list[bytes]:
        """The data payloads of the events `chunk` completes, in order (`data: [DONE]` included as
        `b"[DONE]"`); comments only increment `comments`. Raises `SSEError` past `max_event`."""
        if not chunk:
            return []
        if not self._pending_cr and b"\r" not in chunk:
            # The usual read from a DeepSeek-style server: whole `data: <payload>\n\n` frames,
            # perhaps completing the previous read's partial one and starting the next. When every
            # newline in the complete part is one of those frame separators (no multi-line event,
            # comment or other field), one split gives the payloads: no Python step per event (a
            # gateway relays bursts of hundreds). Anything else takes the general path below.
            whole: bytes | None = chunk
            if self._buf:
                last = self._more[-1] if self._more else self._buf
                # the same test as `_blocks`: join the pieces only once a frame can be complete
                whole = (self._pending() + chunk if b"\n\n" in chunk
                         or (chunk[:1] == b"\n" and last[-1:] == b"\n") else None)
            if whole is not None and whole[:6] == b"data: ":
                end = whole.rfind(b"\n\n")
                if end > 0:
                    body = whole[6:end]
                    parts = body.split(b"\n\ndata: ")
                    if body.count(b"\n") == 2 * len(parts) - 2:
                        self._more = []
                        self._buf = whole[end + 2:]
                        self._keep(len(self._buf))
                        return parts
        out: list[bytes] = []
        for block in self._blocks(chunk):
            if block[:6] == b"data: " and b"\n" not in block:
                out.append(block[6:])
            elif block[:1] == b":" and b"\n" not in block:
                self.comments += 1
            elif block:
                ev = self._parse(block)
                if ev is not None:
                    out.append(ev.data)
        return out

    def feed_events(self, chunk: bytes) -> list[ServerSentEvent]:
        """Like `feed`, but each completed event as a `ServerSentEvent` (event name, data, id, retry)."""
        if not chunk:
            return []
        out: list[ServerSentEvent] = []
        for block in self._blocks(chunk):
            if block:
                ev = self._parse(block)
                if ev is not None:
                    out.append(ev)
        return out

    def _parse(self, block: bytes) -> ServerSentEvent | None:
        """The general line parser for one complete block (several lines, fields, comments)."""
        data: list[bytes] = []
        event: str | None = None
        for line in block.split(b"\n"):
            if not line:
                # Only at the start of a block (an odd number of newlines before it): a blank
                # line with nothing to dispatch.
                continue
            if line[:1] == b":":
                self.comments += 1
                continue
            name, sep, value = line.partition(b":")
            if sep and value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = value.decode("utf-8", "replace")
            elif name == b"error":
                # llama.cpp before PR #16109 sent `error: {...}` as an SSE field (docs/dialects.md)
                data.append(b'{"error":' + value + b"}")
            elif name == b"id" and b"\0" not in value:
                self._id = value.decode("utf-8", "replace")
            elif name == b"retry" and value.isdigit():
                self._retry = int(value)
            # unknown fields are ignored, as the spec says
        if not data:
            return None
        return ServerSentEvent(b"\n".join(data) if len(data) > 1 else data[0], event, self._id, self._retry)

    def flush(self) -> list[bytes]:
        """End of stream: dispatch an event whose final blank line never came (lenient)."""
        rest, self._buf, self._size = self._pending(), b"", 0
        if not rest.strip(b"\n"):
            return []
        ev = self._parse(rest.strip(b"\n"))
        return [ev.data] if ev is not None else []

    @property
    def has_partial(self) -> bool:
        """True when bytes of an unfinished event are buffered."""
        return bool(self._pending().strip(b"\n"))


def encode_data(payload: bytes) -> bytes:
    """One `data:` event. Multi-line payloads become several data lines (JSON never needs it)."""
    if b"\n" in payload or b"\r" in payload:
        lines = payload.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        return b"".join(b"data: " + ln + b"\n" for ln in lines) + b"\n"
    return b"data: " + payload + b"\n\n"


def encode_event(payload: bytes, event: str | None = None, id: str | None = None) -> bytes:
    head = b""
    if event is not None:
        head += b"event: " + event.encode() + b"\n"
    if id is not None:
        head += b"id: " + id.encode() + b"\n"
    return head + encode_data(payload)


def encode_comment(text: str = "keep-alive") -> bytes:
    return b": " + text.encode() + b"\n\n"
