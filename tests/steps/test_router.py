"""Endpoints, failover, breaker, hedging and strategies against two or more real emulators."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from deepseek_kit import (
    AllEndpointsFailedError,
    AsyncClient,
    BadRequestError,
    BreakerPolicy,
    Endpoint,
    RetryPolicy,
    Routing,
    Timeout,
)

MSGS = [{"role": "user", "content": "route me"}]
FAST = RetryPolicy(max_retries=2, initial_delay=0.01, max_delay=0.02)


def n(emu) -> int:
    return emu.state.requests_per_path.get("/chat/completions", 0)


def client(*endpoints, routing=None, timeout=None):
    return AsyncClient(endpoints=list(endpoints), routing=routing, retry=FAST,
                       timeout=timeout or Timeout(first_token=10, idle=10, total=30))


async def ask(c, **kw):
    return await c.chat.completions.create(model="deepseek-flash", messages=MSGS, **kw)


async def test_503_moves_to_next_endpoint_at_once(emulator_factory):
    a = emulator_factory(faults="status=503")
    b = emulator_factory()
    c = client(Endpoint(a.base_url, name="a", api_key="sk-a"), Endpoint(b.base_url, name="b", api_key="sk-b",
                                                                         priority=1))
    r = await ask(c)
    assert r.choices[0].message.content
    assert n(a) == 1 and n(b) == 1  # no retry on a: straight to b
    await c.close()


async def test_killed_endpoint_fails_over_mid_run(emulator_factory):
    a, b = emulator_factory(), emulator_factory()
    c = client(
        Endpoint(a.base_url, name="a", api_key="sk-a"),
        Endpoint(b.base_url, name="b", priority=1, api_key="sk-router-test"),
    )
    for _ in range(3):
        await ask(c)
    assert n(a) == 3 and n(b) == 0
    a.stop()  # the primary dies
    for _ in range(3):
        s = await ask(c, stream=True)
        assert (await s.until_done()).choices[0].message.content
    assert n(b) == 3
    await c.close()


async def test_caller_errors_never_fail_over(emulator_factory):
    a, b = emulator_factory(), emulator_factory()
    c = client(
        Endpoint(a.base_url, name="a", api_key="sk-router-test"),
        Endpoint(b.base_url, name="b", api_key="sk-router-test"),
    )
    with pytest.raises(BadRequestError):
        await c.chat.completions.create(model="deepseek-chat", messages=MSGS)  # retired model: 400
    assert n(a) == 1 and n(b) == 0
    await c.close()


async def test_all_endpoints_failed_carries_each_attempt(emulator_factory):
    a, b = emulator_factory(faults="status=503"), emulator_factory(faults="status=500")
    c = client(
        Endpoint(a.base_url, name="a", api_key="sk-router-test"),
        Endpoint(b.base_url, name="b", api_key="sk-router-test"),
    )
    with pytest.raises(AllEndpointsFailedError) as ei:
        await ask(c)
    names = [name for name, _ in ei.value.attempts]
    assert names == ["a", "b"]
    assert [type(e).__name__ for _, e in ei.value.attempts] == [
        "ServiceUnavailableError",
        "InternalServerError",
    ]
    assert n(b) == 3  # the last endpoint still gets its retries (500 retried 2x)
    await c.close()


async def test_first_token_timeout_fails_over_without_retrying(emulator_factory):
    a = emulator_factory(faults="stall_first_token=20;keepalive=0.05")
    b = emulator_factory()
    c = client(
        Endpoint(a.base_url, name="a", api_key="sk-router-test"),
        Endpoint(b.base_url, name="b", api_key="sk-router-test"),
        timeout=Timeout(first_token=0.3, idle=5, total=30),
    )
    t0 = time.monotonic()
    s = await ask(c, stream=True)
    assert (await s.until_done()).choices[0].message.content
    assert n(a) == 1 and n(b) == 1
    assert time.monotonic() - t0 < 10  # did not wait for a's 20 s stall
    await c.close()


async def test_breaker_opens_and_recovers_through_half_open_probe(emulator_factory):
    a = emulator_factory(faults="status=503;times=3")  # unhealthy for 3 requests, then fine
    b = emulator_factory()
    pol = BreakerPolicy(failures=3, open_for=0.4, min_requests=100)
    c = client(
        Endpoint(a.base_url, name="a", breaker=pol, api_key="sk-router-test"),
        Endpoint(b.base_url, name="b", api_key="sk-router-test"),
    )
    brk = c.router.endpoint("a").breaker
    for _ in range(3):
        await ask(c)
    assert brk.state == "open" and n(a) == 3 and n(b) == 3
    for _ in range(4):
        await ask(c)
    assert n(a) == 3 and n(b) == 7  # open: a is skipped entirely
    await asyncio.sleep(0.5)
    await ask(c)  # half-open probe goes to a, which has healed
    assert n(a) == 4 and brk.state == "closed"
    assert brk.transitions == ["open", "half_open", "closed"]
    await ask(c)
    assert n(a) == 5
    await c.close()


async def test_failed_probe_reopens(emulator_factory):
    a, b = emulator_factory(faults="status=503"), emulator_factory()
    c = client(
        Endpoint(
            a.base_url, name="a", breaker=BreakerPolicy(failures=1, open_for=0.2), api_key="sk-router-test"
        ),
        Endpoint(b.base_url, name="b", api_key="sk-router-test"),
    )
    await ask(c)
    await asyncio.sleep(0.3)
    await ask(c)
    assert c.router.endpoint("a").breaker.transitions == ["open", "half_open", "open"]
    assert n(a) == 2 and n(b) == 2
    await c.close()


async def test_hedging_races_a_second_endpoint_and_cancels_the_slow_one(emulator_factory):
    slow = emulator_factory(faults="delay_headers=5")
    fast = emulator_factory()
    c = client(
        Endpoint(slow.base_url, name="slow", api_key="sk-router-test"),
        Endpoint(fast.base_url, name="fast", priority=1, api_key="sk-router-test"),
        routing=Routing(hedge=True, hedge_after=0.2),
    )
    t0 = time.monotonic()
    s = await ask(c, stream=True)
    final = await s.until_done()
    assert final.choices[0].message.content
    assert s.response.endpoint == "fast"
    assert time.monotonic() - t0 < 4  # the answer did not wait for the slow endpoint
    assert n(slow) == 1 and n(fast) == 1
    for _ in range(100):  # the loser was cancelled: its connection is dropped
        if slow.state.in_flight == 0:
            break
        await asyncio.sleep(0.05)
    assert slow.state.in_flight == 0 and slow.state.disconnects >= 1
    await c.close()


async def test_hedging_keeps_the_primary_when_it_answers_in_time(emulator_factory):
    a, b = emulator_factory(), emulator_factory()
    c = client(
        Endpoint(a.base_url, name="a", api_key="sk-router-test"),
        Endpoint(b.base_url, name="b", api_key="sk-router-test"),
        routing=Routing(hedge=True, hedge_after=2.0),
    )
    for _ in range(3):
        await ask(c)
    assert n(a) == 3 and n(b) == 0
    await c.close()


async def test_weighted_strategy_follows_weights(emulator_factory):
    a, b = emulator_factory(), emulator_factory()
    c = client(
        Endpoint(a.base_url, name="a", weight=3, api_key="sk-router-test"),
        Endpoint(b.base_url, name="b", weight=1, api_key="sk-router-test"),
        routing=Routing(strategy="weighted"),
    )
    await asyncio.gather(*(ask(c) for _ in range(400)))
    assert n(a) + n(b) == 400
    assert 2.0 < n(a) / n(b) < 4.5
    await c.close()


async def test_least_latency_prefers_the_faster_endpoint(emulator_factory):
    slow, fast = emulator_factory(faults="delay_headers=0.15"), emulator_factory()
    c = client(
        Endpoint(slow.base_url, name="slow", api_key="sk-router-test"),
        Endpoint(fast.base_url, name="fast", api_key="sk-router-test"),
        routing=Routing(strategy="least_latency"),
    )
    for _ in range(12):
        await ask(c)
    assert n(fast) >= 10 and n(slow) <= 2
    await c.close()


async def test_least_in_flight_spreads_concurrent_calls(emulator_factory):
    a, b = emulator_factory(faults="delay_headers=0.2"), emulator_factory(faults="delay_headers=0.2")
    c = client(
        Endpoint(a.base_url, name="a", api_key="sk-router-test"),
        Endpoint(b.base_url, name="b", api_key="sk-router-test"),
        routing=Routing(strategy="least_in_flight"),
    )
    await asyncio.gather(*(ask(c) for _ in range(20)))
    assert n(a) == 10 and n(b) == 10
    await c.close()


async def test_model_names_are_mapped_per_endpoint(emulator_factory):
    a = emulator_factory()
    c = client(
        Endpoint(a.base_url, name="a", models={"house-model": "deepseek-v4-pro"}, api_key="sk-router-test")
    )
    r = await c.chat.completions.create(model="house-model", messages=MSGS)
    assert r.model == "deepseek-v4-pro"
    _path, body = a.state.recent[-1]
    assert json.loads(body)["model"] == "deepseek-v4-pro"
    await c.close()


def test_endpoint_values_are_checked():
    from deepseek_kit import UsageError

    with pytest.raises(UsageError, match="base_url"):
        Endpoint("localhost:8000")
    with pytest.raises(UsageError, match="strategy"):
        Routing(strategy="fastest")
    with pytest.raises(UsageError, match="unique"):
        AsyncClient(
            endpoints=[
                Endpoint("http://a:1", name="x", api_key="sk-router-test"),
                Endpoint("http://b:1", name="x", api_key="sk-router-test"),
            ]
        )
    assert "sk-" not in repr(Endpoint("http://a:1", api_key="sk-secret-1234"))


# -- routing attacks of the 2026-12 round (all against real emulators) --------------------------------


def emitted(emu) -> int:
    return emu.state.requests_per_path.get("/chat/completions", 0)


async def test_only_endpoints_restricts_the_order(emulator_factory):
    from deepseek_kit import UsageError

    a, b = emulator_factory(), emulator_factory()
    c = client(
        Endpoint(a.base_url, name="a", api_key="k"), Endpoint(b.base_url, name="b", api_key="k", priority=1)
    )
    async with c:
        r = await c.request(
            "POST",
            "/chat/completions",
            body=json.dumps({"model": "deepseek-flash", "messages": MSGS}).encode(),
            options={"only_endpoints": frozenset({"b"})},
        )
        assert r.endpoint == "b" and n(a) == 0 and n(b) == 1
        with pytest.raises(UsageError, match="only_endpoints"):
            await c.request(
                "POST", "/chat/completions", body=b"{}", options={"only_endpoints": frozenset({"zz"})}
            )


async def test_every_breaker_open_fails_fast_then_probes_again(emulator_factory):
    a, b = emulator_factory(faults="status=503"), emulator_factory(faults="status=503")
    pol = BreakerPolicy(failures=1, open_for=0.5)
    c = client(Endpoint(a.base_url, name="a", api_key="k", breaker=pol),
               Endpoint(b.base_url, name="b", api_key="k", priority=1, breaker=pol))
    async with c:
        with pytest.raises(AllEndpointsFailedError):
            await ask(c)
        assert [h.state for h in c.endpoints()] == ["open", "open"]
        sent = n(a), n(b)
        t0 = time.monotonic()
        with pytest.raises(AllEndpointsFailedError, match="circuit breaker of a is open"):
            await ask(c)
        assert time.monotonic() - t0 < 0.2 and (n(a), n(b)) == sent  # nothing sent
        await asyncio.sleep(0.6)
        assert [h.state for h in c.endpoints()] == ["half_open", "half_open"]
        with pytest.raises(AllEndpointsFailedError):
            await ask(c, max_retries=0)  # both probed once, both failed: open again
        assert (n(a), n(b)) == (sent[0] + 1, sent[1] + 1)
        assert [h.state for h in c.endpoints()] == ["open", "open"]


async def test_all_weights_zero_is_priority_failover(emulator_factory):
    from deepseek_kit import UsageError

    a, b = emulator_factory(faults="status=503"), emulator_factory()
    c = client(Endpoint(a.base_url, name="a", api_key="k", weight=0),
               Endpoint(b.base_url, name="b", api_key="k", weight=0, priority=1),
               routing=Routing(strategy="weighted"))
    async with c:
        for _ in range(3):
            assert (await ask(c)).choices[0].message.content
    assert n(b) == 3
    for bad in (float("nan"), float("inf"), -1):
        with pytest.raises(UsageError, match="weight"):
            Endpoint(a.base_url, weight=bad)


async def test_hedge_where_both_answer_at_once_frees_the_loser(emulator_factory):
    from deepseek_kit import Limits

    a, b = emulator_factory(), emulator_factory()
    c = AsyncClient(endpoints=[Endpoint(a.base_url, name="a", api_key="k"),
                               Endpoint(b.base_url, name="b", api_key="k", priority=1)],
                    routing=Routing(hedge=True, hedge_after=0.0), retry=FAST, metrics=True,
                    limits=Limits(max_in_flight=2, max_queue_wait=5))
    async with c:
        for stream in (False, True, False, True):
            r = await ask(c, stream=stream)
            if stream:
                r = await r.until_done()
            assert r.choices[0].message.content
        # hedge_after=0 is "race at once", not "unset" (which meant a 2 s default): the second
        # endpoint was started every time (it may lose before it sent anything)
        assert n(a) + n(b) > 4 and c.metrics.snapshot()["by_endpoint"]["b"]["tries"] == 4
        # the losers are cancelled and closed in the background: wait for that (bounded), not a
        # fixed 0.1 s, which a loaded machine outlasted
        async def released():
            states = [(await c.limits.state(scope=f"default|{name}")).in_flight for name in ("a", "b")]
            return [h.in_flight for h in c.endpoints()] == [0, 0] and states == [0, 0]

        for _ in range(200):
            if await released():
                break
            await asyncio.sleep(0.025)
        assert [h.in_flight for h in c.endpoints()] == [0, 0]
        for name in ("a", "b"):  # every slot given back, including the losers' streams
            assert (await c.limits.state(scope=f"default|{name}")).in_flight == 0
        assert c.metrics.snapshot()["hedged"] >= 1


async def test_primary_failing_before_the_hedge_delay_still_fails_over(emulator_factory):
    a, b = emulator_factory(faults="status=503"), emulator_factory()
    c = client(
        Endpoint(a.base_url, name="a", api_key="k"),
        Endpoint(b.base_url, name="b", api_key="k", priority=1),
        routing=Routing(hedge=True, hedge_after=5.0),
    )
    async with c:
        t0 = time.monotonic()
        assert (await ask(c)).choices[0].message.content
        assert time.monotonic() - t0 < 2.0 and n(b) == 1


async def test_429_with_a_huge_retry_after_fails_over_instead_of_waiting(emulator_factory):
    a = emulator_factory(faults="status=429;retry_after=100000")
    b = emulator_factory()
    c = AsyncClient(endpoints=[Endpoint(a.base_url, name="a", api_key="k"),
                               Endpoint(b.base_url, name="b", api_key="k", priority=1)],
                    timeout=Timeout(total=120))
    async with c:
        t0 = time.monotonic()
        assert (await ask(c)).choices[0].message.content
        assert time.monotonic() - t0 < 5 and n(a) == 1 and n(b) == 1


async def test_cancelled_half_open_probe_does_not_wedge_the_endpoint(emulator_factory):
    a = emulator_factory()
    c = client(Endpoint(a.base_url, name="a", api_key="k", breaker=BreakerPolicy(failures=1, open_for=0.3)))
    async with c:
        with pytest.raises(AllEndpointsFailedError):
            await ask(c, max_retries=0, extra_headers={"X-DSK-Emulate": "status=503"})
        await asyncio.sleep(0.4)
        probe = asyncio.ensure_future(ask(c, extra_headers={"X-DSK-Emulate": "stall_first_token=30"}))
        await asyncio.sleep(0.5)  # the probe hangs ...
        assert c.endpoints()[0].in_flight == 1
        probe.cancel()  # ... and its caller gives up
        with pytest.raises(asyncio.CancelledError):
            await probe
        assert (await ask(c)).choices[0].message.content  # a new probe goes through
        assert c.endpoints()[0].state == "closed"


async def test_400_during_a_half_open_probe_does_not_wedge_the_endpoint(emulator_factory):
    a = emulator_factory()
    c = client(Endpoint(a.base_url, name="a", api_key="k", breaker=BreakerPolicy(failures=1, open_for=0.3)))
    async with c:
        with pytest.raises(AllEndpointsFailedError):
            await ask(c, max_retries=0, extra_headers={"X-DSK-Emulate": "status=503"})
        await asyncio.sleep(0.4)
        with pytest.raises(BadRequestError):
            await ask(c, extra_headers={"X-DSK-Emulate": "status=400"})  # the probe: a caller's error
        assert (await ask(c)).choices[0].message.content
        assert c.endpoints()[0].state == "closed"


async def test_429_storm_on_the_primary_moves_to_the_secondary_at_once(emulator_factory):
    """A 429 says this account is at its rate or concurrency limit
    (docs/deepseek-api-notes.md#errors-and-status-codes, #rate-limits-and-concurrency):
    another endpoint (another account) can serve now, so no Retry-After wait on the primary."""
    a = emulator_factory(faults="status=429;retry_after=1")
    b = emulator_factory()
    c = AsyncClient(endpoints=[Endpoint(a.base_url, name="a", api_key="k"),
                               Endpoint(b.base_url, name="b", api_key="k", priority=1)])
    async with c:
        t0 = time.monotonic()
        for _ in range(8):
            assert (await ask(c)).choices[0].message.content
        assert time.monotonic() - t0 < 3
        assert n(a) == 5 and n(b) == 8  # one try each until a's breaker opened (5 in a row)
        assert c.endpoints()[0].state == "open"


@pytest.mark.parametrize("body", [b"{not json", b"[" * 100_000 + b"]" * 100_000])
async def test_model_mapping_never_crashes_on_a_body_it_cannot_read(emulator_factory, body):
    """The router reads the body only to map model names; a body that is not JSON (or is nested
    past the decoder's depth) is the server's to judge: a typed error from its answer, never a
    msgspec.DecodeError or RecursionError out of the router."""
    from deepseek_kit import DeepSeekError

    a = emulator_factory()
    c = client(Endpoint(a.base_url, name="a", api_key="k", models={"deepseek-flash": "x"}))
    async with c:
        with pytest.raises(DeepSeekError):  # the emulator's 400 (or 500 before its E3 fix)
            await c.request("POST", "/chat/completions", body=body, max_retries=0)
        assert n(a) == 1  # it was sent
