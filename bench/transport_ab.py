#!/usr/bin/env python3
"""Paired A/B of the client's two transports, AiohttpTransport and HttpToolsTransport, in ONE
process: `AsyncClient(transport=...)` sends N requests at concurrency C to the gateway bench's nginx
upstream (bench/gateway/.run/upstream, written by `bash bench/gateway/run.sh`), and the CPU time of
this process (time.process_time: client and event loop; nginx is another process) is divided by N.
Rounds alternate which transport goes first; the report gives each transport's median µs per
request and the median of the per-round ratios (both sides of a ratio saw the same machine noise).

    PYTHONPATH=src python bench/transport_ab.py [--mode json|sse] [--n 2000] [--c 50] [--rounds 7]

Runs in its own loopback-only network namespace when `unshare -n` is allowed (like profile_gw.sh),
so the fixed port 18080 cannot clash with another run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "gateway" / ".run" / "upstream"
MSGS = [{"role": "user", "content": "hi"}]


def in_netns() -> None:
    if os.environ.get("AB_IN_NETNS") or os.environ.get("BENCH_NETNS") == "off" or not shutil.which("unshare"):
        return
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        return
    os.environ["AB_IN_NETNS"] = "1"
    os.execvp("unshare", ["unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
                          sys.executable, *sys.argv])


async def block(make_transport, base: str, n: int, c: int, stream: bool) -> tuple[float, float]:
    """CPU µs and wall seconds for n requests at concurrency c on a fresh client (warmed up)."""
    from deepseek_kit import AsyncClient, Timeout

    client = AsyncClient(api_key="sk-bench", base_url=base, transport=make_transport(), max_retries=0,
                         timeout=Timeout(total=60), logs=False, metrics=False)
    left = [n]

    async def one() -> None:
        if stream:
            s = await client.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True)
            async with s:
                async for _ in s:
                    pass
        else:
            r = await client.chat.completions.create(model="deepseek-flash", messages=MSGS)
            assert r.choices

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            await one()

    async with client:
        left[0] = 2 * c  # warm-up: connections opened, caches filled
        await asyncio.gather(*(worker() for _ in range(c)))
        left[0] = n
        t0, w0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(c)))
        t1, w1 = time.process_time(), time.perf_counter()
    return (t1 - t0) / n * 1e6, w1 - w0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["json", "sse"], default="json")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--c", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--fixture", type=Path, default=FIXTURE)
    args = ap.parse_args()
    if not (args.fixture / "nginx.conf").is_file():
        sys.exit(f"no upstream fixture in {args.fixture}: run bench/gateway/run.sh once "
                 "(or copy its .run/upstream there)")
    in_netns()
    from deepseek_kit import AiohttpTransport, HttpToolsTransport

    log = args.fixture / "logs"
    log.mkdir(exist_ok=True)
    ng = subprocess.Popen(["nginx", "-p", f"{args.fixture}/", "-c", f"{args.fixture}/nginx.conf",
                           "-e", str(log / "ab.log")])
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen("http://127.0.0.1:18080/completion.json", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        base = f"http://127.0.0.1:18080/{args.mode}/v1"
        kinds = {"aiohttp": AiohttpTransport, "httptools": HttpToolsTransport}
        cpu: dict[str, list[float]] = {k: [] for k in kinds}
        ratios = []
        for rnd in range(args.rounds):
            order = list(kinds) if rnd % 2 == 0 else list(kinds)[::-1]
            got = {}
            for k in order:
                got[k] = asyncio.run(block(kinds[k], base, args.n, args.c, args.mode == "sse"))
                cpu[k].append(got[k][0])
            ratios.append(got["httptools"][0] / got["aiohttp"][0])
            print(f"round {rnd + 1}: " + "  ".join(f"{k} {got[k][0]:,.0f} µs/req ({args.n / got[k][1]:,.0f} req/s)"
                                                   for k in kinds), flush=True)
        med = {k: statistics.median(v) for k, v in cpu.items()}
        print(f"{args.mode}, N={args.n}, c={args.c}, {args.rounds} rounds: CPU µs/request median "
              f"aiohttp {med['aiohttp']:,.0f}, httptools {med['httptools']:,.0f}; "
              f"paired ratio median {statistics.median(ratios):.2f}")
    finally:
        ng.terminate()
        ng.wait()


if __name__ == "__main__":
    main()
