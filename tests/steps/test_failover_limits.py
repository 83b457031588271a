"""Failover with limits on (docs/routing-and-limits.md) and one deadline for the whole call (attack C5).

Real sockets only: a hung primary emulator (`stall_first_token`: accepts, never answers), a healthy
secondary, local and Redis limits. The numbers of the issue are scaled down (first_token=2 instead
of 20, max_queue_wait=1.5 instead of 15) so the matrix stays fast; one run keeps the exact numbers.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from deepseek_kit import (
    AllEndpointsFailedError,
    AsyncClient,
    Endpoint,
    Limits,
    QueueTimeoutError,
    RetryPolicy,
    Routing,
    Timeout,
)
from tests.helpers.servers import serve_app

MSGS = [{"role": "user", "content": "fail over please"}]


def _limits(request, kind: str, **kw) -> Limits:
    url = request.getfixturevalue("redis_url") if kind == "redis" else None
    return Limits(redis_url=url, **kw)


def _pair(emulator_factory, stall: float):
    hung = emulator_factory(faults=f"stall_first_token={stall}")
    healthy = emulator_factory()
    return (Endpoint(hung.base_url, name="hung", api_key="sk-hung"),
            Endpoint(healthy.base_url, name="healthy", api_key="sk-ok", priority=1))


async def _wave(c: AsyncClient, n: int) -> tuple[list[object], float]:
    t0 = time.monotonic()
    out = await asyncio.gather(*(c.chat.completions.create(model="deepseek-flash", messages=MSGS)
                                 for _ in range(n)), return_exceptions=True)
    return out, time.monotonic() - t0


def _errors(out: list[object]) -> list[str]:
    return [f"{type(r).__name__}: {r}" for r in out if isinstance(r, BaseException)]


@pytest.mark.parametrize("hedge", [False, True], ids=["failover", "hedge"])
@pytest.mark.parametrize("kind", ["local", "redis"])
async def test_hung_primary_never_blocks_the_healthy_secondary(request, emulator_factory, kind, hedge):
    first_token = 2.0
    hung, healthy = _pair(emulator_factory, 600)
    c = AsyncClient(endpoints=[hung, healthy], routing=Routing(hedge=hedge),
                    limits=_limits(request, kind, max_in_flight=4, max_queue_wait=1.5),
                    timeout=Timeout(first_token=first_token, idle=10, total=60), metrics=True)
    try:
        out, took = await _wave(c, 20)
        assert _errors(out) == []
        assert took < first_token + 3
        # The stuck calls count against the hung endpoint's breaker (first-token timeouts, or hedge
        # losers); the healthy one saw only successes.
        health = {h.name: h for h in c.endpoints()}
        assert health["hung"].consecutive_failures >= 4
        assert health["healthy"].consecutive_failures == 0
        assert health["hung"].in_flight == 0
        # Redis frees the slots of ended calls in the background: wait for that (state() flushes).
        assert (await c.limits.state(scope="default|hung")).in_flight == 0
        # A second wave: four more calls get stuck, the breaker opens (default: 5 in a row) ...
        out, took = await _wave(c, 20)
        assert _errors(out) == [] and took < first_token + 3
        assert c.endpoints()[0].state == "open"
        # ... and from then on nothing waits for the hung endpoint at all.
        out, took = await _wave(c, 20)
        assert _errors(out) == [] and took < first_token
        snap = c.metrics.snapshot()
        assert snap["by_endpoint"]["healthy"]["ok"] == 60
        assert snap["failovers"] >= 8
    finally:
        await c.close()


async def test_hung_primary_at_the_issue_numbers(emulator_factory):
    """The issue's exact repro: first_token=20, max_queue_wait=15, max_in_flight=4, 20 calls."""
    hung, healthy = _pair(emulator_factory, 600)
    c = AsyncClient(endpoints=[hung, healthy], limits=Limits(max_in_flight=4, max_queue_wait=15),
                    timeout=Timeout(first_token=20))
    try:
        out, took = await _wave(c, 20)
        assert _errors(out) == []
        assert took < 20 + 4
    finally:
        await c.close()


async def test_a_shared_quota_is_still_possible(emulator_factory):
    """`Limits(per=())` with endpoints: one quota for all of them (e.g. one account behind two
    URLs). The hung endpoint then holds the shared slots; the rest queue and time out typed."""
    hung, healthy = _pair(emulator_factory, 600)
    c = AsyncClient(endpoints=[hung, healthy], limits=Limits(max_in_flight=2, max_queue_wait=0.5, per=()),
                    timeout=Timeout(first_token=3, total=10))
    try:
        out, _ = await _wave(c, 4)
        errs = [r for r in out if isinstance(r, BaseException)]
        assert errs and all(isinstance(e, (AllEndpointsFailedError, QueueTimeoutError)) for e in errs)
    finally:
        await c.close()


# -- C5: one deadline for the whole call ------------------------------------------------------------


@pytest.fixture
def silent_server():
    """A server that accepts connections and never answers (N such endpoints = N hung upstreams)."""
    s = socket.create_server(("127.0.0.1", 0))
    s.listen(64)
    conns: list[socket.socket] = []
    stop = False

    import threading

    def accept() -> None:
        while not stop:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            conns.append(conn)

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{s.getsockname()[1]}"
    stop = True
    s.close()
    for conn in conns:
        conn.close()


@pytest.mark.parametrize("hedge", [False, True], ids=["failover", "hedge"])
async def test_total_bounds_the_whole_call_across_endpoints(silent_server, hedge):
    eps = [Endpoint(silent_server + f"/e{i}", name=f"e{i}", api_key="k") for i in range(4)]
    c = AsyncClient(endpoints=eps, routing=Routing(hedge=hedge, hedge_after=0.3),
                    retry=RetryPolicy(max_retries=2, initial_delay=0.01),
                    timeout=Timeout(total=2, first_token=100))
    try:
        t0 = time.monotonic()
        with pytest.raises(AllEndpointsFailedError) as ei:
            await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
        took = time.monotonic() - t0
        assert took < 2 + 1.0, took
        assert "total" in str(ei.value)
    finally:
        await c.close()


async def test_limits_cache_single_flight_and_failover_together(emulator_factory):
    """Identical calls coalesce behind one leader (cache single-flight); the leader is stuck on
    the hung endpoint's slot holder or moves on; everyone gets the one answer in time."""
    from deepseek_kit import CachePolicy

    hung, healthy = _pair(emulator_factory, 600)
    c = AsyncClient(endpoints=[hung, healthy], limits=Limits(max_in_flight=2, max_queue_wait=1.5),
                    cache=CachePolicy(), timeout=Timeout(first_token=2, total=30), metrics=True)
    try:
        t0 = time.monotonic()
        calls = [
            c.chat.completions.create(model="deepseek-flash", messages=MSGS, thinking=False, temperature=0)
            for _ in range(10)
        ]
        others = [
            c.chat.completions.create(
                model="deepseek-flash",
                thinking=False,
                temperature=0,
                messages=[{"role": "user", "content": f"q{i}"}],
            )
            for i in range(6)
        ]
        out = await asyncio.gather(*calls, *others, return_exceptions=True)
        assert _errors(out) == []
        assert time.monotonic() - t0 < 2 + 3
        same = {r.choices[0].message.content for r in out[:10]}
        assert len(same) == 1  # one answer for the ten identical calls
        assert c.cache.stats.coalesced + c.cache.stats.hits >= 9
    finally:
        await c.close()


@pytest.fixture
async def flapping(emulator):
    """A proxy in front of the emulator that answers every other request with a 503."""
    from aiohttp import ClientSession, web

    count = 0
    session = ClientSession()

    async def handle(request: web.Request) -> web.Response:
        nonlocal count
        count += 1
        if count % 2 == 0:
            return web.json_response({"error": {"message": "Server Overloaded", "type": "server_error"}},
                                     status=503)
        async with session.post(emulator.base_url + "/chat/completions", data=await request.read(),
                                headers={"Authorization": request.headers.get("Authorization", ""),
                                         "Content-Type": "application/json"}) as r:
            return web.Response(body=await r.read(), status=r.status, content_type="application/json")

    app = web.Application()
    app.router.add_post("/chat/completions", handle)
    async with session, serve_app(app) as url:
        yield url


async def test_endpoint_flapping_opens_its_breaker_and_calls_still_succeed(flapping, emulator_factory):
    """Every other call to the primary fails: the error-rate rule opens its breaker; every call
    is answered (by the secondary when needed)."""
    from deepseek_kit import BreakerPolicy

    b = emulator_factory()
    c = AsyncClient(endpoints=[Endpoint(flapping, name="a", api_key="k",
                                        breaker=BreakerPolicy(failures=5, window=10, min_requests=6,
                                                              error_rate=0.5, open_for=30)),
                               Endpoint(b.base_url, name="b", api_key="k", priority=1)],
                    retry=RetryPolicy(max_retries=0), metrics=True)
    try:
        for _ in range(20):
            r = await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
            assert r.choices[0].message.content
        assert c.endpoints()[0].state == "open"
        by = c.metrics.snapshot()["by_endpoint"]
        assert by["a"]["breaker_open"] > 0 and by["a"]["ok"] >= 3
    finally:
        await c.close()


async def test_queue_timeouts_on_a_busy_healthy_endpoint_do_not_open_its_breaker(emulator_factory):
    """Overload, not ill health: the last endpoint answers (slowly) while calls queue for it and
    time out. Those queue timeouts must not open its breaker (a stuck endpoint's do)."""
    hung, _ = _pair(emulator_factory, 600)
    slow = emulator_factory(faults="delay_headers=0.3")
    c = AsyncClient(endpoints=[hung, Endpoint(slow.base_url, name="slow", api_key="k", priority=1)],
                    limits=Limits(max_in_flight=1, max_queue_wait=0.5),
                    timeout=Timeout(first_token=1, total=10), retry=RetryPolicy(max_retries=0))
    try:
        out, _ = await _wave(c, 12)
        errs = [r for r in out if isinstance(r, BaseException)]
        assert errs  # some calls did queue out: the test's premise
        assert any(isinstance(r, BaseException) is False for r in out)
        slow_health = c.endpoints()[1]
        assert slow_health.state == "closed" and slow_health.failures == 0
    finally:
        await c.close()


@pytest.mark.parametrize("kind", ["local", "redis"])
async def test_caller_cancelling_mid_race_leaks_no_slot(request, emulator_factory, kind):
    a = emulator_factory(faults="stall_first_token=600")
    b = emulator_factory(faults="stall_first_token=600")
    c = AsyncClient(endpoints=[Endpoint(a.base_url, name="a", api_key="k"),
                               Endpoint(b.base_url, name="b", api_key="k", priority=1)],
                    routing=Routing(hedge=True, hedge_after=0.1),
                    limits=_limits(request, kind, max_in_flight=2, max_queue_wait=5),
                    timeout=Timeout(first_token=30, total=60))
    try:
        calls = [asyncio.ensure_future(c.chat.completions.create(model="deepseek-flash", messages=MSGS))
                 for _ in range(3)]
        await asyncio.sleep(0.6)
        assert sum(h.in_flight for h in c.endpoints()) >= 3  # every call is racing or waiting
        for t in calls:
            t.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        assert [h.in_flight for h in c.endpoints()] == [0, 0]
        for name in ("a", "b"):
            assert (await c.limits.state(scope=f"default|{name}")).in_flight == 0
        assert [h.state for h in c.endpoints()] == ["closed", "closed"]  # the caller left: no blame
    finally:
        await c.close()
