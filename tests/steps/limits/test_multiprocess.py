"""Limits held under load by 4 processes sharing Redis.

Four real Python processes, each with its own AsyncClient and LimitStep, share one quota through
the redis-server fixture and send to one emulator. The emulator counts the requests it has in
flight (and answers 429 past the same cap, like DeepSeek's per-account
concurrency limit, docs/deepseek-api-notes.md#rate-limits-and-concurrency);
each process records when every attempt was let through. The assertions are counts: requests in
flight at the server, 429s, requests per window of time.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

MODEL = "deepseek-flash"

_WORKER = textwrap.dedent("""
    import asyncio, json, random, sys, time
    from deepseek_kit import AsyncClient
    from deepseek_kit._steps.limits.step import Limits, LimitStep

    class Recorder:
        def __init__(self):
            self.times = []

        async def handle(self, request, call_next):
            self.times.append(time.time())
            return await call_next(request)

    async def main():
        base_url, redis_url, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
        limits = Limits(**json.loads(sys.argv[4]), redis_url=redis_url, name="shared")
        stall = json.loads(sys.argv[5])
        step, rec = LimitStep(limits), Recorder()
        client = AsyncClient(api_key="sk-one-account", base_url=base_url, inner_steps=[step, rec],
                             max_retries=0)
        rnd = random.Random()

        async def one(i):
            emulate = f"stall_first_token={rnd.uniform(*stall):.3f}"
            try:
                await client.chat.completions.create(
                    model="deepseek-flash", messages=[{"role": "user", "content": f"m{i}"}],
                    extra_headers={"X-DSK-Emulate": emulate})
                return None
            except Exception as exc:
                return f"{type(exc).__name__}: {exc}"

        errors = [e for e in await asyncio.gather(*(one(i) for i in range(n))) if e]
        await client.close()
        await step.aclose()
        print(json.dumps({"times": rec.times, "errors": errors}))

    asyncio.run(main())
""")


async def _run_workers(base_url, redis_url, n, limits, stall, procs=4):
    async def one():
        p = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WORKER, base_url, redis_url, str(n), json.dumps(limits),
            json.dumps(stall), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await asyncio.wait_for(p.communicate(), 120)
        assert p.returncode == 0, err.decode()[-2000:]
        return json.loads(out)

    return await asyncio.gather(*(one() for _ in range(procs)))


async def test_in_flight_cap_is_never_exceeded_across_processes(emulator_factory, redis_url):
    emu = emulator_factory(concurrency_limits={MODEL: 3})
    results = await _run_workers(emu.base_url, redis_url, 15, {"max_in_flight": 3}, [0.05, 0.15])
    assert [r["errors"] for r in results] == [[]] * 4
    assert sum(len(r["times"]) for r in results) == 60
    assert emu.state.statuses[429] == 0
    assert emu.state.max_in_flight == 3  # reached, never passed


async def test_rate_and_in_flight_held_by_four_processes(emulator_factory, redis_url):
    rpm, cap, burst = 1800, 6, 0.1  # 30 requests/s, burst of 3
    emu = emulator_factory(concurrency_limits={MODEL: cap})
    results = await _run_workers(emu.base_url, redis_url, 60,
                                 {"rpm": rpm, "max_in_flight": cap, "burst": burst}, [0.02, 0.3])
    assert [r["errors"] for r in results] == [[]] * 4
    times = sorted(t for r in results for t in r["times"])
    assert len(times) == 240
    assert emu.state.statuses[429] == 0
    assert emu.state.max_in_flight <= cap
    # Requests let through in any 1-second window: at most the rate, the burst, and what a process
    # resuming up to 0.3 s late on a busy machine can add. Four unshared limiters would allow 120.
    rate = rpm / 60
    allowed = rate * 1.0 + rate * burst + rate * 0.3
    j = 0
    worst = 0
    for i, t in enumerate(times):
        while times[j] < t - 1.0:
            j += 1
        worst = max(worst, i - j + 1)
    assert worst <= allowed, (worst, allowed)
