"""Budget leases (server/gateway/lease.py) on a real SQLite file and a real redis-server: a busy
key's requests are served from one store hold, readings stay exact, a key near the end of its
budget falls back to exact per-request holds (no early refusal in one process), Beijing-day windows
are kept apart, and the overspend bound holds with two processes leasing from one budget."""

import asyncio
from datetime import timedelta
from decimal import Decimal

from deepseek_kit.server.gateway.keys import BudgetExceededError
from deepseek_kit.server.gateway.lease import LEASE_AGE, Leases, lease_size
from deepseek_kit.server.gateway.state import open_state
from tests.helpers.clock import Clock
from tests.server.gateway.test_budget import PEPPER, T0, budget_workers


class _Mono:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_lease_size_rules():
    assert lease_size(10, -1, -1) == 0  # no budget: nothing to lease
    assert lease_size(10, 1_000_000, -1) == 640  # 64 worst cases
    assert lease_size(10, 6_400, 1_000_000) == 100  # 1/64 of the tighter budget
    assert lease_size(10, 1_279, -1) == 0  # 1/64 would cover one request: hold it alone
    assert lease_size(0, 1_000, -1) == 0


def test_leases_close_by_age_and_settle_at_the_last_draw():
    ls = Leases()
    lease = ls.start("h1", "k", "2026-12-03", "2026-12", 100, 10, now=0.0)
    assert ls.draw("k", "2026-12-03", "2026-12", 10, now=0.5) is lease
    assert lease.free == 80 and lease.inflight == 2
    ls.done(lease, 10, 4)  # cost 4 of worst 10: 6 free again
    assert (lease.free, lease.spent, lease.inflight) == (86, 4, 1)
    assert ls.draw("k", "2026-12-03", "2026-12", 90, now=0.5) is None  # does not fit
    assert ls.draw("k", "2026-12-03", "2026-12", 10, now=LEASE_AGE) is None  # too old: closed
    assert lease.closed and ls.take_ready() == []  # a draw is still in flight
    ls.done(lease, 10, 10)
    assert ls.take_ready() == [lease] and lease.spent == 14 and len(ls) == 0
    other = ls.start("h2", "k", "2026-12-04", "2026-12", 100, 10, now=5.0)
    ls.done(other, 10, 3)
    assert ls.draw("k", "2026-12-03", "2026-12", 10, now=5.1) is None  # another day: closed
    assert ls.take_ready() == [other] and (ls.granted, ls.drawn) == (2, 1)


async def test_a_busy_key_is_served_from_one_hold_and_readings_stay_exact(state, state_url):
    _, key = await state.create_key("busy", budget_daily=Decimal("100"))
    state.monotonic = _Mono()  # the lease does not age (nor renew) however slow the machine
    other = open_state(state_url, pepper=PEPPER, clock=state.clock)  # another worker's view
    try:
        worst, charged = Decimal("0.001"), Decimal(0)
        for i in range(40):
            res = await state.reserve(key, worst)
            actual = worst * (i % 5 + 1) / 5
            await state.settle(res, actual)
            charged += actual
        assert (state.leases.granted, state.leases.drawn) == (1, 39)
        # the store saw one hold of 64 worst cases, not 40 holds: the other worker sees it held
        assert await other.remaining(key) == Decimal("100") - 64 * worst
        # a reading in this process gives the lease up: exact, here and for the other worker
        assert await state.spent(key) == (charged, charged)
        assert await state.remaining(key) == Decimal("100") - charged
        assert await other.remaining(key) == Decimal("100") - charged
        assert [(r.requests, r.cost) for r in await state.usage(key.id)] == [(40, charged)]
    finally:
        await other.aclose()


async def test_near_the_end_of_a_budget_every_request_that_fits_is_admitted(state):
    budget, worst = Decimal("0.64"), Decimal("0.001")  # leases of 10 worst cases (1/64 of it)
    _, key = await state.create_key("drain", budget_daily=budget)
    admitted = 0
    while True:
        try:
            res = await state.reserve(key, worst)
        except BudgetExceededError:
            break
        await state.settle(res, worst)  # every request costs its worst case
        admitted += 1
        assert admitted <= 640
    assert admitted == 640  # exactly what fits: no room lost to a lease
    assert state.leases.granted > 1
    assert await state.spent(key) == (budget, budget)
    assert await state.remaining(key) == Decimal(0)


async def test_a_lease_does_not_cross_beijing_midnight(state):
    _, key = await state.create_key("night", budget_daily=Decimal("10"), budget_monthly=Decimal("100"))
    state.monotonic = _Mono()
    worst = Decimal("0.01")
    await state.settle(await state.reserve(key, worst), Decimal("0.004"))
    await state.settle(await state.reserve(key, worst), Decimal("0.004"))
    state.clock.at = T0 + timedelta(minutes=31)  # 00:01 Beijing time, 2026-12-03
    await state.settle(await state.reserve(key, worst), Decimal("0.002"))
    assert state.leases.granted == 2
    assert await state.spent(key) == (Decimal("0.002"), Decimal("0.01"))
    assert [(r.day, r.cost) for r in await state.usage(key.id)] == [
        ("2026-12-02", Decimal("0.008")), ("2026-12-03", Decimal("0.002"))]


async def test_concurrent_first_requests_share_one_lease(state):
    _, key = await state.create_key("burst", budget_daily=Decimal("100"))
    state.monotonic = _Mono()
    held = await asyncio.gather(*(state.reserve(key, Decimal("0.001")) for _ in range(50)))
    assert state.leases.granted == 1 and all(r.lease is held[0].lease for r in held)
    for r in held:
        await state.settle(r, Decimal("0.0005"))
    assert await state.spent(key) == (Decimal("0.025"), Decimal("0.025"))


async def test_overspend_bound_two_processes_leasing(state_url, tmp_path):
    budget, worst = Decimal("0.05"), Decimal("0.0001")  # leases of ~7 worst cases (1/64 of it)
    st = open_state(state_url, pepper=PEPPER)
    token, key = await st.create_key("shared", budget_daily=budget)
    outs = budget_workers(state_url, token, 600, worst, tmp_path / "go")
    spent_day, _ = await st.spent(key)
    await st.aclose()
    assert sum(o["admitted"] + o["refused"] for o in outs) == 1200
    assert all(o["drawn"] > o["leases"] > 0 for o in outs)  # both served requests from leases
    assert spent_day == sum(Decimal(o["charged"]) for o in outs)
    assert spent_day <= budget + worst
    assert sum(o["refused"] for o in outs) > 0


async def test_a_lease_past_half_its_age_is_renewed_after_the_answer(state, state_url):
    _, key = await state.create_key("steady", budget_daily=Decimal("100"))
    state.monotonic = mono = _Mono()
    worst = Decimal("0.001")
    first = await state.reserve(key, worst)
    await state.settle(first, Decimal("0.0004"))
    assert state.leases.granted == 1  # young: no renewal
    mono.t += LEASE_AGE * 0.6
    second = await state.reserve(key, worst)
    assert second.lease is first.lease
    await state.settle(second, Decimal("0.0004"))  # past half its age: the successor is asked for
    for _ in range(100):
        if state.leases.granted == 2:
            break
        await asyncio.sleep(0.01)
    assert state.leases.granted == 2
    third = await state.reserve(key, worst)  # drawn from the successor, no store call
    assert third.lease is not first.lease and state.leases.granted == 2
    assert first.lease.closed
    await state.settle(third, Decimal("0.0004"))
    other = open_state(state_url, pepper=PEPPER, clock=state.clock)
    try:
        assert await state.spent(key) == (Decimal("0.0012"), Decimal("0.0012"))
        assert await other.remaining(key) == Decimal("100") - Decimal("0.0012")
    finally:
        await other.aclose()


async def test_a_renewal_granted_during_close_is_settled(state_url):
    st = open_state(state_url, pepper=PEPPER, clock=Clock(T0))
    _, key = await st.create_key("closing", budget_daily=Decimal("100"))
    st.monotonic = mono = _Mono()
    res = await st.reserve(key, Decimal("0.001"))
    mono.t += LEASE_AGE * 0.6
    await st.settle(res, Decimal("0.001"))  # a renewal starts, then the store closes at once
    await st.aclose()
    other = open_state(state_url, pepper=PEPPER, clock=Clock(T0))
    try:
        assert await other.remaining(key) == Decimal("100") - Decimal("0.001")  # no hold left behind
    finally:
        await other.aclose()


async def test_closing_settles_a_lease_with_a_draw_still_in_flight(state_url):
    st = open_state(state_url, pepper=PEPPER, clock=Clock(T0))
    _, key = await st.create_key("shutdown", budget_daily=Decimal("100"))
    done = await st.reserve(key, Decimal("0.001"))
    await st.reserve(key, Decimal("0.001"))  # still in flight when the store closes
    await st.settle(done, Decimal("0.0003"))
    await st.aclose()
    other = open_state(state_url, pepper=PEPPER, clock=Clock(T0))
    try:
        # the lease's hold is gone and the finished draw's cost is in the store
        assert await other.remaining(key) == Decimal("100") - Decimal("0.0003")
    finally:
        await other.aclose()
