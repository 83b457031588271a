#!/usr/bin/env python3
"""Paired, interleaved A/B in ONE process: the same driver code as the load runs, alternated in
short blocks, so every client sees the same machine noise.

On a shared 2-core box, separate driver processes minutes apart swing +-40% (other people's test
suites come and go), and 3 reps of that cannot resolve a 15% difference. Here each round runs one
block per client (order rotated per round) against the same nginx, and each client's block is
compared with the aiohttp block of the SAME round: the reported ratio is the median over rounds
of those paired ratios, for throughput and for CPU per unit (µs per request or per chunk).

Drivers are imported, not copied: shared drv_aiohttp / drv_aiohttp_msgspec (the kit at $DSK_SHARED_BENCH)
and bench/drivers/drv_deepseek_kit.py, each via its `make_client(args)`; results are validated
against the fixture manifest (chunk count and content length) like the harness does.

usage: paired.py [--base http://127.0.0.1:18080] [--configs nonstream,stream,stream_ka,stream_chunked]
                 [--clients aiohttp,aiohttp_msgspec,deepseek_kit] [--rounds 20] [--json OUT]
"""
import argparse
import asyncio
import importlib
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
_env = os.environ.get("DSK_SHARED_BENCH")
SHARED = Path(_env) if _env else HERE.parents[1] / "shared" / "bench"
if SHARED.name == "drivers":
    SHARED = SHARED.parent
sys.path[:0] = [str(SHARED / "drivers"), str(HERE / "drivers")]

CONFIGS = {  # name: (path, requests per block, concurrency, stream)
    "nonstream": ("json", 500, 100, False),
    "stream": ("sse", 50, 50, True),
    "stream_ka": ("sse-ka", 50, 50, True),
    "stream_chunked": ("sse-chunked", 50, 50, True),
}


def cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def block(one, n, c, expect):
    left, units = [n], [0]
    want_chunks, want_len = expect.get("chunks", 1), expect["content_len"]

    async def worker():
        while left[0] > 0:
            left[0] -= 1
            chunks, content = await one()
            if chunks != want_chunks or len(content) != want_len:
                raise ValueError(f"validation: chunks={chunks} len={len(content)}")
            units[0] += chunks

    c0, t0 = cpu_s(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(c, n))))
    return units[0] / (time.perf_counter() - t0), (cpu_s() - c0) / units[0] * 1e6


async def run_config(name, a, manifest):
    path, n, c, stream = CONFIGS[name]
    args = SimpleNamespace(base_url=f"{a.base}/{path}/v1", concurrency=c, stream=stream, uvloop=False)
    expect = manifest["stream" if stream else "nonstream"]
    clients = {}
    for cl in a.clients:
        mod = importlib.import_module(f"drv_{cl}")
        one, close, version = await mod.make_client(args)
        clients[cl] = (one, close, version)
        await block(one, c, c, expect)  # warm-up: fill the pool
    res = {cl: [] for cl in clients}
    names = list(clients)
    for r in range(a.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for cl in order:
            res[cl].append(await block(clients[cl][0], n, c, expect))
    for _one, close, _v in clients.values():
        await close()
    out = {}
    ref = res.get("aiohttp")
    for cl, v in res.items():
        tp = [x[0] for x in v]
        us = [x[1] for x in v]
        row = {"version": clients[cl][2], "blocks": len(v), "unit": "chunk" if stream else "request",
               "throughput_median": statistics.median(tp), "us_cpu_per_unit_median": statistics.median(us)}
        if ref:
            # per round: client / aiohttp (throughput), aiohttp / client (CPU per unit)
            tp_ratio = [c[0] / r[0] for r, c in zip(ref, v, strict=True)]
            cpu_ratio = [r[1] / c[1] for r, c in zip(ref, v, strict=True)]
            row["x_aiohttp_throughput"] = statistics.median(tp_ratio)
            row["x_aiohttp_cpu"] = statistics.median(cpu_ratio)
            row["x_aiohttp_cpu_p25_p75"] = [round(q, 3) for q in statistics.quantiles(cpu_ratio, n=4)[::2]]
        out[cl] = row
    return {"config": name, "requests_per_block": n, "concurrency": c, "rounds": a.rounds, "clients": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="http://127.0.0.1:18080")
    ap.add_argument("--configs", default="nonstream,stream,stream_ka,stream_chunked")
    ap.add_argument("--clients", default="aiohttp,aiohttp_msgspec,deepseek_kit,deepseek_kit_full")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--json", default="")
    ap.add_argument("--manifest", default=os.environ.get("BENCH_MANIFEST", str(HERE / ".run" / "www" / "manifest.json")))
    a = ap.parse_args()
    if urlparse(a.base).hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("refusing non-loopback URL")
    a.clients = a.clients.split(",")
    with open(a.manifest) as fh:
        manifest = json.load(fh)
    results = asyncio.run(run_all(a, manifest))
    if a.json:
        with open(a.json, "w") as fh:
            fh.write("\n".join(json.dumps(r) for r in results) + "\n")


async def run_all(a, manifest):
    results = []
    print(f"Paired interleaved blocks in one process, {a.rounds} rounds; ratios = median over rounds of "
          "(client / aiohttp in the same round); 'by CPU' = aiohttp µs CPU per unit / client's.\n")
    print("| config | client | throughput (median, units/s) | x aiohttp throughput | µs CPU / unit | "
          "x aiohttp by CPU (p25–p75) |")
    print("|---|---|---:|---:|---:|---:|")
    for name in a.configs.split(","):
        r = await run_config(name, a, manifest)
        results.append(r)
        for cl, row in r["clients"].items():
            x = row.get("x_aiohttp_throughput")
            xc = row.get("x_aiohttp_cpu")
            q = row.get("x_aiohttp_cpu_p25_p75", [None, None])
            print(f"| {name} | {cl} | {row['throughput_median']:,.0f} {row['unit']}s/s | "
                  f"{'–' if x is None else f'{x:.3f}'} | {row['us_cpu_per_unit_median']:.1f} | "
                  f"{'–' if xc is None else f'{xc:.3f}'} ({q[0]}–{q[1]}) |", flush=True)
    return results


if __name__ == "__main__":
    main()
