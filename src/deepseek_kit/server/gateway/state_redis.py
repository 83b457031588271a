"""Gateway state in Redis (`redis://host:port/db`): keys, budgets and usage shared by every worker
and host that points at the same server.

Layout (all under `dsk:gw:`):

    gen                 revocation generation, INCR on every revoke/rotate (polled, state_common.py)
    ids                 SET of key ids
    key:<id>            HASH data=<JSON record> hash=<current HMAC or "">
    hash:<hmac>         the id of the key with this token hash (absent once revoked or rotated)
    spend:<id>          HASH d:<day> / m:<month> -> settled nano-units
    holds:<id>          ZSET reservation id scored by its expiry (epoch seconds, the gateway's clock)
    hold:<id>           HASH reservation id -> "<nanos> <day> <month>"
    usage:<id>          HASH <day>|<model>|n and <day>|<model>|c -> requests, nano-units
    settled:<hold id>   marker of an applied settlement (expires after a day)

A hold is one Lua script (`_HOLD_MANY`, for every hold asked in one turn of the event loop): drop
the key's expired holds, sum what is held and spent in the request's day and month, refuse or add
the hold, atomically with every other worker's. Settling (remove the hold, add the exact cost) is
queued (state_common.py) and rides on this process's next hold script, or on one `_SETTLE` script
for the whole queue after at most `SETTLE_DELAY`. Expiry uses the gateway's clock (not Redis's
`TIME`) so that tests can drive it; hosts must keep their clocks in sync (NTP), as a skew only
moves when an abandoned hold is released.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from deepseek_kit._steps.limits.lua import SPLIT, pack

from .budget import Reservation, UsageRow, from_nanos
from .keys import GatewayKeyError, KeyRecord, VirtualKey
from .state_admin import record_from_json, record_to_json
from .state_common import Settle, StateBase

__all__ = ["RedisState"]

_P = "dsk:gw:"
_POOL = 64

# Per-request fields travel packed, each followed by "\n", in one argument per kind (`pack` and
# the Lua `split`, shared with the limits scripts):
# redis-py encodes every argument on its own (type checks and a length header each), which cost
# more CPU per request than the round trip itself when each hold sent 13 separate arguments.
# The fields are our ids, numbers and dates: none holds a newline.

# Queued settlements, A[first..] in groups of 5: hold id, key id, day, month, nanos. The keys
# are built from the key ids (one standalone Redis; the key names are ours). Applying one twice
# changes nothing (the `settled:` marker, kept a day): a script whose reply was lost, then resent
# by redis-py's retry or queued again by us, must not charge twice.
_APPLY = SPLIT + """
local function apply(A, first)
  for i = first, #A, 5 do
    local hold, kid, n = A[i], A[i + 1], tonumber(A[i + 4])
    redis.call('ZREM', 'dsk:gw:holds:' .. kid, hold)
    redis.call('HDEL', 'dsk:gw:hold:' .. kid, hold)
    if n > 0 and redis.call('SET', 'dsk:gw:settled:' .. hold, '1', 'NX', 'EX', 86400) then
      redis.call('HINCRBY', 'dsk:gw:spend:' .. kid, 'd:' .. A[i + 2], n)
      redis.call('HINCRBY', 'dsk:gw:spend:' .. kid, 'm:' .. A[i + 3], n)
    end
  end
end
"""

# ARGV: the queued settlements, packed.
_SETTLE = _APPLY + "apply(split(ARGV[1]), 1)\nreturn 1\n"

# KEYS: holds zset, hold hash, spend hash. ARGV: now, id, nanos (-1: only read), day, month,
# daily budget, monthly budget (-1: none), expiry, then queued settlements (_APPLY).
# Returns {refused ("" / daily / monthly), sd, hd, sm, hm}.
_HOLD = _APPLY + """
apply(ARGV, 9)
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for _, id in ipairs(expired) do redis.call('HDEL', KEYS[2], id) end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1]) end
local hd, hm = 0, 0
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do
  local amount, day, month = string.match(v, '^(%d+) (%S+) (%S+)$')
  if day == ARGV[4] then hd = hd + tonumber(amount) end
  if month == ARGV[5] then hm = hm + tonumber(amount) end
end
local sd = tonumber(redis.call('HGET', KEYS[3], 'd:' .. ARGV[4]) or '0')
local sm = tonumber(redis.call('HGET', KEYS[3], 'm:' .. ARGV[5]) or '0')
local n = tonumber(ARGV[3])
if n < 0 then return {'', tostring(sd), tostring(hd), tostring(sm), tostring(hm)} end
local daily, monthly = tonumber(ARGV[6]), tonumber(ARGV[7])
if daily >= 0 and sd + hd + n > daily then return {'daily'} end
if monthly >= 0 and sm + hm + n > monthly then return {'monthly'} end
redis.call('ZADD', KEYS[1], ARGV[8], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. ARGV[5])
return {''}
"""

# Holds asked for in one turn of the event loop, decided in one script (group commit: one round
# trip instead of one per request; a script runs alone on the server, so this is as atomic across
# workers as one script per hold, each hold seeing the ones before it). ARGV: now; the holds,
# packed, per hold: id, key id, nanos, day, month, daily, monthly budget (-1: none), expiry; the
# queued settlements, packed (_APPLY). Returns one verdict per hold ("" / daily / monthly), each
# followed by a newline.
_HOLD_MANY = _APPLY + """
local now, H = ARGV[1], split(ARGV[2])
apply(split(ARGV[3]), 1)
local totals, out = {}, {}
for i = 1, #H, 8 do
  local id, kid, n, day, month = H[i], H[i + 1], tonumber(H[i + 2]), H[i + 3], H[i + 4]
  local holds, hold = 'dsk:gw:holds:' .. kid, 'dsk:gw:hold:' .. kid
  local tk = kid .. ' ' .. day .. ' ' .. month
  local t = totals[tk]
  if not t then
    local expired = redis.call('ZRANGEBYSCORE', holds, '-inf', now)
    for _, e in ipairs(expired) do redis.call('HDEL', hold, e) end
    if #expired > 0 then redis.call('ZREMRANGEBYSCORE', holds, '-inf', now) end
    local hd, hm = 0, 0
    for _, v in ipairs(redis.call('HVALS', hold)) do
      local amount, d, m = string.match(v, '^(%d+) (%S+) (%S+)$')
      if d == day then hd = hd + tonumber(amount) end
      if m == month then hm = hm + tonumber(amount) end
    end
    local spend = 'dsk:gw:spend:' .. kid
    t = {tonumber(redis.call('HGET', spend, 'd:' .. day) or '0'), hd,
         tonumber(redis.call('HGET', spend, 'm:' .. month) or '0'), hm}
    totals[tk] = t
  end
  local daily, monthly = tonumber(H[i + 5]), tonumber(H[i + 6])
  if daily >= 0 and t[1] + t[2] + n > daily then
    out[#out + 1] = 'daily\\n'
  elseif monthly >= 0 and t[3] + t[4] + n > monthly then
    out[#out + 1] = 'monthly\\n'
  else
    t[2] = t[2] + n
    t[4] = t[4] + n
    redis.call('ZADD', holds, H[i + 7], id)
    redis.call('HSET', hold, id, H[i + 2] .. ' ' .. day .. ' ' .. month)
    out[#out + 1] = '\\n'
  end
end
return table.concat(out)
"""

# KEYS: hash:<hmac>. Returns the record JSON of a live key, or false.
_LOOKUP = """
local id = redis.call('GET', KEYS[1])
if not id then return false end
return redis.call('HGET', 'dsk:gw:key:' .. id, 'data')
"""


def _safe_url(url: str) -> str:
    p = urlsplit(url)
    return url.replace(f":{p.password}@", ":****@") if p.password else url


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class RedisState(StateBase):
    """`GatewayState` over a redis-server (redis.asyncio; one connection pool per state)."""

    def __init__(self, url: str, *, pepper: bytes, clock: Callable[[], datetime] | None,
                 reservation_ttl: float) -> None:
        super().__init__(pepper=pepper, clock=clock, reservation_ttl=reservation_ttl)
        try:
            import redis.asyncio as aioredis
        except ImportError:
            raise GatewayKeyError("a redis:// gateway state needs the redis package: "
                                  "pip install 'deepseek-kit[redis]'") from None
        self._url = _safe_url(url)
        # A blocking pool: a burst of requests waits for one of `_POOL` connections instead of
        # failing with "Too many connections" (redis-py's default pool raises).
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=_POOL, timeout=10,
                                                        socket_connect_timeout=10)
        self._r = aioredis.Redis(connection_pool=pool)
        self._hold = self._r.register_script(_HOLD)
        self._hold_many = self._r.register_script(_HOLD_MANY)
        self._holds: list[tuple[list[Any], list[Settle], asyncio.Future[str | None]]] = []
        self._hold_tasks: set[asyncio.Task[None]] = set()
        self._settle_script = self._r.register_script(_SETTLE)
        self._lookup_script = self._r.register_script(_LOOKUP)

    def __repr__(self) -> str:
        return f"<RedisState {self._url} keys cached={len(self._cache)}>"

    # -- keys --------------------------------------------------------------------------------------

    async def _generation(self) -> int:
        return int(await self._r.get(_P + "gen") or 0)

    async def _lookup(self, token_hash: str) -> VirtualKey | None:
        data = await self._lookup_script(keys=[f"{_P}hash:{token_hash}"])
        if not data:
            return None
        rec = record_from_json(data)
        return None if rec.revoked_at is not None else rec.key

    async def _insert_key(self, token_hash: str, rec: KeyRecord) -> None:
        kid = rec.key.id
        async with self._r.pipeline(transaction=True) as p:
            p.hset(f"{_P}key:{kid}", mapping={"data": record_to_json(rec), "hash": token_hash})
            p.set(f"{_P}hash:{token_hash}", kid)
            p.sadd(_P + "ids", kid)
            await p.execute()

    async def _replace_key(self, rec: KeyRecord, old_hash: str | None, new_hash: str | None) -> None:
        kid = rec.key.id
        async with self._r.pipeline(transaction=True) as p:
            if old_hash:
                p.delete(f"{_P}hash:{old_hash}")
            if new_hash:
                p.set(f"{_P}hash:{new_hash}", kid)
            p.hset(f"{_P}key:{kid}", mapping={"data": record_to_json(rec), "hash": new_hash or ""})
            p.incr(_P + "gen")
            await p.execute()

    async def _records(self) -> list[tuple[str, KeyRecord]]:
        ids = sorted(_s(i) for i in await self._r.smembers(_P + "ids"))
        if not ids:
            return []
        async with self._r.pipeline(transaction=False) as p:
            for kid in ids:
                p.hmget(f"{_P}key:{kid}", ["hash", "data"])
            rows = await p.execute()
        return [(_s(h or b""), record_from_json(d)) for h, d in rows if d is not None]

    # -- budgets -----------------------------------------------------------------------------------

    def _budget_keys(self, key_id: str) -> list[str]:
        return [f"{_P}holds:{key_id}", f"{_P}hold:{key_id}", f"{_P}spend:{key_id}"]

    async def _reserve(self, res: Reservation, nanos: int, daily: int, monthly: int,
                       expires: float, now: float, settles: list[Settle]) -> str | None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str | None] = loop.create_future()
        args = [res.id, res.key_id, nanos, res.day, res.month, daily, monthly, repr(expires)]
        self._holds.append((args, settles, fut))
        if len(self._holds) == 1:  # the first of this loop turn: decide them all on the next
            loop.call_soon(self._decide_holds, repr(now))
        return await fut

    def _decide_holds(self, now: str) -> None:
        batch, self._holds = self._holds, []
        task = asyncio.get_running_loop().create_task(self._decide(now, batch))
        self._hold_tasks.add(task)
        task.add_done_callback(self._hold_tasks.discard)

    async def _decide(self, now: str, batch: list[tuple[list[Any], list[Settle], asyncio.Future[str | None]]],
                      ) -> None:
        args = [now, pack(v for a, _, _ in batch for v in a),
                pack(v for _, settles, _ in batch for st in settles for v in st)]
        try:
            out = _s(await self._hold_many(keys=[], args=args)).split("\n")[:-1]
        except Exception as exc:  # each caller gets the store's error (state_admin.store_call)
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        except BaseException:  # cancelled (shutdown): so are the callers waiting on it
            for _, _, fut in batch:
                fut.cancel()
            raise
        for (_, _, fut), verdict in zip(batch, out, strict=True):
            if not fut.done():
                fut.set_result(verdict or None)

    async def _settle_many(self, settles: list[Settle]) -> None:
        await self._settle_script(keys=[], args=[pack(v for st in settles for v in st)])

    async def _totals(self, key_id: str, day: str, month: str, now: float) -> tuple[int, int, int, int]:
        out = await self._hold(keys=self._budget_keys(key_id),
                               args=[repr(now), "", -1, day, month, -1, -1, 0])
        return int(out[1]), int(out[2]), int(out[3]), int(out[4])

    # -- usage rows --------------------------------------------------------------------------------

    async def _write_usage(self, rows: dict[tuple[str, str, str], list[int]]) -> None:
        async with self._r.pipeline(transaction=False) as p:
            for (kid, day, model), (n, cost) in rows.items():
                p.hincrby(f"{_P}usage:{kid}", f"{day}|{model}|n", n)
                p.hincrby(f"{_P}usage:{kid}", f"{day}|{model}|c", cost)
            await p.execute()

    async def _usage_rows(self, key_id: str, since: str) -> list[UsageRow]:
        raw = await self._r.hgetall(f"{_P}usage:{key_id}")
        acc: dict[tuple[str, str], list[int]] = {}
        for field, value in raw.items():
            day, _, rest = _s(field).partition("|")
            model, _, kind = rest.rpartition("|")
            if day < since:
                continue
            row = acc.setdefault((day, model), [0, 0])
            row[0 if kind == "n" else 1] += int(value)
        return [UsageRow(d, m, n, from_nanos(c)) for (d, m), (n, c) in sorted(acc.items())]

    async def _close(self) -> None:
        await self._r.aclose(close_connection_pool=True)
