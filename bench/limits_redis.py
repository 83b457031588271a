#!/usr/bin/env python3
"""Limits through Redis: 4 processes sharing a 600 RPM quota for a minute, and what LimitStep costs.

Part 1 (the issue's target: observed rate within ±5% of 600 RPM over a minute, in-flight cap never
passed). The script starts redis-server on a free loopback port and the emulator in this process
(it only serves ~10 requests/s here), then 4 worker processes (this script with `--worker`), each
an AsyncClient with LimitStep(Limits(rpm=600, max_in_flight=CAP, redis_url=..., name="bench")) and
`--loops` request loops that never rest, so demand always exceeds the quota. Each request asks
the emulator to stall a random 0.1-1.0 s before answering (`X-DSK-Emulate: stall_first_token`):
about 5.5 requests in flight on average at 10/s, so the in-flight cap (8) binds at the peaks.
The emulator answers 429 past CAP concurrent requests of one account, like DeepSeek
(docs/deepseek-api-notes.md#rate-limits-and-concurrency), and records its peak in flight. Workers stamp the wall-clock time at which each attempt is let through; the
report gives requests let through per 10 s window (as RPM) and over the whole minute, the
emulator's peak in flight vs the cap, and errors.

Part 2 (overhead, one process): paired interleaved blocks against a separate emulator process:
raw aiohttp (the 1.00 reference), deepseek_kit without limits, with a local LimitStep and with a
Redis LimitStep (rpm/tpm/in-flight all set, none binding). Reported: requests/s and client CPU
µs per request, medians over rounds of the ratio to aiohttp (and to plain deepseek_kit) in the
same round. The emulator is the bottleneck for throughput; CPU per request is the number to read.

usage: limits_redis.py [--seconds 60] [--rpm 600] [--cap 8] [--loops 8] [--rounds 7]
                       [--requests 300] [--concurrency 50] [--skip-rate] [--skip-overhead] [--json OUT]
"""
import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL = "deepseek-flash"
KEY = "sk-bench-one-account"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"{what} exited early")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not start on port {port}")


def start_redis():
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("redis-server is not installed")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="dsk-bench-redis-")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc, "redis-server")
    return proc, f"redis://127.0.0.1:{port}/0"


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# -- part 1: 4 processes, one quota ------------------------------------------------------------------


class Recorder:
    """Inner step below the limiter: when each attempt was let through (wall clock, shared by the
    processes of one host)."""

    def __init__(self):
        self.times = []

    async def handle(self, request, call_next):
        self.times.append(time.time())
        return await call_next(request)


async def worker(a):
    from deepseek_kit import AsyncClient
    from deepseek_kit._steps.limits.step import Limits, LimitStep

    step = LimitStep(Limits(rpm=a.rpm, max_in_flight=a.cap, redis_url=a.redis, name="bench"))
    rec = Recorder()
    client = AsyncClient(api_key=KEY, base_url=a.base, inner_steps=[step, rec], max_retries=0,
                         max_connections=100)
    errors = {}
    rnd = random.Random()
    end = a.start_at + a.seconds

    async def loop(i):
        n = 0
        while time.time() < end:
            n += 1
            try:
                await client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": f"loop {i} request {n}"}],
                    extra_headers={"X-DSK-Emulate": f"stall_first_token={rnd.uniform(0.1, 1.0):.3f}"})
            except Exception as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

    # Warm up outside the quota (imports, connections, Redis scripts), then start together.
    warm = AsyncClient(api_key=KEY, base_url=a.base, max_retries=0)
    await warm.models.list()
    await warm.close()
    await step.state()
    late = time.time() - a.start_at
    await asyncio.sleep(max(0.0, -late))
    tasks = [asyncio.create_task(loop(i)) for i in range(a.loops)]
    await asyncio.wait(tasks, timeout=max(0.0, end - time.time()) + 2.0)
    for t in tasks:  # loops still queued in the limiter after the minute: not counted anyway
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await client.close()
    await step.aclose()
    print(json.dumps({"times": rec.times, "errors": errors, "late": late}), flush=True)


def run_rate(a):
    from deepseek_kit.server import EmulatorConfig, EmulatorThread

    redis_proc, redis_url = start_redis()
    emu = EmulatorThread(EmulatorConfig(concurrency_limits={MODEL: a.cap, "deepseek-v4-pro": a.cap})).start()
    try:
        start_at = time.time() + 8.0  # time for 4 interpreters to import, connect and warm up
        procs = [subprocess.Popen([sys.executable, __file__, "--worker", "--base", emu.base_url, "--redis", redis_url,
                                   "--rpm", str(a.rpm), "--cap", str(a.cap), "--loops", str(a.loops),
                                   "--seconds", str(a.seconds), "--start-at", repr(start_at)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=a.seconds + 120)
            if p.returncode != 0:
                sys.exit(f"worker failed:\n{err[-3000:]}")
            outs.append(json.loads(out.strip().splitlines()[-1]))
        peak, statuses = emu.state.max_in_flight, dict(emu.state.statuses)
    finally:
        emu.stop()
        stop(redis_proc)
    end = start_at + a.seconds
    times = sorted(t for o in outs for t in o["times"] if start_at <= t < end)
    per_proc = [sum(1 for t in o["times"] if start_at <= t < end) for o in outs]
    errors = {}
    for o in outs:
        for k, v in o["errors"].items():
            errors[k] = errors.get(k, 0) + v
    windows = []
    for w in range(int(a.seconds // 10)):
        lo = start_at + 10 * w
        n = sum(1 for t in times if lo <= t < lo + 10)
        windows.append({"window": f"{10 * w}-{10 * w + 10}s", "requests": n, "rpm": n * 6})
    overall = len(times) * 60.0 / a.seconds
    res = {"rpm_target": a.rpm, "seconds": a.seconds, "processes": 4, "loops_per_process": a.loops,
           "requests": len(times), "rpm_observed": overall, "deviation": overall / a.rpm - 1,
           "per_process": per_proc, "windows": windows, "max_in_flight_server": peak, "cap": a.cap,
           "statuses": statuses, "errors": errors, "workers_late_s": [round(o["late"], 3) for o in outs]}
    print(f"\n## 4 processes sharing rpm={a.rpm:g}, max_in_flight={a.cap} through Redis, {a.seconds:g} s\n")
    print("| window | requests let through | observed RPM |")
    print("|---|---:|---:|")
    for w in windows:
        print(f"| {w['window']} | {w['requests']} | {w['rpm']} |")
    print(f"| **overall** | **{len(times)}** | **{overall:.1f} ({res['deviation']:+.2%} vs {a.rpm:g})** |")
    print(f"\nper process: {per_proc}; server peak in flight: {peak} (cap {a.cap}); "
          f"server statuses: {statuses}; client errors: {errors or 'none'}; "
          f"workers ready {[round(-o['late'], 2) for o in outs]} s before the start")
    return res


# -- part 2: overhead ----------------------------------------------------------------------------------


def start_emulator_process():
    port = free_port()
    code = ("from deepseek_kit.server.emulator.thread import run_emulator; "
            f"run_emulator('127.0.0.1', {port}, print_banner=False)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc, "emulator")
    return proc, f"http://127.0.0.1:{port}"


async def make_clients(base, redis_url, c):
    import aiohttp

    from deepseek_kit import AsyncClient
    from deepseek_kit._steps.limits.step import Limits, LimitStep

    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}]}).encode()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c))
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    url = base + "/chat/completions"

    async def raw():
        async with session.post(url, data=body, headers=headers) as r:
            obj = json.loads(await r.read())
            return obj["choices"][0]["message"]["content"]

    msgs = [{"role": "user", "content": "Say hello."}]
    loose = dict(rpm=6_000_000, tpm=6_000_000_000, max_in_flight=10_000)
    made = {"dsk": AsyncClient(api_key=KEY, base_url=base, max_connections=c)}
    steps = {"dsk+limits(local)": LimitStep(Limits(**loose))}
    if redis_url:
        steps["dsk+limits(redis)"] = LimitStep(Limits(**loose, redis_url=redis_url, name="overhead"))
    for name, step in steps.items():
        made[name] = AsyncClient(api_key=KEY, base_url=base, max_connections=c, inner_steps=[step])

    def one_of(client):
        create = client.chat.completions.create

        async def one():
            r = await create(model=MODEL, messages=msgs)
            return r.choices[0].message.content

        return one

    clients = {"aiohttp": raw, **{k: one_of(v) for k, v in made.items()}}

    async def close():
        await session.close()
        for cl in made.values():
            await cl.close()
        for s in steps.values():
            await s.aclose()

    return clients, close


async def block(one, n, c):
    left = [n]

    async def w():
        while left[0] > 0:
            left[0] -= 1
            if not await one():
                raise RuntimeError("empty answer")

    c0, t0 = cpu_s(), time.perf_counter()
    await asyncio.gather(*(w() for _ in range(c)))
    return n / (time.perf_counter() - t0), (cpu_s() - c0) / n * 1e6


async def overhead(a, base, redis_url):
    clients, close = await make_clients(base, redis_url, a.concurrency)
    names = list(clients)
    for one in clients.values():
        await block(one, a.concurrency, a.concurrency)  # warm-up: fill the pools
    res = {k: [] for k in names}
    for r in range(a.rounds):
        for k in names[r % len(names):] + names[: r % len(names)]:
            res[k].append(await block(clients[k], a.requests, a.concurrency))
    await close()
    rows = {}
    for k, v in res.items():
        row = {"rps": statistics.median(x[0] for x in v), "us_cpu": statistics.median(x[1] for x in v)}
        for ref in ("aiohttp", "dsk"):
            row[f"x_{ref}_rps"] = statistics.median(c[0] / b[0] for b, c in zip(res[ref], v, strict=True))
            row[f"x_{ref}_cpu"] = statistics.median(b[1] / c[1] for b, c in zip(res[ref], v, strict=True))
        rows[k] = row
    print(f"\n## LimitStep overhead, one process, emulator in another; {a.requests} non-stream requests per block, "
          f"concurrency {a.concurrency}, {a.rounds} rounds (medians of per-round ratios)\n")
    print("| client | req/s | x aiohttp req/s | µs CPU / request | x aiohttp by CPU | x dsk by CPU |")
    print("|---|---:|---:|---:|---:|---:|")
    for k, r in rows.items():
        print(f"| {k} | {r['rps']:,.0f} | {r['x_aiohttp_rps']:.3f} | {r['us_cpu']:.0f} | "
              f"{r['x_aiohttp_cpu']:.3f} | {r['x_dsk_cpu']:.3f} |")
    return rows


async def micro(n=30000):
    """No sockets: LimitStep.handle around a call_next that returns a canned response."""
    from deepseek_kit._steps.limits.step import Limits, LimitStep
    from deepseek_kit._transport.request import Request, Response
    from deepseek_kit._transport.timeouts import Timeout

    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}]}).encode()
    answer = (b'{"id":"x","object":"chat.completion","created":1,"model":"deepseek-flash","choices":[{"index":0,'
              b'"message":{"role":"assistant","content":"Hello."},"finish_reason":"stop"}],'
              b'"usage":{"prompt_tokens":10,"completion_tokens":2,"total_tokens":12}}')
    timeout = Timeout()

    async def call_next(req):
        return Response(200, {}, body=answer)

    rows = {}
    for name, lim in [("no step", None), ("rpm + in-flight", Limits(rpm=6e6, max_in_flight=10_000)),
                      ("rpm + tpm + in-flight", Limits(rpm=6e6, tpm=6e9, max_in_flight=10_000))]:
        handle = LimitStep(lim).handle if lim is not None else None
        best = float("inf")
        for _ in range(3):
            c0 = cpu_s()
            for _ in range(n):
                req = Request("POST", "http://127.0.0.1/chat/completions", "/chat/completions", body=body,
                              timeout=timeout)
                await (handle(req, call_next) if handle else call_next(req))
            best = min(best, (cpu_s() - c0) / n * 1e6)
        rows[name] = best
    base = rows["no step"]
    print(f"\n## LimitStep (local) per request without sockets (best of 3 x {n} calls)\n")
    print("| configuration | µs CPU / request | added by the step |")
    print("|---|---:|---:|")
    for k, v in rows.items():
        print(f"| {k} | {v:.1f} | {v - base:+.1f} |")
    return rows


def run_overhead(a):
    emu_proc, base = start_emulator_process()
    redis_proc, redis_url = start_redis()
    try:
        rows = asyncio.run(overhead(a, base, redis_url))
        rows["micro_us"] = asyncio.run(micro())
        return rows
    finally:
        stop(emu_proc)
        stop(redis_proc)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rpm", type=float, default=600.0)
    ap.add_argument("--cap", type=int, default=8)
    ap.add_argument("--loops", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--skip-rate", action="store_true")
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--json", default="")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--base", help=argparse.SUPPRESS)
    ap.add_argument("--redis", help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        asyncio.run(worker(a))
        return
    os.environ.pop("DEEPSEEK_API_KEY", None)
    out = {}
    if not a.skip_rate:
        out["rate"] = run_rate(a)
    if not a.skip_overhead:
        out["overhead"] = run_overhead(a)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
