"""In-process limits backend: one `_Bucket` per quota scope, all on the event loop.

In-flight slots are a FIFO semaphore whose size follows the adaptive factor (asyncio.Semaphore
cannot be resized): a released slot is handed to the oldest waiter directly, so a newcomer never
overtakes the queue. Rates are GCRA reservations (see `_steps/limits/step.py`): the request learns its start
time at once and sleeps exactly until then; a start later than the queue budget is refused at once
instead of after a useless wait. Start times never go backwards, so a usage correction that frees
tokens cannot let a newcomer pass a request already sleeping. Nothing here polls.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from deepseek_kit._transport.request import Response

from .base import NEUTRAL, OK, RATE_LIMITED, Limits, LimitState, queue_timeout, used_tokens

__all__ = ["LocalLimiter"]


class _Bucket:
    __slots__ = ("cap", "capn", "factor", "in_flight", "last_start", "limits", "loop", "rb", "ri",
                 "shrunk_at", "tat_r", "tat_t", "tb", "ti", "waiters")

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
        self.capn = limits.max_in_flight or 0  # the cap in force (follows the factor)
        self.shrunk_at = float("-inf")
        self.in_flight = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    def set_factor(self, factor: float) -> None:
        self.factor = factor
        if self.cap is not None:
            self.capn = max(1, int(self.cap * factor + 1e-9))
            self._wake()

    # -- in-flight ---------------------------------------------------------------------------------

    async def wait_slot(self, budget: float | None) -> float:
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
                                            self.capn))

    def _forget(self, fut: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self.waiters.remove(fut)

    def release_slot(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        if not self.waiters:
            return
        cap = self.capn
        while self.waiters and self.in_flight < cap:
            fut = self.waiters.popleft()
            if not fut.done():
                self.in_flight += 1
                fut.set_result(None)

    # -- rates -------------------------------------------------------------------------------------

    def reserve(self, tokens: int, budget: float | None) -> tuple[float, tuple[float, float, float]]:
        """Take the next rpm/tpm turn; returns the seconds to wait and the state to restore if the
        request gives up while waiting. Refuses (QueueTimeoutError) a wait longer than `budget`."""
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
        return wait, old

    async def sleep(self, wait: float, old: tuple[float, float, float]) -> None:
        start = self.last_start
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
            self.release_slot()
        if used is not None and self.ti and used != lease.tokens:
            self.tat_t += (used - lease.tokens) * self.ti / self.factor
        ad = self.limits.adaptive
        if ad is not None:
            if outcome == OK and self.factor < 1.0:
                self.set_factor(min(1.0, self.factor + ad.increase))
            elif outcome == RATE_LIMITED:
                now = self.loop.time()
                if now - self.shrunk_at >= ad.cooldown:
                    self.shrunk_at = now
                    self.set_factor(max(ad.floor, self.factor * ad.decrease))


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

    def __call__(self, resp: Response) -> None:
        """The response's completion hook: end the lease with the real usage."""
        self.finish(used_tokens(resp) if self.bucket.ti else None, OK if resp.outcome == "ok" else NEUTRAL)


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
        b = self._buckets.get(scope) or self._bucket(scope)
        slot = False
        if b.cap is not None:
            if b.in_flight < b.capn and not b.waiters:
                b.in_flight += 1
            elif budget is not None and budget <= 0:  # no wait allowed (e.g. another endpoint can serve)
                raise queue_timeout(self.limits, "in_flight", 0.0, budget, b.capn)
            else:
                waited = await b.wait_slot(budget)
                if budget is not None:
                    budget = max(0.0, budget - waited)
            slot = True
        if b.ri or b.ti:
            try:
                wait, old = b.reserve(tokens, budget)
                if wait > 0:
                    await b.sleep(wait, old)
            except BaseException:
                if slot:
                    b.release_slot()
                raise
        return _LocalLease(b, slot, tokens)

    async def state(self, scope: str) -> LimitState:
        b = self._bucket(scope)
        cap = b.capn if b.cap is not None else None
        return LimitState(b.factor, b.in_flight, cap, sum(1 for w in b.waiters if not w.done()))

    async def aclose(self) -> None:
        return None
