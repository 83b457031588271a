#!/usr/bin/env python3
"""Peak RSS of ONE deepseek_kit client process holding N (default 1,000) concurrent streams.

Opens N streams at once with `AsyncClient` (default timeout + retry stack, pool of N
connections) against a slow upstream that keeps every stream open for ~10 s (nginx echo module,
`/sse-slow/v1`, made by gen_slow_fixture.py; run.sh sets it up), reads each to completion with
`async with await create(..., stream=True) as s: async for chunk in s` + `get_final_completion()`,
checks every stream against the fixture manifest, and prints one JSON line:

  peak_rss_mb          ru_maxrss of this process (the number the <= 200 MB target is about)
  baseline_rss_mb      RSS after imports, client creation and one warm-up stream
  per_stream_kb        (peak - baseline) / N
  first_chunk_before_any_finished   streams that had received their first chunk before the
                       first stream finished: == N proves all N were open at once
  max_open_streams     most streams between first chunk and end at one moment
  nginx_active_max     highest `Active connections` nginx stub_status reported while running
                       (minus the probe's own connection)

usage: rss_streams.py --base-url http://127.0.0.1:18080/sse-slow/v1 [--streams 1000]
                      [--status-url http://127.0.0.1:18080/nginx_status] [--manifest FILE]
"""
import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import resource
import sys
from urllib.parse import urlparse


def vm_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


async def stub_active(url: str) -> int | None:
    """`Active connections` from nginx stub_status, over a raw socket (no client library)."""
    u = urlparse(url)
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(u.hostname, u.port or 80), 5)
        w.write(f"GET {u.path} HTTP/1.0\r\nHost: {u.hostname}\r\n\r\n".encode())
        data = await asyncio.wait_for(r.read(), 5)
        w.close()
        body = data.split(b"\r\n\r\n", 1)[1].decode()
        return int(body.split("\n", 1)[0].split(":")[1]) - 1  # minus this probe
    except (OSError, asyncio.TimeoutError, IndexError, ValueError):
        return None


async def run(a, expect) -> dict:
    import deepseek_kit
    from deepseek_kit import AsyncClient

    client = AsyncClient(api_key="sk-bench-dummy", base_url=a.base_url, max_connections=a.streams)
    create = client.chat.completions.create
    messages = [{"role": "user", "content": "Say hello."}]
    loop = asyncio.get_running_loop()
    first_at: list[float] = []
    done_at: list[float] = []
    errors: list[str] = []
    sample = [3]

    async def one(timed: bool) -> None:
        chunks = 0
        async with await create(model="deepseek-chat", messages=messages, stream=True) as s:
            async for _chunk in s:
                if chunks == 0 and timed:
                    first_at.append(loop.time())
                chunks += 1
            final = s.get_final_completion()
        if timed:
            done_at.append(loop.time())
        content = final.choices[0].message.content or ""
        if chunks != expect["chunks"] or len(content) != expect["content_len"]:
            raise ValueError(f"validation: chunks={chunks} len={len(content)}")
        if sample[0] > 0:
            sample[0] -= 1
            if hashlib.sha256(content.encode()).hexdigest() != expect["content_sha256"]:
                raise ValueError("validation: sha256 mismatch")

    async def guarded() -> None:
        try:
            await one(True)
        except Exception as e:  # count every failure
            errors.append(f"{type(e).__name__}: {e}"[:200])

    await one(False)  # warm-up: loads aiohttp, fills caches
    baseline = vm_rss_mb()
    active_max = [0]
    stop = asyncio.Event()

    async def prober() -> None:
        while not stop.is_set():
            n = await stub_active(a.status_url) if a.status_url else None
            if n is not None and n > active_max[0]:
                active_max[0] = n
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)

    probe = asyncio.ensure_future(prober())
    t0 = loop.time()
    tasks = [asyncio.ensure_future(guarded()) for _ in range(a.streams)]
    _finished, pending = await asyncio.wait(tasks, timeout=a.deadline)
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
        errors.append(f"deadline: {len(pending)} streams not finished")
    elapsed = loop.time() - t0
    stop.set()
    await probe
    await client.close()

    first_done = min(done_at) if done_at else float("inf")
    before = sum(1 for t in first_at if t < first_done)
    ev = sorted([(t, 1) for t in first_at] + [(t, -1) for t in done_at])
    cur = mx = 0
    for _, d in ev:
        cur += d
        mx = max(mx, cur)
    peak = peak_rss_mb()
    return {
        "client": "deepseek_kit " + deepseek_kit.__version__,
        "streams": a.streams,
        "ok": len(done_at),
        "errors": len(errors),
        "error_samples": errors[:3],
        "seconds": round(elapsed, 2),
        "chunks_per_stream": expect["chunks"],
        "peak_rss_mb": round(peak, 1),
        "baseline_rss_mb": round(baseline, 1),
        "per_stream_kb": round((peak - baseline) * 1024 / a.streams, 1),
        "first_chunk_before_any_finished": before,
        "max_open_streams": mx,
        "nginx_active_max": active_max[0] if a.status_url else None,
        "all_concurrent": before == a.streams,
        "base_url": a.base_url,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--status-url", default="")
    ap.add_argument("--deadline", type=float, default=180.0)
    ap.add_argument("--uvloop", action="store_true")
    ap.add_argument("--manifest", default=os.environ.get(
        "BENCH_MANIFEST", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".run", "www",
                                       "manifest.json")))
    a = ap.parse_args()
    for u in filter(None, (a.base_url, a.status_url)):
        if urlparse(u).hostname not in ("127.0.0.1", "localhost", "::1"):
            sys.exit(f"refusing non-loopback URL {u!r}")
    with open(a.manifest) as f:
        expect = json.load(f)["stream"]
    if a.uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    out = asyncio.run(run(a, expect))
    print(json.dumps(out), flush=True)
    sys.exit(0 if out["errors"] == 0 and out["all_concurrent"] else 1)


if __name__ == "__main__":
    main()
