#!/usr/bin/env python3
"""What request logging costs: deepseek_kit with and without LogStep, paired in one process.

Same method as metrics_overhead.py / paired.py: short interleaved blocks against the shared nginx
fixtures, order rotated per round, each block compared with the other client's block of the SAME
round, so machine noise cancels. Clients:

  dsk          AsyncClient as a user gets it (default timeout and retry stack)
  dsk+logs     the same with steps=[LogStep(LogConfig(path=<temp file>))]

The logging block is charged for ALL of its work: it ends only when the writer thread has committed
every row of the block and added it to the search index (a flush inside the timed region), and CPU
is the whole process's (getrusage covers the writer thread: JSON decoding, pricing, SQLite inserts
and FTS5 indexing included). Requests
name "deepseek-flash" so that every row is priced (nginx ignores the body). At the end the database
is checked: one row per call, nothing dropped.

Then (unless --no-micro) the step's own CPU per call without sockets: micro.py's fake transport,
with and without the step, alternated, best of --repeat, each timed run ending with a flush.

usage: logs_overhead.py [--start-nginx | --base http://127.0.0.1:18080] [--rounds 20]
                        [--configs nonstream,stream] [--json OUT] [--no-micro] [--repeat 7]
"""
import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import metrics_overhead  # noqa: E402  (start_nginx; puts the shared drivers on sys.path)
import paired  # noqa: E402

BENCH_MODEL = "deepseek-flash"  # priced, so the cost arithmetic runs for every row


def dsk_factory(db):
    async def make_client(args):
        from common import API_KEY, MESSAGES

        from deepseek_kit import AsyncClient
        from deepseek_kit._steps.logs import LogStep
        from deepseek_kit._logs.store import LogConfig

        step = LogStep(LogConfig(path=db)) if db else None
        client = AsyncClient(api_key=API_KEY, base_url=args.base_url, max_connections=args.concurrency,
                             steps=[step] if step else [])
        create = client.chat.completions.create

        async def one():
            if not args.stream:
                r = await create(model=BENCH_MODEL, messages=MESSAGES)
                return 1, r.choices[0].message.content
            chunks = 0
            async with await create(model=BENCH_MODEL, messages=MESSAGES, stream=True) as s:
                async for _ in s:
                    chunks += 1
            return chunks, s.get_final_completion().choices[0].message.content

        async def finish():  # the writer's work (search index included) belongs to the block that caused it
            if step is not None:
                await flushed(step)

        return one, finish, client, step

    return make_client


async def flushed(step):
    """Wait until the step's rows are written AND added to the search index (the writer indexes
    when idle: without this, that work would be billed to the next block)."""
    ok = await asyncio.get_running_loop().run_in_executor(None, lambda: step.store.flush(60, index=True))
    if not ok:
        raise RuntimeError("the log writer did not finish within 60 s")


async def block(one, finish, n, c, expect):
    left, units = [n], [0]

    async def worker():
        while left[0] > 0:
            left[0] -= 1
            chunks, content = await one()
            if chunks != expect.get("chunks", 1) or len(content) != expect["content_len"]:
                raise ValueError(f"validation: chunks={chunks} len={len(content)}")
            units[0] += chunks

    c0, t0 = paired.cpu_s(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(c, n))))
    await finish()
    return units[0] / (time.perf_counter() - t0), (paired.cpu_s() - c0) / units[0] * 1e6


async def run_config(name, a, manifest, db):
    path, n, c, stream = paired.CONFIGS[name]
    args = SimpleNamespace(base_url=f"{a.base}/{path}/v1", concurrency=c, stream=stream)
    expect = manifest["stream" if stream else "nonstream"]
    clients = {"dsk": await dsk_factory(None)(args), "dsk+logs": await dsk_factory(db)(args)}
    for one, finish, _c, _s in clients.values():
        await block(one, finish, c, c, expect)  # warm-up: fill the pool, open the database
    res = {cl: [] for cl in clients}
    names = list(clients)
    for r in range(a.rounds):
        for cl in names[r % 2:] + names[: r % 2]:
            one, finish, _c, _s = clients[cl]
            res[cl].append(await block(one, finish, n, c, expect))
    step = clients["dsk+logs"][3]
    for _one, _finish, client, _s in clients.values():
        await client.close()
    tp = [x[0] / y[0] for x, y in zip(res["dsk+logs"], res["dsk"], strict=True)]
    cpu = [y[1] / x[1] for x, y in zip(res["dsk+logs"], res["dsk"], strict=True)]
    q = statistics.quantiles(tp, n=4)
    calls = a.rounds * n + c  # the warm-up block made c calls
    return {
        "config": name, "rounds": a.rounds, "requests_per_block": n, "concurrency": c,
        "unit": "chunk" if stream else "request",
        "dsk_throughput": statistics.median(x[0] for x in res["dsk"]),
        "dsk_logs_throughput": statistics.median(x[0] for x in res["dsk+logs"]),
        "dsk_us_cpu": statistics.median(x[1] for x in res["dsk"]),
        "dsk_logs_us_cpu": statistics.median(x[1] for x in res["dsk+logs"]),
        "ratio_throughput": statistics.median(tp), "ratio_throughput_p25_p75": [q[0], q[2]],
        "ratio_cpu": statistics.median(cpu),
        "calls_logged": calls, "written": step.store.written, "dropped": step.store.dropped,
    }


async def micro_overhead(repeat, db, n=2000):
    import micro
    from common import MESSAGES

    from deepseek_kit import AsyncClient
    from deepseek_kit._steps.logs import LogStep
    from deepseek_kit._logs.store import LogConfig

    async def nonstream(c):
        r = await c.chat.completions.create(model=BENCH_MODEL, messages=MESSAGES)
        return r.choices[0].message.content

    async def stream(c):
        async with await c.chat.completions.create(model=BENCH_MODEL, messages=MESSAGES, stream=True) as s:
            async for _ in s:
                pass
        return s.get_final_completion()

    print(f"\nIn-process, no sockets (micro.py's fake transport), best of {repeat} alternated runs; a logged "
          "run ends when its rows are committed (and, for the last column, indexed for search):")
    print("| case | without logs µs/call | + rows µs/call | + rows and search index µs/call |")
    print("|---|---:|---:|---:|")
    for name, parts, fn, calls in (("nonstream", [micro.BODY], nonstream, n),
                                   ("stream (201 chunks)", micro.STATIC, stream, max(1, n // 10))):
        step = LogStep(LogConfig(path=db.replace(".sqlite3", f"-{name.split()[0]}.sqlite3")))
        plain = AsyncClient(api_key="sk-bench-dummy", base_url="http://127.0.0.1:9/v1",
                            transport=micro.FakeTransport(parts))
        logged = AsyncClient(api_key="sk-bench-dummy", base_url="http://127.0.0.1:9/v1",
                             transport=micro.FakeTransport(parts), steps=[step])
        best = {"plain": float("inf"), "rows": float("inf"), "index": float("inf")}
        for _ in range(repeat):
            for case, c in (("plain", plain), ("rows", logged), ("index", logged)):
                await fn(c)
                await flushed(step)
                t = time.process_time()  # CPU of every thread of this process
                for _ in range(calls):
                    await fn(c)
                if case == "rows":
                    await asyncio.get_running_loop().run_in_executor(None, step.store.flush, 60)
                elif case == "index":
                    await flushed(step)
                best[case] = min(best[case], (time.process_time() - t) / calls * 1e6)
                await flushed(step)  # indexing left over from "rows" is not billed to the next run
        p, r, i = best["plain"], best["rows"], best["index"]
        print(f"| {name} | {p:.1f} | {r:.1f} ({r - p:+.1f}) | {i:.1f} ({i - p:+.1f}) |")


async def run_all(a, manifest, db):
    out = []
    print(f"Paired interleaved blocks, one process, {a.rounds} rounds; ratio = dsk+logs / dsk of the same "
          "round (median, p25-p75); CPU ratio = µs without / µs with (1.0 = free).\n")
    print("| config | dsk | dsk+logs | throughput ratio (p25–p75) | µs CPU/unit dsk → +logs | CPU ratio | "
          "rows written / calls | dropped |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in a.configs.split(","):
        r = await run_config(name, a, manifest, os.path.join(db, f"{name}.sqlite3"))
        out.append(r)
        u = r["unit"]
        q = r["ratio_throughput_p25_p75"]
        print(f"| {name} | {r['dsk_throughput']:,.0f} {u}s/s | {r['dsk_logs_throughput']:,.0f} {u}s/s | "
              f"{r['ratio_throughput']:.3f} ({q[0]:.3f}–{q[1]:.3f}) | {r['dsk_us_cpu']:.1f} → "
              f"{r['dsk_logs_us_cpu']:.1f} | {r['ratio_cpu']:.3f} | {r['written']:,} / {r['calls_logged']:,} | "
              f"{r['dropped']} |", flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="http://127.0.0.1:18080")
    ap.add_argument("--start-nginx", action="store_true")
    ap.add_argument("--configs", default="nonstream,stream")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--json", default="")
    ap.add_argument("--no-micro", action="store_true")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--manifest", default=os.environ.get("BENCH_MANIFEST", str(HERE / ".run" / "www" / "manifest.json")))
    a = ap.parse_args()
    stop = None
    if a.start_nginx:
        a.base, a.manifest, stop = metrics_overhead.start_nginx()
    tmp = tempfile.mkdtemp(prefix="dsk-logs-bench-")
    try:
        if urlparse(a.base).hostname not in ("127.0.0.1", "localhost", "::1"):
            sys.exit("refusing non-loopback URL")
        with open(a.manifest) as fh:
            manifest = json.load(fh)
        results = asyncio.run(run_all(a, manifest, tmp))
        if not a.no_micro:
            asyncio.run(micro_overhead(a.repeat, os.path.join(tmp, "micro.sqlite3")))
    finally:
        if stop is not None:
            stop()
        for f in Path(tmp).glob("*"):
            f.unlink()
        os.rmdir(tmp)
    if a.json:
        with open(a.json, "w") as fh:
            fh.write("\n".join(json.dumps(r) for r in results) + "\n")


if __name__ == "__main__":
    main()
