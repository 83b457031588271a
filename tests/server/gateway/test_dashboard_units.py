"""The dashboard's pure pieces on a hand-moved clock: the live window (rate, error rate, nearest-rank
percentiles, expiry, the 10-second series), session idle and absolute expiry in memory, SQLite and
Redis (seen by another store on the same backend, as another worker would), and the failed-login
limiter per address and overall."""

from __future__ import annotations

import pytest

from deepseek_kit.server.gateway.dashboard.live import LiveStats, percentile
from deepseek_kit.server.gateway.dashboard.session import LoginLimiter, Sessions
from deepseek_kit.server.gateway.dashboard.shared_sessions import RedisSessions, SqliteSessions


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_percentile_is_nearest_rank():
    values = sorted(float(i) for i in range(1, 101))
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50.0, 95.0, 99.0)
    assert percentile([], 50) is None and percentile([7.0], 99) == 7.0


def test_live_window_rates_percentiles_and_expiry():
    clock = Clock()
    live = LiveStats(window=300, clock=clock)
    for i in range(100):
        live.record(seconds=(i + 1) / 100, ttft=(i + 1) / 1000 if i % 2 else None,
                    status=500 if i < 5 else 200)
    snap = live.snapshot()
    assert snap["requests"] == 100 and snap["errors"] == 5 and snap["error_rate"] == 0.05
    assert snap["latency"] == {"p50": 0.5, "p95": 0.95, "p99": 0.99}
    assert snap["ttft"]["p50"] == 0.05 and snap["ttft"]["p99"] == 0.1
    assert abs(snap["rate_per_second"] - 100 / 60) < 1e-9
    assert snap["series"][-1] == 100 and sum(snap["series"]) == 100 and len(snap["series"]) == 30

    clock.now += 90  # out of the rate's minute, still in the window, in an older bucket
    live.record(0.2, None, 200)
    snap = live.snapshot()
    assert snap["requests"] == 101 and abs(snap["rate_per_second"] - 1 / 60) < 1e-9
    assert snap["series"][-1] == 1 and snap["series"][-10] == 100

    clock.now += 301
    snap = live.snapshot()
    assert snap["requests"] == 0 and snap["latency"]["p50"] is None and snap["total"] == 101


async def test_sessions_expire_idle_and_absolute():
    clock = Clock()
    sessions = Sessions(idle=60, absolute=150, cap=2, clock=clock)
    sid, s = await sessions.create()
    assert await sessions.get(sid) is s and await sessions.get("made-up") is None
    assert await sessions.get(None) is None
    for step in (50, 50, 49):  # kept alive by use, until the absolute limit
        clock.now += step
        assert await sessions.get(sid) is s
    clock.now += 1
    assert await sessions.get(sid) is None
    a, _ = await sessions.create()
    clock.now += 61
    assert await sessions.get(a) is None  # idle too long
    first, _ = await sessions.create()
    await sessions.create()
    await sessions.create()
    assert await sessions.get(first) is None  # over the cap: the oldest went
    b, _ = await sessions.create()
    await sessions.drop(b)
    assert await sessions.get(b) is None


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_shared_sessions_expire_and_store_no_session_id(backend, tmp_path, request):
    clock = Clock()
    if backend == "sqlite":
        store: Sessions = SqliteSessions(str(tmp_path / "gw.db"), idle=60, absolute=150, clock=clock)
    else:
        store = RedisSessions(request.getfixturevalue("redis_url"), idle=60, absolute=150, clock=clock)
    try:
        sid, s = await store.create()
        other = SqliteSessions(str(tmp_path / "gw.db"), clock=clock) if backend == "sqlite" else \
            RedisSessions(request.getfixturevalue("redis_url"), clock=clock)
        try:
            seen = await other.get(sid)  # another worker knows it
            assert seen is not None and seen.csrf == s.csrf
            for step in (50, 50, 49):
                clock.now += step
                assert (await store.get(sid)) is not None
            clock.now += 1
            assert await other.get(sid) is None  # past the absolute limit
            sid2, _ = await store.create()
            await other.drop(sid2)  # a logout on one worker ends it on every one
            assert await store.get(sid2) is None and await store.get("made-up") is None
        finally:
            await other.aclose()
        if backend == "sqlite":
            assert sid.encode() not in (tmp_path / "gw.db").read_bytes()
    finally:
        await store.aclose()


async def test_login_limiter_per_address_and_overall():
    clock = Clock()  # t=1000: 40 s into the 60 s window that began at 960
    lim = LoginLimiter(per_ip=3, overall=5, period=60, clock=clock)

    async def wait(ip: str) -> int:
        return (await lim.attempt(ip)).retry_after  # an attempt let through counts as a failure

    assert [await wait("10.0.0.1") for _ in range(3)] == [0, 0, 0]
    # blocked to the end of the window (20 s), rounded up past it; a refused try is not counted
    assert await wait("10.0.0.1") == 21 and await wait("10.0.0.1") == 21
    assert await wait("10.0.0.2") == 0 and await wait("10.0.0.3") == 0
    assert await wait("10.0.0.9") == 21  # five failures overall: everyone waits
    clock.now += 20
    assert await wait("10.0.0.1") == 1  # the window turned: its 3 still weigh 3 * 60/60
    clock.now += 1
    ok = await lim.attempt("10.0.0.1")
    assert ok.retry_after == 0
    await lim.succeeded(ok)  # a right key: taken back
    assert await wait("10.0.0.1") == 0  # a wrong one: 3 * 59/60 + 1 now, over until 1040
    assert await wait("10.0.0.1") == 20


def test_live_counts_stay_exact_past_the_sample_cap():
    from deepseek_kit.server.gateway.dashboard.live import MAX_SAMPLES

    clock = Clock()
    live = LiveStats(window=300, clock=clock)
    for i in range(MAX_SAMPLES + 500):
        live.record(0.1 if i < 500 else 0.2, None, 200)
    snap = live.snapshot()
    assert snap["requests"] == MAX_SAMPLES + 500  # counted in buckets, not from the capped samples
    assert snap["latency"]["p50"] == 0.2  # the newest samples are the ones kept
