"""The Watchdog alone, on a real event loop with short limits: which limit fires, and when."""

from __future__ import annotations

import asyncio

from deepseek_kit._transport.timeouts import Timeout, Watchdog


async def run_until_fired(wd: Watchdog, fired: asyncio.Event, limit: float = 5.0) -> float:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.wait_for(fired.wait(), limit)
    return loop.time() - t0


async def test_first_token_fires_without_events():
    ev = asyncio.Event()
    wd = Watchdog(Timeout(first_token=0.1, idle=10, total=10), ev.set)
    await run_until_fired(wd, ev)
    assert wd.fired == "first_token"


async def test_idle_takes_over_after_first_event_even_if_shorter():
    ev = asyncio.Event()
    wd = Watchdog(Timeout(first_token=30, idle=0.1, total=60), ev.set)
    await asyncio.sleep(0.01)
    wd.first_event()
    elapsed = await run_until_fired(wd, ev)
    assert wd.fired == "idle" and elapsed < 5


async def test_events_keep_idle_from_firing():
    ev = asyncio.Event()
    wd = Watchdog(Timeout(first_token=1, idle=0.15, total=60), ev.set)
    wd.first_event()
    loop = asyncio.get_running_loop()
    for _ in range(8):  # 0.4 s of steady progress, longer than the idle limit
        await asyncio.sleep(0.05)
        wd.last = loop.time()
    assert wd.fired is None
    await run_until_fired(wd, ev)
    assert wd.fired == "idle"


async def test_idle_not_blamed_while_caller_is_busy():
    ev = asyncio.Event()
    wd = Watchdog(Timeout(first_token=1, idle=0.1, total=60), ev.set)
    wd.first_event()
    wd.reading = False  # the caller is processing a chunk, not waiting on the server
    await asyncio.sleep(0.35)
    assert wd.fired is None
    wd.reading = True
    await run_until_fired(wd, ev)
    assert wd.fired == "idle"


async def test_total_deadline_wins_over_progress():
    ev = asyncio.Event()
    wd = Watchdog(Timeout(first_token=1, idle=1, total=0.3), ev.set)
    wd.first_event()
    loop = asyncio.get_running_loop()
    while not ev.is_set():
        await asyncio.sleep(0.02)
        wd.last = loop.time()
    assert wd.fired == "total"


async def test_external_deadline_caps_total():
    ev = asyncio.Event()
    loop = asyncio.get_running_loop()
    wd = Watchdog(Timeout(first_token=5, idle=5, total=60), ev.set, deadline=loop.time() + 0.1)
    await run_until_fired(wd, ev)
    assert wd.fired == "total"


async def test_tail_after_finish_and_cancel():
    ev = asyncio.Event()
    wd = Watchdog(Timeout(first_token=5, idle=5, total=60, tail=0.1), ev.set)
    wd.first_event()
    wd.finish()
    await run_until_fired(wd, ev)
    assert wd.fired == "tail"
    ev2 = asyncio.Event()
    wd2 = Watchdog(Timeout(first_token=0.05), ev2.set)
    wd2.cancel()
    await asyncio.sleep(0.15)
    assert not ev2.is_set() and wd2.fired is None


async def test_tail_never_outlasts_idle():
    # Timeout(idle=1.0) with the default tail (5 s): after the answer only min(tail, idle) applies.
    ev = asyncio.Event()
    wd = Watchdog(Timeout(first_token=5, idle=0.2, total=60), ev.set)
    wd.first_event()
    wd.finish()
    elapsed = await run_until_fired(wd, ev, limit=Timeout().tail)
    assert wd.fired == "tail" and elapsed < 0.2 + 1.0  # the idle limit plus generous slack
    assert wd.limit("tail") == 0.2
