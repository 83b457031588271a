"""Failed-authentication limits shared by every worker and gateway on one state: the OAuth token
endpoint's (per client_id and per caller address) and the dashboard login's (per address and
overall). A limit is `limit` failures per `period` seconds for one bucket (say, one client_id).

Every attempt is counted as a failure up front (`FailureLimiter.attempt`, one atomic increment
that also reads the counts), and taken back when it succeeds (`succeeded`) or is refused for being
over the limit. Checking first and counting after the secret check would let a burst of
concurrent guesses all pass the check before any of them is counted; this way at most `limit`
guesses are ever judged per window, however many arrive at once.

Counting: a sliding window estimated from two fixed windows (the "sliding window counter" of
https://blog.cloudflare.com/counting-things-a-lot-of-different-things/): the failures of the
current window plus the previous window's, weighted by how much of it still overlaps the last
`period` seconds. Unlike a plain fixed window, a guesser cannot spend two windows' worth of tries
around a window boundary; unlike a log of every failure, each bucket costs two counters. Hand-
written because the few well-kept limiter libraries (`limits`, `aiolimiter`) count requests rather
than failures, or only inside one process, and this must live in the gateway's own store.

Where the counters live: `MemoryFailures` in this process (a gateway without a shared state);
`SqliteFailures` in a `gw_auth_failures` table of the state's SQLite file; `RedisFailures` as
keys `dsk:gw:authfail:<bucket>:<window>` (INCR, then EXPIRE). Buckets hold a SHA-256 of what they
count (a client_id or an address), never the value itself. Times come from the caller's clock
(the gateway's, which tests move), so a window ends when that clock says so; Redis's own expiry
only deletes counters long after they stopped mattering.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Attempt", "FailureLimiter", "FailureStore", "Limit", "MemoryFailures", "RedisFailures",
           "SqliteFailures", "failures_of_state", "wait_seconds"]


@dataclass(frozen=True, slots=True)
class Limit:
    """`limit` failures per `period` seconds for each value of the bucket kind `name`."""

    name: str
    limit: int
    period: float


class FailureStore(Protocol):
    """Counters by name, shared by whoever shares the store."""

    async def bump(self, current: list[tuple[str, float]], previous: list[str], delta: int,
                   now: float) -> tuple[list[int], list[int]]:
        """In one atomic step: add `delta` to each counter of `current` (a missing one counts from 0;
        it may be deleted once `now` passes its float) and read `previous` (0 when missing).
        Returns (the new values of `current`, the values of `previous`), in order."""


def wait_seconds(prev: int, curr: int, elapsed: float, period: float, limit: int) -> float:
    """Seconds until the sliding estimate `prev * (1 - elapsed/period) + curr` of the failures in the
    last `period` drops below `limit` (0: it is below now). `elapsed` is the time since the current
    window began."""
    if prev * (1 - elapsed / period) + curr < limit:
        return 0.0
    if curr >= limit:  # blocked for the rest of this window and, with curr as the next prev, beyond
        wait = (period - elapsed) + period * (1 - limit / curr)
    else:  # curr < limit <= estimate, so prev > 0: the weight of prev must fall far enough
        wait = period * (1 - (limit - curr) / prev) - elapsed
    # blocked now, so never 0: the estimate must go strictly below the limit
    return max(wait, 1e-9)


def _bucket(limit: Limit, value: str) -> str:
    return f"{limit.name}:{hashlib.sha256(value.encode('utf-8', 'surrogateescape')).hexdigest()[:32]}"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One counted attempt: `retry_after` whole seconds to wait (0: go ahead; it counts as a
    failure unless `FailureLimiter.succeeded` takes it back)."""

    retry_after: int
    counted: list[tuple[str, float]] = field(default_factory=list)


class FailureLimiter:
    """Counts attempts against limits in a `FailureStore`; `clock` gives epoch seconds."""

    def __init__(self, store: FailureStore, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock

    def __repr__(self) -> str:
        return f"<FailureLimiter {type(self.store).__name__}>"

    async def attempt(self, checks: list[tuple[Limit, str]]) -> Attempt:
        """Count an attempt for each (limit, value) of `checks` and judge it. Over any limit (counting
        the failures before this one), the attempt is taken back at once and `retry_after` says
        how long to wait: whole seconds, rounded up past the exact moment so that a client retrying
        then is let in. Otherwise it stays counted as a failure until `succeeded` is called."""
        now = self.clock()
        current: list[tuple[str, float]] = []
        previous: list[str] = []
        for limit, value in checks:
            window = math.floor(now / limit.period)
            b = _bucket(limit, value)
            # kept until the window after next begins: only then it stops being "prev"
            current.append((f"{b}:{window}", (window + 2) * limit.period))
            previous.append(f"{b}:{window - 1}")
        currs, prevs = await self.store.bump(current, previous, 1, now)
        wait = 0.0
        for (limit, _), prev, curr in zip(checks, prevs, currs, strict=True):
            elapsed = now - math.floor(now / limit.period) * limit.period
            wait = max(wait, wait_seconds(prev, curr - 1, elapsed, limit.period, limit.limit))
        if wait > 0:
            await self.store.bump(current, [], -1, now)  # a refused attempt guessed nothing
            return Attempt(int(wait) + 1)
        return Attempt(0, current)

    async def succeeded(self, attempt: Attempt) -> None:
        """Take back an attempt that turned out right (it was no failure)."""
        if attempt.counted:
            await self.store.bump(attempt.counted, [], -1, self.clock())


class MemoryFailures:
    """Counters in this process only (a gateway without a shared state, and unit tests)."""

    def __init__(self, cap: int = 100_000) -> None:
        self._n: dict[str, tuple[int, float]] = {}
        self._cap = cap

    async def bump(self, current: list[tuple[str, float]], previous: list[str], delta: int,
                   now: float) -> tuple[list[int], list[int]]:
        if len(self._n) > self._cap:  # many distinct values: drop the counters that no longer count
            self._n = {k: v for k, v in self._n.items() if v[1] > now}
        out = []
        for name, until in current:
            n = self._n.get(name, (0, 0.0))[0] + delta
            self._n[name] = (n, until)
            out.append(n)
        return out, [self._n.get(n, (0, 0.0))[0] for n in previous]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS gw_auth_failures (k TEXT PRIMARY KEY, n INTEGER NOT NULL, until REAL NOT NULL);
CREATE INDEX IF NOT EXISTS gw_auth_failures_until ON gw_auth_failures (until);
"""

_BUMP = ("INSERT INTO gw_auth_failures (k, n, until) VALUES (?, ?, ?) "
         "ON CONFLICT (k) DO UPDATE SET n = n + excluded.n RETURNING n")  # RETURNING: SQLite >= 3.35

SqlRun = Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]]


class SqliteFailures:
    """Counters in the `gw_auth_failures` table of a SQLite file. `run` runs a function on an
    autocommit connection to it, off the event loop (the gateway state's thread, or the dashboard
    sessions'); each bump is one `BEGIN IMMEDIATE` transaction, so processes sharing the file
    count one after the other."""

    def __init__(self, run: SqlRun) -> None:
        self._run = run
        self._ready = False

    async def bump(self, current: list[tuple[str, float]], previous: list[str], delta: int,
                   now: float) -> tuple[list[int], list[int]]:
        if not self._ready:
            await self._run(lambda c: c.executescript(_SCHEMA))
            self._ready = True

        def write(c: sqlite3.Connection) -> tuple[list[int], list[int]]:
            c.execute("BEGIN IMMEDIATE")
            try:
                if delta > 0:  # forget what no longer counts (indexed), as the table grows
                    c.execute("DELETE FROM gw_auth_failures WHERE until <= ?", (now,))
                out = []
                for name, until in current:
                    row = c.execute(_BUMP, (name, delta, until)).fetchone()
                    out.append(int(row[0]))
                prev = []
                for name in previous:
                    row = c.execute("SELECT n FROM gw_auth_failures WHERE k = ?", (name,)).fetchone()
                    prev.append(0 if row is None else int(row[0]))
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
            return out, prev

        result: tuple[list[int], list[int]] = await self._run(write)
        return result


class RedisFailures:
    """Counters as Redis keys under `dsk:gw:authfail:` (a redis.asyncio client); each bump is one
    MULTI/EXEC transaction."""

    PREFIX = "dsk:gw:authfail:"

    def __init__(self, redis: Any) -> None:
        self._r = redis

    async def bump(self, current: list[tuple[str, float]], previous: list[str], delta: int,
                   now: float) -> tuple[list[int], list[int]]:
        async with self._r.pipeline(transaction=True) as p:
            for name, until in current:
                p.incrby(self.PREFIX + name, delta)
                # Redis's own clock deletes it; a minute past its last use on the caller's clock
                p.expire(self.PREFIX + name, max(60, math.ceil(until - now) + 60))
            for name in previous:
                p.get(self.PREFIX + name)
            res = await p.execute()
        k = 2 * len(current)
        return [int(v) for v in res[0:k:2]], [0 if v is None else int(v) for v in res[k:]]


_BY_STATE: weakref.WeakKeyDictionary[Any, FailureStore] = weakref.WeakKeyDictionary()


def failures_of_state(state: Any) -> FailureStore:
    """The failure counters beside an open gateway state, on its own connections (one SQLite file
    or in-memory database, one Redis pool); in this process's memory for any other state."""
    found = _BY_STATE.get(state)
    if found is not None:
        return found
    from .state_redis import RedisState
    from .state_sqlite import SqliteState

    store: FailureStore
    if isinstance(state, SqliteState):
        store = SqliteFailures(state._slow)  # the state's writer thread (its only connection for :memory:)
    elif isinstance(state, RedisState):
        store = RedisFailures(state._r)
    else:
        store = MemoryFailures()
    _BY_STATE[state] = store
    return store
