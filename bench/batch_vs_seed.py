#!/usr/bin/env python3
"""`dsk batch` against the seed's approach on the same 10,000 prompts and the same emulator:
throughput (items/s, and the ratio to the seed) and peak memory (max RSS) of each.

The seed's approach, as the issue describes it: openai-python's `AsyncOpenAI`, the prompts loaded
into a list, `asyncio.gather` over 10 requests at a time, each batch's answers appended to the
output file before the next batch starts. `dsk batch` runs as users run it (`dsk batch IN -o OUT`:
journal with fsync, logging to $DSK_HOME, 4 retries), at its default concurrency (16) and at 64,
and at 64 without the request log (`--no-log`), to show what logging every call costs.

One command does it all: it writes the prompts, starts the emulator in a child process
(`dsk serve --mock --port 0`, its own CPU), then runs every contender in its own process, one
after another, REPS times in rotated order. Per run: wall time of the whole process (start-up
included), items/s = items / wall, peak RSS and CPU seconds from `os.wait4` of that process
(forked from a small intermediary, see `measure`).
Every output is checked: one JSON line per id, all ids present.

Two scenarios:
  * `fast`: the emulator answers at once, so client overhead and scheduling dominate;
  * `latency`: every prompt carries `X-DSK-Emulate: delay_headers=S` with S drawn once (seeded)
    from 5-60 ms, as real answers vary; a gather of 10 then waits for its slowest member.

usage: bench/batch_vs_seed.py [--n 10000] [--reps 1] [--scenarios fast,latency] [--json FILE]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KEY = "sk-bench-batch-vs-seed-0000"
MODEL = "deepseek-flash"


# ---------------------------------------------------------------------------------------------
# The seed's approach (runs in its own process: `batch_vs_seed.py --seed-driver IN OUT URL`)


async def seed_driver(src: str, dst: str, base_url: str) -> None:
    from openai import AsyncOpenAI

    with open(src, encoding="utf-8") as f:  # noqa: ASYNC230 - the seed reads it all first
        items = [json.loads(line) for line in f if line.strip()]
    client = AsyncOpenAI(api_key=KEY, base_url=base_url)

    async def one(item: dict) -> dict:
        resp = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": item["prompt"]}],
            extra_headers=item.get("extra_headers"))
        return {"id": item["id"], "response": resp.model_dump()}

    with open(dst, "w", encoding="utf-8") as out:  # noqa: ASYNC230 - as the seed does
        for i in range(0, len(items), 10):
            results = await asyncio.gather(*(one(it) for it in items[i:i + 10]))
            for r in results:
                out.write(json.dumps(r) + "\n")
    await client.close()


# ---------------------------------------------------------------------------------------------
# Harness


def write_prompts(path: Path, n: int, latency: bool) -> None:
    rng = random.Random(20261125)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            rec: dict = {"id": f"p{i}", "prompt": f"Question {i}: name one prime number above {i}."}
            if latency:
                rec["extra_headers"] = {"X-DSK-Emulate": f"delay_headers={rng.uniform(0.005, 0.060):.3f}"}
            f.write(json.dumps(rec) + "\n")


def start_emulator() -> tuple[subprocess.Popen, str]:
    p = subprocess.Popen([sys.executable, "-m", "deepseek_kit.cli.main", "serve", "--mock", "--port", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    m = re.search(r"http://127\.0\.0\.1:\d+", line)
    if not m:
        p.kill()
        raise SystemExit(f"the emulator did not start: {line!r}")
    return p, m.group(0)


def measure(result: str, cmd: list[str]) -> None:
    """`--measure RESULT -- CMD...`: fork and exec CMD, write its wall time, CPU and peak RSS.

    Why an intermediary: Linux folds the RSS high-water mark of the address space a process
    execs from into its `ru_maxrss`, and subprocess starts children with vfork, i.e. from the
    harness's own address space, so a child's peak would never read below the harness's (which
    grows as it checks outputs). Forked from this small process instead, a child's `ru_maxrss`
    is its own peak (or this process's, ~10 MB, whichever is larger)."""
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    _, status, ru = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    Path(result).write_text(json.dumps({"wall": wall, "rss_mb": ru.ru_maxrss / 1024,
                                        "cpu": ru.ru_utime + ru.ru_stime}))
    sys.exit(os.waitstatus_to_exitcode(status))


def run_child(cmd: list[str], env: dict[str, str], work: Path) -> dict[str, float]:
    result = work / "measure.json"
    p = subprocess.run([sys.executable, "-S", __file__, "--measure", str(result), "--", *cmd], env=env,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise SystemExit(f"{cmd[:6]} failed ({p.returncode}): {p.stderr.decode()[-800:]}")
    out: dict[str, float] = json.loads(result.read_text())
    return out


def check_output(path: Path, n: int) -> None:
    ids = [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()]
    if len(ids) != n or set(ids) != {f"p{i}" for i in range(n)}:
        raise SystemExit(f"{path}: {len(ids)} lines, {len(set(ids))} distinct ids, expected {n}")


def contenders(src: Path, work: Path, url: str) -> dict[str, list[str]]:
    py = sys.executable
    dsk = [py, "-m", "deepseek_kit.cli.main", "batch", str(src), "--base-url", url, "-q"]
    return {
        "seed: openai AsyncOpenAI, gather x10": [py, __file__, "--seed-driver", str(src), "{out}", url + "/v1"],
        "dsk batch (defaults: -c 16)": [*dsk, "-o", "{out}"],
        "dsk batch -c 64": [*dsk, "-o", "{out}", "-c", "64"],
        "dsk batch -c 64 --no-log": [*dsk, "-o", "{out}", "-c", "64", "--no-log"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--scenarios", default="fast,latency")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args()
    emu, url = start_emulator()
    results: list[dict] = []
    try:
        with tempfile.TemporaryDirectory(prefix="dsk-batch-bench-") as tmp:
            work = Path(tmp)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("DEEPSEEK_", "DSK_", "OPENAI_"))}
            env.update(DSK_HOME=str(work / "home"), DEEPSEEK_API_KEY=KEY)
            for scenario in args.scenarios.split(","):
                src = work / f"{scenario}.jsonl"
                write_prompts(src, args.n, scenario == "latency")
                runs: dict[str, list[dict[str, float]]] = {}
                names = list(contenders(src, work, url))
                for rep in range(args.reps):
                    order = names[rep % len(names):] + names[:rep % len(names)]
                    for name in order:
                        out = work / f"out-{len(results)}-{rep}-{names.index(name)}.jsonl"
                        cmd = [c.replace("{out}", str(out)) for c in contenders(src, work, url)[name]]
                        for stale in work.glob(out.name + "*"):
                            stale.unlink()
                        r = run_child(cmd, env, work)
                        check_output(out, args.n)
                        runs.setdefault(name, []).append(r)
                        print(f"  {scenario:8} {name:38} {args.n / r['wall']:8.1f} items/s  "
                              f"{r['rss_mb']:6.1f} MB  cpu {r['cpu']:.1f} s", file=sys.stderr, flush=True)
                seed_rate = args.n / statistics.median(r["wall"] for r in runs[names[0]])
                for name in names:
                    wall = statistics.median(r["wall"] for r in runs[name])
                    results.append({
                        "scenario": scenario, "contender": name, "items": args.n, "reps": args.reps,
                        "wall_s": round(wall, 2), "items_per_s": round(args.n / wall, 1),
                        "ratio_to_seed": round(args.n / wall / seed_rate, 2),
                        "peak_rss_mb": round(max(r["rss_mb"] for r in runs[name]), 1),
                        "cpu_ms_per_item": round(1000 * statistics.median(r["cpu"] for r in runs[name]) / args.n, 3),
                    })
    finally:
        emu.terminate()
        emu.wait(10)
    print(f"\n{args.n:,} prompts, emulator in its own process, {os.cpu_count()} CPUs, median of {args.reps} "
          "run(s), each contender in its own process (wall time includes interpreter start-up)\n")
    print("| scenario | contender | items/s | ratio to seed | peak RSS MB | CPU ms/item |")
    print("|---|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['scenario']} | {r['contender']} | {r['items_per_s']:,.1f} | {r['ratio_to_seed']:.2f} | "
              f"{r['peak_rss_mb']:.1f} | {r['cpu_ms_per_item']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) > 4 and sys.argv[1] == "--measure" and sys.argv[3] == "--":
        measure(sys.argv[2], sys.argv[4:])
    elif len(sys.argv) == 5 and sys.argv[1] == "--seed-driver":
        asyncio.run(seed_driver(sys.argv[2], sys.argv[3], sys.argv[4]))
    else:
        main()
