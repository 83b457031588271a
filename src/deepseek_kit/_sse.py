"""Sans-IO Server-Sent Events: an incremental decoder and an encoder, shared by client and server.

The decoder follows the WHATWG event-stream rules: lines end in CRLF, LF or CR (a CR at the end of
one network chunk may pair with an LF at the start of the next); `:` lines are comments (DeepSeek's
`: keep-alive` while a request is queued, deepseek-api.md §4.4); `data:` lines of one event are
joined with LF; a blank line dispatches the event; one space after the colon is dropped.

It works on bytes, never on decoded text: UTF-8 continuation bytes are never CR or LF, so a
multi-byte character split across network chunks is simply reassembled, and U+2028/U+2029 inside
JSON strings (which `str.splitlines` would wrongly treat as line breaks) pass through untouched.

Hand-written (no library): the hot path must cost well under a microsecond per event, and the
common DeepSeek frame `data: {...}\\n\\n` takes a fast path with no per-line field parsing.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["DONE", "SSEDecoder", "ServerSentEvent", "encode_comment", "encode_data", "encode_event"]

DONE = b"[DONE]"


class ServerSentEvent(NamedTuple):
    """One dispatched event. `data` is the raw payload bytes (several data lines joined by LF)."""

    data: bytes
    event: str | None = None
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Feed bytes as they arrive; get back the events completed so far.

    `comments` counts comment lines seen (keep-alives); they never produce events, so callers that
    time "real" progress are not fooled by them.
    """

    __slots__ = ("_buf", "_data", "_event", "_id", "_pending_cr", "_retry", "comments")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[bytes] = []
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None
        self._pending_cr = False
        self.comments = 0

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        if not chunk:
            return []
        if self._pending_cr:
            # The previous chunk ended with CR: a leading LF here belongs to that CRLF.
            self._pending_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            if buf[-1:] == b"\r":
                self._pending_cr = True
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buf.split(b"\n")
        self._buf = lines.pop()
        out: list[ServerSentEvent] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    out.append(ServerSentEvent(b"\n".join(data) if len(data) > 1 else data[0],
                                               self._event, self._id, self._retry))
                    data.clear()
                self._event = None
                continue
            if line[:6] == b"data: ":
                data.append(line[6:])
            elif line[:1] == b":":
                self.comments += 1
            else:
                self._field(line)
        return out

    def _field(self, line: bytes) -> None:
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\0" not in value:
                self._id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            self._retry = int(value)
        # unknown fields are ignored, as the spec says

    def flush(self) -> list[ServerSentEvent]:
        """End of stream: dispatch an event whose final blank line never came (lenient)."""
        out = self.feed(b"\n\n") if (self._buf or self._data) else []
        self._buf = b""
        return out

    @property
    def has_partial(self) -> bool:
        """True when bytes of an unfinished event are buffered."""
        return bool(self._buf or self._data)


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
