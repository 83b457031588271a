#!/usr/bin/env python3
"""The answer cache against the emulator: single-flight, hit vs miss latency, and the cost of the
cache step on requests it does not cache. Ratios are to raw aiohttp measured in the same run.

The emulator runs in a child process (so it does not share this process's CPU/GIL); redis-server
is started on a free port when it is installed. Upstream calls are counted by an inner pipeline step
of the client (one per attempt that reaches the transport).

  1. single-flight: --n identical concurrent cacheable requests (the emulator holds headers for
     0.2 s so they overlap), non-stream and stream, with single_flight on and off: upstream calls.
  2. latency, sequential, median and p90 in µs: raw aiohttp POST + json.loads; the client without
     a cache; a miss (X-DSK-Cache: refresh: lookup skipped, upstream call, store) and a hit, per
     backend, non-stream and stream (read to the end).
  3. bypass: throughput (req/s, c=50) of requests the rule does not cache (thinking on by
     default), client with the cache step vs without, and raw aiohttp, in interleaved rounds;
     reported as medians and the median of per-round ratios to raw aiohttp.

usage: single_flight.py [--n 100] [--lat-n 300] [--tput-n 3000] [--backends memory,sqlite,redis]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from deepseek_kit import AsyncClient, RetryPolicy
from deepseek_kit._steps.cache.step import CachePolicy, CacheStep

MODEL = "deepseek-flash"
KEY = "sk-bench-single-flight-0000"
_EMU = (
    "import sys, time\n"
    "from deepseek_kit.server import EmulatorConfig, EmulatorThread\n"
    "EmulatorThread(EmulatorConfig(), port=int(sys.argv[1])).start()\n"
    "print('ready', flush=True)\n"
    "time.sleep(1e9)\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


class Count:
    """Inner step: counts the attempts that reach the transport."""

    def __init__(self) -> None:
        self.n = 0

    async def handle(self, request, call_next):
        self.n += 1
        return await call_next(request)


def client(base: str, policy: CachePolicy | None, counter: Count | None = None):
    step = CacheStep(policy) if policy is not None else None
    c = AsyncClient(api_key=KEY, base_url=base, retry=RetryPolicy(max_retries=0),
                    steps=[step] if step else None, inner_steps=[counter] if counter else None)
    return c, step


def greedy(tag: str) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": f"Tell me about the sea ({tag})"}],
            "thinking": False, "temperature": 0}


async def single_flight(base: str, n: int) -> list[dict]:
    rows = []
    for stream in (False, True):
        for sf in (True, False):
            counter = Count()
            c, step = client(base, CachePolicy(single_flight=sf), counter)
            req = greedy(f"sf-{stream}-{sf}-{time.time_ns()}")
            hdr = {"X-DSK-Emulate": "delay_headers=0.2"}

            async def one(c=c, req=req, hdr=hdr, stream=stream):
                r = await c.chat.completions.create(**req, stream=stream, extra_headers=hdr)
                return (await r.until_done()) if stream else r

            t0 = time.perf_counter()
            answers = await asyncio.gather(*[one() for _ in range(n)])
            wall = time.perf_counter() - t0
            same = answers if sf else [a.choices[0].message for a in answers]  # ids differ without it
            assert all(a == same[0] for a in same), "answers differ"
            rows.append({"stream": stream, "single_flight": sf, "requests": n, "upstream_calls": counter.n,
                         "coalesced": step.stats.coalesced, "wall_ms": round(wall * 1000, 1)})
            await step.aclose()
            await c.close()
    return rows


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


async def timed(fn, n: int) -> dict:
    for _ in range(min(20, n)):  # warm-up: connections, plan caches, code paths
        await fn()
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        lat.append((time.perf_counter() - t0) * 1e6)
    return {"median_us": round(statistics.median(lat), 1), "p90_us": round(pct(lat, 0.9), 1)}


async def latency(base: str, n: int, backends: dict[str, str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    req = greedy("latency")
    body = json.dumps(req).encode()
    async with aiohttp.ClientSession() as s:
        hdrs = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}

        async def raw():
            async with s.post(base + "/chat/completions", data=body, headers=hdrs) as r:
                json.loads(await r.read())

        out["raw aiohttp (json.loads)"] = await timed(raw, n)
    c, _ = client(base, None)
    out["client, no cache"] = await timed(lambda: c.chat.completions.create(**req), n)
    await c.close()
    for name, spec in backends.items():
        c, step = client(base, CachePolicy(backend=spec))
        await step.clear()
        refresh = {"X-DSK-Cache": "refresh"}
        out[f"{name}: miss (upstream + store)"] = await timed(
            lambda c=c, r=refresh: c.chat.completions.create(**req, extra_headers=r), n)
        out[f"{name}: hit"] = await timed(lambda c=c: c.chat.completions.create(**req), n)

        async def stream_hit(c=c):
            s_ = await c.chat.completions.create(**req, stream=True)
            await s_.until_done()

        out[f"{name}: stream hit (to the end)"] = await timed(stream_hit, n)
        assert step.stats.hits >= 2 * n, step.stats
        await step.clear()
        await step.aclose()
        await c.close()
    return out


async def throughput(base: str, n: int, conc: int, rounds: int = 5) -> dict[str, tuple[float, float]]:
    """Requests the default rule does not cache (thinking on): what the cache step costs them."""
    req = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me about the sea"}]}
    body = json.dumps(req).encode()
    res: dict[str, tuple[float, float]] = {}

    async def run(fn) -> float:
        sem = asyncio.Semaphore(conc)

        async def one():
            async with sem:
                await fn()

        await asyncio.gather(*[one() for _ in range(min(200, n))])
        t0 = time.perf_counter()
        await asyncio.gather(*[one() for _ in range(n)])
        return n / (time.perf_counter() - t0)

    conn = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(connector=conn) as s:
        hdrs = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}

        async def raw():
            async with s.post(base + "/chat/completions", data=body, headers=hdrs) as r:
                json.loads(await r.read())

        # Interleaved rounds so machine noise hits all three alike; per round, each client's
        # throughput is divided by raw aiohttp's of the same round; medians over the rounds.
        c0, _ = client(base, None)
        c1, step = client(base, CachePolicy())
        runs: dict[str, list[float]] = {"raw aiohttp": [], "client, no cache": [], "client + cache step": []}
        for _ in range(rounds):
            runs["raw aiohttp"].append(await run(raw))
            runs["client, no cache"].append(await run(lambda: c0.chat.completions.create(**req)))
            runs["client + cache step"].append(await run(lambda: c1.chat.completions.create(**req)))
        assert step.stats.bypassed > 0 and step.stats.stores == 0
        await c0.close()
        await c1.close()
    raw_runs = runs["raw aiohttp"]
    for k, v in runs.items():
        res[k] = (round(statistics.median(v), 1),
                  round(statistics.median([x / r for x, r in zip(v, raw_runs, strict=True)]), 3))
    return res


async def run(args: argparse.Namespace, base: str, backends: dict[str, str]) -> None:
    print(f"== single-flight: {args.n} identical concurrent requests (emulator holds headers 0.2 s)")
    for row in await single_flight(base, args.n):
        print(f"  {'stream    ' if row['stream'] else 'non-stream'} single_flight={row['single_flight']!s:5}"
              f"  upstream calls {row['upstream_calls']:4}  coalesced {row['coalesced']:3}"
              f"  wall {row['wall_ms']:7.1f} ms")

    print(f"\n== latency, sequential, {args.lat_n} requests each (ratio = median / raw aiohttp median)")
    lat = await latency(base, args.lat_n, backends)
    ref = lat["raw aiohttp (json.loads)"]["median_us"]
    for name, r in lat.items():
        print(f"  {name:34} median {r['median_us']:8.1f} µs  p90 {r['p90_us']:8.1f} µs"
              f"  ratio {r['median_us'] / ref:5.2f}")

    print(f"\n== bypass: {args.tput_n} non-cacheable requests per block, c=50, 5 interleaved rounds")
    for name, (v, ratio) in (await throughput(base, args.tput_n, 50)).items():
        print(f"  {name:22} median {v:9.1f} req/s  median paired ratio to raw aiohttp {ratio:5.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--lat-n", type=int, default=300)
    ap.add_argument("--tput-n", type=int, default=3000)
    ap.add_argument("--backends", default="memory,sqlite,redis")
    args = ap.parse_args()

    port = free_port()
    emu = subprocess.Popen([sys.executable, "-c", _EMU, str(port)], stdout=subprocess.PIPE, text=True)
    procs = [emu]
    tmp = tempfile.TemporaryDirectory()
    try:
        assert emu.stdout is not None and emu.stdout.readline().strip() == "ready"
        backends: dict[str, str] = {}
        for name in args.backends.split(","):
            if name == "memory":
                backends["memory"] = "memory"
            elif name == "sqlite":
                backends["sqlite"] = f"sqlite:///{Path(tmp.name) / 'cache.sqlite3'}"
            elif name == "redis":
                exe = shutil.which("redis-server")
                if exe is None:
                    print("redis-server not installed: Redis backend skipped", file=sys.stderr)
                    continue
                rport = free_port()
                procs.append(subprocess.Popen([exe, "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                                               "--appendonly", "no", "--dir", tmp.name],
                                              stdout=subprocess.DEVNULL))
                wait_port(rport)
                backends["redis"] = f"redis://127.0.0.1:{rport}/0"
        asyncio.run(run(args, f"http://127.0.0.1:{port}", backends))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        tmp.cleanup()


if __name__ == "__main__":
    main()
