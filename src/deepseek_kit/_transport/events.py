"""Read SSE data payloads off a byte source under a Watchdog.

Only data events count as progress (they stamp `watchdog.last`); comments and blank lines are
parsed and dropped without touching the timers. The reader ends at `data: [DONE]`; at EOF it ends
quietly when the answer was complete (finish_reason seen) and raises `StreamBroken` otherwise, so
the layer above can attach the partial answer. After `finish()`, only the watchdog's short tail
limit applies: a server that sends keep-alives forever after the last chunk
(docs/deepseek-api-notes.md#streaming-and-keep-alives) ends the stream normally instead of hanging it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn, Protocol

from deepseek_kit._wire.errors import APIConnectionError, APITimeoutError, Secrets
from deepseek_kit._wire.sse import DEFAULT_MAX_EVENT, DONE, SSEDecoder, SSEError

from .timeouts import Watchdog

__all__ = ["ByteSource", "EventReader", "StreamBroken"]


class ByteSource(Protocol):
    """The body of one HTTP response as the transports hand it to the readers (the event reader
    here, the attempt's body reader): it lives with its consumer so transports depend on the reader
    module, not the other way round."""

    async def read(self) -> bytes:
        """The next bytes of the body; b"" at the end."""

    def abort(self) -> None:
        """Drop the connection now (a pending read() wakes with an error or EOF)."""

    def release(self) -> None:
        """The body was read to the end: return the connection to the pool."""

    def at_eof(self) -> bool:
        """True when nothing more will come (the end of the body has been read)."""


class StreamBroken(Exception):
    """Internal: the byte stream failed before `[DONE]`; `timeout` names a fired limit if any."""

    def __init__(self, reason: str, timeout: str | None = None, after: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timeout = timeout
        self.after = after


class EventReader:
    __slots__ = ("_dec", "_errors", "_i", "_loop_time", "_queue", "_source", "_wd", "closed", "done",
                 "finished", "on_close", "outcome", "secrets")

    def __init__(self, source: ByteSource, watchdog: Watchdog,
                 read_errors: tuple[type[BaseException], ...], *,
                 max_event_bytes: int = DEFAULT_MAX_EVENT) -> None:
        import asyncio

        self._source = source
        self._wd = watchdog
        self._dec = SSEDecoder(max_event_bytes)
        self._errors: tuple[type[BaseException], ...] = (*read_errors, APIConnectionError)
        self._queue: list[bytes] = []
        self._i = 0
        self._loop_time = asyncio.get_running_loop().time
        self.done = False  # [DONE] seen or stream ended normally
        self.finished = False  # finish_reason seen (set by the layer above)
        self.closed = False
        self.outcome = "closed"  # how it ended: ok | broken | timeout | closed (caller left early)
        self.on_close: Callable[[str], None] | None = None
        self.secrets: Secrets = ()  # what the stream layer masks in error messages (set by Attempt)

    async def next(self) -> bytes | None:
        """The next data payload, or None when the stream has ended normally."""
        q = self._queue
        i = self._i
        if i < len(q):
            self._i = i + 1
            p = q[i]
            if p == DONE:
                await self._drain()
                return None
            return p
        if self.done:
            return None
        return await self._fill()

    async def _fill(self) -> bytes | None:
        wd = self._wd
        while True:
            wd.reading = True
            try:
                data = await self._source.read()
            except self._errors as exc:
                data = None
                err: BaseException | None = exc
            else:
                err = None
            finally:
                wd.reading = False
            if wd.fired is not None:
                return self._on_timeout()
            if err is not None or data is None:
                # aiohttp's own text names its parser internals; the class name is enough
                self._broken(f"the connection was lost mid-stream ({type(err).__name__})")
            if not data:  # EOF
                events = self._dec.flush()
                if not events:
                    if self.finished:
                        self._end()
                        return None
                    self._broken("the server closed the stream before [DONE]")
            else:
                try:
                    events = self._dec.feed(data)
                except SSEError as exc:  # an event that never ends (docs/attack-round-2026-12.md, C6)
                    self._broken(str(exc))
                if not events:
                    continue  # only comments, blank lines or a partial event
            if wd.started_body:
                wd.last = self._loop_time()
            else:
                wd.first_event()
            self._queue = events
            self._i = 1
            p = self._queue[0]
            if p == DONE:
                await self._drain()
                return None
            return p

    def finish(self) -> None:
        """The layer above saw the final finish_reason: switch to the tail limit."""
        if not self.finished:
            self.finished = True
            self._wd.finish()

    def _on_timeout(self) -> bytes | None:
        which = self._wd.fired or "idle"
        if which == "tail" or (self.finished and which in ("idle", "total")):
            # Complete answer, then only keep-alives: end normally; the connection is dropped.
            self.done = True
            self.outcome = "ok"
            self.close()
            return None
        self.outcome = "timeout"
        self.close()
        raise StreamBroken(f"{which} timeout", which, self._wd.limit(which))

    def _broken(self, reason: str) -> NoReturn:
        self.outcome = "broken"
        self.close()
        raise StreamBroken(reason)

    async def _drain(self) -> None:
        """After [DONE]: read the body to its end so the connection can go back to the pool
        (an unread chunked terminator would force a close), under the tail limit."""
        self.done = True
        self.outcome = "ok"  # the answer is complete whatever happens to the rest of the body
        if self._i < len(self._queue) or self._source.at_eof():
            self._end()
            return
        if not self.finished:
            self.finished = True
            self._wd.finish()
        wd = self._wd
        try:
            while True:
                wd.reading = True
                data = await self._source.read()
                if not data or wd.fired is not None:
                    break
        except self._errors:
            self.close()
            return
        finally:
            wd.reading = False
        if wd.fired is not None:
            self.close()
        else:
            self._end()

    def _end(self) -> None:
        self.done = True
        self.outcome = "ok"
        if not self.closed:
            self.closed = True
            self._wd.cancel()
            if self._dec.has_partial:
                self._source.abort()
            else:
                self._source.release()
            if self.on_close is not None:
                self.on_close("ok")

    def close(self) -> None:
        """Stop early: drop the connection (an unread body can't go back to the pool)."""
        if not self.closed:
            self.closed = True
            self._wd.cancel()
            if self.done and not self._dec.has_partial and self._wd.fired is None:
                self._source.release()
            else:
                self._source.abort()
            if self.on_close is not None:
                self.on_close(self.outcome)


def timeout_error(b: StreamBroken) -> APITimeoutError:
    return APITimeoutError(b.timeout or "idle", b.after)
