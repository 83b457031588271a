#!/usr/bin/env python3
"""Markdown table from a gateway run: summarize_gw.py results/<stamp> > summary.md.

Medians over reps; "added" latencies are taken against `direct` within the same rep first, then
the median of those. CPU is the gateway process tree's utime+stime (/proc) over the driver run
divided by the requests (warm-up included) or chunks it carried. "µs/chunk marginal" removes the
per-request cost measured non-stream: (CPU per stream - CPU per non-stream request) / chunks.
"""
import json
import os
import statistics
import sys

TARGETS = ("direct", "nginx", "bare", "bare_fast", "dsk_base", "dsk", "dsk_redis", "litellm")
NAMES = {"direct": "direct (no gateway)", "nginx": "nginx proxy", "bare": "bare aiohttp proxy (floor on aiohttp)", "bare_fast": "bare uvloop+httptools proxy (floor on our stack)", "dsk": "**dsk gateway (SQLite)**",
         "dsk_redis": "**dsk gateway (Redis)**",
         "dsk_base": "dsk gateway (%s), DSK_BASE_SRC tree" % (
             "Redis" if os.environ.get("DSK_BASE_STATE") == "redis" else "SQLite"), "litellm": "LiteLLM proxy"}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def f(x, nd=0):
    return "—" if x is None else f"{x:,.{nd}f}"


def main():
    res = sys.argv[1]
    with open(os.path.join(res, "raw.jsonl")) as fh:
        rows = [json.loads(x) for x in fh]
    with open(os.path.join(res, "manifest.json")) as fh:
        man = json.load(fh)
    chunks = man["stream"]["chunks"]
    by = {}
    for r in rows:
        by.setdefault(r["metric"], {}).setdefault(r["target"], {})[r["rep"]] = r

    def cpu_req(r):
        return r["gw_cpu_s"] / r["reqs_through"] * 1e6 if r.get("gw_cpu_s") is not None and r.get("reqs_through") else None

    def stat(metric, t, get):
        return med([get(r) for r in by.get(metric, {}).get(t, {}).values()])

    def added(metric, t, get):
        out = []
        for rep, r in by.get(metric, {}).get(t, {}).items():
            b = by.get(metric, {}).get("direct", {}).get(rep)
            if b and get(b) is not None and get(r) is not None:
                out.append(get(r) - get(b))
        return med(out)

    def lat(key, p):
        return lambda r: (r.get(key) or {}).get(p)

    errors = sum(r.get("errors") or 0 for r in rows) + sum(1 for r in rows if r.get("rc"))
    present = [t for t in TARGETS if any(t in d for d in by.values())]
    print("| target | CPU µs/request | req/s (c=100) | CPU µs/chunk | µs/chunk marginal | added p50 ms "
          "| added p99 ms | added TTFC p50 ms | added TTFC p99 ms | RSS idle MB | RSS peak MB, "
          f"{(next(iter(by.get('rss', {}).get('dsk', {}).values()), {}) or {}).get('n', 'N')} streams |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t in present:
        per_req = stat("tput_ns", t, cpu_req)
        per_stream = stat("tput_s", t, cpu_req)
        per_chunk = per_stream / chunks if per_stream is not None else None
        marginal = (per_stream - per_req) / chunks if per_stream is not None and per_req is not None else None
        rss = by.get("rss", {}).get(t, {}).get(1, {})
        gw = t != "direct"
        print(f"| {NAMES[t]} | {f(per_req) if gw else '—'} | {f(stat('tput_ns', t, lambda r: r.get('rps')))} "
              f"| {f(per_chunk, 1) if gw else '—'} | {f(marginal, 1) if gw else '—'} "
              f"| {f(added('lat_ns', t, lat('lat_ms', 'p50')), 2) if gw else '—'} "
              f"| {f(added('lat_ns', t, lat('lat_ms', 'p99')), 2) if gw else '—'} "
              f"| {f(added('ttfc_s', t, lat('first_ms', 'p50')), 2) if gw else '—'} "
              f"| {f(added('ttfc_s', t, lat('first_ms', 'p99')), 2) if gw else '—'} "
              f"| {f(rss.get('gw_rss_before_mb'), 0) if gw else '—'} | {f(rss.get('gw_rss_peak_mb'), 0) if gw else '—'} |")
    print()
    print("direct: p50 ms " + f(stat("lat_ns", "direct", lat("lat_ms", "p50")), 2)
          + ", TTFC p99 ms " + f(stat("ttfc_s", "direct", lat("first_ms", "p99")), 2)
          + f"; reps per cell: {max((len(v) for d in by.values() for v in d.values()), default=0)}"
          + f"; driver errors or failed runs: {errors}")


if __name__ == "__main__":
    main()
