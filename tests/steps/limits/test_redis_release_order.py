"""Redis limits: a request that just finished is counted as finished by the next acquire.

Finished leases and their usage corrections reach Redis in the background (group commit). The
next acquire of the same quota must never be judged before them: a freed slot still held, or a
token estimate not yet corrected, would refuse or delay a request the quota has room for. These
tests finish a lease and acquire again with no await in between, while the background sender is
busy with another quota's call (as under load), so the acquire is sent while the correction is
still queued here.
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio

from deepseek_kit._steps.limits.base import OK
from deepseek_kit._steps.limits.redis import RedisLimiter
from deepseek_kit._steps.limits.step import Limits


@pytest.fixture
async def client(redis_url):
    """A redis client with a few connections already open, so that no call waits for a connect
    (a connect lets the other calls overtake: the order under test would be left to chance)."""
    r = redis.asyncio.Redis.from_url(redis_url)
    await asyncio.gather(*(r.ping() for _ in range(4)))
    yield r
    await r.aclose()


async def _busy_sender(lim: RedisLimiter) -> None:
    """Finish a lease of another quota and let its release go out: the background sender is
    then waiting for Redis's answer when the test finishes the lease it is about."""
    other = await lim.acquire("other", 1, None)
    other.finish(1, OK)
    await asyncio.sleep(0)


async def test_acquire_sees_the_token_correction_of_the_request_before(client):
    """1200-token bucket at 10 tokens/s: a 1000-token estimate leaves room for no other. The
    request used 20: corrected, the next 1000-token estimate fits at once."""
    lim = RedisLimiter(Limits(name="corr", tpm=600, burst=120), client=client)
    try:
        first = await lim.acquire("s", 1000, 0.0)
        await _busy_sender(lim)
        first.finish(20, OK)
        second = await lim.acquire("s", 1000, 0.0)  # refused if judged before the correction
        second.finish(20, OK)
    finally:
        await lim.aclose()


async def test_acquire_sees_the_slot_freed_by_the_request_before(client):
    lim = RedisLimiter(Limits(name="slot", max_in_flight=1), client=client)
    try:
        first = await lim.acquire("s", 0, 0.0)
        await _busy_sender(lim)
        first.finish(None, OK)
        second = await lim.acquire("s", 0, 0.0)  # refused if the slot still looks held
        second.finish(None, OK)
        st = await lim.state("s")
        assert (st.in_flight, st.waiting) == (0, 0)
    finally:
        await lim.aclose()



async def test_acquire_waits_for_the_release_in_flight_and_carries_the_rest(client):
    """Cap 2, both held. The first finishes and its release goes out; the second finishes while
    that call is unanswered. Two acquires then need both slots: they go after the call in flight
    and carry the second release."""
    lim = RedisLimiter(Limits(name="two", max_in_flight=2), client=client)
    try:
        a = await lim.acquire("s", 0, 0.0)
        b = await lim.acquire("s", 0, 0.0)
        a.finish(None, OK)
        await asyncio.sleep(0)  # a's release is on its way
        b.finish(None, OK)
        c, d = await asyncio.gather(lim.acquire("s", 0, 0.0), lim.acquire("s", 0, 0.0))
        c.finish(None, OK)
        d.finish(None, OK)
        st = await lim.state("s")
        assert (st.in_flight, st.waiting) == (0, 0)
    finally:
        await lim.aclose()

@pytest.mark.parametrize("limiters", [1, 2])
async def test_many_cycles_all_complete_and_free_every_slot(redis_url, limiters):
    """50 tasks x 10 acquire/finish cycles on one quota (cap 5, and tokens corrected at each
    finish), through one limiter or two (two processes): every cycle completes, the cap holds, and
    no slot or ticket is left in Redis."""
    lims = [RedisLimiter(Limits(name="load", redis_url=redis_url, max_in_flight=5, tpm=600_000))
            for _ in range(limiters)]
    held = peak = done = 0

    async def cycles(lim: RedisLimiter) -> None:
        nonlocal held, peak, done
        for _ in range(10):
            lease = await lim.acquire("s", 500, 60.0)
            held += 1
            peak = max(peak, held)
            await asyncio.sleep(0)
            held -= 1
            lease.finish(20, OK)
            done += 1

    try:
        await asyncio.wait_for(asyncio.gather(*(cycles(lims[i % limiters]) for i in range(50))), 120)
        assert (done, peak) == (500, 5)
        for lim in lims:
            st = await lim.state("s")
            assert (st.in_flight, st.waiting) == (0, 0)
    finally:
        for lim in lims:
            await lim.aclose()
    r = redis.asyncio.Redis.from_url(redis_url)
    try:
        assert await r.zcard("dsk:lim:{s}:l") == 0 and await r.zcard("dsk:lim:{s}:q") == 0
    finally:
        await r.aclose()
