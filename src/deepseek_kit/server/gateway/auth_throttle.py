"""Failed-authentication limits shared by every worker and gateway on one state: the OAuth token
endpoint's (per client_id and per caller address) and the dashboard login's (per address and
overall). A limit is `limit` failures per `period` seconds for one bucket (say, one client_id).

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
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["FailureLimiter", "FailureStore", "Limit", "MemoryFailures", "RedisFailures", "SqliteFailures",
           "failures_of_state", "wait_seconds"]


@dataclass(frozen=True, slots=True)
class Limit:
    """`limit` failures per `period` seconds for each value of the bucket kind `name`."""

    name: str
    limit: int
    period: float


class FailureStore(Protocol):
    """Counters by name, shared by whoever shares the store."""

    async def read(self, names: list[str]) -> list[int]:
        """The counters (0 for a missing one), in order."""

    async def add(self, names: list[tuple[str, float]], now: float) -> None:
        """+1 on each named counter; a counter may be deleted once `now` passes its float."""


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


class FailureLimiter:
    """Checks and counts failures against limits in a `FailureStore`; `clock` gives epoch seconds."""

    def __init__(self, store: FailureStore, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock

    def __repr__(self) -> str:
        return f"<FailureLimiter {type(self.store).__name__}>"

    async def retry_after(self, checks: list[tuple[Limit, str]]) -> int:
        """Whole seconds until every (limit, value) in `checks` allows another try (0: now). Rounded
        up past the exact moment, so that a client retrying after it is let in."""
        now = self.clock()
        names: list[str] = []
        for limit, value in checks:
            window = math.floor(now / limit.period)
            b = _bucket(limit, value)
            names += [f"{b}:{window - 1}", f"{b}:{window}"]
        counts = await self.store.read(names)
        wait = 0.0
        for i, (limit, _) in enumerate(checks):
            elapsed = now - math.floor(now / limit.period) * limit.period
            prev, curr = counts[2 * i], counts[2 * i + 1]
            wait = max(wait, wait_seconds(prev, curr, elapsed, limit.period, limit.limit))
        return 0 if wait <= 0 else int(wait) + 1

    async def failed(self, checks: list[tuple[Limit, str]]) -> None:
        """Count one failure for each (limit, value) in `checks`."""
        now = self.clock()
        names = []
        for limit, value in checks:
            window = math.floor(now / limit.period)
            # kept until the window after next begins: only then it stops being "prev"
            names.append((f"{_bucket(limit, value)}:{window}", (window + 2) * limit.period))
        await self.store.add(names, now)


class MemoryFailures:
    """Counters in this process only (a gateway without a shared state, and unit tests)."""

    def __init__(self, cap: int = 100_000) -> None:
        self._n: dict[str, tuple[int, float]] = {}
        self._cap = cap

    async def read(self, names: list[str]) -> list[int]:
        return [self._n.get(n, (0, 0.0))[0] for n in names]

    async def add(self, names: list[tuple[str, float]], now: float) -> None:
        if len(self._n) > self._cap:  # many distinct values: drop the counters that no longer count
            self._n = {k: v for k, v in self._n.items() if v[1] > now}
        for name, until in names:
            self._n[name] = (self._n.get(name, (0, 0.0))[0] + 1, until)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS gw_auth_failures (k TEXT PRIMARY KEY, n INTEGER NOT NULL, until REAL NOT NULL);
CREATE INDEX IF NOT EXISTS gw_auth_failures_until ON gw_auth_failures (until);
"""

SqlRun = Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]]


class SqliteFailures:
    """Counters in the `gw_auth_failures` table of a SQLite file. `read` and `write` run a function
    on a connection to it (the caller's: the gateway state's, or the dashboard sessions'); `write`
    runs it in one transaction or on autocommit, `ddl` outside any transaction (the table is
    created on first use)."""

    def __init__(self, read: SqlRun, write: SqlRun, ddl: SqlRun | None = None) -> None:
        self._read, self._write, self._ddl = read, write, ddl or write
        self._ready = False

    async def _schema(self) -> None:
        if not self._ready:
            await self._ddl(lambda c: c.executescript(_SCHEMA))
            self._ready = True

    async def read(self, names: list[str]) -> list[int]:
        await self._schema()

        def read(c: sqlite3.Connection) -> list[int]:
            marks = ",".join("?" * len(names))
            rows = c.execute(f"SELECT k, n FROM gw_auth_failures WHERE k IN ({marks})", names)
            found = dict(rows.fetchall())
            return [int(found.get(n, 0)) for n in names]

        out: list[int] = await self._read(read)
        return out

    async def add(self, names: list[tuple[str, float]], now: float) -> None:
        await self._schema()

        def write(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM gw_auth_failures WHERE until <= ?", (now,))
            c.executemany("INSERT INTO gw_auth_failures (k, n, until) VALUES (?, 1, ?) "
                          "ON CONFLICT (k) DO UPDATE SET n = n + 1", names)

        await self._write(write)


class RedisFailures:
    """Counters as Redis keys under `dsk:gw:authfail:` (a redis.asyncio client)."""

    PREFIX = "dsk:gw:authfail:"

    def __init__(self, redis: Any) -> None:
        self._r = redis

    async def read(self, names: list[str]) -> list[int]:
        values = await self._r.mget([self.PREFIX + n for n in names])
        return [0 if v is None else int(v) for v in values]

    async def add(self, names: list[tuple[str, float]], now: float) -> None:
        async with self._r.pipeline(transaction=True) as p:
            for name, until in names:
                p.incr(self.PREFIX + name)
                # Redis's own clock deletes it; a minute past its last use on the caller's clock
                p.expire(self.PREFIX + name, max(60, math.ceil(until - now) + 60))
            await p.execute()


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
        # reads inline on the loop's connection, writes in one BEGIN IMMEDIATE on the state's thread
        store = SqliteFailures(state._fast, lambda fn: state._slow(state._tx(fn)), state._slow)
    elif isinstance(state, RedisState):
        store = RedisFailures(state._r)
    else:
        store = MemoryFailures()
    _BY_STATE[state] = store
    return store
