"""The Lua scripts of the Redis limits backend (`_steps/limits/redis.py` explains the design).

Each runs atomically in Redis. Times come from Redis's `TIME` and are stored with `%.6f` (Lua's
default number formatting keeps only 14 digits). Keys of one quota share a hash tag, so a cluster
keeps them in one slot: `dsk:lim:{<scope>}:s` (hash: adaptive factor `f`, last shrink `sa`, rate
timestamps `tr`/`tt`, last start `ls`, ticket sequence `seq`, epoch `ep`, Redis time of the last
acquire `lu`), `:l` (leases, scored by expiry), `:q` (queued tickets, scored by sequence) and `:a`
(tickets, scored by expiry).

If Redis's clock steps back (an NTP step on its host), `acquire` finds `now < lu` and moves the
rate timestamps back by the same amount, so the schedule stays relative: without that every turn
would wait for the size of the step (an hour's step = an hour's wait, or a QueueTimeoutError).

The epoch `ep` is a random id set by the first `acquire` that finds the state hash without one: a
Redis restart, a flush or an idle expiry gives a new epoch, which tells holders of turns reserved
in the old state that their schedule is gone (`_steps/limits/redis.py`, docs/attack-round-2026-12.md, R1).
"""

from collections.abc import Iterable
from typing import Any

__all__ = ["ACQUIRE", "EPOCH", "RELEASE", "RENEW", "SPLIT", "STATE", "pack"]


def pack(values: Iterable[Any]) -> str:
    """Per-request fields as one script argument, each followed by a newline (`SPLIT` takes them
    apart). redis-py encodes every argument on its own (type checks and a length header each),
    which cost more CPU than the round trip itself with three to five arguments per request. The
    fields are our lease ids and numbers: none holds a newline."""
    return "".join([f"{v}\n" for v in values])


# A Lua `split` for `pack`ed arguments; the gateway's Redis state uses both too.
SPLIT = """
local function split(s)
  local t = {}
  for v in string.gmatch(s, '([^\\n]*)\\n') do t[#t + 1] = v end
  return t
end
"""

# The release logic, shared by RELEASE and ACQUIRE (which takes the releases queued for its quota
# first, in the same call: see `_steps/limits/redis.py`). E holds (lease id or "", token correction,
# outcome: 1 ok, 0 neutral, -1 rate limited) per finished request from index `i0`, in the order they
# finished. Returns the adaptive factor and whether someone queued should look again (a slot freed or
# the factor grew).
_RELEASE_FN = """
local function release(st, leases, now, ti, dec, inc, floor, cooldown, E, i0)
  local s = redis.call('HMGET', st, 'f', 'sa')
  local f = tonumber(s[1]) or 1
  local f0, sa, shrunk = f, tonumber(s[2]) or 0, false
  local freed, corr = 0, 0
  for i = i0, #E, 3 do
    if E[i] ~= '' then freed = freed + redis.call('ZREM', leases, E[i]) end
    local diff, outcome = tonumber(E[i + 1]), tonumber(E[i + 2])
    if diff ~= 0 and ti > 0 then corr = corr + diff * ti / f end
    if outcome > 0 and f < 1 then
      f = math.min(1, f + inc)
    elseif outcome < 0 and now - sa >= cooldown then
      f = math.max(floor, f * dec)
      sa, shrunk = now, true
    end
  end
  if corr ~= 0 then redis.call('HINCRBYFLOAT', st, 'tt', string.format('%.6f', corr)) end
  if shrunk then redis.call('HSET', st, 'sa', string.format('%.6f', sa)) end
  if f ~= f0 then redis.call('HSET', st, 'f', string.format('%.6f', f)) end
  return f, freed > 0 or f > f0
end
"""

# KEYS: state, leases, queue, alive. ARGV: cap, s/request, s/token, request burst, token burst, lease
# ttl, idle expiry ms, wake channel, epoch to set if none, scope, the ids to drop (packed), then
# (ticket, tokens, budget s or -1) per waiter in order (packed), then "" or the releases to apply
# first (packed: decrease, increase, floor, cooldown, then the finished requests as RELEASE takes
# them). Returns, each field followed by a newline: factor (after those releases), cap in force,
# seconds to the next expiry (-1 none), the epoch, then (status, wait) per waiter: "ok", "wait"
# (queued) or "rpm"/"tpm" (refused: over budget).
ACQUIRE = SPLIT + _RELEASE_FN + """
local st, leases, queue, alive = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cap, ri, ti = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local wake = false
local R = split(ARGV[13])
if #R > 0 then
  local _
  _, wake = release(st, leases, now, ti, tonumber(R[1]), tonumber(R[2]), tonumber(R[3]), tonumber(R[4]), R, 5)
end
local rb, tb, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
redis.call('HSETNX', st, 'ep', ARGV[9])
local s = redis.call('HMGET', st, 'f', 'tr', 'tt', 'ls', 'ep', 'lu')
local f = tonumber(s[1]) or 1
local tat_r, tat_t, last = tonumber(s[2]) or 0, tonumber(s[3]) or 0, tonumber(s[4]) or 0
local changed = false
local lu = tonumber(s[6])
if lu and now < lu then
  local d = lu - now
  tat_r, tat_t, last, changed = tat_r - d, tat_t - d, last - d, true
end
redis.call('HSET', st, 'lu', string.format('%.6f', now))
local freed = 0
for _, id in ipairs(split(ARGV[11])) do
  freed = freed + redis.call('ZREM', leases, id)
  redis.call('ZREM', queue, id)
  redis.call('ZREM', alive, id)
end
local held, capnow = 0, 0
if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
  local dead = redis.call('ZRANGEBYSCORE', alive, '-inf', now)
  for _, d in ipairs(dead) do redis.call('ZREM', queue, d) end
  if #dead > 0 then redis.call('ZREMRANGEBYSCORE', alive, '-inf', now) end
  held = redis.call('ZCARD', leases)
  capnow = math.max(1, math.floor(cap * f + 1e-9))
end
local out = {}
local blocked = false
local W = split(ARGV[12])
for i = 1, #W, 3 do
  local id, tokens, budget = W[i], tonumber(W[i + 1]), tonumber(W[i + 2])
  local go = true
  if cap > 0 then
    if not redis.call('ZSCORE', queue, id) then
      redis.call('ZADD', queue, redis.call('HINCRBY', st, 'seq', 1), id)
    end
    redis.call('ZADD', alive, string.format('%.6f', now + ttl), id)
    if blocked or redis.call('ZRANK', queue, id) >= capnow - held then
      go = false
      blocked = true
    end
  end
  if go then
    local start, why = math.max(now, last), 'rpm'
    local nr, nt = tat_r, tat_t
    if ri > 0 then
      local r = ri / f
      local t0 = math.max(tat_r, now)
      nr = t0 + r
      start = math.max(start, t0 + (math.min(1, rb) - rb) * r)
    end
    if ti > 0 and tokens > 0 then
      local r = ti / f
      local t0 = math.max(tat_t, now)
      nt = t0 + tokens * r
      local s2 = t0 + (math.min(tokens, tb) - tb) * r
      if s2 > start then start, why = s2, 'tpm' end
    end
    local wait = start - now
    if cap > 0 then
      redis.call('ZREM', queue, id)
      redis.call('ZREM', alive, id)
    end
    if budget >= 0 and wait > budget then
      out[#out + 1] = why
    else
      tat_r, tat_t, last, changed = nr, nt, start, true
      if cap > 0 then
        redis.call('ZADD', leases, string.format('%.6f', now + ttl), id)
        held = held + 1
      end
      out[#out + 1] = 'ok'
    end
    out[#out + 1] = tostring(wait)
  else
    out[#out + 1] = 'wait'
    out[#out + 1] = '0'
  end
end
if changed then
  redis.call('HSET', st, 'tr', string.format('%.6f', tat_r), 'tt', string.format('%.6f', tat_t),
             'ls', string.format('%.6f', last))
end
local nxt = -1
if cap > 0 then
  for _, k in ipairs({leases, alive}) do
    local e = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')
    if e[2] and (nxt < 0 or tonumber(e[2]) - now < nxt) then nxt = math.max(0, tonumber(e[2]) - now) end
  end
  if freed > 0 then wake = true end
end
if wake and redis.call('ZCARD', queue) > 0 then redis.call('PUBLISH', ARGV[8], ARGV[10]) end
for _, k in ipairs(KEYS) do redis.call('PEXPIRE', k, ARGV[7]) end
table.insert(out, 1, s[5])
table.insert(out, 1, tostring(nxt))
table.insert(out, 1, capnow)
table.insert(out, 1, tostring(f))
out[#out + 1] = ''
return table.concat(out, '\\n')
"""

# KEYS: state, leases, queue. ARGV: s/token, decrease, increase, floor, cooldown, channel, scope, idle
# expiry ms, then the finished requests (packed, as `_RELEASE_FN` reads them). Returns the adaptive
# factor.
RELEASE = SPLIT + _RELEASE_FN + """
local st, leases, queue = KEYS[1], KEYS[2], KEYS[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local f, wake = release(st, leases, now, tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
                        tonumber(ARGV[4]), tonumber(ARGV[5]), split(ARGV[9]), 1)
if wake and redis.call('ZCARD', queue) > 0 then redis.call('PUBLISH', ARGV[6], ARGV[7]) end
redis.call('PEXPIRE', st, ARGV[8])
return tostring(f)
"""

# KEYS: state, leases, alive. ARGV: ttl, the epoch the caller's leases were granted in, how many
# lease ids follow, the lease ids, then ticket ids. A state whose epoch differs (Redis restarted or
# was flushed: the leases are gone) gets the leases back, so the in-flight cap counts them again.
# Returns how many leases were re-created.
RENEW = """
local t = redis.call('TIME')
local exp = string.format('%.6f', tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1]))
local lost = redis.call('HGET', KEYS[1], 'ep') ~= ARGV[2]
local n, back = tonumber(ARGV[3]), 0
for i = 4, #ARGV do
  if i < 4 + n then
    if lost then
      back = back + redis.call('ZADD', KEYS[2], exp, ARGV[i])
    else
      redis.call('ZADD', KEYS[2], 'XX', exp, ARGV[i])
    end
  else
    redis.call('ZADD', KEYS[3], 'XX', exp, ARGV[i])
  end
end
return back
"""

# KEYS: state. Returns the epoch, or nil when the state is gone (restarted or flushed Redis).
EPOCH = """
return redis.call('HGET', KEYS[1], 'ep')
"""

# KEYS: state, leases, queue, alive. Returns factor, leases held, tickets queued.
STATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local dead = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)
for _, d in ipairs(dead) do redis.call('ZREM', KEYS[3], d) end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
return {tostring(tonumber(redis.call('HGET', KEYS[1], 'f')) or 1), redis.call('ZCARD', KEYS[2]),
        redis.call('ZCARD', KEYS[3])}
"""
