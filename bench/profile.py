#!/usr/bin/env python3
"""cProfile of a driver's timed region, with deepseek_kit's own functions pulled out.

Runs the driver with BENCH_CPROFILE set (the shared harness, common.py, profiles only the timed
region), then prints: the driver's JSON line; own time grouped by package (deepseek_kit split per
module; C functions named by their owner, e.g. msgspec's decoder); the top functions overall by
own time; and deepseek_kit's functions by own time and by cumulative time. cProfile inflates
Python-level calls (roughly 2x), so read shares and rankings, not absolute times.

usage: profile.py DRIVER.py [driver args...] [--top 25]
  e.g. profile.py drivers/drv_deepseek_kit.py --base-url http://127.0.0.1:18080/sse/v1 --n 200 --concurrency 50 --stream
"""
import os
import pstats
import subprocess
import sys
import tempfile

TOP = 25
argv = sys.argv[1:]
if "--top" in argv:
    i = argv.index("--top")
    TOP = int(argv[i + 1])
    del argv[i:i + 2]
drv, rest = argv[0], argv[1:]


def short(fn: str) -> str:
    for marker, prefix in (("/site-packages/", ""), ("/src/deepseek_kit/", "deepseek_kit/"),
                           ("/bench/drivers/", "drivers/")):
        if marker in fn:
            return prefix + fn.split(marker, 1)[1]
    if "/lib/python3" in fn:
        return "stdlib:" + fn.split("/lib/python3", 1)[1].split("/", 1)[1]
    return fn


def group(fn: str, name: str) -> str:
    if fn == "~":  # C function: name it by its owner
        for lib in ("msgspec", "aiohttp", "multidict", "yarl", "propcache", "frozenlist", "_asyncio", "select",
                    "socket", "_ssl"):
            if lib in name:
                return f"C: {lib}"
        return "C: builtins (str/bytes/list/dict ops, isinstance, ...)"
    s = short(fn)
    if s.startswith("deepseek_kit/"):
        return s.split(".py")[0].replace("/", ".")
    if s.startswith("stdlib:asyncio/"):
        return "stdlib: asyncio"
    if s.startswith("stdlib:"):
        return "stdlib: other"
    if s.startswith("drivers/") or (s.endswith(".py") and "/" not in s):
        return "bench harness / driver"
    if s.startswith("<frozen"):
        return "importlib"
    return s.split("/")[0]


with tempfile.TemporaryDirectory() as td:
    pf = os.path.join(td, "prof.out")
    env = dict(os.environ, BENCH_CPROFILE=pf)
    r = subprocess.run([sys.executable, drv, *rest], env=env, capture_output=True, text=True, timeout=600)
    print(r.stdout.strip())
    if r.returncode not in (0, 1) or not os.path.exists(pf):
        sys.exit(f"driver failed rc={r.returncode}: {r.stderr[-800:]}")
    st = pstats.Stats(pf)

total = st.total_tt
rows, roll = [], {}
for (fn, line, name), (_cc, nc, tt, ct, _callers) in st.stats.items():
    g = group(fn, name)
    label = name if fn == "~" else f"{short(fn)}:{line}({name})"
    rows.append((tt, ct, nc, label, g))
    roll[g] = roll.get(g, 0.0) + tt

print(f"\nprofiled timed region: {total:.3f} s of own time in {len(rows)} functions (cProfile-inflated)")
print("\nown time by group:")
for g, tt in sorted(roll.items(), key=lambda x: -x[1]):
    if tt / total >= 0.003:
        print(f"  {tt:8.3f} {100 * tt / total:5.1f}%  {g}")
dk = sum(tt for g, tt in roll.items() if g.startswith("deepseek_kit"))
print(f"  -> deepseek_kit Python code in total: {dk:.3f} s = {100 * dk / total:.1f}% of own time")

print(f"\ntop {TOP} functions by own time:")
print(f"  {'tottime':>8} {'%':>5} {'cumtime':>8} {'ncalls':>9}  function")
for tt, ct, nc, label, _g in sorted(rows, reverse=True)[:TOP]:
    print(f"  {tt:8.3f} {100 * tt / total:5.1f} {ct:8.3f} {nc:9d}  {label}")

dk_rows = [x for x in rows if x[4].startswith("deepseek_kit")]
print(f"\ndeepseek_kit functions by own time (top {TOP}):")
for tt, ct, nc, label, _g in sorted(dk_rows, reverse=True)[:TOP]:
    print(f"  {tt:8.3f} {100 * tt / total:5.1f} {ct:8.3f} {nc:9d}  {label}")
print(f"\ndeepseek_kit functions by cumulative time (top {TOP}; includes callees, overlaps):")
for tt, ct, nc, label, _g in sorted(dk_rows, key=lambda x: -x[1])[:TOP]:
    print(f"  {ct:8.3f} {100 * ct / total:5.1f}% cum {tt:8.3f} own {nc:9d}  {label}")
