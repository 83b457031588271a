"""Redis limits backend: one quota shared by every process and host that uses the same name.

Same semantics as `_steps/limits/local.py`, kept in Redis by three Lua scripts (each runs atomically):

- `acquire` purges expired leases and dead waiters, queues tickets, grants in-flight leases in
  ticket order and reserves the rpm/tpm turn (GCRA, one timestamp per rate) in the same call;
- `release` frees a lease, corrects the token estimate with the real usage, moves the adaptive
  factor, and publishes a wake-up when someone is queued;
- `renew` pushes back the expiry of this process's leases and tickets (and puts its leases back
  after a Redis restart or flush, so that the in-flight cap counts them again).

Time is Redis's own clock (`TIME`), so hosts need not agree on the time. Waits are relative.

Finished requests reach Redis in the background, but never after this process's next acquire of
the same quota: when the quota's pump has waiters to send, it takes the releases queued for it and
`acquire` applies them first in the same script run (the release logic is shared, `lua.py`), so the
waiters are judged with the slots freed and the token estimates corrected, at no extra round trip.
Quotas with no waiter here get a group commit (`release`, one call per quota for what finished
meanwhile). A per-quota lock keeps one call carrying its releases in flight at a time, and an
acquire from overtaking one sent before it on another connection.

Fairness (FIFO across processes): every request that finds the in-flight cap reached gets a ticket
in a sorted set scored by a global sequence number (`HINCRBY seq`); a ticket is granted only when
fewer tickets are ahead of it than there are free slots, so a later ticket never takes a slot an
earlier one is waiting for, whichever process holds it. Within one process a single `_Pump` per
quota sends its waiters in arrival order, batched into one script call per round trip. Waiters
sleep until a release is published on `dsk:lim:wake:<name>` (one subscription per process); a
timer at the next lease expiry (a holder that died) and at most `lease_ttl/3` later covers lost
messages. Leases and tickets expire `lease_ttl` seconds after their last renewal, so a process
killed while holding them frees them within `lease_ttl`; a live process renews every `lease_ttl/3`.

A Redis restart, flush or failover loses the rate state (docs/attack-round-2026-12.md, R1): the state carries
a random epoch (`_steps/limits/lua.py`), and a turn is only taken when the epoch it was reserved in is
still there. A caller sleeping until a reserved turn re-acquires instead when this process sees a
new epoch (any `acquire` reply), or when the check at the end of its sleep finds the epoch changed
or gone; so after a reset everyone queues again on the new schedule, and the rate stays the
configured one plus at most one burst, instead of doubling while the old reservations drain.
In-flight leases lost with the state are put back by their holders' next renewal (within
`lease_ttl/3`): until then the in-flight cap may be exceeded by the leases held at the reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from deepseek_kit._transport.request import Response

from .base import NEUTRAL, OK, LimitBackendError, Limits, LimitState, queue_timeout, used_tokens
from .lua import ACQUIRE, EPOCH, RELEASE, RENEW, STATE, pack

__all__ = ["RedisLimiter"]

log = logging.getLogger("deepseek_kit.limits")

_MAX_BATCH = 256

def _safe_url(url: str) -> str:
    p = urlsplit(url)
    if p.password:
        return url.replace(f":{p.password}@", ":****@")
    return url


class _Entry:
    __slots__ = ("budget_end", "fut", "id", "sent", "tokens")

    def __init__(self, id: str, tokens: int, budget_end: float | None, fut: asyncio.Future[float]) -> None:
        self.id = id
        self.tokens = tokens
        self.budget_end = budget_end
        self.fut = fut
        self.sent = False  # its ticket may be in Redis


class _Pump:
    """Sends one quota's waiters of this process to Redis, in arrival order, one call at a time."""

    def __init__(self, owner: RedisLimiter, scope: str) -> None:
        self.owner = owner
        self.scope = scope
        self.pending: deque[_Entry] = deque()
        self.cancels: list[str] = []
        self.kick = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.capn: int | None = None  # the in-flight cap in force at the last call

    def submit(self, e: _Entry) -> None:
        self.pending.append(e)
        self.wake()

    def drop(self, e: _Entry) -> None:
        """A waiter gave up (timeout or cancelled): take its ticket back."""
        if e.sent:
            self.cancels.append(e.id)
            self.wake()

    def wake(self) -> None:
        self.kick.set()
        if self.task is None:
            self.task = self.owner._spawn(self._run())

    async def _run(self) -> None:
        owner = self.owner
        loop = asyncio.get_running_loop()
        try:
            while True:
                self.kick.clear()
                self.pending = deque(e for e in self.pending if not e.fut.done())
                if not self.pending and not self.cancels:
                    return
                # The lock: this call goes after any call already carrying this quota's releases,
                # and takes the ones queued since (see `RedisLimiter._release`).
                async with owner._lock_of(self.scope):
                    self.pending = deque(e for e in self.pending if not e.fut.done())
                    if not self.pending and not self.cancels:
                        continue
                    batch = list(itertools.islice(self.pending, _MAX_BATCH))
                    cancels, self.cancels = self.cancels, []
                    for e in batch:
                        e.sent = True
                    released = await owner._take_released(self.scope)
                    now = loop.time()
                    head, results = await owner._run_acquire(self.scope, batch, cancels, now, released)
                factor, nxt = float(head[0]), float(head[2])
                self.capn = int(head[1]) or None
                owner._factor[self.scope] = factor
                owner._saw_epoch(self.scope, head[3])  # before granting: these turns are of this epoch
                granted = False
                for e, (status, wait) in zip(batch, results, strict=False):
                    if status == "wait":
                        if e.budget_end is not None and e.budget_end <= now and not e.fut.done():
                            owner._expire(self, e, 0.0)  # no wait allowed: refused after one look
                        continue
                    if status == "ok":
                        granted = True
                        if e.fut.done():
                            if owner._cap:
                                self.cancels.append(e.id)  # granted after it gave up
                        else:
                            e.fut.set_result(wait)
                    elif not e.fut.done():
                        budget = None if e.budget_end is None else max(0.0, e.budget_end - now)
                        e.fut.set_exception(queue_timeout(owner.limits, status, 0.0, budget,
                                                          would_wait=wait))
                self.pending = deque(e for e in self.pending if not e.fut.done())
                unsent = any(not e.sent for e in self.pending)
                if granted or unsent or self.cancels or not self.pending or self.scope in owner._ended:
                    continue
                if await owner._listen():
                    continue  # just subscribed: look again in case a release was missed
                timeout = owner._poll if nxt < 0 else min(owner._poll, max(nxt, 0.005))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.kick.wait(), timeout)
        except asyncio.CancelledError:  # aclose(): waiters must not hang
            self._fail(LimitBackendError(f"limits {owner.limits.name!r} were closed while waiting"))
            raise
        except Exception as exc:
            self._fail(owner._backend_error(exc))
        finally:
            self.task = None
            if self.scope in owner._ended and not owner._closed:  # left for the flusher to send
                owner._ensure_flusher()

    def _fail(self, err: LimitBackendError) -> None:
        for e in self.pending:
            if not e.fut.done():
                e.fut.set_exception(err)
        self.pending.clear()


class _RedisLease:
    __slots__ = ("done", "id", "owner", "scope", "tokens")

    def __init__(self, owner: RedisLimiter, scope: str, id: str | None, tokens: int) -> None:
        self.owner = owner
        self.scope = scope
        self.id = id
        self.tokens = tokens
        self.done = False

    def finish(self, used: int | None, outcome: int) -> None:
        if self.done:
            return
        self.done = True
        owner = self.owner
        diff = used - self.tokens if used is not None and owner._ti else 0
        if self.id is not None:
            held = owner._held.get(self.scope)
            if held is not None:
                held.discard(self.id)
        grow = outcome == OK and owner._factor.get(self.scope, 1.0) < 1.0
        if self.id is not None or diff or outcome < 0 or grow:
            owner._release(self.scope, self.id or "", diff, outcome)

    def __call__(self, resp: Response) -> None:
        """The response's completion hook: end the lease with the real usage."""
        self.finish(used_tokens(resp) if self.owner._ti else None, OK if resp.outcome == "ok" else NEUTRAL)

    def charge(self, tokens: int) -> None:
        """Count `tokens` more against tpm now, while the response is still streaming (sent with
        the next group commit; the final `finish(used)` corrects from the new total)."""
        if not self.done and self.owner._ti and tokens > 0:
            self.tokens += tokens
            self.owner._release(self.scope, "", tokens, NEUTRAL)


class RedisLimiter:
    """The Redis backend. `client` (a `redis.asyncio.Redis`) replaces the one made from
    `limits.redis_url`; it is then not closed by `aclose()`."""

    def __init__(self, limits: Limits, client: Any = None) -> None:
        if limits.redis_url is None and client is None:
            raise ValueError("RedisLimiter needs Limits.redis_url or a client")
        self.limits = limits
        self._redis: Any = client
        self._own = client is None
        self._scripts: dict[str, Any] = {}
        self._cap = limits.max_in_flight or 0
        self._ti = 60.0 / limits.tpm if limits.tpm else 0.0
        ri = 60.0 / limits.rpm if limits.rpm else 0.0
        rb = limits.burst_units(limits.rpm) if limits.rpm else 0.0
        tb = limits.burst_units(limits.tpm) if limits.tpm else 0.0
        ttl = limits.lease_ttl
        self._ttl = ttl
        self._poll = max(0.05, min(1.0, ttl / 3))
        self._channel = f"dsk:lim:wake:{limits.name}"
        idle_ms = int(max(600.0, ttl * 4) * 1000)
        self._head_args: list[Any] = [self._cap, repr(ri), repr(self._ti), repr(rb), repr(tb), repr(ttl),
                                      idle_ms, self._channel]
        ad = limits.adaptive
        adapt = [ad.decrease, ad.increase, ad.floor, ad.cooldown] if ad is not None else [1.0, 0.0, 1.0, 0.0]
        self._release_args: list[Any] = [repr(self._ti), *map(repr, adapt), self._channel]
        self._adapt_packed = pack(map(repr, adapt))
        self._idle_ms = idle_ms
        self._tag = f"{os.getpid()}.{secrets.token_hex(4)}."
        self._ids = itertools.count()
        self._keys: dict[str, list[str]] = {}
        self._pumps: dict[str, _Pump] = {}
        self._held: dict[str, set[str]] = {}
        self._factor: dict[str, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ended: dict[str, list[Any]] = {}  # scope -> (lease id, correction, outcome)* to send
        self._locks: dict[str, asyncio.Lock] = {}  # scope -> held by the call sending its releases
        self._flusher: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._pubsub: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._epochs: dict[str, str] = {}  # scope -> epoch of its state last seen in Redis
        self._resets: dict[str, asyncio.Event] = {}  # scope -> set when that epoch is seen replaced
        self._closed = False

    # -- plumbing ------------------------------------------------------------------------------------

    def _client(self) -> Any:
        if self._redis is None:
            import redis.asyncio

            assert self.limits.redis_url is not None
            # No socket_timeout: the wake-up subscription idles on its connection by design.
            self._redis = redis.asyncio.Redis.from_url(self.limits.redis_url, socket_connect_timeout=10)
        return self._redis

    def _script(self, name: str, text: str) -> Any:
        s = self._scripts.get(name)
        if s is None:
            s = self._scripts[name] = self._client().register_script(text)
        return s

    def _keys_of(self, scope: str) -> list[str]:
        k = self._keys.get(scope)
        if k is None:
            base = f"dsk:lim:{{{scope}}}:"
            k = self._keys[scope] = [base + "s", base + "l", base + "q", base + "a"]
        return k

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _backend_error(self, exc: BaseException) -> LimitBackendError:
        url = _safe_url(self.limits.redis_url or "the given Redis client")
        if "maxmemory" in str(exc):  # OutOfMemoryError (noeviction): running is not the problem
            hint = ("Redis is out of memory: free memory or raise its maxmemory (the limits' keys are "
                    "small and expire when idle).")
        else:
            hint = "Check that Redis is running."
        return LimitBackendError(f"limits {self.limits.name!r}: Redis at {url} failed ({type(exc).__name__}: "
                                 f"{exc}); the request was not sent. {hint}")

    async def _run_acquire(self, scope: str, batch: list[_Entry], cancels: list[str], now: float,
                           released: list[Any]) -> tuple[list[Any], list[tuple[str, float]]]:
        waiters: list[Any] = []
        for e in batch:
            budget = -1.0 if e.budget_end is None else max(0.0, e.budget_end - now)
            waiters += (e.id, e.tokens, repr(budget))
        args = [*self._head_args, secrets.token_hex(8), scope, pack(cancels), pack(waiters),
                self._adapt_packed + pack(released) if released else ""]
        if self._cap:
            self._ensure_renewer()
        raw = await self._script("acquire", ACQUIRE)(keys=self._keys_of(scope), args=args)
        out = (raw.decode() if isinstance(raw, bytes) else str(raw)).split("\n")[:-1]
        res = [(out[j], float(out[j + 1])) for j in range(4, len(out), 2)]
        return list(out[:4]), res

    def _saw_epoch(self, scope: str, epoch: Any) -> None:
        """The epoch of `scope`'s state in a reply: a new one means the state was lost (restart,
        flush, idle expiry): wake this process's callers sleeping on turns of the old one."""
        ep = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
        old = self._epochs.get(scope)
        self._epochs[scope] = ep
        if old is not None and old != ep:
            self._wake_sleepers(scope)

    def _wake_sleepers(self, scope: str) -> None:
        ev = self._resets.pop(scope, None)
        if ev is not None:
            log.warning("limits %r: the rate state in Redis was reset (restart or flush); requests "
                        "waiting for a turn reserved before it queue again", self.limits.name)
            ev.set()

    async def _sleep_turn(self, scope: str, wait: float, epoch: str | None) -> bool:
        """Sleep until a reserved turn; True to take it, False when the state it was reserved in
        is gone and the caller must acquire again."""
        if epoch is None or self._epochs.get(scope) != epoch:
            return False
        ev = self._resets.get(scope)
        if ev is None:
            ev = self._resets[scope] = asyncio.Event()
        try:
            await asyncio.wait_for(ev.wait(), wait)
            return False  # a reset was seen meanwhile
        except asyncio.TimeoutError:
            pass
        # Another process may have seen the reset: one cheap check before using the turn.
        try:
            now = await self._script("epoch", EPOCH)(keys=self._keys_of(scope)[:1], args=[])
        except Exception as exc:
            raise self._backend_error(exc) from exc
        if now is None:  # the state is gone and nobody has acquired since
            self._wake_sleepers(scope)
            return False
        self._saw_epoch(scope, now)
        return self._epochs[scope] == epoch

    def _release(self, scope: str, lease_id: str, diff: int, outcome: int) -> None:
        """Queue a finished request. Its quota's pump, when it has waiters to send, carries it in
        its next acquire call (ordered before the waiters in that one script run, so they are
        judged with the slot freed and the tokens corrected); otherwise one task sends what
        finished meanwhile in one call per quota (group commit: under load one round trip ends
        many leases)."""
        self._ended.setdefault(scope, []).extend((lease_id, diff, outcome))
        pump = self._pumps.get(scope)
        if pump is not None and pump.task is not None:
            pump.kick.set()
        else:
            self._ensure_flusher()

    def _ensure_flusher(self) -> None:
        if self._flusher is None:
            self._flusher = self._spawn(self._flush())

    def _lock_of(self, scope: str) -> asyncio.Lock:
        """Held by whichever call carries `scope`'s releases, and by its pump's acquire calls: an
        acquire never overtakes a release sent before it (the two may travel on different
        connections, and Redis would run whichever arrives first). Each holder takes the releases
        queued when it gets the lock, so a waiter waits for at most the one call in flight."""
        lock = self._locks.get(scope)
        if lock is None:
            lock = self._locks[scope] = asyncio.Lock()
        return lock

    async def _take_released(self, scope: str) -> list[Any]:
        """The releases queued for `scope`, for an acquire call to carry (lock held). A backlog
        beyond one batch goes ahead in release calls of its own, so no script call grows
        without bound."""
        items = self._ended.pop(scope, [])
        while len(items) > 3 * _MAX_BATCH:
            await self._send_released(scope, items[:3 * _MAX_BATCH])
            items = items[3 * _MAX_BATCH:]
        return items

    async def _send_released(self, scope: str, items: list[Any]) -> None:
        """Release calls for `scope` (lock held); a failure is logged: those leases expire after
        lease_ttl (no longer renewed)."""
        script = self._script("release", RELEASE)
        for i in range(0, len(items), 3 * _MAX_BATCH):
            args = [*self._release_args, scope, self._idle_ms, pack(items[i:i + 3 * _MAX_BATCH])]
            try:
                f = await script(keys=self._keys_of(scope)[:3], args=args)
            except Exception as exc:
                log.warning("%s", self._backend_error(exc))
            else:
                self._factor[scope] = float(f)

    async def _settle(self, scope: str) -> None:
        """Return once every release of `scope` queued before this call is in Redis."""
        async with self._lock_of(scope):
            items = self._ended.pop(scope, None)
            if items:
                await self._send_released(scope, items)

    async def _flush(self) -> None:
        """The group commit, for quotas whose pump is idle (a busy pump carries its own), oldest
        first, one call in flight at a time."""
        try:
            while True:
                scope = next((s for s in self._ended if not self._pump_busy(s)), None)
                if scope is None:
                    return
                await self._settle(scope)
        finally:
            self._flusher = None

    def _pump_busy(self, scope: str) -> bool:
        pump = self._pumps.get(scope)
        return pump is not None and pump.task is not None

    async def _flushed(self) -> None:
        """Every release queued so far is in Redis (pumps that were carrying some included)."""
        while self._ended:
            await self._settle(next(iter(self._ended)))
        for lock in list(self._locks.values()):
            async with lock:  # a call carrying releases may still be unanswered
                pass

    async def _listen(self) -> bool:
        """Subscribe to wake-ups once per process; True when this call subscribed."""
        if self._listener is not None:
            return False
        ps = self._client().pubsub(ignore_subscribe_messages=True)
        await ps.subscribe(self._channel)
        self._pubsub = ps
        self._listener = self._spawn(self._read_wakeups(ps))
        return True

    async def _read_wakeups(self, ps: Any) -> None:
        try:
            async for msg in ps.listen():
                if msg.get("type") == "message":
                    data = msg.get("data")
                    pump = self._pumps.get(data.decode() if isinstance(data, bytes) else str(data))
                    if pump is not None and pump.pending:
                        pump.kick.set()
        except Exception as exc:  # pumps fall back to their timers; the next wait re-subscribes
            log.warning("limits %r: wake-up subscription lost (%s)", self.limits.name, exc)
        finally:
            if self._listener is asyncio.current_task():
                self._listener = None

    def _ensure_renewer(self) -> None:
        if self._renewer is None:
            self._renewer = self._spawn(self._renew_loop())

    async def _renew_loop(self) -> None:
        script = self._script("renew", RENEW)
        try:
            while True:
                await asyncio.sleep(self._ttl / 3)
                busy = False
                for scope in set(self._held) | set(self._pumps):
                    leases = list(self._held.get(scope, ()))
                    pump = self._pumps.get(scope)
                    tickets = [e.id for e in pump.pending if e.sent and not e.fut.done()] if pump else []
                    if not leases and not tickets:
                        continue
                    busy = True
                    k = self._keys_of(scope)
                    args = [repr(self._ttl), self._epochs.get(scope, ""), len(leases), *leases, *tickets]
                    try:
                        back = await script(keys=[k[0], k[1], k[3]], args=args)
                    except Exception as exc:
                        log.warning("limits %r: could not renew leases (%s)", self.limits.name, exc)
                    else:
                        if back:
                            log.warning("limits %r: the state in Redis was reset; %d requests in flight "
                                        "here counted again", self.limits.name, back)
                if not busy:
                    return
        finally:
            if self._renewer is asyncio.current_task():
                self._renewer = None

    # -- the backend interface --------------------------------------------------------------------------

    async def acquire(self, scope: str, tokens: int, budget: float | None) -> _RedisLease:
        while True:
            lease, wait, epoch = await self._acquire_once(scope, tokens, budget)
            if wait <= 0:
                return lease
            try:
                kept = await self._sleep_turn(scope, wait, epoch)
            except BaseException:
                lease.finish(0, NEUTRAL)
                raise
            if kept:
                return lease
            # Reserved in a state that no longer exists: queue again on the new schedule (with
            # the same budget: a reset is not the caller's fault). No token correction: the
            # reservation was in the lost state.
            lease.finish(None, NEUTRAL)

    async def _acquire_once(self, scope: str, tokens: int,
                            budget: float | None) -> tuple[_RedisLease, float, str | None]:
        if self._closed:
            raise LimitBackendError("these limits are closed (the client was closed)")
        loop = asyncio.get_running_loop()
        pump = self._pumps.get(scope)
        if pump is None:
            pump = self._pumps[scope] = _Pump(self, scope)
        fut: asyncio.Future[float] = loop.create_future()
        e = _Entry(self._tag + str(next(self._ids)), tokens,
                   None if budget is None else loop.time() + budget, fut)
        pump.submit(e)
        timer = None
        if budget is not None and budget > 0 and self._cap:  # budget 0: the pump refuses it
            timer = loop.call_later(budget, self._expire, pump, e, budget)
        try:
            wait = await fut
        except asyncio.CancelledError:
            pump.drop(e)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        lease = _RedisLease(self, scope, e.id if self._cap else None, tokens)
        if self._cap:
            self._held.setdefault(scope, set()).add(e.id)
        return lease, wait, self._epochs.get(scope)

    def _expire(self, pump: _Pump, e: _Entry, budget: float) -> None:
        if not e.fut.done():
            e.fut.set_exception(queue_timeout(self.limits, "in_flight", budget, budget, pump.capn))
            pump.drop(e)

    async def state(self, scope: str) -> LimitState:
        # Read our own releases. Sent by a task of its own: a caller giving up (a timeout around
        # state()) must not drop them on the way.
        await asyncio.shield(self._spawn(self._settle(scope)))
        try:
            f, held, queued = await self._script("state", STATE)(keys=self._keys_of(scope), args=[])
        except Exception as exc:
            raise self._backend_error(exc) from exc
        factor = float(f)
        cap = max(1, int(self._cap * factor + 1e-9)) if self._cap else None
        return LimitState(factor, int(held), cap, int(queued))

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._ended or self._flusher is not None:  # slots free now, not after lease_ttl
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._flushed(), max(1.0, self._ttl / 3))
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pubsub is not None:
            with contextlib.suppress(Exception):  # closing anyway
                await self._pubsub.aclose()
        if self._own and self._redis is not None:
            await self._redis.aclose()
