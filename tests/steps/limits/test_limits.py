"""Limits (rpm, tpm, in-flight, FIFO, queue timeout, adaptive) against the real emulator.

One suite, run against both backends: `kind` is "local" (in-process) or "redis" (a real
redis-server from the conftest fixture; a missing redis-server fails, never skips). The Redis-only
tests at the end cover what only a shared store has: processes that die holding a lease, several
processes (here: several independent limiters) queueing in one FIFO, and Redis being down.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from deepseek_kit import AsyncClient, RateLimitError, UsageError
from deepseek_kit._steps.limits.step import (
    Adaptive,
    LimitBackendError,
    Limits,
    LimitStep,
    QueueTimeoutError,
    estimate_tokens,
)

MODEL = "deepseek-flash"


@pytest.fixture(params=["local", "redis"])
def kind(request):
    return request.param


@pytest.fixture
def make_limits(kind, request):
    """make_limits(**fields) -> Limits on this test's backend."""
    url = request.getfixturevalue("redis_url") if kind == "redis" else None

    def make(**kw):
        kw.setdefault("name", request.node.name.replace("[", "-").replace("]", ""))
        return Limits(redis_url=url, **kw)

    return make


@pytest.fixture
async def open_clients():
    """client(step, emulator, **kw) -> an AsyncClient with `step` inside retry; all closed after."""
    made = []

    def client(step, emu, **kw):
        if "retry" not in kw:
            kw.setdefault("max_retries", 0)
        c = AsyncClient(api_key="sk-limits-test", base_url=emu.base_url,
                        inner_steps=[step] if step is not None else [], **kw)
        made.append((c, step))
        return c

    yield client
    for c, step in made:
        await c.close()
        if step is not None:
            await step.aclose()


def ask(client, text="hi", *, emulate=None, stream=False, model=MODEL, **kw):
    headers = {"X-DSK-Emulate": emulate} if emulate else None
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}],
                                          stream=stream, extra_headers=headers, **kw)


class Recorder:
    """An inner step below the limiter: the loop time at which each attempt was let through."""

    def __init__(self):
        self.times = []

    async def handle(self, request, call_next):
        self.times.append(asyncio.get_running_loop().time())
        return await call_next(request)


# -- in flight ---------------------------------------------------------------------------------------


async def test_in_flight_cap_holds_under_load(make_limits, emulator, open_clients):
    step = LimitStep(make_limits(max_in_flight=3))
    c = open_clients(step, emulator)
    rs = await asyncio.gather(*(ask(c, f"q{i}", emulate="delay_headers=0.05") for i in range(24)))
    assert len(rs) == 24
    assert emulator.state.max_in_flight == 3
    st = await step.state()
    assert (st.in_flight, st.waiting, st.max_in_flight) == (0, 0, 3)


async def test_stream_holds_its_slot_until_it_ends(make_limits, emulator, open_clients):
    step = LimitStep(make_limits(max_in_flight=2, max_queue_wait=0.3))
    c = open_clients(step, emulator)
    s1 = await ask(c, "a", stream=True)
    s2 = await ask(c, "b", stream=True)
    assert (await step.state()).in_flight == 2
    with pytest.raises(QueueTimeoutError) as ei:
        await ask(c, "c")
    assert ei.value.limit == "in_flight"
    assert "max_queue_wait" in str(ei.value)
    async for _ in s1:  # read to the end: the slot frees
        pass
    assert (await step.state()).in_flight == 1
    await ask(c, "d")
    await s2.aclose()  # leaving early frees it too
    assert (await step.state()).in_flight == 0
    assert emulator.state.total_requests == 3


async def test_cancelled_waiters_leave_the_queue(make_limits, emulator, open_clients):
    step = LimitStep(make_limits(max_in_flight=1))
    c = open_clients(step, emulator)
    holder = await ask(c, "holder", stream=True)
    waiters = [asyncio.create_task(ask(c, f"w{i}")) for i in range(3)]
    await asyncio.sleep(0.2)
    assert (await step.state()).waiting == 3
    waiters[0].cancel()
    waiters[1].cancel()
    await asyncio.gather(*waiters[:2], return_exceptions=True)
    await holder.aclose()
    r = await asyncio.wait_for(waiters[2], 10)
    assert r.choices[0].message.content
    st = await step.state()
    assert (st.in_flight, st.waiting) == (0, 0)
    assert emulator.state.total_requests == 2


async def test_fifo_order(make_limits, emulator, open_clients):
    step = LimitStep(make_limits(max_in_flight=1))
    c = open_clients(step, emulator)
    holder = await ask(c, "holder", stream=True)
    tasks = []
    for i in range(8):
        tasks.append(asyncio.create_task(ask(c, f"order {i}")))
        await asyncio.sleep(0.01)
    await holder.aclose()
    await asyncio.wait_for(asyncio.gather(*tasks), 20)
    seen = [b["messages"][0]["content"] for b in emulator.state.recent_bodies][1:]
    assert seen == [f"order {i}" for i in range(8)]


async def test_two_clients_share_one_quota_in_arrival_order(kind, make_limits, emulator, open_clients):
    """Local: two clients share one step. Redis: two independent limiters with one name, as two
    processes would - their waiters interleave in one FIFO."""
    lim = make_limits(max_in_flight=1)
    step_a = LimitStep(lim)
    step_b = step_a if kind == "local" else LimitStep(lim)
    a, b = open_clients(step_a, emulator), open_clients(step_b, emulator)
    holder = await ask(a, "holder", stream=True)
    tasks = []
    for i in range(6):
        tasks.append(asyncio.create_task(ask(a if i % 2 == 0 else b, f"turn {i}")))
        await asyncio.sleep(0.05)
    await holder.aclose()
    await asyncio.wait_for(asyncio.gather(*tasks), 20)
    seen = [m["messages"][0]["content"] for m in emulator.state.recent_bodies][1:]
    assert seen == [f"turn {i}" for i in range(6)]


# -- rates -------------------------------------------------------------------------------------------


async def test_rpm_burst_then_refusal_counts(make_limits, emulator, open_clients):
    """rpm=60 with a 3 s burst: three go at once; the next would wait about a second, more than the
    0.5 s allowed, so it is refused at once instead of after a useless wait."""
    step = LimitStep(make_limits(rpm=60, burst=3, max_queue_wait=0.5))
    c = open_clients(step, emulator)
    results = await asyncio.gather(*(ask(c, f"r{i}") for i in range(5)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 2
    assert all(isinstance(e, QueueTimeoutError) and e.limit == "rpm" for e in errors)
    assert emulator.state.total_requests == 3


async def test_rpm_paces_waiting_requests(make_limits, emulator, open_clients):
    rec = Recorder()
    step = LimitStep(make_limits(rpm=1200, burst=0.05))  # 20/s, one at a time
    c = AsyncClient(api_key="sk-limits-test", base_url=emulator.base_url, inner_steps=[step, rec])
    try:
        await asyncio.gather(*(ask(c, f"p{i}") for i in range(8)))
    finally:
        await c.close()
        await step.aclose()
    t = sorted(rec.times)
    assert len(t) == 8
    # GCRA: the k-th request is let through no earlier than k intervals after the first.
    # (A lower bound only: a slow machine can make the spacing larger, never smaller.)
    assert t[-1] - t[0] >= 7 * 0.05 * 0.9


async def test_every_retry_takes_a_token(make_limits, emulator, open_clients):
    from deepseek_kit import RetryPolicy

    step = LimitStep(make_limits(rpm=60, burst=3, max_queue_wait=0.2))
    c = open_clients(step, emulator, retry=RetryPolicy(max_retries=2, initial_delay=0.0))
    r = await ask(c, "x", emulate="status=500;times=2;key=retry-token")
    assert r.choices[0].message.content
    assert emulator.state.total_requests == 3
    with pytest.raises(QueueTimeoutError):
        await ask(c, "y")
    assert emulator.state.total_requests == 3


async def test_tpm_estimate_is_corrected_down_by_usage(make_limits, emulator, open_clients):
    """The estimate (prompt + max_tokens=1000) fills most of a 1200-token bucket; the real usage
    is a few dozen tokens, so the correction lets the next request go at once."""
    step = LimitStep(make_limits(tpm=600, burst=120, max_queue_wait=0.2))  # 10 tokens/s, 1200 burst
    c = open_clients(step, emulator)
    r1 = await ask(c, "one", max_tokens=1000, emulate="tokens=5")
    assert r1.usage.total_tokens < 150
    r2 = await ask(c, "two", max_tokens=1000, emulate="tokens=5")
    assert r2.usage.total_tokens < 150
    # Streams are corrected when they end.
    s = await ask(c, "three", stream=True, max_tokens=1000, emulate="tokens=5")
    async for _ in s:
        pass
    await ask(c, "four", max_tokens=1000, emulate="tokens=5")
    assert emulator.state.total_requests == 4


@pytest.mark.parametrize("stream", [False, True])
async def test_tpm_estimate_is_corrected_up_by_usage(make_limits, emulator, open_clients, stream):
    """With no max_tokens and default_max_tokens=0 the estimate is the prompt alone; the answer uses
    more than the whole 1200-token bucket, the correction charges it, and the next request must
    wait."""
    step = LimitStep(make_limits(tpm=600, burst=120, max_queue_wait=0.2, default_max_tokens=0))
    c = open_clients(step, emulator)
    r = await ask(c, "long", stream=stream, emulate="tokens=1200")
    if stream:
        async for _ in r:
            pass
        used = r.get_final_completion().usage.total_tokens
    else:
        used = r.usage.total_tokens
    assert used > 1200
    with pytest.raises(QueueTimeoutError) as ei:
        await ask(c, "next")
    assert ei.value.limit == "tpm"
    assert emulator.state.total_requests == 1


async def test_error_answers_use_no_tokens(make_limits, emulator, open_clients):
    step = LimitStep(make_limits(tpm=600, burst=120, max_queue_wait=0.2))
    c = open_clients(step, emulator)
    for i in range(3):  # each estimate ~1000; without the refund the third would not fit
        with pytest.raises(Exception) as ei:
            await ask(c, "bad", max_tokens=1000, emulate=f"status=400;key=refund{i}")
        assert not isinstance(ei.value, QueueTimeoutError)
    await ask(c, "good", max_tokens=1000, emulate="tokens=5")


# -- scopes ------------------------------------------------------------------------------------------


async def test_per_model_scope(make_limits, emulator, open_clients):
    step = LimitStep(make_limits(max_in_flight=1, per=("model",), max_queue_wait=0.3))
    c = open_clients(step, emulator)
    flash = await ask(c, "a", stream=True, model="deepseek-flash")
    await ask(c, "b", model="deepseek-v4-pro")  # another model: its own slot
    with pytest.raises(QueueTimeoutError):
        await ask(c, "c", model="deepseek-flash")
    await flash.aclose()


async def test_per_key_scope(make_limits, emulator, open_clients):
    lim = make_limits(max_in_flight=1, per="key", max_queue_wait=0.3)
    step_a, step_b = LimitStep(lim, api_key="sk-aaaa1111"), LimitStep(lim, api_key="sk-bbbb2222")
    a, b = open_clients(step_a, emulator), open_clients(step_b, emulator)
    held = await ask(a, "a", stream=True)
    await ask(b, "b")  # a different key: a different quota
    with pytest.raises(QueueTimeoutError):
        await ask(a, "a2")
    await held.aclose()
    assert "sk-aaaa1111" not in step_a.scope(_req(emulator))


def _req(emu):
    from deepseek_kit import Request, Timeout

    return Request("POST", emu.base_url + "/chat/completions", "/chat/completions", timeout=Timeout())


# -- adaptive ----------------------------------------------------------------------------------------


async def test_429_shrinks_and_successes_grow_back(make_limits, emulator, open_clients):
    ad = Adaptive(decrease=0.5, increase=0.05, cooldown=0)
    step = LimitStep(make_limits(max_in_flight=4, adaptive=ad))
    c = open_clients(step, emulator)
    with pytest.raises(RateLimitError):
        await ask(c, "x", emulate="status=429;times=1;key=adaptive")
    st = await step.state()
    assert (st.factor, st.max_in_flight) == (0.5, 2)
    emulator.state.reset_counters()
    await asyncio.gather(*(ask(c, f"s{i}", emulate="delay_headers=0.1") for i in range(4)))
    assert emulator.state.max_in_flight == 2  # factor 0.5..0.6 -> cap 2 throughout
    for i in range(6):
        await ask(c, f"t{i}")
    st = await step.state()
    assert st.factor == pytest.approx(1.0) and st.max_in_flight == 4
    emulator.state.reset_counters()
    await asyncio.gather(*(ask(c, f"u{i}", emulate="delay_headers=0.1") for i in range(8)))
    assert emulator.state.max_in_flight == 4


async def test_adaptive_settles_under_the_servers_concurrency_limit(make_limits, emulator_factory,
                                                                    open_clients):
    """The account allows 2 at once (the emulator answers 429 beyond,
    docs/deepseek-api-notes.md#rate-limits-and-concurrency); the client was told 8.
    429s shrink the client's cap until the retried requests all get through."""
    from deepseek_kit import RetryPolicy

    emu = emulator_factory(concurrency_limits={MODEL: 2})
    step = LimitStep(make_limits(max_in_flight=8, adaptive=Adaptive(decrease=0.5, increase=0.0,
                                                                      cooldown=0.05)))
    c = open_clients(step, emu, retry=RetryPolicy(max_retries=8, initial_delay=0.05, max_delay=0.2))
    rs = await asyncio.gather(*(ask(c, f"c{i}", emulate="stall_first_token=0.1", max_retries=8)
                                for i in range(16)))
    assert len(rs) == 16
    assert emu.state.statuses[429] >= 1
    st = await step.state()
    assert st.factor < 1 and st.max_in_flight <= 4


async def test_fixed_limits_ignore_429(make_limits, emulator, open_clients):
    step = LimitStep(make_limits(max_in_flight=4, adaptive=None))
    c = open_clients(step, emulator)
    with pytest.raises(RateLimitError):
        await ask(c, "x", emulate="status=429;times=1;key=fixed")
    assert (await step.state()).factor == 1.0


# -- total timeout bounds the wait ---------------------------------------------------------------------


async def test_wait_is_bounded_by_the_calls_total_timeout(make_limits, emulator, open_clients):
    from deepseek_kit import Timeout

    step = LimitStep(make_limits(max_in_flight=1, max_queue_wait=None))
    c = open_clients(step, emulator)
    held = await ask(c, "a", stream=True)
    with pytest.raises(QueueTimeoutError):
        await ask(c, "b", timeout=Timeout(total=0.3))
    await held.aclose()


# -- through the client's own `limits=` argument -------------------------------------------------------


async def test_client_limits_argument(make_limits, emulator):
    async with AsyncClient(api_key="sk-limits-test", base_url=emulator.base_url,
                           limits=make_limits(max_in_flight=2)) as c:
        await asyncio.gather(*(ask(c, f"q{i}", emulate="delay_headers=0.05") for i in range(8)))
        assert emulator.state.max_in_flight == 2
        held = await ask(c, "s", stream=True)
        assert (await c.limits.state()).in_flight == 1
        await held.aclose()
        assert (await c.limits.state()).in_flight == 0


def test_sync_client_limits(make_limits, emulator):
    from deepseek_kit import Client

    with Client(api_key="sk-limits-test", base_url=emulator.base_url,
                limits=make_limits(rpm=60, burst=2, max_queue_wait=0.3), max_retries=0) as c:
        ask(c, "a")
        ask(c, "b")
        with pytest.raises(QueueTimeoutError):
            ask(c, "c")
    assert emulator.state.total_requests == 2


# -- Redis only: dead holders, several processes, Redis down -----------------------------------------

_HOLDER = textwrap.dedent("""
    import asyncio, sys
    from deepseek_kit._steps.limits.step import Limits
    from deepseek_kit._steps.limits.redis import RedisLimiter

    async def main():
        lim = RedisLimiter(Limits(max_in_flight=1, redis_url=sys.argv[1], name="dies", lease_ttl=1.0))
        await lim.acquire("dies", 0, 5.0)
        print("HOLDING", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
""")


async def test_lease_of_a_killed_process_expires(redis_url):
    from deepseek_kit._steps.limits.redis import RedisLimiter

    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", _HOLDER, redis_url,
                                                stdout=subprocess.PIPE)
    me = RedisLimiter(Limits(max_in_flight=1, redis_url=redis_url, name="dies", lease_ttl=1.0))
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.strip() == b"HOLDING"
        # Alive, it renews: after three lease lifetimes the slot is still taken.
        with pytest.raises(QueueTimeoutError):
            await me.acquire("dies", 0, 3.0)
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 10)
        t0 = time.monotonic()
        lease = await me.acquire("dies", 0, 20.0)  # freed within lease_ttl of the last renewal
        assert time.monotonic() - t0 < 20
        lease.finish(None, 1)
        st = await me.state("dies")
        assert (st.in_flight, st.waiting) == (0, 0)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await me.aclose()


async def test_redis_down_is_a_typed_error(emulator, open_clients):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    step = LimitStep(Limits(max_in_flight=2, redis_url=f"redis://:secretpw@127.0.0.1:{port}/0"))
    c = open_clients(step, emulator)
    with pytest.raises(LimitBackendError) as ei:
        await ask(c, "x")
    assert "secretpw" not in str(ei.value)
    assert emulator.state.total_requests == 0


# -- pure logic ----------------------------------------------------------------------------------------


def test_estimate_uses_deepseeks_character_ratios():
    ascii_body = b'{"model":"m","messages":[{"role":"user","content":"' + b"a" * 1000 + b'"}]}'
    n = len(ascii_body)
    assert estimate_tokens(ascii_body, 0) == -(-n * 3 // 10)
    assert estimate_tokens(ascii_body, 4096) == -(-n * 3 // 10) + 4096
    zh = '{"model":"m","max_tokens":100,"messages":[{"content":"' + "中" * 100 + '"}]}'
    b = zh.encode()
    ascii_chars = len(zh) - 100
    assert estimate_tokens(b, 4096) == int(-(-(ascii_chars * 0.3 + 100 * 0.6) // 1)) + 100
    assert estimate_tokens(None) == 0 and estimate_tokens(b"") == 0
    assert estimate_tokens(b"not json", 10) == 3 + 10


@pytest.mark.parametrize("bad", [dict(rpm=0), dict(tpm=-1), dict(max_in_flight=0),
                                 dict(max_in_flight=1.5), dict(per=("user",)), dict(burst=0),
                                 dict(name="a{b}"), dict(max_queue_wait=-1), dict(lease_ttl=0)])
def test_bad_limits_say_what_to_fix(bad):
    with pytest.raises(UsageError):
        Limits(**bad)


def test_adaptive_validation():
    with pytest.raises(UsageError):
        Adaptive(decrease=0)
    with pytest.raises(UsageError):
        Adaptive(floor=2)
    assert Limits(per="model").per == ("model",)
    # As a config-file table gives them:
    lim = Limits(per=["key", "model"], adaptive={"decrease": 0.7})
    assert lim.per == ("key", "model") and lim.adaptive == Adaptive(decrease=0.7)
    assert Limits(adaptive=False).adaptive is None and Limits(adaptive=True).adaptive == Adaptive()
    with pytest.raises(UsageError):
        Limits(adaptive="fast")
