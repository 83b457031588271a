"""What the SQLite and Redis states share on the request path: the in-memory key cache behind
`authenticate`, the reserve/settle/remaining flow over a backend's atomic primitives (with this
process's budget leases, lease.py), and the usage flusher. Key administration and the stored form
of a key record are in state_admin.py.

Key cache (no store access per request): token hash -> VirtualKey (or None for unknown/revoked,
so a flood of bad tokens does not reach the store either), and in front of it token string ->
(display prefix, VirtualKey or None), so a cached caller costs one dict lookup, not an HMAC and a
regex match; both are dropped together (bounded at `_CACHE_MAX` entries each). Every backend keeps
a generation number that each revoke/rotate increments; `authenticate` re-reads it when the last
check is more than `REVALIDATE` (0.5 s) old and drops the whole cache when it moved, so a
revocation made by any process is refused by every process within about half a second. A lookup
that raced a drop is not cached (the `_epoch` check), so a key revoked during its own lookup
cannot stick.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from .budget import Reservation, UsageBuffer, default_clock, from_nanos, to_nanos, windows
from .keys import (
    TOKEN_PREFIX,
    BudgetExceededError,
    ForbiddenError,
    GatewayKeyError,
    InvalidKeyError,
    VirtualKey,
    display_prefix,
    hash_token,
)
from .lease import LEASE_AGE, Lease, Leases, lease_size
from .state_admin import KeyAdmin, store_call

__all__ = ["REVALIDATE", "SETTLE_DELAY", "Settle", "StateBase"]

log = logging.getLogger("deepseek_kit.gateway")

#: Seconds a cached key (and the generation) may be trusted before the store is asked again.
REVALIDATE = 0.5
_CACHE_MAX = 100_000
_FLUSH_EVERY = 1.0
_MISSING = object()
#: Seconds a queued settlement may wait for the next hold before a timer writes it.
SETTLE_DELAY = 0.1
#: (hold id, key id, day, month, exact cost in nano-units)
Settle = tuple[str, str, str, str, int]


@functools.lru_cache(maxsize=1024)  # a key's budgets, on every hold: converted once
def _budget_nanos(b: Decimal | None) -> int:
    return -1 if b is None else to_nanos(b)


class StateBase(KeyAdmin):
    """The backend-independent half of a `GatewayState`; subclasses supply the store primitives
    (`_generation`, `_lookup`, `_reserve`, `_settle_many`, `_totals`, `_write_usage`, ...).

    Settling is deferred and batched: `settle` and `release` only queue (hold id, exact cost); the
    queue is applied inside this process's next hold (same transaction or script, so a request
    costs the store one round trip, not two) or by a timer within `SETTLE_DELAY`. Until then the
    hold stays counted, and a hold is never less than the cost it stands for (the relay reserves
    the worst case), so a late settle can only refuse early, never let a budget overspend."""

    def __init__(self, *, pepper: bytes, clock: Callable[[], datetime] | None,
                 reservation_ttl: float) -> None:
        self._pepper = pepper
        self._clock = clock or default_clock()
        self._ttl = float(reservation_ttl)
        self._cache: dict[str, VirtualKey | None] = {}
        self._verdicts: dict[str, tuple[str, VirtualKey | None]] = {}  # token -> (prefix, key)
        self._gen: int | None = None
        self._checked = -1e9
        self._epoch = 0
        self._usage = UsageBuffer()
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self._settles: list[Settle] = []
        self._settle_timer: asyncio.TimerHandle | None = None
        self._settle_tasks: set[asyncio.Task[None]] = set()
        self._leases = Leases()
        self._leasing: dict[str, asyncio.Future[None]] = {}  # key id -> a lease being asked for
        self._lease_timer: asyncio.TimerHandle | None = None

    #: The clock of lease ages (tests replace it on the instance).
    monotonic: Callable[[], float] = staticmethod(time.monotonic)

    @property
    def leases(self) -> Leases:
        """This process's budget leases (lease.py); `.granted` and `.drawn` count their use."""
        return self._leases

    def __repr__(self) -> str:  # never the pepper
        return f"<{type(self).__name__} keys cached={len(self._cache)}>"

    # -- store primitives (subclasses) ------------------------------------------------------------

    async def _generation(self) -> int:
        raise NotImplementedError

    async def _lookup(self, token_hash: str) -> VirtualKey | None:
        raise NotImplementedError

    async def _reserve(self, res: Reservation, nanos: int, daily: int, monthly: int,
                       expires: float, now: float, settles: list[Settle]) -> str | None:
        """Atomically: apply `settles`, drop expired holds of the key, then hold `nanos` unless
        spent + held + nanos would pass a budget (-1 = none); return None, or "daily"/"monthly"
        when refused (the settles are applied either way)."""
        raise NotImplementedError

    async def _settle_many(self, settles: list[Settle]) -> None:
        """Atomically: for each (hold id, key id, day, month, nanos) remove the hold and add the
        cost to the key's day and month spend."""
        raise NotImplementedError

    async def _totals(self, key_id: str, day: str, month: str, now: float) -> tuple[int, int, int, int]:
        """(spent today, held today, spent this month, held this month), expired holds excluded."""
        raise NotImplementedError

    async def _write_usage(self, rows: dict[tuple[str, str, str], list[int]]) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    # -- the request path -------------------------------------------------------------------------

    async def authenticate(self, token: str, client_ip: str | None) -> VirtualKey:
        """The key for a bearer token, from memory when cached (module docstring); 401
        InvalidKeyError for a missing, malformed, unknown, revoked or expired key, 403
        ForbiddenError for an address outside its allow-list, 503 when the store fails."""
        if not token:
            raise InvalidKeyError("Authentication Fails, no API key given (send the gateway key as "
                                  "Authorization: Bearer sk-dsk-...)")
        hit = self._verdicts.get(token)
        if hit is None and display_prefix(token) is None:
            raise InvalidKeyError("Authentication Fails, the API key is not a key of this gateway "
                                  "(expected sk-dsk-...)")
        if time.monotonic() - self._checked > REVALIDATE:
            await self._revalidate()
            hit = self._verdicts.get(token)  # dropped when a revocation was seen
        if hit is None:
            prefix = display_prefix(token) or TOKEN_PREFIX
            epoch = self._epoch
            token_hash = hash_token(self._pepper, token)
            cached = self._cache.get(token_hash, _MISSING)
            if cached is _MISSING:
                key = await store_call("looking up a key", self._lookup(token_hash))
                if epoch == self._epoch:  # no revocation seen while we looked: safe to remember
                    if len(self._cache) >= _CACHE_MAX:
                        self._cache.clear()
                    self._cache[token_hash] = key
            else:
                key = cached  # type: ignore[assignment]
            if epoch == self._epoch:
                if len(self._verdicts) >= _CACHE_MAX:
                    self._verdicts.clear()
                self._verdicts[token] = (prefix, key)
        else:
            prefix, key = hit
        if key is None:
            raise InvalidKeyError(f"Authentication Fails, Your api key: {prefix}**** is invalid "
                                  "(unknown or revoked)")
        assert isinstance(key, VirtualKey)
        if key.expires_at is not None and self._clock() >= key.expires_at:
            raise InvalidKeyError(f"Authentication Fails, Your api key: {prefix}**** expired at "
                                  f"{key.expires_at.isoformat()}")
        if not key.allows_ip(client_ip):
            raise ForbiddenError(f"the API key {prefix}**** may not be used from this address")
        return key

    async def _revalidate(self) -> None:
        self._checked = time.monotonic()  # concurrent callers use the cache meanwhile
        try:
            gen = await store_call("checking for revocations", self._generation())
        except BaseException:
            self._checked = -1e9  # ask again on the next request rather than trust a stale cache
            raise
        if gen != self._gen:
            self._gen = gen
            self._epoch += 1
            self._cache.clear()
            self._verdicts.clear()

    def _forget(self) -> None:
        """Drop the cache now (this process's own revoke/rotate)."""
        self._epoch += 1
        self._cache.clear()
        self._verdicts.clear()
        self._checked = -1e9

    async def reserve(self, key: VirtualKey, worst_case: Decimal, *, model: str = "") -> Reservation:
        """Hold `worst_case` against the key's budgets (402 `BudgetExceededError` when spent + held
        + worst_case would pass one). Keys without a budget hold nothing and cost no store call."""
        now = self._clock()
        day, month = windows(now)
        if worst_case < 0 or not worst_case.is_finite():
            raise GatewayKeyError(f"a reservation must be a finite amount >= 0, got {worst_case}")
        if key.budget_daily is None and key.budget_monthly is None:
            return Reservation(Reservation.new_id(), key.id, worst_case, day, month, model, held=False)
        ts = now.timestamp()
        nanos = to_nanos(worst_case, up=True)
        daily, monthly = _budget_nanos(key.budget_daily), _budget_nanos(key.budget_monthly)
        size = lease_size(nanos, daily, monthly)
        while size:
            # this process's lease of the key's budget (lease.py): no store call
            lease = self._leases.draw(key.id, day, month, nanos, self.monotonic())
            if lease is not None:
                return Reservation(Reservation.new_id(), key.id, worst_case, day, month, model, lease=lease)
            asking = self._leasing.get(key.id)
            if asking is None:
                break
            await asyncio.shield(asking)  # one lease request per key at a time; then draw from it
        if size:
            done = self._claim(key.id)
            try:
                lease = await self._new_lease(key.id, day, month, size, daily, monthly, ts, nanos)
                if lease is not None:
                    return Reservation(Reservation.new_id(), key.id, worst_case, day, month, model,
                                       lease=lease)
                # Too little left for a lease: give this process's lease of the key up (its unused
                # part stops counting once settled: with the hold below when it is idle) and hold
                # this request alone, exactly as without leases.
                self._leases.give_up(key.id)
                self._queue_ready()
            finally:
                self._unclaim(key.id, done)
        res = Reservation(Reservation.new_id(), key.id, worst_case, day, month, model)
        refused = await self._store_hold(res, nanos, daily, monthly, ts)
        if refused is not None:
            budget = key.budget_daily if refused == "daily" else key.budget_monthly
            raise BudgetExceededError(f"Insufficient Balance: the {refused} budget of key {key.prefix}**** "
                                      f"({budget}) cannot cover this request (worst case {worst_case})")
        return res

    async def _store_hold(self, res: Reservation, nanos: int, daily: int, monthly: int,
                          ts: float) -> str | None:
        """One hold in the store, with the queued settlements applied in the same call."""
        settles = self._take_settles()
        try:
            hold = self._reserve(res, nanos, daily, monthly, ts + self._ttl, ts, settles)
            return await store_call("reserving budget", hold)
        except BaseException:
            self._restore_settles(settles)
            raise

    async def settle(self, reservation: Reservation, actual: Decimal, *, model: str | None = None) -> None:
        """Replace the hold with the exact cost (0 for a request that failed unbilled)."""
        self.settle_nowait(reservation, actual, model=model)

    def settle_nowait(self, reservation: Reservation, actual: Decimal, *, model: str | None = None) -> None:
        """`settle` without a coroutine: it only queues (the gateway calls it once per request, on
        the event loop; a task per call would cost more than the queueing)."""
        nanos = max(to_nanos(actual), 0)
        lease = reservation.lease
        if lease is not None:
            self._leases.done(lease, to_nanos(reservation.amount, up=True), nanos)
            self._queue_ready()
            if self._leases.due(lease, self.monotonic()) and lease.key_id not in self._leasing \
                    and not self._closed:
                # The next lease is asked for now, after this answer went out, so that the key's
                # next request draws from it instead of waiting for the store.
                done = self._claim(lease.key_id)  # taken now: reserve() waits for it, not races it
                task = asyncio.get_running_loop().create_task(self._renew(lease, done))
                self._settle_tasks.add(task)
                task.add_done_callback(self._settle_tasks.discard)
        elif reservation.held:
            self._queue_settle(reservation, nanos)
        self._usage.add(reservation.key_id, reservation.day, model or reservation.model, nanos)
        self._start_flusher()

    async def release(self, reservation: Reservation) -> None:
        """Give the hold back without charging (the request never reached an upstream)."""
        if reservation.lease is not None:
            self._leases.done(reservation.lease, to_nanos(reservation.amount, up=True), 0)
            self._queue_ready()
        elif reservation.held:
            self._queue_settle(reservation, 0)

    def _queue_settle(self, res: Reservation, nanos: int) -> None:
        self._queue((res.id, res.key_id, res.day, res.month, nanos))

    def _queue_ready(self) -> None:
        """Settle the leases that are closed and done: their hold goes, their draws' cost stays."""
        for lease in self._leases.take_ready():
            self._queue((lease.id, lease.key_id, lease.day, lease.month, lease.spent))

    def _queue(self, settle: Settle) -> None:
        self._settles.append(settle)
        if self._settle_timer is None and not self._closed:
            self._settle_timer = asyncio.get_running_loop().call_later(SETTLE_DELAY, self._settle_soon)

    def _settle_soon(self) -> None:
        self._settle_timer = None
        task = asyncio.get_running_loop().create_task(self._apply_settles_logged())
        self._settle_tasks.add(task)
        task.add_done_callback(self._settle_tasks.discard)

    async def _apply_settles_logged(self) -> None:
        try:
            await self.apply_settles()
        except Exception as exc:  # kept queued; the next hold or timer tries again
            log.warning("gateway settle failed (will retry): %s", type(exc).__name__)
            if self._settles and self._settle_timer is None and not self._closed:
                self._settle_timer = asyncio.get_running_loop().call_later(SETTLE_DELAY * 10,
                                                                           self._settle_soon)

    def _take_settles(self) -> list[Settle]:
        settles, self._settles = self._settles, []
        return settles

    def _restore_settles(self, settles: list[Settle]) -> None:
        self._settles[:0] = settles

    async def apply_settles(self) -> None:
        """Write the queued settlements now (`spent`, `remaining`, `flush` and `aclose` do)."""
        settles = self._take_settles()
        if not settles:
            return
        try:
            await store_call("settling", self._settle_many(settles))
        except BaseException:
            self._restore_settles(settles)
            raise

    async def spent(self, key: VirtualKey) -> tuple[Decimal, Decimal]:
        """(today, this month) settled spend of budgeted keys; unbudgeted keys track usage rows only."""
        busy = self._give_up_leases(key.id)
        await self.apply_settles()
        now = self._clock()
        day, month = windows(now)
        sd, _, sm, _ = await store_call("reading spend", self._totals(key.id, day, month, now.timestamp()))
        # the done draws of leases still in flight are not in the store yet
        sd += sum(lease.spent for lease in busy if lease.day == day)
        sm += sum(lease.spent for lease in busy if lease.month == month)
        return from_nanos(sd), from_nanos(sm)

    def _claim(self, key_id: str) -> asyncio.Future[None]:
        """Mark a lease of `key_id` as being asked for: reserve() waits for it instead of asking too."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._leasing[key_id] = done
        return done

    def _unclaim(self, key_id: str, done: asyncio.Future[None]) -> None:
        if self._leasing.get(key_id) is done:
            del self._leasing[key_id]
        done.set_result(None)

    async def _new_lease(self, key_id: str, day: str, month: str, size: int, daily: int, monthly: int,
                         ts: float, first: int) -> Lease | None:
        """A lease of `size` from the store with a first draw of `first` (0: none), replacing the
        key's open one; None when the budget cannot cover it."""
        res = Reservation(Reservation.new_id(), key_id, from_nanos(size), day, month)
        if await self._store_hold(res, size, daily, monthly, ts) is not None:
            return None
        lease = self._leases.start(res.id, key_id, day, month, size, first, self.monotonic(),
                                   daily=daily, monthly=monthly)
        if self._lease_timer is None and not self._closed:
            self._lease_timer = asyncio.get_running_loop().call_later(LEASE_AGE, self._age_leases)
        self._queue_ready()  # the lease it replaced, when that one is idle
        return lease

    async def _renew(self, old: Lease, done: asyncio.Future[None]) -> None:
        """Ask the store for the successor of `old` (same key, size and windows); `done` is the
        key's claim (`_claim`), released at the end whatever happens."""
        try:
            now = self._clock()
            day, month = windows(now)
            if (day, month) == (old.day, old.month):
                # refused (None): the key is near the end of its budget; its requests take reserve()'s path
                await self._new_lease(old.key_id, day, month, old.size, old.daily, old.monthly,
                                      now.timestamp(), 0)
        except Exception as exc:  # the store is down: the next request asks (and reports) itself
            log.warning("gateway budget lease renewal failed: %s", type(exc).__name__)
        finally:
            self._unclaim(old.key_id, done)

    def _age_leases(self) -> None:
        """Close the leases past their age (settled now when idle), while any is open."""
        self._lease_timer = None
        self._leases.give_up(now=self.monotonic())
        self._queue_ready()
        if self._leases.open_count() and not self._closed:
            self._lease_timer = asyncio.get_running_loop().call_later(LEASE_AGE / 2, self._age_leases)

    def _give_up_leases(self, key_id: str) -> list[Lease]:
        """Close the key's lease so that a reading is exact: settle it now when idle; returns the
        leases still in flight (what they hold beyond their draws is added back by the reader)."""
        self._leases.give_up(key_id)
        self._queue_ready()
        return self._leases.busy(key_id)

    async def remaining(self, key: VirtualKey) -> Decimal | None:
        """What is left of the tighter budget (spent and held subtracted), or None without one."""
        if key.budget_daily is None and key.budget_monthly is None:
            return None
        busy = self._give_up_leases(key.id)
        await self.apply_settles()
        now = self._clock()
        day, month = windows(now)
        totals = self._totals(key.id, day, month, now.timestamp())
        sd, hd, sm, hm = await store_call("reading budgets", totals)
        # a lease in flight holds its free part for nobody: that part is still left
        hd -= sum(lease.free for lease in busy if lease.day == day)
        hm -= sum(lease.free for lease in busy if lease.month == month)
        left: list[int] = []
        if key.budget_daily is not None:
            left.append(to_nanos(key.budget_daily) - sd - hd)
        if key.budget_monthly is not None:
            left.append(to_nanos(key.budget_monthly) - sm - hm)
        return from_nanos(max(min(left), 0))

    # -- usage rows (off the request path) --------------------------------------------------------

    def _start_flusher(self) -> None:
        if self._flusher is None and not self._closed:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(_FLUSH_EVERY)
            try:
                await self.flush()
            except Exception as exc:  # the store is down: keep the rows, try again later
                log.warning("gateway usage flush failed (will retry): %s", type(exc).__name__)

    async def flush(self) -> None:
        """Write the queued settlements (leases past their age among them) and the buffered usage
        rows now."""
        self._leases.give_up(now=self.monotonic())
        self._queue_ready()
        await self.apply_settles()
        if not len(self._usage):
            return
        rows = self._usage.take()
        try:
            await self._write_usage(rows)
        except BaseException:
            self._usage.put_back(rows)
            raise

    async def aclose(self) -> None:
        """Write what is queued (settlements, usage rows) and close the store."""
        if self._closed:
            return
        self._closed = True
        if self._lease_timer is not None:
            self._lease_timer.cancel()
            self._lease_timer = None
        if self._settle_timer is not None:
            self._settle_timer.cancel()
            self._settle_timer = None
        if self._settle_tasks:
            await asyncio.gather(*self._settle_tasks, return_exceptions=True)
        # Leases with draws still in flight are settled too, with what their finished draws cost:
        # their holds must not outlive the process holding the spend they stand for.
        self._leases.abandon()
        self._queue_ready()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        try:
            await self.flush()
        finally:
            await self._close()
