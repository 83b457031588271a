"""Where cached answers live: in memory, in a SQLite file, or in Redis.

Every backend stores opaque bytes under a string key with an optional time to live, behind the
same four async calls (`get`, `set`, `delete`, `clear`, plus `aclose`). The cache step
(`_steps/cache/step.py`) never learns which one it talks to.

* `MemoryBackend`: one process, LRU bounded by bytes (key + value + a fixed per-entry overhead),
  expiry checked on read. Hand-written over `OrderedDict` (whose `move_to_end`/`popitem` are the
  LRU in C) rather than `cachetools.TTLCache`: that would be a new core dependency for ~40 lines,
  and its TTL timer would need a second clock wrapper for tests anyway.
* `SQLiteBackend`: persistent, safe for several processes on one host. WAL journal (readers never
  block the writer), `busy_timeout` (writers wait for each other instead of failing), writes in
  short `BEGIN IMMEDIATE` transactions. A trigger-maintained byte total lets every write enforce
  `max_bytes` exactly, across processes, by deleting the least recently used rows. stdlib
  `sqlite3` on one private thread per backend (aiosqlite would add a dependency to do the same).
* `RedisBackend`: shared by processes and hosts (`redis.asyncio`). Expiry is Redis's own (`SET`
  with `PX`, the atomic form of SET + PEXPIRE); size is bounded by the server's `maxmemory` and
  `maxmemory-policy allkeys-lru`, not by us (a per-prefix byte budget would cost a script per write).

`open_backend("memory" | "sqlite" | "sqlite:///path" | "redis://...")` builds one from a string.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from deepseek_kit._sqlite import enable_wal, private_db_file
from deepseek_kit._wire.errors import UsageError

__all__ = ["CacheBackend", "MemoryBackend", "RedisBackend", "SQLiteBackend", "open_backend"]

T = TypeVar("T")

#: Bytes charged per memory entry beyond key and value (dict slot, tuple, bytes headers): keeps a
#: cache of many tiny answers from growing without bound.
ENTRY_OVERHEAD = 128


@runtime_checkable
class CacheBackend(Protocol):
    """Where the cache step keeps answers: `CachePolicy(backend=...)` takes "memory", "sqlite",
    a Redis URL, or any object with these five async methods (`MemoryBackend`, `SQLiteBackend`,
    `RedisBackend`, or your own). Keys are opaque strings, values the answer's bytes; a backend
    may drop any entry at any time (a miss only costs a request)."""

    async def get(self, key: str) -> bytes | None:
        """The stored value, or None when absent or expired."""

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store (replacing any older value); `ttl` in seconds, None = until evicted."""

    async def delete(self, key: str) -> None:
        """Remove `key` if present."""
        ...

    async def clear(self) -> None:
        """Remove every entry of this cache (and only this cache's entries)."""
        ...

    async def aclose(self) -> None:
        """Release connections and threads; `AsyncClient.close()` calls it. Safe to call twice."""
        ...


class MemoryBackend:
    """In-process LRU bounded by `max_bytes`, with per-entry expiry. `clock` is injectable for tests."""

    def __init__(self, max_bytes: int = 64 << 20, *, clock: Callable[[], float] = time.monotonic) -> None:
        if max_bytes <= 0:
            raise UsageError(f"max_bytes must be positive, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self.size = 0
        self._clock = clock
        self._data: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    @staticmethod
    def _cost(key: str, value: bytes) -> int:
        return len(key) + len(value) + ENTRY_OVERHEAD

    async def get(self, key: str) -> bytes | None:
        """The stored value, or None when absent or expired."""
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= self._clock():
            self._remove(key)
            return None
        self._data.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store (replacing any older value); `ttl` in seconds, None = until evicted."""
        self._remove(key)
        cost = self._cost(key, value)
        if cost > self.max_bytes:
            return  # larger than the whole budget: storing it would only evict everything else
        self._data[key] = (value, None if ttl is None else self._clock() + ttl)
        self.size += cost
        while self.size > self.max_bytes:
            old_key, (old_value, _) = self._data.popitem(last=False)
            self.size -= self._cost(old_key, old_value)

    def _remove(self, key: str) -> None:
        item = self._data.pop(key, None)
        if item is not None:
            self.size -= self._cost(key, item[0])

    async def delete(self, key: str) -> None:
        """Remove `key` if present."""
        self._remove(key)

    async def clear(self) -> None:
        """Remove every entry."""
        self._data.clear()
        self.size = 0

    async def aclose(self) -> None:
        """Nothing to release (the entries stay until the object goes)."""
        pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS dsk_cache (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    size INTEGER NOT NULL,
    used_at REAL NOT NULL,
    expires_at REAL
);
CREATE INDEX IF NOT EXISTS dsk_cache_used ON dsk_cache(used_at);
CREATE TABLE IF NOT EXISTS dsk_cache_total (id INTEGER PRIMARY KEY CHECK (id = 0), bytes INTEGER NOT NULL);
INSERT OR IGNORE INTO dsk_cache_total VALUES (0, 0);
CREATE TRIGGER IF NOT EXISTS dsk_cache_ins AFTER INSERT ON dsk_cache
    BEGIN UPDATE dsk_cache_total SET bytes = bytes + NEW.size; END;
CREATE TRIGGER IF NOT EXISTS dsk_cache_del AFTER DELETE ON dsk_cache
    BEGIN UPDATE dsk_cache_total SET bytes = bytes - OLD.size; END;
CREATE TRIGGER IF NOT EXISTS dsk_cache_upd AFTER UPDATE OF size ON dsk_cache
    BEGIN UPDATE dsk_cache_total SET bytes = bytes - OLD.size + NEW.size; END;
"""


class SQLiteBackend:
    """A cache file shared by every process that opens it (default `$DSK_HOME/cache.sqlite3`).

    `path`: the file (created with its directory). `max_bytes`: the size past which the least
    recently used entries go. `busy_timeout`: seconds a writer waits for another process's write.
    Reads refresh the entry's `used_at` (LRU across processes) when it is older than `touch_after`
    seconds. `clock` is wall-clock time by default: expiry must mean the same in every process.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        max_bytes: int = 256 << 20,
        busy_timeout: float = 10.0,
        touch_after: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_bytes <= 0:
            raise UsageError(f"max_bytes must be positive, got {max_bytes!r}")
        if path is None:
            from deepseek_kit._settings import home_dir

            path = home_dir() / "cache.sqlite3"
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.busy_timeout = busy_timeout
        self.touch_after = touch_after
        self._clock = clock
        self._conn: sqlite3.Connection | None = None
        # One thread owns the connection: sqlite3 calls block, and a single thread serialises
        # this process's statements without a lock of our own.
        self._pool: ThreadPoolExecutor | None = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dsk-cache-sqlite")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                # 0600 in a 0700 DSK_HOME, like the logs (docs/attack-round-2026-12.md, S4)
                private_db_file(self.path)
                conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                       check_same_thread=False)
            except (OSError, sqlite3.Error) as exc:
                raise UsageError(f"cannot open the cache database {self.path}: {exc}") from None
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            enable_wal(conn, self.busy_timeout)
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable across crashes of us
            conn.execute("BEGIN IMMEDIATE")
            try:
                for stmt in _SCHEMA.split(";\n"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                conn.close()
                raise
            self._conn = conn
        return self._conn

    # -- blocking bodies, run on the backend's thread ------------------------------------------

    def _get(self, key: str) -> bytes | None:
        db = self._db()
        now = self._clock()
        row = db.execute("SELECT value, used_at, expires_at FROM dsk_cache WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        value, used_at, expires_at = row
        if expires_at is not None and expires_at <= now:
            db.execute("DELETE FROM dsk_cache WHERE key = ? AND expires_at <= ?", (key, now))
            return None
        if now - used_at >= self.touch_after:
            # A read is a write only when the LRU stamp is stale: a hot entry costs one write per
            # `touch_after` seconds, not one per hit (writers queue on the one WAL write lock).
            db.execute("UPDATE dsk_cache SET used_at = ? WHERE key = ?", (now, key))
        return bytes(value)

    def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        db = self._db()
        size = len(key) + len(value)
        if size > self.max_bytes:
            return
        now = self._clock()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO dsk_cache (key, value, size, used_at, expires_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value, size = excluded.size, "
                "used_at = excluded.used_at, expires_at = excluded.expires_at",
                (key, value, size, now, None if ttl is None else now + ttl))
            self._evict(db, now)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _evict(self, db: sqlite3.Connection, now: float) -> None:
        """Inside the write transaction: drop expired rows, then least recently used ones, until
        the byte total (kept by triggers, so right across processes) fits `max_bytes`."""
        (total,) = db.execute("SELECT bytes FROM dsk_cache_total").fetchone()
        if total <= self.max_bytes:
            return
        db.execute("DELETE FROM dsk_cache WHERE expires_at <= ?", (now,))
        (total,) = db.execute("SELECT bytes FROM dsk_cache_total").fetchone()
        excess = total - self.max_bytes
        if excess <= 0:
            return
        victims: list[int] = []
        for rowid, size in db.execute("SELECT rowid, size FROM dsk_cache ORDER BY used_at, rowid"):
            victims.append(rowid)
            excess -= size
            if excess <= 0:
                break
        db.executemany("DELETE FROM dsk_cache WHERE rowid = ?", [(r,) for r in victims])

    def _stats(self) -> tuple[int, int]:
        db = self._db()
        (count,) = db.execute("SELECT count(*) FROM dsk_cache").fetchone()
        (total,) = db.execute("SELECT bytes FROM dsk_cache_total").fetchone()
        return int(count), int(total)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- the async interface ----------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        """The stored value, or None when absent or expired."""
        return await self._run(self._get, key)

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store (replacing any older value); `ttl` in seconds, None = until evicted."""
        await self._run(self._set, key, value, ttl)

    async def delete(self, key: str) -> None:
        """Remove `key` if present."""
        await self._run(lambda: self._db().execute("DELETE FROM dsk_cache WHERE key = ?", (key,)))

    async def clear(self) -> None:
        """Remove every entry of the file, for every process that shares it."""
        await self._run(lambda: self._db().execute("DELETE FROM dsk_cache"))

    async def stats(self) -> tuple[int, int]:
        """(entries, bytes) in the file, all processes included."""
        return await self._run(self._stats)

    async def aclose(self) -> None:
        """Close the connection and its worker thread; safe to call twice."""
        if self._pool is not None:
            await self._run(self._close)
            self._pool.shutdown(wait=False)
            self._pool = None


class RedisBackend:
    """Entries under `prefix + key` in Redis; expiry by Redis itself. Connects on first use.

    `url`: the server ("redis://host:port/db", "rediss://..." for TLS, "unix:///path"), or `client`:
    a `redis.asyncio.Redis` of yours (then left open by `aclose()`). Needs the `[redis]` extra."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "dsk:cache:",
                 client: Any = None) -> None:
        self.url = url
        self.prefix = prefix
        self._client = client
        self._own = client is None

    def _redis(self) -> Any:
        if self._client is None:
            try:
                import redis.asyncio as aioredis
            except ImportError:
                raise UsageError(
                    "the Redis cache backend needs redis-py: pip install 'deepseek-kit[redis]'") from None
            self._client = aioredis.Redis.from_url(self.url)
        return self._client

    async def get(self, key: str) -> bytes | None:
        """The stored value, or None when absent or expired."""
        value = await self._redis().get(self.prefix + key)
        return bytes(value) if value is not None else None

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store (replacing any older value); `ttl` in seconds, None = until evicted."""
        if ttl is None:
            await self._redis().set(self.prefix + key, value)
        else:
            await self._redis().set(self.prefix + key, value, px=max(1, int(ttl * 1000)))

    async def delete(self, key: str) -> None:
        """Remove `key` if present."""
        await self._redis().delete(self.prefix + key)

    async def clear(self) -> None:
        """Remove every key under `prefix` (scanned in batches, other keys untouched)."""
        r = self._redis()
        batch: list[bytes] = []
        async for k in r.scan_iter(match=self.prefix + "*", count=500):
            batch.append(k)
            if len(batch) >= 500:
                await r.unlink(*batch)
                batch.clear()
        if batch:
            await r.unlink(*batch)

    async def aclose(self) -> None:
        """Close the Redis connection this backend opened (a `client=` passed in is left open)."""
        if self._client is not None and self._own:
            await self._client.aclose()
            self._client = None


def open_backend(spec: str | CacheBackend, max_bytes: int) -> CacheBackend:
    """A backend from a spec: "memory"; "sqlite" (the file under DSK_HOME), "sqlite:///abs/path"
    or "sqlite:relative/path"; "redis://..." / "rediss://..." / "unix://..."; or a backend object."""
    if not isinstance(spec, str):
        if isinstance(spec, CacheBackend):
            return spec
        raise UsageError(f"cache backend must be a string or a CacheBackend, got {type(spec).__name__}")
    if spec == "memory":
        return MemoryBackend(max_bytes)
    if spec == "sqlite":
        return SQLiteBackend(max_bytes=max_bytes)
    if spec.startswith("sqlite:"):
        path = spec[len("sqlite:"):]
        if path.startswith("//"):
            path = path[2:]  # sqlite:///abs/path -> /abs/path
        if not path:
            raise UsageError("sqlite cache backend needs a path: 'sqlite:///path/to/cache.sqlite3'")
        return SQLiteBackend(path, max_bytes=max_bytes)
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return RedisBackend(spec)
    raise UsageError(
        f"unknown cache backend {spec!r}: use 'memory', 'sqlite', 'sqlite:///path' or 'redis://host:port/db'")
