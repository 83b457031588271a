#!/usr/bin/env python3
"""What MetricsStep costs: deepseek_kit with and without metrics, paired in one process.

Same method as paired.py (whose `block()` it reuses): short interleaved blocks, order rotated per
round, every client compared with the blocks of the SAME round, so machine noise cancels. Clients:

  aiohttp            the shared raw-aiohttp driver (the 1.00 reference)
  dsk                AsyncClient as a user gets it (default timeout and retry stack)
  dsk+metrics        the same with steps=[MetricsStep()] (summary only, the default)
  dsk+metrics+prom   the same plus a PrometheusHook on a private registry (if installed)

The fixture's model ("deepseek-chat") is given a price, so the cost arithmetic runs as it does for
DeepSeek's models. Reported per config: throughput and CPU per unit (request or chunk), each
client's ratio to aiohttp, and the ratio that matters here: dsk+metrics / dsk (median over rounds,
p25-p75), by throughput and by CPU.

Then (unless --no-micro) the step's own CPU per call without sockets: micro.py's fake transport
hands the fixture bytes to clients with and without the step, alternated, best of --repeat (CPU
time of this process); the difference is what MetricsStep adds per call (µs).

usage: metrics_overhead.py [--base http://127.0.0.1:18080] [--start-nginx] [--rounds 20]
                           [--configs nonstream,stream] [--json OUT] [--no-micro] [--repeat 7]
`--start-nginx` generates the shared fixtures in a temporary directory and runs the shared
nginx.conf on a free loopback port (stopped by pid at the end); otherwise nginx must be running
(bench/run.sh) and `--manifest` (default bench/.run/www/manifest.json) must match it.
"""
import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import paired  # noqa: E402  (puts the shared drivers on sys.path)

CONFIGS = {k: v for k, v in paired.CONFIGS.items()}


def dsk_factory(metrics: bool, prometheus: bool = False):
    async def make_client(args):
        from common import API_KEY, MESSAGES, MODEL

        from deepseek_kit import AsyncClient
        from deepseek_kit._steps.metrics.step import MetricsConfig, MetricsStep
        from deepseek_kit._wire.pricing import ModelPrice

        steps = []
        step = None
        if metrics:
            hooks = ()
            if prometheus:
                from prometheus_client import CollectorRegistry

                from deepseek_kit._steps.metrics.prometheus import PrometheusHook

                hooks = (PrometheusHook(CollectorRegistry()),)
            price = ModelPrice(Decimal("0.04"), Decimal("2"), Decimal("8"))
            step = MetricsStep(MetricsConfig(prices={MODEL: price}, hooks=hooks))
            steps.append(step)
        client = AsyncClient(api_key=API_KEY, base_url=args.base_url, max_connections=args.concurrency,
                             steps=steps)
        create = client.chat.completions.create

        async def one():
            if not args.stream:
                r = await create(model=MODEL, messages=MESSAGES)
                return 1, r.choices[0].message.content
            parts, chunks = [], 0
            async with await create(model=MODEL, messages=MESSAGES, stream=True) as s:
                async for chunk in s:
                    chunks += 1
                    if chunk.choices:
                        c = chunk.choices[0].delta.content
                        if c:
                            parts.append(c)
            return chunks, s.get_final_completion().choices[0].message.content

        async def close():
            await client.close()
            if step is not None:  # proof that every call was recorded and priced
                m = step.metrics
                if m.requests == 0 or m.cost <= 0 or m.errors_total:
                    raise RuntimeError(f"metrics did not record the calls: {m!r}")

        return one, close, "deepseek_kit"

    return make_client


async def run_config(name, a, manifest):
    path, n, c, stream = CONFIGS[name]
    args = SimpleNamespace(base_url=f"{a.base}/{path}/v1", concurrency=c, stream=stream, uvloop=False)
    expect = manifest["stream" if stream else "nonstream"]
    import drv_aiohttp

    makers = {"aiohttp": drv_aiohttp.make_client, "dsk": dsk_factory(False), "dsk+metrics": dsk_factory(True)}
    try:
        import prometheus_client  # noqa: F401

        makers["dsk+metrics+prom"] = dsk_factory(True, prometheus=True)
    except ImportError:
        print("note: prometheus_client not installed, dsk+metrics+prom skipped", file=sys.stderr)
    clients = {}
    for cl, make in makers.items():
        one, close, _ = await make(args)
        clients[cl] = (one, close)
        await paired.block(one, c, c, expect)  # warm-up: fill the pool
    res = {cl: [] for cl in clients}
    names = list(clients)
    for r in range(a.rounds):
        for cl in names[r % len(names):] + names[: r % len(names)]:
            res[cl].append(await paired.block(clients[cl][0], n, c, expect))
    for _one, close in clients.values():
        await close()

    def ratios(num, den):  # per round: throughput num/den, CPU den/num (higher = num cheaper)
        tp = [x[0] / y[0] for x, y in zip(res[num], res[den], strict=True)]
        cpu = [y[1] / x[1] for x, y in zip(res[num], res[den], strict=True)]
        q = statistics.quantiles(cpu, n=4) if len(cpu) > 1 else [cpu[0]] * 3
        return statistics.median(tp), statistics.median(cpu), (q[0], q[2])

    out = {"config": name, "rounds": a.rounds, "unit": "chunk" if stream else "request", "clients": {}}
    for cl in clients:
        tp, cpu, _ = ratios(cl, "aiohttp")
        out["clients"][cl] = {
            "throughput_median": statistics.median(x[0] for x in res[cl]),
            "us_cpu_per_unit_median": statistics.median(x[1] for x in res[cl]),
            "x_aiohttp_throughput": tp, "x_aiohttp_cpu": cpu,
        }
    for cl in clients:
        if cl.startswith("dsk+"):
            tp, cpu, (p25, p75) = ratios(cl, "dsk")
            out["clients"][cl]["x_dsk_throughput"] = tp
            out["clients"][cl]["x_dsk_cpu"] = cpu
            out["clients"][cl]["x_dsk_cpu_p25_p75"] = [p25, p75]
    return out


async def run_all(a, manifest):
    results = []
    print(f"Paired interleaved blocks, one process, {a.rounds} rounds; ratios are medians over rounds of "
          "the same-round ratio. 'x dsk' = with metrics / without (throughput; by CPU = µs without / "
          "µs with).\n")
    print("| config | client | throughput | µs CPU / unit | x aiohttp thr. | x aiohttp CPU | "
          "x dsk thr. | x dsk CPU (p25–p75) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in a.configs.split(","):
        r = await run_config(name, a, manifest)
        results.append(r)
        for cl, row in r["clients"].items():
            xd = row.get("x_dsk_throughput")
            q = row.get("x_dsk_cpu_p25_p75")
            dsk_cols = (f"{xd:.3f} | {row['x_dsk_cpu']:.3f} ({q[0]:.3f}–{q[1]:.3f})" if xd is not None
                        else "– | –")
            print(f"| {name} | {cl} | {row['throughput_median']:,.0f} {r['unit']}s/s | "
                  f"{row['us_cpu_per_unit_median']:.1f} | {row['x_aiohttp_throughput']:.3f} | "
                  f"{row['x_aiohttp_cpu']:.3f} | {dsk_cols} |", flush=True)
    return results


async def micro_overhead(repeat: int, n: int = 2000) -> None:
    """Per-call CPU of the step with no sockets (bench/micro.py's fake transport)."""
    import micro
    from common import MODEL

    from deepseek_kit import AsyncClient
    from deepseek_kit._steps.metrics.step import MetricsConfig, MetricsStep
    from deepseek_kit._wire.pricing import ModelPrice

    price = ModelPrice(Decimal("0.04"), Decimal("2"), Decimal("8"))

    def client(parts, metrics):
        steps = [MetricsStep(MetricsConfig(prices={MODEL: price}))] if metrics else []
        return AsyncClient(api_key="sk-bench-dummy", base_url="http://127.0.0.1:9/v1",
                           transport=micro.FakeTransport(parts), steps=steps)

    print("\nIn-process, no sockets (micro.py's fake transport), best of", repeat, "alternated runs:")
    print("| case | without metrics µs/call | with metrics µs/call | MetricsStep µs/call |")
    print("|---|---:|---:|---:|")
    for name, parts, fn, calls in (("nonstream", [micro.BODY], micro.dsk_nonstream, n),
                                   ("stream (201 chunks)", micro.STATIC, micro.dsk_stream, max(1, n // 10))):
        plain, with_m = client(parts, False), client(parts, True)
        best = {False: float("inf"), True: float("inf")}
        for _ in range(repeat):
            for metrics, c in ((False, plain), (True, with_m)):
                await fn(c)
                t = time.process_time()  # CPU time: other processes on the box do not count
                for _ in range(calls):
                    await fn(c)
                best[metrics] = min(best[metrics], (time.process_time() - t) / calls * 1e6)
        print(f"| {name} | {best[False]:.2f} | {best[True]:.2f} | {best[True] - best[False]:+.2f} |")


def start_nginx():
    """The shared fixtures and nginx.conf on a free port in a temp dir; returns (base, manifest, stop)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        sys.exit("nginx not found (apt-get install nginx-light, or run bench/run.sh)")
    run = Path(tempfile.mkdtemp(prefix="dsk-metrics-bench-"))
    run.chmod(0o755)  # nginx workers run as an unprivileged user
    for d in ("logs", "tmp", "www", "main.d", "conf.d"):
        (run / d).mkdir()
    manifest = subprocess.run([sys.executable, str(paired.SHARED / "fixtures" / "gen_fixtures.py"),
                               str(run / "www")], check=True, capture_output=True, text=True).stdout
    (run / "www" / "manifest.json").write_text(manifest)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = (paired.SHARED / "nginx" / "nginx.conf").read_text().replace("127.0.0.1:18080", f"127.0.0.1:{port}")
    (run / "nginx.conf").write_text(conf)
    proc = subprocess.Popen([nginx, "-p", f"{run}/", "-c", str(run / "nginx.conf"), "-e",
                             str(run / "logs" / "startup.log")])
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/nginx_status", timeout=1).read()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        sys.exit("nginx did not start")

    def stop():
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(run, ignore_errors=True)

    return base, str(run / "www" / "manifest.json"), stop


def main() -> None:
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
        a.base, a.manifest, stop = start_nginx()
    try:
        if urlparse(a.base).hostname not in ("127.0.0.1", "localhost", "::1"):
            sys.exit("refusing non-loopback URL")
        with open(a.manifest) as fh:
            manifest = json.load(fh)
        results = asyncio.run(run_all(a, manifest))
        if not a.no_micro:
            asyncio.run(micro_overhead(a.repeat))
    finally:
        if stop is not None:
            stop()
    if a.json:
        with open(a.json, "w") as fh:
            fh.write("\n".join(json.dumps(r) for r in results) + "\n")


if __name__ == "__main__":
    main()
