"""Where OAuth clients and token-signing keys live: beside the virtual keys, in the same SQLite file
or Redis server as the `GatewayState` they belong to (`oauth_store(state)`), sharing its
connections and its revocation generation.

Every change that must reach the other workers (revoke or rotate a client, a new signing key)
bumps the same generation counter that key revocation bumps; every worker polls it at most every
half second (state_common.py), so a revoked client is refused everywhere within a second.

SQLite tables: gw_oauth_clients (client_id, secret hash, JSON record), gw_oauth_signing (kid, JSON
of the key pair with the private half encrypted, retired time or NULL for the current key).
Redis (under `dsk:gw:`): `client:<id>` HASH data/hash, `clients` SET of ids, `jwks` HASH kid ->
JSON, `jwks:retired` HASH kid -> time, `jwks:current` the current kid.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Protocol

from .keys import GatewayState, KeyRecord
from .state_admin import record_from_json

__all__ = ["OAuthStore", "oauth_store"]

#: (JSON record, secret hash) of one client.
ClientRow = tuple[str, str]
#: (JSON key pair, retired at or None)
SigningRow = tuple[str, float | None]


class OAuthStore(Protocol):
    """The store primitives the OAuth service needs; every call may raise a store error (the
    caller wraps it in a 503 `StateUnavailableError`)."""

    async def generation(self) -> int:
        """The revocation generation shared with the keys."""

    async def insert_client(self, client_id: str, data: str, secret_hash: str) -> None:
        """Store a new client."""

    async def update_client(self, client_id: str, data: str, secret_hash: str) -> None:
        """Replace a client's record and hash, and bump the generation."""

    async def client(self, client_id: str) -> ClientRow | None:
        """One client, or None."""

    async def clients(self) -> list[ClientRow]:
        """Every client."""

    async def key_record(self, key_id: str) -> KeyRecord | None:
        """The virtual key with this id (revoked ones too), or None."""

    async def signing_keys(self) -> tuple[str | None, list[SigningRow]]:
        """(current kid or None, every key pair with its retirement time)."""

    async def add_signing_key(self, kid: str, data: str, now: float, only_if_none: bool) -> str:
        """Make `kid` the current signing key (the previous one retired at `now`) and bump the
        generation; with `only_if_none`, do nothing when a current key exists. Returns the
        current kid afterwards. Atomic across workers."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS gw_oauth_clients (
    client_id TEXT PRIMARY KEY, hash TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS gw_oauth_signing (
    kid TEXT PRIMARY KEY, data TEXT NOT NULL, created REAL NOT NULL, retired REAL);
"""
_BUMP = "UPDATE gw_meta SET v = v + 1 WHERE k = 'generation'"


class _SqliteStore:
    """Over a `SqliteState`'s connections: reads inline on the loop (`_fast`), writes in one
    `BEGIN IMMEDIATE` transaction on its thread (`_slow`), as the state does for keys."""

    def __init__(self, state: Any) -> None:
        self._st = state
        self._ready = False

    async def _schema(self) -> None:
        if not self._ready:
            await self._st._slow(lambda c: c.executescript(_SCHEMA))
            self._ready = True

    async def _read(self, fn: Any) -> Any:
        await self._schema()
        return await self._st._fast(fn)

    async def _write(self, fn: Any) -> Any:
        await self._schema()
        return await self._st._slow(self._st._tx(fn))

    async def generation(self) -> int:
        return int(await self._st._generation())

    async def insert_client(self, client_id: str, data: str, secret_hash: str) -> None:
        await self._write(lambda c: c.execute(
            "INSERT INTO gw_oauth_clients (client_id, hash, data) VALUES (?, ?, ?)",
            (client_id, secret_hash, data)))

    async def update_client(self, client_id: str, data: str, secret_hash: str) -> None:
        def write(c: sqlite3.Connection) -> None:
            c.execute("UPDATE gw_oauth_clients SET hash = ?, data = ? WHERE client_id = ?",
                      (secret_hash, data, client_id))
            c.execute(_BUMP)

        await self._write(write)

    async def client(self, client_id: str) -> ClientRow | None:
        def read(c: sqlite3.Connection) -> ClientRow | None:
            row = c.execute("SELECT data, hash FROM gw_oauth_clients WHERE client_id = ?",
                            (client_id,)).fetchone()
            return None if row is None else (row[0], row[1])

        out: ClientRow | None = await self._read(read)
        return out

    async def clients(self) -> list[ClientRow]:
        def read(c: sqlite3.Connection) -> list[ClientRow]:
            return [(d, h) for d, h in c.execute("SELECT data, hash FROM gw_oauth_clients")]

        out: list[ClientRow] = await self._read(read)
        return out

    async def key_record(self, key_id: str) -> KeyRecord | None:
        def read(c: sqlite3.Connection) -> KeyRecord | None:
            row = c.execute("SELECT data FROM gw_keys WHERE id = ?", (key_id,)).fetchone()
            return None if row is None else record_from_json(row[0])

        out: KeyRecord | None = await self._read(read)
        return out

    async def signing_keys(self) -> tuple[str | None, list[SigningRow]]:
        def read(c: sqlite3.Connection) -> tuple[str | None, list[SigningRow]]:
            rows = c.execute("SELECT kid, data, retired FROM gw_oauth_signing ORDER BY created").fetchall()
            current = next((kid for kid, _, retired in reversed(rows) if retired is None), None)
            return current, [(d, r) for _, d, r in rows]

        out: tuple[str | None, list[SigningRow]] = await self._read(read)
        return out

    async def add_signing_key(self, kid: str, data: str, now: float, only_if_none: bool) -> str:
        def write(c: sqlite3.Connection) -> str:
            row = c.execute("SELECT kid FROM gw_oauth_signing WHERE retired IS NULL").fetchone()
            if row is not None and only_if_none:
                return str(row[0])
            c.execute("UPDATE gw_oauth_signing SET retired = ? WHERE retired IS NULL", (now,))
            c.execute("INSERT INTO gw_oauth_signing (kid, data, created, retired) VALUES (?, ?, ?, NULL)",
                      (kid, data, now))
            c.execute(_BUMP)
            return kid

        out: str = await self._write(write)
        return out


_P = "dsk:gw:"
# KEYS: jwks, jwks:retired, jwks:current, gen. ARGV: kid, data, now, only_if_none ("1"/"0").
_ADD_SIGNING = """
local cur = redis.call('GET', KEYS[3])
if cur and ARGV[4] == '1' then return cur end
if cur then redis.call('HSET', KEYS[2], cur, ARGV[3]) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SET', KEYS[3], ARGV[1])
redis.call('INCR', KEYS[4])
return ARGV[1]
"""


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class _RedisStore:
    """Over a `RedisState`'s connection pool."""

    def __init__(self, state: Any) -> None:
        self._st = state
        self._r = state._r
        self._add = self._r.register_script(_ADD_SIGNING)

    async def generation(self) -> int:
        return int(await self._st._generation())

    async def insert_client(self, client_id: str, data: str, secret_hash: str) -> None:
        async with self._r.pipeline(transaction=True) as p:
            p.hset(f"{_P}client:{client_id}", mapping={"data": data, "hash": secret_hash})
            p.sadd(_P + "clients", client_id)
            await p.execute()

    async def update_client(self, client_id: str, data: str, secret_hash: str) -> None:
        async with self._r.pipeline(transaction=True) as p:
            p.hset(f"{_P}client:{client_id}", mapping={"data": data, "hash": secret_hash})
            p.incr(_P + "gen")
            await p.execute()

    async def client(self, client_id: str) -> ClientRow | None:
        data, h = await self._r.hmget(f"{_P}client:{client_id}", ["data", "hash"])
        return None if data is None else (_s(data), _s(h or b""))

    async def clients(self) -> list[ClientRow]:
        ids = sorted(_s(i) for i in await self._r.smembers(_P + "clients"))
        if not ids:
            return []
        async with self._r.pipeline(transaction=False) as p:
            for cid in ids:
                p.hmget(f"{_P}client:{cid}", ["data", "hash"])
            rows = await p.execute()
        return [(_s(d), _s(h or b"")) for d, h in rows if d is not None]

    async def key_record(self, key_id: str) -> KeyRecord | None:
        data = await self._r.hget(f"{_P}key:{key_id}", "data")
        return None if data is None else record_from_json(data)

    async def signing_keys(self) -> tuple[str | None, list[SigningRow]]:
        async with self._r.pipeline(transaction=True) as p:
            p.get(_P + "jwks:current")
            p.hgetall(_P + "jwks")
            p.hgetall(_P + "jwks:retired")
            cur, pairs, retired = await p.execute()
        gone = {_s(k): float(_s(v)) for k, v in retired.items()}
        return (None if cur is None else _s(cur)), [(_s(d), gone.get(_s(k))) for k, d in pairs.items()]

    async def add_signing_key(self, kid: str, data: str, now: float, only_if_none: bool) -> str:
        out = await self._add(keys=[_P + "jwks", _P + "jwks:retired", _P + "jwks:current", _P + "gen"],
                              args=[kid, data, repr(now), "1" if only_if_none else "0"])
        return _s(out)


def oauth_store(state: GatewayState) -> OAuthStore:
    """The OAuth store beside `state` (an open SQLite or Redis gateway state). It uses the state's
    own connections (one SQLite file or one in-memory database, one Redis pool), which is why it
    reaches into the state's internals: a second connection would miss `sqlite:///:memory:`."""
    from .state_redis import RedisState
    from .state_sqlite import SqliteState

    if isinstance(state, SqliteState):
        return _SqliteStore(state)
    if isinstance(state, RedisState):
        return _RedisStore(state)
    raise TypeError(f"OAuth clients need a SQLite or Redis gateway state, got {type(state).__name__}")
