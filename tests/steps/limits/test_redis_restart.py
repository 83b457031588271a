"""Redis limits across a Redis restart or flush (docs/attack-round-2026-12.md, R1, and the attacks after it).

A redis-server of our own on a fixed port (`--save ''`: a restart starts empty, as in the finding),
restarted or flushed mid-run while callers hold reserved turns. The rate after the reset must stay
the configured one (plus at most one burst), not double while the old reservations drain.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess

import pytest

from deepseek_kit._steps.limits.redis import RedisLimiter
from deepseek_kit._steps.limits.step import LimitBackendError, Limits, QueueTimeoutError
from tests.helpers.net import free_port
from tests.helpers.redis import start_redis


def _cmd(port: int, *words: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall((f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)).encode())
        return s.recv(256)


class RestartableRedis:
    """redis-server on one port that can be killed and started again, empty."""

    def __init__(self, workdir, *extra: str) -> None:
        self.workdir, self.extra = workdir, extra
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = start_redis(self.port, self.workdir, *self.extra)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()


@pytest.fixture
def own_redis(tmp_path):
    r = RestartableRedis(tmp_path)
    r.start()
    yield r
    r.kill()


async def _run(
    limiter: RedisLimiter, callers: int, duration: float, at: float, reset
) -> tuple[list[float], int]:
    """`callers` loops acquiring turns for `duration` s (then cancelled); `reset()` runs (in a
    thread) at `at` s. Returns the grant times (s from the start) and how many acquisitions
    failed (Redis down)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    grants: list[float] = []
    failed = 0

    async def caller() -> None:
        nonlocal failed
        while True:
            try:
                lease = await limiter.acquire("", 1, None)
            except LimitBackendError:
                failed += 1
                await asyncio.sleep(0.05)
                continue
            grants.append(loop.time() - t0)
            lease.finish(1, 1)

    tasks = [asyncio.create_task(caller()) for _ in range(callers)]
    await asyncio.sleep(at)
    await asyncio.to_thread(reset)
    await asyncio.sleep(max(0.0, duration - (loop.time() - t0)))
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return [g for g in grants if g < duration], failed


@pytest.mark.parametrize("how", ["restart", "flushall"])
async def test_rate_survives_a_redis_reset_mid_run(own_redis, how):
    # 600 rpm = one turn per 0.1 s; 20 callers keep ~2 s of turns reserved ahead of the clock.
    rpm, callers, duration, at = 600, 20, 4.0, 1.5
    limiter = RedisLimiter(Limits(rpm=rpm, burst=0.1, redis_url=own_redis.url, max_queue_wait=None,
                                  name=f"r1-{how}"))  # burst 0.1 s = one turn at once
    reset = own_redis.restart if how == "restart" else (lambda: _cmd(own_redis.port, "FLUSHALL"))
    try:
        grants, failed = await _run(limiter, callers, duration, at, reset)
    finally:
        await limiter.aclose()
    after = [g for g in grants if g >= at]
    allowed = (duration - at) * rpm / 60  # 25 turns in the 2.5 s after the reset
    # Before the fix: ~45 (old reservations drain at 10/s while new ones start at 10/s from empty).
    assert len(after) <= allowed + 3, (len(after), allowed, failed)
    assert len(after) >= allowed * 0.6  # and the limiter still works after the reset
    before = [g for g in grants if g < at]
    assert len(before) <= at * rpm / 60 + 2


async def test_reset_seen_only_by_another_process_still_holds_the_rate(own_redis):
    """Process A only has callers sleeping on reserved turns; process B starts after the restart.
    A never sends an acquire in between, so it learns of the reset only by the check at the end of
    each sleep. (Two limiters with their own connections stand for two processes.)"""
    rpm, at, duration = 600, 1.0, 3.0

    def mk() -> RedisLimiter:
        return RedisLimiter(Limits(rpm=rpm, burst=0.1, redis_url=own_redis.url, max_queue_wait=None,
                                   name="r1-two"))

    a, b = mk(), mk()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    grants: list[float] = []

    async def once(lim: RedisLimiter) -> None:
        while True:
            try:
                lease = await lim.acquire("", 1, None)
                break
            except LimitBackendError:
                await asyncio.sleep(0.05)
        grants.append(loop.time() - t0)
        lease.finish(1, 1)

    try:
        # A: 30 callers, one turn each: reservations ~3 s ahead, all sent before the restart.
        sleepers = [asyncio.create_task(once(a)) for _ in range(30)]
        await asyncio.sleep(at)
        await asyncio.to_thread(own_redis.restart)

        async def b_loop() -> None:
            while True:
                await once(b)

        bs = [asyncio.create_task(b_loop()) for _ in range(10)]
        await asyncio.sleep(duration - at)
        for t in [*sleepers, *bs]:
            t.cancel()
        await asyncio.gather(*sleepers, *bs, return_exceptions=True)
    finally:
        await a.aclose()
        await b.aclose()
    after = [g for g in grants if at <= g < duration]
    allowed = (duration - at) * rpm / 60  # 20
    assert len(after) <= allowed + 3, (len(after), allowed)  # before the fix: ~40
    assert len(after) >= allowed * 0.6


async def test_redis_clock_stepping_back_does_not_stall_the_quota(own_redis):
    """An NTP step back of Redis's clock, as the state sees it: every stored time (the last
    acquire `lu`, the rate timestamps) suddenly lies an hour ahead of Redis's TIME."""
    import redis.asyncio

    lim = RedisLimiter(Limits(rpm=600, burst=0.1, redis_url=own_redis.url, max_queue_wait=5, name="step"))
    r = redis.asyncio.Redis.from_url(own_redis.url)
    try:
        (await lim.acquire("", 1, 5.0)).finish(1, 1)
        sec, usec = await r.time()
        ahead = sec + usec / 1e6 + 3600
        await r.hset("dsk:lim:{}:s", mapping={"lu": f"{ahead:.6f}", "tr": f"{ahead + 0.1:.6f}",
                                                "ls": f"{ahead:.6f}"})
        loop = asyncio.get_running_loop()
        t = loop.time()
        for _ in range(3):  # before the fix: QueueTimeoutError (each turn would wait an hour)
            (await lim.acquire("", 1, 5.0)).finish(1, 1)
        assert loop.time() - t < 2.0  # 3 turns at 10/s
    finally:
        await r.aclose()
        await lim.aclose()


async def test_redis_out_of_memory_is_a_typed_error_that_says_so(tmp_path):
    import redis.asyncio

    srv = RestartableRedis(tmp_path, "--maxmemory", "2mb", "--maxmemory-policy", "noeviction")
    srv.start()
    r = redis.asyncio.Redis.from_url(srv.url)
    lim = RedisLimiter(Limits(rpm=600, max_in_flight=2, redis_url=srv.url, max_queue_wait=5, name="oom"))
    try:
        with pytest.raises(redis.exceptions.ResponseError):  # fill it up
            for i in range(10_000):
                await r.set(f"junk{i}", "x" * 10_000)
        loop = asyncio.get_running_loop()
        t = loop.time()
        with pytest.raises(LimitBackendError) as e:
            await lim.acquire("", 1, 5.0)
        assert loop.time() - t < 2.0  # at once, not after max_queue_wait
        assert "out of memory" in str(e.value) and "maxmemory" in str(e.value)
        assert "request was not sent" in str(e.value)
    finally:
        await r.aclose()
        await lim.aclose()
        srv.kill()


async def test_in_flight_cap_counts_leases_held_across_a_restart(own_redis):
    """A holds the whole cap when Redis restarts empty; B, another process, must not get a slot
    once A's leases are back (A's next renewal, within lease_ttl/3), only when A releases one."""
    ttl = 1.5
    mk = lambda: RedisLimiter(Limits(max_in_flight=3, redis_url=own_redis.url, lease_ttl=ttl,  # noqa: E731
                                     max_queue_wait=None, name="cap-reset"))
    a, b = mk(), mk()
    try:
        held = [await a.acquire("", 1, None) for _ in range(3)]
        await asyncio.to_thread(own_redis.restart)
        # A's renewals: one may hit the restart, the next puts them back
        await asyncio.sleep(ttl / 3 * 2 + 0.2)
        with pytest.raises(QueueTimeoutError):  # before the fix: B is granted at once (cap 3 + 1 in flight)
            await b.acquire("", 1, 1.0)
        held.pop().finish(1, 1)
        lease = await asyncio.wait_for(b.acquire("", 1, 5.0), 5.0)  # the freed slot goes to B
        lease.finish(1, 1)
    finally:
        for lease in held:
            lease.finish(1, 1)
        await a.aclose()
        await b.aclose()
