"""In-process limits backend: one `_Bucket` per quota scope, all on the event loop.

In-flight slots are a FIFO semaphore whose size follows the adaptive factor (asyncio.Semaphore
cannot be resized): a released slot is handed to the oldest waiter directly, so a newcomer never
overtakes the queue. Rates are GCRA reservations (see `_limits.py`): the request learns its start
time at once and sleeps exactly until then; a start later than the queue budget is refused at once
instead of after a useless wait. Start times never go backwards, so a usage correction that frees
tokens cannot let a newcomer pass a request already sleeping. Nothing here polls.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from ._limits import OK, RATE_LIMITED, Limits, LimitState, queue_timeout

__all__ = ["LocalLimiter"]


class _Bucket:
    __slots__ = ("cap", "factor", "in_flight", "last_start", "limits", "loop", "rb", "ri", "shrunk_at",
                 "tat_r", "tat_t", "tb", "ti", "waiters")

    def __init__(self, limits: Limits, loop: asyncio.AbstractEventLoop) -> None:
        self.limits = limits
        self.loop = loop
        self.ri = 60.0 / limits.rpm if limits.rpm else 0.0  # seconds per request at factor 1
        self.ti = 60.0 / limits.tpm if limits.tpm else 0.0  # seconds per token
        self.rb = limits.burst_units(limits.rpm) if limits.rpm else 0.0
        self.tb = limits.burst_units(limits.tpm) if limits.tpm else 0.0
        self.cap = limits.max_in_flight
        self.tat_r = self.tat_t = self.last_start = 0.0
        self.factor = 1.0
        self.shrunk_at = float("-inf")
        self.in_flight = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    def cap_now(self) -> int:
        assert self.cap is not None
        return max(1, int(self.cap * self.factor + 1e-9))

    # -- in-flight ---------------------------------------------------------------------------------

    async def _wait_slot(self, budget: float | None) -> float:
        loop = self.loop
        fut: asyncio.Future[None] = loop.create_future()
        self.waiters.append(fut)
        t0 = loop.time()
        timer = None
        if budget is not None:
            timer = loop.call_later(budget, self._expire, fut, t0, budget)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.release_slot()  # granted just as we were cancelled: hand it on
            else:
                self._forget(fut)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        return loop.time() - t0

    def _expire(self, fut: asyncio.Future[None], t0: float, budget: float) -> None:
        if not fut.done():
            self._forget(fut)
            fut.set_exception(queue_timeout(self.limits, "in_flight", self.loop.time() - t0, budget,
                                            self.cap_now()))

    def _forget(self, fut: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self.waiters.remove(fut)

    def release_slot(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        if not self.waiters:
            return
        cap = self.cap_now()
        while self.waiters and self.in_flight < cap:
            fut = self.waiters.popleft()
            if not fut.done():
                self.in_flight += 1
                fut.set_result(None)

    # -- rates -------------------------------------------------------------------------------------

    async def acquire(self, tokens: int, budget: float | None) -> _LocalLease:
        slot = False
        if self.cap is not None:
            if self.in_flight < self.cap_now() and not self.waiters:
                self.in_flight += 1
            else:
                waited = await self._wait_slot(budget)
                if budget is not None:
                    budget = max(0.0, budget - waited)
            slot = True
        lease = _LocalLease(self, slot, tokens)
        if self.ri or self.ti:
            try:
                await self._reserve(tokens, budget)
            except BaseException:
                if slot:
                    self.release_slot()
                raise
        return lease

    async def _reserve(self, tokens: int, budget: float | None) -> None:
        now = self.loop.time()
        f = self.factor
        start = max(now, self.last_start)
        binding = "rpm"
        new_r = new_t = 0.0
        if self.ri:
            ri = self.ri / f
            t0 = max(self.tat_r, now)
            new_r = t0 + ri
            start = max(start, t0 + (min(1.0, self.rb) - self.rb) * ri)
        if self.ti and tokens:
            ti = self.ti / f
            t0 = max(self.tat_t, now)
            new_t = t0 + tokens * ti
            s = t0 + (min(tokens, self.tb) - self.tb) * ti
            if s > start:
                start, binding = s, "tpm"
        wait = start - now
        if budget is not None and wait > budget:
            raise queue_timeout(self.limits, binding, 0.0, budget, would_wait=wait)
        old = (self.tat_r, self.tat_t, self.last_start)
        if self.ri:
            self.tat_r = new_r
        if new_t:
            self.tat_t = new_t
        self.last_start = start
        if wait > 0:
            try:
                await asyncio.sleep(wait)
            except asyncio.CancelledError:
                # Give the turn back when nobody reserved after us (else it is simply unused).
                if self.last_start == start:
                    self.tat_r, self.tat_t, self.last_start = old
                raise

    # -- adaptive and usage ------------------------------------------------------------------------

    def finish(self, lease: _LocalLease, used: int | None, outcome: int) -> None:
        if lease.slot:
            self.in_flight -= 1
        if used is not None and self.ti and used != lease.tokens:
            self.tat_t += (used - lease.tokens) * self.ti / self.factor
        ad = self.limits.adaptive
        if ad is not None:
            if outcome == OK and self.factor < 1.0:
                self.factor = min(1.0, self.factor + ad.increase)
            elif outcome == RATE_LIMITED:
                now = self.loop.time()
                if now - self.shrunk_at >= ad.cooldown:
                    self.shrunk_at = now
                    self.factor = max(ad.floor, self.factor * ad.decrease)
        if self.cap is not None:
            self._wake()


class _LocalLease:
    __slots__ = ("bucket", "done", "slot", "tokens")

    def __init__(self, bucket: _Bucket, slot: bool, tokens: int) -> None:
        self.bucket = bucket
        self.slot = slot
        self.tokens = tokens
        self.done = False

    def finish(self, used: int | None, outcome: int) -> None:
        if not self.done:
            self.done = True
            self.bucket.finish(self, used, outcome)


class LocalLimiter:
    """The in-process backend: limits shared by the steps of one event loop."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, scope: str) -> _Bucket:
        b = self._buckets.get(scope)
        if b is None:
            b = self._buckets[scope] = _Bucket(self.limits, asyncio.get_running_loop())
        return b

    async def acquire(self, scope: str, tokens: int, budget: float | None) -> _LocalLease:
        return await self._bucket(scope).acquire(tokens, budget)

    async def state(self, scope: str) -> LimitState:
        b = self._bucket(scope)
        cap = b.cap_now() if b.cap is not None else None
        return LimitState(b.factor, b.in_flight, cap, sum(1 for w in b.waiters if not w.done()))

    async def aclose(self) -> None:
        return None
