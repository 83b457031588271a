"""Gateway state in one SQLite file (`sqlite:///abs/path.db`, or `sqlite:///:memory:` for tests):
zero setup for a single host; several processes on that host may share the file.

Every call runs on one private thread per state (one connection, never the event loop). Budget
holds are atomic across processes by `BEGIN IMMEDIATE` (the write lock is taken before the totals
are read, so two processes cannot both see room for the last request). Keys are stored as
HMAC-SHA256 hashes plus a JSON record (id, display prefix, settings); revoking clears the hash and
bumps the `generation` row that every process polls (state_common.py).

Tables: gw_meta (generation), gw_keys, gw_spend (settled nano-units per key and window `d:DAY` /
`m:MONTH`), gw_holds (open reservations with their expiry), gw_usage (per key/day/model rows
written in batches by the flusher).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from deepseek_kit._sqlite import enable_wal, private_db_file

from .budget import Reservation, UsageRow, from_nanos
from .keys import GatewayKeyError, KeyRecord, VirtualKey
from .state_common import StateBase, record_from_json, record_to_json

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

_ADD_SPEND = ("INSERT INTO gw_spend (key_id, win, spent) VALUES (?, ?, ?) "
              "ON CONFLICT (key_id, win) DO UPDATE SET spent = spent + excluded.spent")


def _path_of(url: str) -> str:
    rest = url[len("sqlite://"):]
    if rest in ("", "/", "/:memory:", ":memory:"):
        return ":memory:"
    if not rest.startswith("/"):
        raise GatewayKeyError(f"the gateway state URL needs an absolute path: sqlite:///abs/path.db, "
                              f"got {url!r}")
    return rest


class SqliteState(StateBase):
    """`GatewayState` over one SQLite database file."""

    def __init__(self, url: str, *, pepper: bytes, clock: Callable[[], datetime] | None,
                 reservation_ttl: float) -> None:
        super().__init__(pepper=pepper, clock=clock, reservation_ttl=reservation_ttl)
        self._path = _path_of(url)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dsk-gw-sqlite")
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            if self._path != ":memory:":
                path = Path(self._path)
                try:
                    private_db_file(path)
                except OSError as exc:
                    raise GatewayKeyError(f"cannot create the gateway database {self._path}: "
                                          f"{exc.strerror}") from None
            conn = sqlite3.connect(self._path, timeout=30.0, isolation_level=None, check_same_thread=False)
            if self._path != ":memory:":
                enable_wal(conn, 30.0)
                conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable across crashes of us
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one write transaction taken up front (BEGIN IMMEDIATE)."""
        c = self._db()
        c.execute("BEGIN IMMEDIATE")
        try:
            out = fn(c)
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")
        return out

    # -- keys --------------------------------------------------------------------------------------

    async def _generation(self) -> int:
        def read() -> int:
            return int(self._db().execute("SELECT v FROM gw_meta WHERE k = 'generation'").fetchone()[0])

        return await self._run(read)

    async def _lookup(self, token_hash: str) -> VirtualKey | None:
        def read() -> VirtualKey | None:
            row = self._db().execute("SELECT data FROM gw_keys WHERE hash = ?", (token_hash,)).fetchone()
            if row is None:
                return None
            rec = record_from_json(row[0])
            return None if rec.revoked_at is not None else rec.key

        return await self._run(read)

    async def _insert_key(self, token_hash: str, rec: KeyRecord) -> None:
        def write(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO gw_keys (id, hash, prefix, data) VALUES (?, ?, ?, ?)",
                      (rec.key.id, token_hash, rec.key.prefix, record_to_json(rec)))

        await self._run(self._tx, write)

    async def _replace_key(self, rec: KeyRecord, old_hash: str | None, new_hash: str | None) -> None:
        def write(c: sqlite3.Connection) -> None:
            c.execute("UPDATE gw_keys SET hash = ?, prefix = ?, data = ? WHERE id = ?",
                      (new_hash, rec.key.prefix, record_to_json(rec), rec.key.id))
            c.execute("UPDATE gw_meta SET v = v + 1 WHERE k = 'generation'")

        await self._run(self._tx, write)

    async def _records(self) -> list[tuple[str, KeyRecord]]:
        def read() -> list[tuple[str, KeyRecord]]:
            rows = self._db().execute("SELECT hash, data FROM gw_keys").fetchall()
            return [(h or "", record_from_json(d)) for h, d in rows]

        return await self._run(read)

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

    async def _reserve(self, res: Reservation, nanos: int, daily: int, monthly: int,
                       expires: float, now: float) -> str | None:
        def hold(c: sqlite3.Connection) -> str | None:
            c.execute("DELETE FROM gw_holds WHERE key_id = ? AND expires <= ?", (res.key_id, now))
            sd, hd, sm, hm = self._held_and_spent(c, res.key_id, res.day, res.month)
            if daily >= 0 and sd + hd + nanos > daily:
                return "daily"
            if monthly >= 0 and sm + hm + nanos > monthly:
                return "monthly"
            c.execute("INSERT INTO gw_holds (id, key_id, day, month, amount, expires) "
                      "VALUES (?, ?, ?, ?, ?, ?)", (res.id, res.key_id, res.day, res.month, nanos, expires))
            return None

        return await self._run(self._tx, hold)

    async def _settle(self, res: Reservation, nanos: int) -> None:
        def charge(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM gw_holds WHERE id = ?", (res.id,))
            if nanos:
                c.executemany(_ADD_SPEND, [(res.key_id, f"d:{res.day}", nanos),
                                           (res.key_id, f"m:{res.month}", nanos)])

        await self._run(self._tx, charge)

    async def _release(self, res: Reservation) -> None:
        def drop(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM gw_holds WHERE id = ?", (res.id,))

        await self._run(self._tx, drop)

    async def _totals(self, key_id: str, day: str, month: str, now: float) -> tuple[int, int, int, int]:
        def read(c: sqlite3.Connection) -> tuple[int, int, int, int]:
            c.execute("DELETE FROM gw_holds WHERE key_id = ? AND expires <= ?", (key_id, now))
            return self._held_and_spent(c, key_id, day, month)

        return await self._run(self._tx, read)

    # -- usage rows --------------------------------------------------------------------------------

    async def _write_usage(self, rows: dict[tuple[str, str, str], list[int]]) -> None:
        def write(c: sqlite3.Connection) -> None:
            c.executemany(
                "INSERT INTO gw_usage (key_id, day, model, requests, cost) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (key_id, day, model) DO UPDATE SET requests = requests + excluded.requests, "
                "cost = cost + excluded.cost",
                [(k, d, m, n, cost) for (k, d, m), (n, cost) in rows.items()])

        await self._run(self._tx, write)

    async def _usage_rows(self, key_id: str, since: str) -> list[UsageRow]:
        def read() -> list[UsageRow]:
            rows = self._db().execute(
                "SELECT day, model, requests, cost FROM gw_usage WHERE key_id = ? AND day >= ? "
                "ORDER BY day, model", (key_id, since)).fetchall()
            return [UsageRow(d, m, int(n), from_nanos(int(c))) for d, m, n, c in rows]

        return await self._run(read)

    async def _close(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        try:
            await self._run(close)
        finally:
            self._pool.shutdown(wait=False)
