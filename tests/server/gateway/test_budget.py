"""Budgets of the gateway state on a real SQLite file and a real redis-server: holds at admission,
exact settlement, Beijing-day windows, abandoned holds released after their TTL, usage rows, the
overspend bound under concurrency (one process, and two processes sharing the state), and a
revocation seen by another process within a second."""

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from deepseek_kit.server.gateway.budget import from_nanos, to_nanos, windows
from deepseek_kit.server.gateway.keys import BudgetExceededError
from deepseek_kit.server.gateway.state import open_state
from tests.helpers.clock import Clock

from .conftest import BUDGET_PEPPER as PEPPER
from .conftest import BUDGET_T0 as T0

WORKER = Path(__file__).with_name("gw_worker.py")


def test_money_units_and_windows():
    assert to_nanos(Decimal("0.000000003")) == 3
    assert to_nanos(Decimal("0.0000000031"), up=True) == 4
    assert to_nanos(Decimal("0.0000000031")) == 3
    assert from_nanos(1_500_000_000) == Decimal("1.5")
    assert windows(T0) == ("2026-12-02", "2026-12")
    assert windows(T0 + timedelta(minutes=30)) == ("2026-12-03", "2026-12")  # Beijing midnight
    assert windows(datetime(2026, 11, 30, 16, 0, tzinfo=timezone.utc)) == ("2026-12-01", "2026-12")


async def test_hold_refuse_settle_remaining(state):
    token, key = await state.create_key("a", budget_daily=Decimal("1.00"))
    key = await state.authenticate(token, None)
    assert await state.remaining(key) == Decimal("1")
    r1 = await state.reserve(key, Decimal("0.60"))
    assert await state.remaining(key) == Decimal("0.4")
    with pytest.raises(BudgetExceededError) as ei:
        await state.reserve(key, Decimal("0.50"))
    assert ei.value.status == 402 and "daily" in ei.value.message and token not in ei.value.message
    await state.settle(r1, Decimal("0.10"))  # the exact cost frees the rest of the hold
    assert await state.remaining(key) == Decimal("0.9")
    r2 = await state.reserve(key, Decimal("0.50"))
    await state.release(r2)
    assert await state.remaining(key) == Decimal("0.9")
    assert await state.spent(key) == (Decimal("0.1"), Decimal("0.1"))


async def test_unbudgeted_key_holds_nothing(state):
    _token, key = await state.create_key("free")
    res = await state.reserve(key, Decimal("1000"))
    assert not res.held
    assert await state.remaining(key) is None
    await state.settle(res, Decimal("2.5"), model="deepseek-v4-pro")
    assert [(r.model, r.cost) for r in await state.usage(key.id)] == [("deepseek-v4-pro", Decimal("2.5"))]


async def test_daily_window_resets_at_beijing_midnight_monthly_does_not(state):
    _, key = await state.create_key("a", budget_daily=Decimal("1"), budget_monthly=Decimal("1.5"))
    await state.settle(await state.reserve(key, Decimal("1")), Decimal("1"))
    with pytest.raises(BudgetExceededError, match="daily"):
        await state.reserve(key, Decimal("0.01"))
    state.clock.at = T0 + timedelta(minutes=30)  # 00:00 Beijing, next day
    assert await state.remaining(key) == Decimal("0.5")
    await state.settle(await state.reserve(key, Decimal("0.5")), Decimal("0.5"))
    with pytest.raises(BudgetExceededError, match="monthly"):
        await state.reserve(key, Decimal("0.01"))
    state.clock.at = datetime(2026, 12, 31, 16, 0, tzinfo=timezone.utc)  # 2027-01-01 Beijing
    assert await state.remaining(key) == Decimal("1")


async def test_abandoned_hold_is_released_after_its_ttl(state):
    _, key = await state.create_key("a", budget_daily=Decimal("1"))
    held = await state.reserve(key, Decimal("0.9"))  # the worker holding it dies: no settle
    with pytest.raises(BudgetExceededError):
        await state.reserve(key, Decimal("0.2"))
    state.clock.at = T0 + timedelta(seconds=899)
    with pytest.raises(BudgetExceededError):
        await state.reserve(key, Decimal("0.2"))
    state.clock.at = T0 + timedelta(seconds=900)
    assert await state.remaining(key) == Decimal("1")
    await state.reserve(key, Decimal("0.2"))
    await state.settle(held, Decimal("0.3"))  # a late settle still charges what was spent
    assert await state.remaining(key) == Decimal("0.5")


async def test_usage_rows_per_day_and_model(state):
    _, key = await state.create_key("a", budget_monthly=Decimal("100"))
    for model, cost in [("deepseek-flash", "0.001"), ("deepseek-flash", "0.002"), ("deepseek-v4-pro", "0.5")]:
        await state.settle(await state.reserve(key, Decimal(1), model=model), Decimal(cost))
    state.clock.at = T0 + timedelta(hours=1)  # next Beijing day
    await state.settle(await state.reserve(key, Decimal(1), model="deepseek-flash"), Decimal("0.004"))
    rows = await state.usage(key.id)
    assert [(r.day, r.model, r.requests, r.cost) for r in rows] == [
        ("2026-12-02", "deepseek-flash", 2, Decimal("0.003")),
        ("2026-12-02", "deepseek-v4-pro", 1, Decimal("0.5")),
        ("2026-12-03", "deepseek-flash", 1, Decimal("0.004")),
    ]
    assert [r.day for r in await state.usage(key.prefix, since=date(2026, 12, 3))] == ["2026-12-03"]


async def test_usage_rows_are_flushed_in_the_background(state, state_url):
    _, key = await state.create_key("a")
    await state.settle(await state.reserve(key, Decimal(1)), Decimal("0.25"), model="deepseek-flash")
    other = open_state(state_url, pepper=PEPPER, clock=state.clock)
    try:
        deadline = time.monotonic() + 10
        while not await other.usage(key.id):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert (await other.usage(key.id))[0].cost == Decimal("0.25")
    finally:
        await other.aclose()


async def test_overspend_bound_one_process_200_concurrent(state):
    budget, worst = Decimal("0.01"), Decimal("0.0007")
    token, key = await state.create_key("tiny", budget_daily=budget)
    key = await state.authenticate(token, None)
    charged = []

    async def one(i):
        try:
            res = await state.reserve(key, worst)
        except BudgetExceededError:
            return
        await asyncio.sleep((i % 7) / 1000)
        actual = worst * (1 + i % 10) / 10
        await state.settle(res, actual)
        charged.append(actual)

    await asyncio.gather(*(one(i) for i in range(200)))
    spent_day, _ = await state.spent(key)
    assert spent_day == sum(charged)
    assert spent_day <= budget + worst
    assert 14 <= len(charged) < 200  # it admitted while it could, and refused the rest


def _start(args, env):
    return subprocess.Popen([sys.executable, str(WORKER), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _env():
    return {**os.environ, "DSK_GATEWAY_PEPPER": PEPPER.decode(),
            "PYTHONPATH": os.pathsep.join(p for p in [str(Path(__file__).parents[3] / "src"),
                                                      os.environ.get("PYTHONPATH", "")] if p)}


def budget_workers(state_url: str, token: str, n: int, worst: Decimal, go: Path) -> list[dict]:
    """Two gw_worker.py processes each admitting `n` concurrent requests of `worst` on `token`'s
    budget, started together (the `go` file); their JSON reports."""
    procs = [_start(["budget", state_url, token, str(n), str(worst), str(go)], _env()) for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        go.touch()
        return [json.loads(p.communicate(timeout=60)[0].strip().splitlines()[-1]) for p in procs]
    finally:
        for p in procs:
            p.kill() if p.poll() is None else None


async def test_overspend_bound_two_processes_200_concurrent(state_url, tmp_path):
    budget, worst = Decimal("0.01"), Decimal("0.0007")
    st = open_state(state_url, pepper=PEPPER)  # real clock: the workers use theirs
    token, key = await st.create_key("tiny", budget_daily=budget)
    outs = budget_workers(state_url, token, 100, worst, tmp_path / "go")
    spent_day, _ = await st.spent(key)
    await st.aclose()
    assert sum(o["admitted"] + o["refused"] for o in outs) == 200
    assert spent_day == sum(Decimal(o["charged"]) for o in outs)
    assert spent_day <= budget + worst
    assert all(o["refused"] > 0 for o in outs)


async def test_revocation_is_seen_by_another_process_within_a_second(state_url):
    st = open_state(state_url, pepper=PEPPER)
    token, key = await st.create_key("a")
    watchers = [_start(["watch", state_url, token], _env()) for _ in range(2)]
    try:
        for w in watchers:
            assert w.stdout.readline().strip() == "ready", w.stderr.read()
        await asyncio.sleep(0.2)  # both have the key cached and are serving from memory
        revoked_at = time.monotonic()
        await st.revoke(key.id)
        lags = []
        for w in watchers:
            line = w.communicate(timeout=30)[0].strip()
            assert line.startswith("refused"), line
            lags.append(float(line.split()[1]) - revoked_at)
    finally:
        for w in watchers:
            w.kill() if w.poll() is None else None
        await st.aclose()
    assert max(lags) < 1.0, lags


async def test_settlement_reaches_other_processes_promptly(state, state_url):
    """Settling is queued and batched; another process sees the hold until then (never less than
    the cost) and the exact spend shortly after (SETTLE_DELAY, 0.1 s)."""
    _, key = await state.create_key("a", budget_daily=Decimal("1"))
    other = open_state(state_url, pepper=PEPPER, clock=state.clock)
    try:
        res = await state.reserve(key, Decimal("0.6"))
        assert await other.remaining(key) == Decimal("0.4")
        await state.settle(res, Decimal("0.25"))
        deadline = time.monotonic() + 5
        while (left := await other.remaining(key)) != Decimal("0.75"):
            assert left == Decimal("0.4") and time.monotonic() < deadline
            await asyncio.sleep(0.02)
    finally:
        await other.aclose()


async def test_sqlite_write_lock_held_elsewhere_does_not_block_the_event_loop(tmp_path):
    import sqlite3

    st = open_state(f"sqlite:///{tmp_path}/gw.db", pepper=PEPPER, clock=Clock(T0))
    _, key = await st.create_key("a", budget_daily=Decimal("1"))
    await st.remaining(key)  # connections open
    other = sqlite3.connect(tmp_path / "gw.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's writer, mid-transaction
    try:
        task = asyncio.ensure_future(st.reserve(key, Decimal("0.5")))
        lags = []
        for _ in range(20):  # the loop keeps turning while the hold waits for the lock
            t = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - t)
        assert not task.done() and max(lags) < 0.5, lags
    finally:
        other.execute("COMMIT")
        other.close()
    res = await asyncio.wait_for(task, 10)
    assert res.held and await st.remaining(key) == Decimal("0.5")
    await st.aclose()


async def test_a_settlement_applied_twice_charges_once(redis_url):
    """A settle script whose reply was lost may be sent again (redis-py retries on a dropped
    connection; our queue keeps what it could not confirm): the spend must not double. (SQLite
    has no lost replies: a transaction either commits in this process or changes nothing.)"""
    state = open_state(redis_url, pepper=PEPPER, clock=Clock(T0))
    _, key = await state.create_key("a", budget_daily=Decimal("1"))
    res = await state.reserve(key, Decimal("0.5"))
    row = (res.id, res.key_id, res.day, res.month, 250_000_000)
    await state._settle_many([row])
    await state._settle_many([row])
    assert await state.spent(key) == (Decimal("0.25"), Decimal("0.25"))
    await state.aclose()
