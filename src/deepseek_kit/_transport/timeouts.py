"""Timeouts that see through keep-alives: the `Timeout` value and the per-attempt `Watchdog`.

DeepSeek holds queued requests open with `: keep-alive` comments (streams) or blank lines
(non-stream) for up to 10 minutes, and has been seen sending comments forever after the last chunk
(docs/deepseek-api-notes.md#streaming-and-keep-alives, harness
discussion #6959). A socket read timeout is re-armed by every such
byte and never fires. So the first-token and idle limits here count only *real* events: the
stream reader stamps `last` when it parses a data event, and nothing else touches it.

No timer per chunk, and none per request either: one ticker per event loop checks the active
watchdogs every 50 ms (see `_Ticker`). Per read the cost is one attribute store.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from deepseek_kit._wire.errors import UsageError

__all__ = ["DEFAULT_TIMEOUT", "Timeout", "Watchdog"]


@dataclass(frozen=True)
class Timeout:
    """Limits in seconds (None = no limit).

    - connect: establishing the TCP/TLS connection.
    - first_token: from sending the request to the first real event (stream) or the first
      non-blank body byte (non-stream); keep-alives do not count. Also bounds waiting for headers.
    - idle: the longest gap between two real stream events once the first arrived.
    - total: the whole attempt, headers to last byte.
    - tail: after the final chunk (finish_reason seen), how long to wait for `[DONE]` before
      ending the stream normally; guards against keep-alives forever after the answer. It never
      outlasts `idle`: the limit used is min(tail, idle) when idle is set, so Timeout(idle=1)
      ends such a stream about 1 s after its last chunk. The connection is then closed, not
      pooled (its body was never finished).
    """

    connect: float | None = 10.0
    first_token: float | None = 120.0
    idle: float | None = 60.0
    total: float | None = 900.0
    tail: float = 5.0

    def __post_init__(self) -> None:
        for name in ("connect", "first_token", "idle", "total", "tail"):
            v = getattr(self, name)
            if v == math.inf and name != "tail":
                object.__setattr__(self, name, None)  # "no limit", spelled as None (asyncio overflows on inf)
                continue
            if v is not None and (not isinstance(v, (int, float)) or v <= 0 or math.isnan(v)):
                raise UsageError(f"Timeout.{name} must be a positive number of seconds or None, got {v!r}")

    @classmethod
    def coerce(cls, value: Timeout | float | int | None) -> Timeout:
        """Accept a Timeout, a single number (used for every phase; total stays as given) or None."""
        if value is None:
            return cls(connect=None, first_token=None, idle=None, total=None)
        if isinstance(value, Timeout):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            v = float(value)
            return cls(connect=v, first_token=v, idle=v, total=v)
        raise UsageError(
            f"timeout must be a Timeout, a number of seconds or None, got {type(value).__name__}")


DEFAULT_TIMEOUT = Timeout()


class _Ticker:
    """One periodic timer per event loop that checks every active watchdog.

    A per-request `call_at` costs a TimerHandle, a heap push and a cancel (twice when the first
    event moves the deadline); at thousands of requests per second that was the largest cost of
    our own non-stream layer (bench/README.md, profile). Here a request only joins and leaves a
    set; the ticker runs only while some watchdog is active. Limits fire at most `RESOLUTION`
    seconds late, which is noise next to limits of seconds to minutes.
    """

    RESOLUTION = 0.05

    __slots__ = ("_handle", "_loop", "active")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.active: set[Watchdog] = set()
        self._handle: asyncio.TimerHandle | None = None

    def add(self, wd: Watchdog) -> None:
        self.active.add(wd)
        if self._handle is None:
            self._handle = self._loop.call_later(self.RESOLUTION, self._tick)

    def _tick(self) -> None:
        now = self._loop.time()
        for wd in list(self.active):
            wd._check(now)
        self._handle = self._loop.call_later(self.RESOLUTION, self._tick) if self.active else None


_tickers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Ticker] = weakref.WeakKeyDictionary()


def _ticker(loop: asyncio.AbstractEventLoop) -> _Ticker:
    t = _tickers.get(loop)
    if t is None:
        t = _tickers[loop] = _Ticker(loop)
    return t


class Watchdog:
    """Enforces first_token / idle / total / tail for one attempt.

    `abort` is called once, from the event loop, when a limit passes; `fired` then names it.
    The reader sets `last` (loop time of the latest real event) and `started_body` once the first
    real event arrived; `done` switches to the tail limit. Checked by the loop's `_Ticker`.
    """

    __slots__ = (
        "_abort", "_deadline", "_loop", "_tail", "_ticker", "done", "fired", "first_at", "first_token",
        "idle", "last", "reading", "start", "started_body", "total",
    )

    def __init__(
        self, timeout: Timeout, abort: Callable[[], None], deadline: float | None = None
    ) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._abort = abort
        self.first_token = timeout.first_token
        self.idle = timeout.idle
        self.total = timeout.total
        # After the answer, waiting longer than `idle` for [DONE] would make a complete answer
        # slower than a broken one: the tail is capped by idle.
        self._tail = timeout.tail if timeout.idle is None else min(timeout.tail, timeout.idle)
        self.start = self.last = loop.time()
        # `deadline` (loop time) is the whole call's end, across retries, endpoints and hedges:
        # set once by the client from `total` (request.options["deadline"]) and passed down.
        if self.total is not None:
            end = self.start + self.total
            self._deadline: float | None = end if deadline is None else min(end, deadline)
        else:
            self._deadline = deadline
        self.started_body = False
        self.first_at: float | None = None  # loop time of the first real event / body byte
        self.done = False
        self.reading = True
        self.fired: str | None = None
        self._ticker = _ticker(loop)
        self._ticker.add(self)

    def _next_deadline(self) -> tuple[float, str] | None:
        best: tuple[float, str] | None = None
        if self._deadline is not None:
            best = (self._deadline, "total")
        if self.done:
            cand: tuple[float, str] | None = (self.last + self._tail, "tail")
        elif not self.started_body:
            cand = (self.start + self.first_token, "first_token") if self.first_token is not None else None
        else:
            cand = (self.last + self.idle, "idle") if self.idle is not None else None
        if cand is not None and (best is None or cand[0] < best[0]):
            best = cand
        return best

    def _check(self, now: float) -> None:
        if self.fired is not None:
            self._ticker.active.discard(self)
            return
        nxt = self._next_deadline()
        if nxt is None or nxt[0] > now:
            return
        which = nxt[1]
        if which == "idle" and not self.reading:
            # The caller is busy between chunks, not the server: don't blame the server for it.
            self.last = now
            return
        self.fired = which
        self._ticker.active.discard(self)
        self._abort()

    def limit(self, which: str) -> float:
        return {"first_token": self.first_token, "idle": self.idle, "total": self.total,
                "tail": self._tail}.get(which) or 0.0

    def first_event(self) -> None:
        """The first real event arrived: from now on the idle limit applies."""
        self.started_body = True
        self.last = self.first_at = self._loop.time()

    def finish(self) -> None:
        """The answer is complete: from now on only the short tail limit applies."""
        self.done = True
        self.last = self._loop.time()

    def cancel(self) -> None:
        self._ticker.active.discard(self)
