#!/usr/bin/env python3
"""Summarize a bench/run.sh results directory: medians, SAME-REP ratios, target verdicts.

Reads RES/raw.jsonl (one JSON line per driver run, shared harness format, label "cfg=.. rep=.."),
RES/import_time.jsonl (bench/import_time.py) and RES/rss.json (bench/rss_streams.py).
Ratios: for each rep, client metric / reference metric measured in the same rep (same config,
minutes apart), then the median over reps; this cancels most of the slow drift of a shared
machine. Prints markdown; writes RES/summary_dsk.json.
usage: summarize.py RESULTS_DIR
"""
import json
import os
import statistics
import sys

d = sys.argv[1]


def jl(name):
    p = os.path.join(d, name)
    if not os.path.exists(p):
        return []
    with open(p) as fh:
        return [json.loads(x) for x in fh if x.startswith("{")]


rows = jl("raw.jsonl")
imports = jl("import_time.jsonl")
rss = (jl("rss.json") or [None])[-1]
paired = jl("paired.jsonl")
micro = ""
if os.path.exists(os.path.join(d, "micro.txt")):
    with open(os.path.join(d, "micro.txt")) as _fh:
        micro = _fh.read()

ORDER = ["aiohttp", "aiohttp_msgspec", "aiohttp_uvloop", "deepseek_kit", "deepseek_kit_uvloop",
         "openai", "httpx", "httpx2", "litellm"]
ORDER += sorted({r["client"] for r in rows} - set(ORDER))
CFGS = {
    "nonstream": "non-stream: JSON body 583 B",
    "stream": "stream `sse`: 201 chunks/stream, static body with Content-Length",
    "stream_ka": "stream `sse-ka`: + 30 `: keep-alive` comments/stream",
    "stream_chunked": "stream `sse-chunked`: Transfer-Encoding chunked, one HTTP chunk per SSE event",
}


def tag(r, key):
    for part in r.get("label", "").split():
        k, _, v = part.partition("=")
        if k == key:
            return v
    return None


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def f(x, nd=0):
    return "–" if x is None else f"{x:,.{nd}f}"


by = {}
for r in rows:
    by.setdefault((tag(r, "cfg"), r["client"]), []).append(r)

summary = {"configs": {}}
out = []
cfgs = [c for c in CFGS if any(k[0] == c for k in by)] + sorted({k[0] for k in by} - set(CFGS))
for cfg in cfgs:
    stream = cfg != "nonstream"
    metric = "chunks_per_s" if stream else "rps"
    unit = "chunks_total" if stream else "ok"
    refs = {}
    for ref in ("aiohttp", "openai"):
        refs[ref] = {tag(r, "rep"): r[metric] for r in by.get((cfg, ref), []) if r["errors"] == 0}
    # CPU seconds per unit of the reference, per rep: robust to the client being descheduled by
    # other load on a shared machine (throughput is not)
    ref_cpu = {tag(r, "rep"): r["cpu_s"] / r[unit] for r in by.get((cfg, "aiohttp"), [])
               if r["errors"] == 0 and r.get(unit) and r.get("cpu_s")}
    any_r = next(r for (c, _), rs in by.items() if c == cfg for r in rs)
    nreps = len({tag(r, "rep") for (c, _), rs in by.items() if c == cfg for r in rs})
    out.append(f"\n### {cfg}: {CFGS.get(cfg, '')} (N={any_r['n']}, c={any_r['concurrency']}, {nreps} reps)\n")
    out.append(f"| client | {'chunks/s' if stream else 'req/s'} (median) | x aiohttp (same-rep median) "
               "| x aiohttp per rep | x openai (same-rep median) | µs CPU / "
               f"{'chunk' if stream else 'request'} | x aiohttp by CPU/unit | CPU util | peak RSS MB | errors |")
    out.append("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for client in ORDER:
        rs = by.get((cfg, client))
        if not rs:
            continue
        ratio = {}
        for ref, base in refs.items():
            ratio[ref] = [r[metric] / base[tag(r, "rep")] for r in sorted(rs, key=lambda r: tag(r, "rep"))
                          if base.get(tag(r, "rep")) and r["errors"] == 0]
        cpu_ratio = [ref_cpu[tag(r, "rep")] / (r["cpu_s"] / r[unit]) for r in rs
                     if ref_cpu.get(tag(r, "rep")) and r.get(unit) and r.get("cpu_s") and r["errors"] == 0]
        s = {
            "version": rs[0].get("version"),
            "reps": len(rs),
            "metric": metric,
            "median": med([r[metric] for r in rs]),
            "all": [r[metric] for r in sorted(rs, key=lambda r: tag(r, "rep"))],
            "x_aiohttp": med(ratio["aiohttp"]),
            "x_aiohttp_all": [round(x, 3) for x in ratio["aiohttp"]],
            "x_openai": med(ratio["openai"]),
            "us_cpu_per_unit": med([r["cpu_s"] / r[unit] * 1e6 for r in rs if r.get(unit)]),
            "x_aiohttp_cpu": med(cpu_ratio),
            "x_aiohttp_cpu_all": [round(x, 3) for x in cpu_ratio],
            "cpu_util": med([r.get("cpu_util") for r in rs]),
            "peak_rss_mb": med([r["peak_rss_mb"] for r in rs]),
            "errors": sum(r["errors"] + r.get("warmup_errors", 0) for r in rs),
        }
        summary["configs"].setdefault(cfg, {})[client] = s
        xa = "1.00 (ref)" if client == "aiohttp" else f(s["x_aiohttp"], 3)
        xo = "1.00 (ref)" if client == "openai" else f(s["x_openai"], 2)
        out.append(f"| {client} | {f(s['median'])} | {xa} | {', '.join(f'{x:.2f}' for x in ratio['aiohttp'])} "
                   f"| {xo} | {f(s['us_cpu_per_unit'], 1)} | {f(s['x_aiohttp_cpu'], 3)} | {f(s['cpu_util'], 2)} | {f(s['peak_rss_mb'], 1)} "
                   f"| {s['errors']} |")

if paired:
    out.append("\n### Paired interleaved A/B in one process (bench/paired.py)\n")
    out.append("Same driver code, short blocks alternated per round (order rotated), each compared with the aiohttp "
               f"block of the same round; median over {paired[0]['rounds']} rounds. Much less exposed to machine "
               "noise than separate processes minutes apart.\n")
    out.append("| config | client | units/s (median) | x aiohttp (paired median) | µs CPU / unit | x aiohttp by CPU (p25–p75) |")
    out.append("|---|---|---:|---:|---:|---:|")
    for pr in paired:
        for client, row in pr["clients"].items():
            q = row.get("x_aiohttp_cpu_p25_p75") or [None, None]
            out.append(f"| {pr['config']} | {client} | {f(row['throughput_median'])} {row['unit']}s/s | "
                       f"{f(row.get('x_aiohttp_throughput'), 3)} | {f(row['us_cpu_per_unit_median'], 1)} | "
                       f"{f(row.get('x_aiohttp_cpu'), 3)} ({q[0]}–{q[1]}) |")
    summary["paired"] = paired

if micro:
    out.append("\n### deepseek_kit's own layers, in process, no sockets (bench/micro.py)\n")
    out.append(micro.strip())

if imports:
    out.append("\n### Import time (fresh interpreters, median; bench/import_time.py)\n")
    out.append("| import | wall ms | ms over bare `python -c pass` |")
    out.append("|---|---:|---:|")
    for m in imports:
        out.append(f"| {m['module']} | {f(m['wall_ms_median'], 1)} | "
                   f"{'–' if m['module'].startswith('(bare') else f(m['ms_over_bare'], 1)} |")
    summary["imports"] = imports

if rss:
    out.append("\n### 1,000 concurrent streams, one deepseek_kit process (bench/rss_streams.py)\n")
    out.append(f"peak RSS {rss['peak_rss_mb']} MB (baseline after imports + 1 stream {rss['baseline_rss_mb']} MB, "
               f"{rss['per_stream_kb']} KB/stream); {rss['streams']} streams, {rss['ok']} ok, {rss['errors']} errors, "
               f"{rss['seconds']} s; first chunk before any stream finished: {rss['first_chunk_before_any_finished']}; "
               f"max open at once: {rss['max_open_streams']}; nginx active connections max: {rss['nginx_active_max']}")
    summary["rss"] = rss

# ---- targets
C = summary["configs"]


def ratio_of(cfg, client="deepseek_kit"):
    return C.get(cfg, {}).get(client, {}).get("x_aiohttp")


targets = []
for cfg, want, what in (("nonstream", 0.85, "non-stream req/s"), ("stream", 1.0, "stream chunks/s, static `sse`"),
                        ("stream_chunked", 1.0, "stream chunks/s, `sse-chunked`"),
                        ("stream_ka", None, "stream chunks/s, `sse-ka` (no target)")):
    x = ratio_of(cfg)
    if x is None:
        continue
    allr = C[cfg]["deepseek_kit"]["x_aiohttp_all"]
    verdict = "info" if want is None else ("PASS" if x >= want else "FAIL")
    if want is not None and verdict == "PASS" and min(allr) < want:
        verdict = "PASS (median; not every rep)"
    xc = C[cfg]["deepseek_kit"].get("x_aiohttp_cpu")
    cpu_note = f"; by CPU/unit {xc:.3f}×" if xc is not None else ""
    targets.append((f"{what} ≥ {want}× aiohttp" if want else what,
                    f"{x:.3f}× (reps: {', '.join(map(str, allr))}){cpu_note}", verdict))
for pr in paired:
    want = {"nonstream": 0.85, "stream": 1.0, "stream_chunked": 1.0}.get(pr["config"])
    row = pr["clients"].get("deepseek_kit")
    if want is None or not row or row.get("x_aiohttp_throughput") is None:
        continue
    x = row["x_aiohttp_throughput"]
    targets.append((f"paired A/B, {pr['config']} ≥ {want}× aiohttp", f"{x:.3f}× (by CPU {row['x_aiohttp_cpu']:.3f}×, "
                    f"p25–p75 {row['x_aiohttp_cpu_p25_p75'][0]}–{row['x_aiohttp_cpu_p25_p75'][1]})",
                    "PASS" if x >= want else "FAIL"))
imp = next((m for m in imports if m["module"] == "deepseek_kit"), None)
if imp:
    targets.append(("`import deepseek_kit` ≤ 60 ms over bare", f"{imp['ms_over_bare']:.1f} ms",
                    "PASS" if imp["ms_over_bare"] <= 60 else "FAIL"))
    real = next((m for m in imports if m["module"] == "from deepseek_kit import AsyncClient"), None)
    if real:
        targets.append(("(info) `from deepseek_kit import AsyncClient` ≤ 60 ms", f"{real['ms_over_bare']:.1f} ms",
                        "within" if real["ms_over_bare"] <= 60 else "over"))
if rss:
    ok = rss["peak_rss_mb"] <= 200 and rss["all_concurrent"] and rss["errors"] == 0
    targets.append(("peak RSS, 1,000 concurrent streams ≤ 200 MB", f"{rss['peak_rss_mb']} MB "
                    f"({rss['first_chunk_before_any_finished']}/{rss['streams']} open at once, {rss['errors']} errors)",
                    "PASS" if ok else "FAIL"))
if targets:
    out.insert(0, "\n### Targets (deepseek_kit)\n\n| target | measured | verdict |\n|---|---|---|\n"
               + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in targets))
    summary["targets"] = targets

print("\n".join(out).lstrip("\n"))
with open(os.path.join(d, "summary_dsk.json"), "w") as fh:
    json.dump(summary, fh, indent=1)
