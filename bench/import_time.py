#!/usr/bin/env python3
"""Cold-start cost of `import deepseek_kit`, in fresh interpreters.

For each module: the median wall time of `python -c "import X"` over --runs fresh interpreters,
minus the median of a bare `python -c pass` (runs interleaved so machine noise spreads evenly;
one unmeasured warm-up each so .pyc files exist and the page cache is warm). aiohttp and openai
are measured alongside for context. Then, from `python -X importtime -c "import deepseek_kit"`
(median of 3), the modules with the largest self time, to show where the milliseconds go, and
which heavy libraries the import pulls in.

usage: import_time.py [--runs 21] [--python PATH] [--json OUT.jsonl] [modules...]
Target: deepseek_kit <= 60 ms over the bare interpreter.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--runs", type=int, default=21)
ap.add_argument("--python", default=sys.executable)
ap.add_argument("--json", default="", help="also write one JSON line per module here")
ap.add_argument("modules", nargs="*", help="module names or LABEL=CODE (default: see DEFAULTS)")
a = ap.parse_args()

env = dict(os.environ)
env.pop("PYTHONDONTWRITEBYTECODE", None)
env.pop("PYTHONPROFILEIMPORTTIME", None)
BARE = "(bare: -c pass)"
DK = "deepseek_kit"
# `import deepseek_kit` is lazy (PEP 562): names load on first access and aiohttp on the first
# request, so the realistic costs are measured too.
DEFAULTS = [
    DK,
    "from deepseek_kit import AsyncClient=from deepseek_kit import AsyncClient",
    "AsyncClient + aiohttp (paid at 1st request)=from deepseek_kit import AsyncClient; import aiohttp",
    "aiohttp",
    "openai",
]
codes = {BARE: "pass"}
for spec in a.modules or DEFAULTS:
    label, _, code = spec.partition("=")
    codes[label] = code or f"import {label}"
PROFILED = "from deepseek_kit import AsyncClient"  # -X importtime breakdown of this one


def run(code, *extra):
    t = time.perf_counter()
    r = subprocess.run([a.python, *extra, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"{code!r} failed: {r.stderr[-400:]}")
    return dt, r


available = {}
for m, code in codes.items():  # warm-up; skip modules that are not installed
    try:
        run(code)
        available[m] = code
    except RuntimeError as e:
        print(f"note: skipping {m}: {str(e).splitlines()[-1]}", file=sys.stderr)

wall = {m: [] for m in available}
for _ in range(a.runs):
    for m, code in available.items():
        wall[m].append(run(code)[0])

base = statistics.median(wall[BARE])
rows = []
for m, xs in wall.items():
    med = statistics.median(xs)
    rows.append({"module": m, "wall_ms_median": round(med * 1e3, 1), "wall_ms_min": round(min(xs) * 1e3, 1),
                 "ms_over_bare": round((med - base) * 1e3, 1), "runs": len(xs),
                 "python": a.python})

# where does the import time go? `-X importtime` of PROFILED: the tree of imports costing >= 2 ms
# cumulative (indent = nesting), minus what a bare interpreter imports anyway (site, encodings).
tree: list[tuple[int, str, int, int]] = []
if DK in available:
    _, rb = run("pass", "-X", "importtime")
    bare_top = {ln.split("|")[2].strip() for ln in rb.stderr.splitlines() if ln.count("|") == 2}
    totals = []
    for _ in range(3):
        _, r = run(PROFILED, "-X", "importtime")
        tree, total = [], 0
        for line in r.stderr.splitlines():
            parts = line.split("|")
            if len(parts) != 3 or "self [us]" in parts[0]:
                continue
            name = parts[2].rstrip()
            depth = (len(name) - len(name.lstrip())) // 2
            mod = name.strip()
            self_us, cum_us = int(parts[0].split(":")[1]), int(parts[1])
            if depth == 0 and mod not in bare_top:
                total += cum_us
            tree.append((depth, mod, self_us, cum_us))
        totals.append(total)
    for row in rows:
        if row["module"] == DK:
            row["profiled_code"] = PROFILED
            row["importtime_total_ms"] = round(statistics.median(totals) / 1e3, 1)

print(f"python: {a.python}  runs: {a.runs} (median)\n")
print("| module | `python -c 'import X'` ms | ms over bare `-c pass` | min ms |")
print("|---|---:|---:|---:|")
for row in rows:
    print(f"| {row['module']} | {row['wall_ms_median']:.1f} | "
          f"{'–' if row['module'] == BARE else format(row['ms_over_bare'], '.1f')} | {row['wall_ms_min']:.1f} |")
if tree:
    dk = next(r for r in rows if r["module"] == DK)
    print(f"\n`python -X importtime -c '{PROFILED}'`: {dk['importtime_total_ms']} ms of imports beyond a bare "
          "interpreter (median of 3); imports costing >= 2 ms cumulative (indent = nesting):")
    print(f"  {'cum ms':>7} {'self ms':>7}  module")
    for depth, mod, self_us, cum_us in tree:
        if cum_us >= 2000 and mod.split(".")[0] not in ("site", "encodings") and depth <= 5:
            print(f"  {cum_us / 1e3:7.1f} {self_us / 1e3:7.1f}  {'  ' * depth}{mod}")
verdict = next((r for r in rows if r["module"] == DK), None)
if verdict:
    ok = verdict["ms_over_bare"] <= 60
    print(f"\nTARGET import deepseek_kit <= 60 ms over bare: {verdict['ms_over_bare']:.1f} ms -> "
          f"{'PASS' if ok else 'FAIL'}")
    real = next((r for r in rows if r["module"] == "from deepseek_kit import AsyncClient"), None)
    if real:
        print(f"  (import is lazy; `from deepseek_kit import AsyncClient` costs {real['ms_over_bare']:.1f} ms "
              f"over bare -> {'within' if real['ms_over_bare'] <= 60 else 'OVER'} the same 60 ms)")
if a.json:
    with open(a.json, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
