"""Gateway state in one SQLite file (`sqlite:///abs/path.db`, or `sqlite:///:memory:` for tests):
zero setup for a single host; several processes on that host may share the file.

Request-path calls (revocation check, key lookup, hold, settle) run inline on the event loop on a
connection that never waits for a lock (busy timeout 0, no automatic checkpoint): each is a few
tens of microseconds, where a hop to a thread costs ~100 us of CPU. When another process holds the
write lock the call is redone on the state's private thread, on a second connection that waits
for it (busy timeout 30 s), so the loop never sleeps on a lock. Admin calls, usage rows and WAL
checkpoints always run on that thread. Budget holds are atomic across processes by
`BEGIN IMMEDIATE` (the write lock is taken before the totals are read, so two processes cannot
both see room for the last request); a transaction refused at BEGIN has changed nothing, so
redoing it on the thread is safe. Keys are stored as
HMAC-SHA256 hashes plus a JSON record (id, display prefix, settings); revoking clears the hash and
bumps the `generation` row that every process polls (state_common.py).

Tables: gw_meta (generation), gw_keys, gw_spend (settled nano-units per key and window `d:DAY` /
`m:MONTH`), gw_holds (open reservations with their expiry), gw_usage (per key/day/model rows
written in batches by the flusher).
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from deepseek_kit._sqlite import enable_wal, private_db_file

from .budget import Reservation, UsageRow, from_nanos
from .keys import GatewayKeyError, KeyRecord, VirtualKey
from .state_admin import record_from_json, record_to_json
from .state_common import Settle, StateBase

__all__ = ["SqliteState"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS gw_meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
INSERT OR IGNORE INTO gw_meta VALUES ('generation', 0);
CREATE TABLE IF NOT EXISTS gw_keys (
    id TEXT PRIMARY KEY, hash TEXT UNIQUE, prefix TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS gw_spend (
    key_id TEXT NOT NULL, win TEXT NOT NULL, spent INTEGER NOT NULL,
    PRIMARY KEY (key_id, win)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gw_holds (
    id TEXT PRIMARY KEY, key_id TEXT NOT NULL, day TEXT NOT NULL, month TEXT NOT NULL,
    amount INTEGER NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS gw_holds_key ON gw_holds (key_id, expires);
CREATE TABLE IF NOT EXISTS gw_usage (
    key_id TEXT NOT NULL, day TEXT NOT NULL, model TEXT NOT NULL,
    requests INTEGER NOT NULL, cost INTEGER NOT NULL,
    PRIMARY KEY (key_id, day, model)) WITHOUT ROWID;
"""

# One statement for the four totals a hold checks (spent and held, today and this month), expired
# holds excluded.
_HELD_AND_SPENT = (
    "SELECT COALESCE((SELECT spent FROM gw_spend WHERE key_id = ?3 AND win = ?4), 0), "
    "COALESCE(SUM(CASE WHEN day = ?1 THEN amount END), 0), "
    "COALESCE((SELECT spent FROM gw_spend WHERE key_id = ?5 AND win = ?6), 0), "
    "COALESCE(SUM(CASE WHEN month = ?2 THEN amount END), 0) "
    "FROM gw_holds WHERE key_id = ?7 AND expires > ?8")
_ADD_SPEND = ("INSERT INTO gw_spend (key_id, win, spent) VALUES (?, ?, ?) "
              "ON CONFLICT (key_id, win) DO UPDATE SET spent = spent + excluded.spent")


_HOLD_COLUMNS = "INSERT INTO gw_holds (id, key_id, day, month, amount, expires) VALUES "
# Rows per statement: powers of two, so a handful of statements are ever prepared (sqlite3 caches
# them by text); 128 x 6 parameters stays under old SQLite's 999.
_SIZES = (128, 64, 32, 16, 8, 4, 2, 1)


@functools.lru_cache(maxsize=32)
def _insert_holds(n: int) -> str:
    return _HOLD_COLUMNS + ", ".join(["(?, ?, ?, ?, ?, ?)"] * n)


@functools.lru_cache(maxsize=32)
def _delete_holds(n: int) -> str:
    return f"DELETE FROM gw_holds WHERE id IN ({', '.join('?' * n)})"


def _many(c: sqlite3.Connection, sql: Callable[[int], str], rows: list[Any], width: int) -> None:
    """`rows` in a few many-row statements rather than `executemany`, which steps (and releases and
    retakes the GIL, on the event loop's thread) once per row. `width`: values per row (rows of
    one value are the values themselves)."""
    i, n = 0, len(rows)
    for size in _SIZES:
        while n - i >= size:
            chunk = rows[i:i + size]
            c.execute(sql(size), chunk if width == 1 else [v for row in chunk for v in row])
            i += size


def _path_of(url: str) -> str:
    rest = url[len("sqlite://"):]
    if rest in ("", "/", "/:memory:", ":memory:"):
        return ":memory:"
    if not rest.startswith("/"):
        raise GatewayKeyError(f"the gateway state URL needs an absolute path: sqlite:///abs/path.db, "
                              f"got {url!r}")
    return rest


@dataclass(slots=True)
class _Hold:
    res: Reservation
    nanos: int
    daily: int
    monthly: int
    expires: float
    now: float
    settles: list[Settle]
    fut: asyncio.Future[str | None]


class SqliteState(StateBase):
    """`GatewayState` over one SQLite database file."""

    def __init__(self, url: str, *, pepper: bytes, clock: Callable[[], datetime] | None,
                 reservation_ttl: float) -> None:
        super().__init__(pepper=pepper, clock=clock, reservation_ttl=reservation_ttl)
        self._path = _path_of(url)
        self._memory = self._path == ":memory:"
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dsk-gw-sqlite")
        self._conn: sqlite3.Connection | None = None  # the thread's (the only one for :memory:)
        self._inline: sqlite3.Connection | None = None  # the event loop's, never waits
        self._prune_at: dict[str, float] = {}  # key id -> when to delete its expired holds next
        self._holds: list[_Hold] = []  # asked for in this turn of the loop, decided together
        self._hold_tasks: set[asyncio.Task[None]] = set()

    def _db(self) -> sqlite3.Connection:
        """The thread's connection, created (with the file and the schema) on first use."""
        if self._conn is None:
            if not self._memory:
                try:
                    private_db_file(Path(self._path))
                except OSError as exc:
                    raise GatewayKeyError(f"cannot create the gateway database {self._path}: "
                                          f"{exc.strerror}") from None
            conn = sqlite3.connect(self._path, timeout=30.0, isolation_level=None, check_same_thread=False)
            if not self._memory:
                enable_wal(conn, 30.0)
                conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable across crashes of us
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    async def _fast(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` inline on the loop's connection; on a held lock, on the thread instead."""
        if self._inline is None:
            if self._memory:  # one in-memory database = one connection: no thread, no lock
                self._inline = self._db()
            else:
                await self._slow(lambda c: None)  # file and schema, created off the loop
                conn = sqlite3.connect(self._path, timeout=0.0, isolation_level=None,
                                       check_same_thread=False)
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA wal_autocheckpoint = 0")  # checkpoints (fsync) run on the thread
                self._inline = conn
        try:
            return fn(self._inline)
        except sqlite3.OperationalError as exc:
            if self._memory or not ("locked" in str(exc) or "busy" in str(exc)):
                raise
        return await self._slow(fn)

    async def _slow(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._memory:
            return fn(self._db())
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(self._db()))

    @staticmethod
    def _tx(fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
        """`fn` in one write transaction taken up front (BEGIN IMMEDIATE)."""

        def run(c: sqlite3.Connection) -> T:
            c.execute("BEGIN IMMEDIATE")
            try:
                out = fn(c)
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
            return out

        return run

    # -- keys --------------------------------------------------------------------------------------

    async def _generation(self) -> int:
        def read(c: sqlite3.Connection) -> int:
            return int(c.execute("SELECT v FROM gw_meta WHERE k = 'generation'").fetchone()[0])

        return await self._fast(read)

    async def _lookup(self, token_hash: str) -> VirtualKey | None:
        def read(c: sqlite3.Connection) -> VirtualKey | None:
            row = c.execute("SELECT data FROM gw_keys WHERE hash = ?", (token_hash,)).fetchone()
            if row is None:
                return None
            rec = record_from_json(row[0])
            return None if rec.revoked_at is not None else rec.key

        return await self._fast(read)

    async def _insert_key(self, token_hash: str, rec: KeyRecord) -> None:
        def write(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO gw_keys (id, hash, prefix, data) VALUES (?, ?, ?, ?)",
                      (rec.key.id, token_hash, rec.key.prefix, record_to_json(rec)))

        await self._slow(self._tx(write))

    async def _replace_key(self, rec: KeyRecord, old_hash: str | None, new_hash: str | None) -> None:
        def write(c: sqlite3.Connection) -> None:
            c.execute("UPDATE gw_keys SET hash = ?, prefix = ?, data = ? WHERE id = ?",
                      (new_hash, rec.key.prefix, record_to_json(rec), rec.key.id))
            c.execute("UPDATE gw_meta SET v = v + 1 WHERE k = 'generation'")

        await self._slow(self._tx(write))

    async def _records(self) -> list[tuple[str, KeyRecord]]:
        def read(c: sqlite3.Connection) -> list[tuple[str, KeyRecord]]:
            return [(h or "", record_from_json(d)) for h, d in c.execute("SELECT hash, data FROM gw_keys")]

        return await self._slow(read)

    # -- budgets -----------------------------------------------------------------------------------

    @staticmethod
    def _held_and_spent(
        c: sqlite3.Connection, key_id: str, day: str, month: str,
    ) -> tuple[int, int, int, int]:
        hd, hm = c.execute(
            "SELECT COALESCE(SUM(CASE WHEN day = ? THEN amount END), 0), "
            "COALESCE(SUM(CASE WHEN month = ? THEN amount END), 0) FROM gw_holds WHERE key_id = ?",
            (day, month, key_id)).fetchone()
        spent = dict(c.execute("SELECT win, spent FROM gw_spend WHERE key_id = ? AND win IN (?, ?)",
                               (key_id, f"d:{day}", f"m:{month}")).fetchall())
        return int(spent.get(f"d:{day}", 0)), int(hd), int(spent.get(f"m:{month}", 0)), int(hm)

    @staticmethod
    def _apply(c: sqlite3.Connection, settles: list[Settle]) -> None:
        if not settles:
            return
        _many(c, _delete_holds, [s[0] for s in settles], 1)
        spend: dict[tuple[str, str], int] = {}
        for _, key_id, day, month, nanos in settles:
            if nanos:
                spend[(key_id, f"d:{day}")] = spend.get((key_id, f"d:{day}"), 0) + nanos
                spend[(key_id, f"m:{month}")] = spend.get((key_id, f"m:{month}"), 0) + nanos
        if spend:
            c.executemany(_ADD_SPEND, [(k, w, n) for (k, w), n in spend.items()])

    async def _reserve(self, res: Reservation, nanos: int, daily: int, monthly: int,
                       expires: float, now: float, settles: list[Settle]) -> str | None:
        # Group commit: holds asked for in the same turn of the event loop (a burst of callers) are
        # decided in ONE write transaction, one after another, each seeing the ones before it. The
        # write lock is held for the whole batch, so across processes it is exactly as atomic as
        # one transaction per hold (the overspend bound is unchanged), at one BEGIN/COMMIT (most of
        # a hold's cost) and one totals query per key per batch instead of per request.
        fut: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._holds.append(_Hold(res, nanos, daily, monthly, expires, now, settles, fut))
        if len(self._holds) == 1:
            asyncio.get_running_loop().call_soon(self._decide_holds)
        return await fut

    def _decide_holds(self) -> None:
        batch, self._holds = self._holds, []
        try:
            verdicts = self._try_inline(self._tx(lambda c: self._hold_all(c, batch)))
        except Exception as exc:  # each caller gets the store's error (state_admin.store_call)
            for h in batch:
                if not h.fut.done():
                    h.fut.set_exception(exc)
            return
        if verdicts is None:  # the write lock is held by another process: wait for it off the loop
            task = asyncio.get_running_loop().create_task(self._decide_slow(batch))
            self._hold_tasks.add(task)
            task.add_done_callback(self._hold_tasks.discard)
            return
        for h, v in zip(batch, verdicts, strict=True):
            if not h.fut.done():
                h.fut.set_result(v)

    async def _decide_slow(self, batch: list[_Hold]) -> None:
        try:
            # _fast: opens the loop's connection on first use, waits for a held lock on the thread
            verdicts = await self._fast(self._tx(lambda c: self._hold_all(c, batch)))
        except Exception as exc:
            for h in batch:
                if not h.fut.done():
                    h.fut.set_exception(exc)
            return
        for h, v in zip(batch, verdicts, strict=True):
            if not h.fut.done():
                h.fut.set_result(v)

    def _try_inline(self, fn: Callable[[sqlite3.Connection], T]) -> T | None:
        """`fn` on the loop's connection (None: its lock is held elsewhere; redo it with `_slow`)."""
        if self._inline is None:
            return None  # first use: `_fast` creates the file and the schema off the loop
        try:
            return fn(self._inline)
        except sqlite3.OperationalError as exc:
            if self._memory or not ("locked" in str(exc) or "busy" in str(exc)):
                raise
        return None

    def _hold_all(self, c: sqlite3.Connection, batch: list[_Hold]) -> list[str | None]:
        self._apply(c, [s for h in batch for s in h.settles])
        totals: dict[tuple[str, str, str], list[int]] = {}
        verdicts: list[str | None] = []
        rows: list[tuple[str, str, str, str, int, float]] = []
        for h in batch:
            res, now, k = h.res, h.now, h.res.key_id
            t = totals.get((k, res.day, res.month))
            if t is None:
                if now >= self._prune_at.get(k, 0.0):
                    # Expired holds (a process that died before settling) are left out of the sums
                    # below anyway; deleting them once a second per key, not per request, saves a
                    # statement on the request path.
                    c.execute("DELETE FROM gw_holds WHERE key_id = ? AND expires <= ?", (k, now))
                    if len(self._prune_at) >= 100_000:
                        self._prune_at.clear()
                    self._prune_at[k] = now + 1.0
                args = (res.day, res.month, k, f"d:{res.day}", k, f"m:{res.month}", k, now)
                t = totals[(k, res.day, res.month)] = list(c.execute(_HELD_AND_SPENT, args).fetchone())
            sd, hd, sm, hm = t
            if h.daily >= 0 and sd + hd + h.nanos > h.daily:
                verdicts.append("daily")
            elif h.monthly >= 0 and sm + hm + h.nanos > h.monthly:
                verdicts.append("monthly")
            else:
                verdicts.append(None)
                t[1] += h.nanos
                t[3] += h.nanos
                rows.append((res.id, k, res.day, res.month, h.nanos, h.expires))
        if rows:
            _many(c, _insert_holds, rows, 6)
        return verdicts

    async def _settle_many(self, settles: list[Settle]) -> None:
        await self._fast(self._tx(lambda c: self._apply(c, settles)))

    async def _totals(self, key_id: str, day: str, month: str, now: float) -> tuple[int, int, int, int]:
        def read(c: sqlite3.Connection) -> tuple[int, int, int, int]:
            c.execute("DELETE FROM gw_holds WHERE key_id = ? AND expires <= ?", (key_id, now))
            return self._held_and_spent(c, key_id, day, month)

        return await self._fast(self._tx(read))

    # -- usage rows --------------------------------------------------------------------------------

    async def _write_usage(self, rows: dict[tuple[str, str, str], list[int]]) -> None:
        def write(c: sqlite3.Connection) -> None:
            c.executemany(
                "INSERT INTO gw_usage (key_id, day, model, requests, cost) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (key_id, day, model) DO UPDATE SET requests = requests + excluded.requests, "
                "cost = cost + excluded.cost",
                [(k, d, m, n, cost) for (k, d, m), (n, cost) in rows.items()])

        def write_and_checkpoint(c: sqlite3.Connection) -> None:
            self._tx(write)(c)
            if not self._memory:  # the loop's connection never checkpoints: keep the WAL short here
                c.execute("PRAGMA wal_checkpoint(PASSIVE)")

        await self._slow(write_and_checkpoint)

    async def _usage_rows(self, key_id: str, since: str) -> list[UsageRow]:
        def read(c: sqlite3.Connection) -> list[UsageRow]:
            rows = c.execute(
                "SELECT day, model, requests, cost FROM gw_usage WHERE key_id = ? AND day >= ? "
                "ORDER BY day, model", (key_id, since)).fetchall()
            return [UsageRow(d, m, int(n), from_nanos(int(cost))) for d, m, n, cost in rows]

        return await self._slow(read)

    async def _close(self) -> None:
        def close(c: sqlite3.Connection) -> None:
            c.close()
            self._conn = None

        try:
            if self._inline is not None and not self._memory:
                self._inline.close()
            self._inline = None
            if self._conn is not None:
                await self._slow(close)
        finally:
            self._pool.shutdown(wait=False)
