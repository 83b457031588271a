"""Dashboard sessions kept in the gateway's state store (the same SQLite file or Redis as the
keys), so that every worker of `dsk serve --workers N` (and every host sharing a Redis) knows a
session created by another one, and a logout anywhere ends it everywhere.

Only a SHA-256 of the session id is stored (the id is a bearer secret: a copy of the store must
not be enough to take over a session). Times are wall-clock seconds, since processes share them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from deepseek_kit._sqlite import private_db_file

from ..auth_throttle import FailureStore, MemoryFailures, RedisFailures, SqliteFailures
from .session import Session, Sessions

__all__ = ["RedisSessions", "SqliteSessions", "failures_beside", "sessions_for"]


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode("utf-8", "surrogateescape")).hexdigest()


class RedisSessions(Sessions):
    """Sessions as Redis keys `dsk:dashboard:session:<sha256>` that expire by themselves."""

    PREFIX = "dsk:dashboard:session:"

    def __init__(self, url: str, idle: float = 3600.0, absolute: float = 12 * 3600.0,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(idle, absolute, clock=clock)
        import redis.asyncio as redis

        self._redis: Any = redis.from_url(url)

    async def _put(self, sid: str, s: Session) -> None:
        ttl = max(1, int(min(s.expires, s.ends) - self.clock()))
        value = json.dumps({"csrf": s.csrf, "ends": s.ends})
        await self._redis.set(self.PREFIX + _digest(sid), value, ex=ttl)

    async def create(self) -> tuple[str, Session]:
        sid, s = self.new()
        await self._put(sid, s)
        return sid, s

    async def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        raw = await self._redis.get(self.PREFIX + _digest(sid))
        if raw is None:
            return None
        doc = json.loads(raw)
        now = self.clock()
        if now >= doc["ends"]:
            return None
        s = Session(csrf=doc["csrf"], expires=min(now + self.idle, doc["ends"]), ends=doc["ends"])
        await self._redis.expire(self.PREFIX + _digest(sid), max(1, int(s.expires - now)))
        return s

    async def drop(self, sid: str | None) -> None:
        if sid:
            await self._redis.delete(self.PREFIX + _digest(sid))

    async def aclose(self) -> None:
        await self._redis.aclose()


class SqliteSessions(Sessions):
    """Sessions in a `dashboard_sessions` table of the state's SQLite file, read and written on one
    thread of their own (never on the event loop)."""

    _SCHEMA = ("CREATE TABLE IF NOT EXISTS dashboard_sessions (id_hash TEXT PRIMARY KEY, csrf TEXT NOT NULL, "
               "expires REAL NOT NULL, ends REAL NOT NULL)")

    def __init__(self, path: str, idle: float = 3600.0, absolute: float = 12 * 3600.0,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(idle, absolute, clock=clock)
        self._path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dsk-dashboard-sessions")
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            private_db_file(Path(self._path))  # 0600, like the state's own use of the file
            conn = sqlite3.connect(self._path, timeout=10.0, isolation_level=None, check_same_thread=False)
            conn.execute(self._SCHEMA)
            self._conn = conn
        return self._conn

    async def _run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(self._db()))

    async def create(self) -> tuple[str, Session]:
        sid, s = self.new()
        now = self.clock()

        def write(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM dashboard_sessions WHERE expires <= ? OR ends <= ?", (now, now))
            c.execute("INSERT INTO dashboard_sessions VALUES (?, ?, ?, ?)",
                      (_digest(sid), s.csrf, s.expires, s.ends))

        await self._run(write)
        return sid, s

    async def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        h, now = _digest(sid), self.clock()

        def read(c: sqlite3.Connection) -> Session | None:
            row = c.execute("SELECT csrf, expires, ends FROM dashboard_sessions WHERE id_hash = ?",
                            (h,)).fetchone()
            if row is None or now >= row[1] or now >= row[2]:
                return None
            expires = min(now + self.idle, row[2])
            c.execute("UPDATE dashboard_sessions SET expires = ? WHERE id_hash = ?", (expires, h))
            return Session(csrf=row[0], expires=expires, ends=row[2])

        found: Session | None = await self._run(read)
        return found

    async def drop(self, sid: str | None) -> None:
        if sid:
            h = _digest(sid)
            await self._run(lambda c: c.execute("DELETE FROM dashboard_sessions WHERE id_hash = ?", (h,)))

    async def aclose(self) -> None:
        def close(c: sqlite3.Connection) -> None:
            c.close()

        if self._conn is not None:
            await self._run(close)
            self._conn = None
        self._pool.shutdown(wait=False)


def failures_beside(sessions: Sessions) -> FailureStore:
    """The failed-login counters in the same store as `sessions`, on its connection (a
    `gw_auth_failures` table in the SQLite file, `dsk:gw:authfail:` keys in Redis)."""
    if isinstance(sessions, SqliteSessions):
        return SqliteFailures(sessions._run)  # its autocommit connection, on its own thread
    if isinstance(sessions, RedisSessions):
        return RedisFailures(sessions._redis)
    return MemoryFailures()


def sessions_for(state_url: str | None) -> Sessions:
    """The session store for a gateway whose key state is at `state_url`: that Redis or SQLite
    file when there is one (shared by the workers), else this process's memory."""
    if state_url and state_url.startswith(("redis://", "rediss://", "unix://")):
        return RedisSessions(state_url)
    if state_url and state_url.startswith("sqlite://"):
        path = state_url[len("sqlite://"):]
        if path.startswith("/") and path != "/:memory:":
            return SqliteSessions(path)
    return Sessions()
