#!/usr/bin/env python3
"""Gateway-overhead benchmark orchestrator (start it through bench/gateway/run.sh).

Starts, all on 127.0.0.1, each stopped by its pid at the end:
  upstream   nginx with the benchmark kit's nginx.conf and fixtures (plus a slow stream made by
             bench/gen_slow_fixture.py, ~10 s per stream)                                   :18080
  nginx      the kit's nginx reverse proxy (gateway/nginx/proxy.conf)                        :18081
  dsk        OUR gateway, `dsk serve --config` with SQLite state, one virtual key with rpm, tpm,
             in-flight caps and a daily budget (so every request authenticates, takes a limits
             lease and holds budget), the access log (to a file), /metrics and [logs] on     :18500
  dsk_redis  the same with state = redis:// (redis-server started here on :16379)            :18501
  bare       bench/gateway/bare_proxy.py: a bare aiohttp pass-through proxy (floor on aiohttp)  :18503
  bare_fast  bench/gateway/bare_fast_proxy.py: the same on uvloop + httptools protocols, the
             stack `dsk serve` runs on (the Python floor for our gateway)                     :18504
  dsk_base   (only when DSK_BASE_SRC names another src tree) dsk from that tree: before/after :18502
  litellm    LiteLLM proxy, the kit's gateway/litellm configs, one worker                    :18400
and measures each target (direct = no gateway) REPS times, target order rotated per rep:
  tput_ns   the kit's drv_aiohttp (drv_aiohttp_gw.py) non-stream, N_TPUT_NS requests, c=100
  lat_ns    the kit's drv_latency.py open loop RATE_NS req/s, N_LAT requests, <=20 in flight
  tput_s    drv_aiohttp --stream, N_TPUT_S streams of 201 chunks, c=50
  ttfc_s    drv_latency.py --stream, open loop RATE_S streams/s, N_TTFC streams
  rss       RSS_STREAMS concurrent slow streams at once (closed loop, c=RSS_STREAMS): the gateway's
            RSS sampled every 0.1 s (peak) and before (idle); once per target, not per rep
The gateway is restarted per phase because the upstream picks JSON, SSE or slow SSE by URL path.
Around every driver run the gateway's CPU seconds (utime+stime of its process tree, /proc) are
read before and after. Writes $GW_RES/{raw.jsonl,meta.json,*.log}; summarize_gw.py tabulates.
"""
import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
KIT = os.environ["DSK_SHARED_BENCH"]  # the benchmark kit (run.sh resolves it)
PY = os.environ.get("PY", sys.executable)  # drivers and our gateway
LL_PY = os.environ.get("LL_PY", "")  # the LiteLLM venv's python ("" = no LiteLLM)
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
UP, PX = "http://127.0.0.1:18080", "http://127.0.0.1:18081"
PORTS = {"dsk": 18500, "dsk_redis": 18501, "dsk_base": 18502, "bare": 18503, "bare_fast": 18504, "litellm": 18400}
# dsk_base: the SQLite gateway from another source tree (DSK_BASE_SRC, e.g. `git archive` of an
# older commit), for a before/after comparison in the same run
BASE_SRC = os.environ.get("DSK_BASE_SRC", "")
# DSK_BASE_STATE=redis: dsk_base keeps its state in Redis (db 1 of the run's redis-server), for a
# before/after of the Redis state
BASE_REDIS = os.environ.get("DSK_BASE_STATE", "sqlite") == "redis"
REDIS_PORT = 16379
CLK = os.sysconf("SC_CLK_TCK")
T0 = time.monotonic()
PEPPER = secrets.token_hex(32)
LL_KEY = "sk-bench-" + secrets.token_hex(24)
RES = ""


def log(msg):
    line = f"[{time.strftime('%H:%M:%S', time.gmtime())} +{time.monotonic() - T0:6.1f}s] {msg}"
    print(line, file=sys.stderr, flush=True)
    with open(os.path.join(RES, "run.log"), "a") as f:
        f.write(line + "\n")


# ---------------------------------------------------------------- /proc
def _stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def proc_tree(root):
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError, IndexError):
                kids.setdefault(int(_stat(d)[1]), []).append(int(d))
    out, stack = [], [root]
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(kids.get(p, []))
    return out


def tree_cpu_s(root):
    if root is None:
        return 0.0
    t = 0
    for p in proc_tree(root):
        try:
            s = _stat(p)
            t += int(s[11]) + int(s[12]) + int(s[13]) + int(s[14])
        except (OSError, IndexError):
            pass
    return t / CLK


def rss_mb(root, field="VmRSS"):
    tot = 0
    for p in proc_tree(root):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        tot += int(line.split()[1])
        except OSError:
            pass
    return round(tot / 1024, 1)


# ---------------------------------------------------------------- servers
class Server:
    def __init__(self, name, argv, env=None, quit_sig=signal.SIGTERM):
        self.name, self.quit_sig = name, quit_sig
        self.logf = open(  # noqa: SIM115 - closed in stop()
            os.path.join(RES, f"{name}.log"), "ab")
        self.p = subprocess.Popen(argv, stdout=self.logf, stderr=subprocess.STDOUT, env=env,
                                  stdin=subprocess.DEVNULL, start_new_session=True, cwd=RES)
        self.pid = self.p.pid
        log(f"{name}: started pid {self.pid}")

    def stop(self):
        if self.p.poll() is None:
            tree = proc_tree(self.pid)
            self.p.send_signal(self.quit_sig)
            try:
                self.p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=5)
            for pid in tree[1:]:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        log(f"{self.name}: stopped (rc {self.p.returncode})")
        self.logf.close()


def http(url, body=None, key=None, timeout=10):
    h = {"Content-Type": "application/json"}
    if key:
        h["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET", headers=h)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def wait_up(url, secs, server=None):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if server is not None and server.p.poll() is not None:
            raise RuntimeError(f"{server.name} exited (rc {server.p.returncode}); see {server.name}.log")
        try:
            return http(url, timeout=2)
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"{url} not up after {secs}s")


def wait_port(port, secs, server):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if server.p.poll() is not None:
            raise RuntimeError(f"{server.name} exited (rc {server.p.returncode}); see {server.name}.log")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} not up after {secs}s")


def probe(base, stream, key):
    body = json.dumps({"model": "deepseek-flash", "stream": stream,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    st, raw = http(base.rstrip("/") + "/chat/completions", body, key)
    if not stream:
        return st, len(json.loads(raw)["choices"][0]["message"]["content"])
    parts = []
    for line in raw.decode().split("\n"):
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            o = json.loads(line[5:])
            if o.get("choices"):
                parts.append(o["choices"][0].get("delta", {}).get("content") or "")
    return st, len("".join(parts))


# ---------------------------------------------------------------- our gateway
def dsk_config(name, path_mode):
    state = (f"redis://127.0.0.1:{REDIS_PORT}/0" if name == "dsk_redis"
             else f"redis://127.0.0.1:{REDIS_PORT}/1" if name == "dsk_base" and BASE_REDIS
             else f"sqlite:///{os.path.join(RES, name + '.db')}")
    text = f"""# written by bench/gateway/run_gw.py
[gateway]
listen = "127.0.0.1:{PORTS[name]}"
state = "{state}"
pepper_env = "BENCH_PEPPER"
access_log = true

[[upstream]]
name = "fixture"
base_url = "{UP}/{path_mode}/v1"
api_key_env = "BENCH_UPSTREAM_KEY"

[logs]
path = "{os.path.join(RES, name + '_logs.sqlite3')}"
content = false
"""
    path = os.path.join(RES, f"{name}_{path_mode}.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


def dsk_env(name="dsk"):
    src = BASE_SRC if name == "dsk_base" else os.path.join(REPO, "src")
    env = dict(os.environ, BENCH_PEPPER=PEPPER, BENCH_UPSTREAM_KEY="sk-bench-upstream",
               PYTHONPATH=src, PYTHONUNBUFFERED="1")
    env.pop("DSK_ADMIN_KEY", None)
    return env


def dsk_key(cfg):
    """A virtual key with every per-key check switched on and limits far above the load."""
    cp = subprocess.run([PY, "-m", "deepseek_kit.cli.main", "keys", "create", "--config", cfg, "--name", "bench",
                         "--rpm", "100000000", "--tpm", "1000000000000", "--max-in-flight", "100000",
                         "--budget-daily", "1000000"], env=dsk_env(), capture_output=True, text=True, timeout=60)
    if cp.returncode:
        raise RuntimeError(f"dsk keys create failed: {cp.stderr[-500:]}")
    return cp.stdout.strip().splitlines()[-1]


def start_target(name, mode, keys):
    """(Server, base_url, api key) for a gateway target in this phase's upstream mode."""
    if name in ("dsk", "dsk_redis", "dsk_base"):
        cfg = dsk_config(name, mode)
        if name not in keys:
            keys[name] = dsk_key(cfg)
        srv = Server(f"{name}_{mode}", [PY, "-m", "deepseek_kit.cli.main", "serve", "--config", cfg],
                     env=dsk_env(name), quit_sig=signal.SIGINT)
        wait_up(f"http://127.0.0.1:{PORTS[name]}/healthz", 60, srv)
        return srv, f"http://127.0.0.1:{PORTS[name]}/v1", keys[name]
    if name in ("bare", "bare_fast"):
        script = "bare_proxy.py" if name == "bare" else "bare_fast_proxy.py"
        srv = Server(f"{name}_{mode}", [PY, os.path.join(HERE, script), "--upstream", f"{UP}/{mode}/v1",
                                        "--port", str(PORTS[name])])
        wait_port(PORTS[name], 30, srv)
        return srv, f"http://127.0.0.1:{PORTS[name]}/v1", ""
    if name == "litellm":
        with open(os.path.join(KIT, "gateway", "litellm", "config_sse.yaml")) as f:
            text = re.sub(r"/sse/v1", f"/{mode}/v1", f.read())
        cfg = os.path.join(RES, f"litellm_{mode}.yaml")
        with open(cfg, "w") as f:
            f.write(text)
        env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", LITELLM_TELEMETRY="False",
                   PYTHONUNBUFFERED="1", LITELLM_MASTER_KEY=LL_KEY)
        env.pop("DATABASE_URL", None)
        srv = Server(f"litellm_{mode}", [os.path.join(os.path.dirname(LL_PY), "litellm"), "--config", cfg,
                                         "--host", "127.0.0.1", "--port", str(PORTS["litellm"]), "--num_workers", "1"],
                     env=env)
        wait_up(f"http://127.0.0.1:{PORTS['litellm']}/health/liveliness", 180, srv)
        return srv, f"http://127.0.0.1:{PORTS['litellm']}/v1", LL_KEY
    raise ValueError(name)


# ---------------------------------------------------------------- runs
def run_driver(metric, target, rep, argv, srv, key, manifest, timeout, sample_rss=False):
    env = dict(os.environ, BENCH_MANIFEST=manifest, BENCH_MODEL="deepseek-flash", BENCH_API_KEY=key)
    pid = srv.pid if srv else None
    peak = [0.0]
    stop = threading.Event()

    def sampler():
        while not stop.wait(0.1):
            peak[0] = max(peak[0], rss_mb(pid))

    rss0 = rss_mb(pid) if pid else None
    th = threading.Thread(target=sampler, daemon=True) if (sample_rss and pid) else None
    if th:
        th.start()
    g0, w0 = tree_cpu_s(pid), time.perf_counter()
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=HERE)
        rc, out, err = cp.returncode, cp.stdout, cp.stderr
    except subprocess.TimeoutExpired:
        rc, out, err = 124, "", "timeout"
    w1, g1 = time.perf_counter(), tree_cpu_s(pid)
    stop.set()
    if th:
        th.join()
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    rec = json.loads(lines[-1]) if lines else {"error": "no output"}
    rec.update(metric=metric, target=target, rep=rep, rc=rc, wall_s=round(w1 - w0, 3),
               gw_cpu_s=round(g1 - g0, 3) if pid else None,
               reqs_through=rec.get("n", 0) + rec.get("warmup_n", 0),
               gw_rss_mb=rss_mb(pid) if pid else None, gw_rss_before_mb=rss0,
               gw_rss_peak_mb=peak[0] if th else None)
    if err.strip():
        with open(os.path.join(RES, "driver_stderr.log"), "a") as f:
            f.write(f"--- {metric} {target} rep {rep}\n{err[-3000:]}\n")
    with open(os.path.join(RES, "raw.jsonl"), "a") as f:
        f.write(json.dumps(rec) + "\n")
    short = {k: rec.get(k) for k in ("rps", "chunks_per_s", "errors", "lat_ms", "first_ms", "gw_cpu_s",
                                     "gw_rss_peak_mb") if rec.get(k) is not None}
    log(f"  {metric:8s} {target:9s} rep {rep}: rc={rc} {json.dumps(short)[:240]}")
    return rec


def main():
    ap = argparse.ArgumentParser()
    env = os.environ.get
    ap.add_argument("--reps", type=int, default=int(env("REPS", 3)))
    ap.add_argument("--phases", default=env("PHASES", "nonstream,stream,rss"))
    ap.add_argument("--targets", default=env("TARGETS", "direct,nginx,bare,bare_fast,dsk,dsk_redis,litellm"))
    ap.add_argument("--n-tput-ns", type=int, default=int(env("N_TPUT_NS", 2000)))
    ap.add_argument("--n-tput-s", type=int, default=int(env("N_TPUT_S", 200)))
    ap.add_argument("--n-lat", type=int, default=int(env("N_LAT", 500)))
    ap.add_argument("--rate-ns", type=float, default=float(env("RATE_NS", 25)))
    ap.add_argument("--n-ttfc", type=int, default=int(env("N_TTFC", 40)))
    ap.add_argument("--rate-s", type=float, default=float(env("RATE_S", 4)))
    ap.add_argument("--rss-streams", type=int, default=int(env("RSS_STREAMS", 500)))
    ap.add_argument("--deadline", type=float, default=float(env("DEADLINE", 120)))
    a = ap.parse_args()
    targets = a.targets.split(",")
    if "dsk_base" in targets and not BASE_SRC:
        log("note: DSK_BASE_SRC unset: no dsk_base target")
        targets.remove("dsk_base")
    if "litellm" in targets and not LL_PY:
        log("note: LiteLLM not installed (LL_PY unset): running without it")
        targets.remove("litellm")

    run = os.path.join(HERE, ".run")
    up = os.path.join(run, "upstream")
    px = os.path.join(run, "proxy")
    shutil.rmtree(run, ignore_errors=True)
    for d in (up, px):
        for s in ("logs", "tmp", "www", "main.d", "conf.d"):
            os.makedirs(os.path.join(d, s), exist_ok=True)
    with open(os.path.join(RES, "manifest.json"), "w") as mf:
        subprocess.run([PY, os.path.join(KIT, "fixtures", "gen_fixtures.py"), os.path.join(up, "www")], check=True,
                       stdout=mf)
    echo = "/usr/lib/nginx/modules/ngx_http_echo_module.so"
    slow = os.path.exists(echo)
    if slow:
        with open(os.path.join(up, "main.d", "echo.conf"), "w") as f:
            f.write(f"load_module {echo};\n")
        subprocess.run([PY, os.path.join(REPO, "bench", "gen_slow_fixture.py"), os.path.join(up, "conf.d", "slow.conf")],
                       check=True, stderr=subprocess.DEVNULL)
    shutil.copy(os.path.join(KIT, "nginx", "nginx.conf"), os.path.join(up, "nginx.conf"))
    shutil.copy(os.path.join(KIT, "gateway", "nginx", "proxy.conf"), os.path.join(px, "proxy.conf"))
    manifest = os.path.join(up, "www", "manifest.json")
    meta = {"args": vars(a), "targets": targets, "netns": env("BENCH_IN_NETNS", "no"), "slow_stream": slow}
    servers = []
    redis = None
    try:
        upstream = Server("upstream_nginx", [NGINX, "-p", up + "/", "-c", os.path.join(up, "nginx.conf"),
                                             "-e", os.path.join(up, "logs", "startup.log")], quit_sig=signal.SIGQUIT)
        servers.append(upstream)
        proxy = Server("proxy_nginx", [NGINX, "-p", px + "/", "-c", os.path.join(px, "proxy.conf"),
                                       "-e", os.path.join(px, "logs", "startup.log")], quit_sig=signal.SIGQUIT)
        servers.append(proxy)
        wait_up(UP + "/nginx_status", 10)
        wait_up(PX + "/proxy_status", 10)
        if "dsk_redis" in targets or ("dsk_base" in targets and BASE_REDIS):
            redis = Server("redis", ["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "",
                                     "--appendonly", "no"])
            servers.append(redis)
            time.sleep(0.5)
        keys = {}
        with open(manifest) as f:
            man = json.load(f)
        for phase in a.phases.split(","):
            if phase == "rss" and not slow:
                log("note: no nginx echo module: RSS phase skipped")
                continue
            mode = {"nonstream": "json", "stream": "sse", "rss": "sse-slow"}[phase]
            stream = phase != "nonstream"
            live = {"direct": (None, f"{UP}/{mode}/v1", ""), "nginx": (proxy, f"{PX}/{mode}/v1", "")}
            for t in targets:
                if t not in live:
                    srv, base, key = start_target(t, mode, keys)
                    servers.append(srv)
                    live[t] = (srv, base, key)
                    st, clen = probe(base, stream, key)
                    want = man["stream" if stream else "nonstream"]["content_len"]
                    assert st == 200 and clen == want, (t, mode, st, clen, want)
                    meta[f"{t}_{mode}_rss_after_start_mb"] = rss_mb(srv.pid)
            if phase == "rss":
                metrics = [("rss", ["drv_latency.py", "--stream", "--n", str(a.rss_streams), "--rate", "0",
                                    "--concurrency", str(a.rss_streams), "--warmup", "1"])]
                reps = 1
            elif stream:
                metrics = [("tput_s", ["drv_aiohttp_gw.py", "--n", str(a.n_tput_s), "--concurrency", "50",
                                       "--stream"]),
                           ("ttfc_s", ["drv_latency.py", "--stream", "--n", str(a.n_ttfc), "--rate", str(a.rate_s),
                                       "--concurrency", "20", "--warmup", "5"])]
                reps = a.reps
            else:
                metrics = [("tput_ns", ["drv_aiohttp_gw.py", "--n", str(a.n_tput_ns), "--concurrency", "100"]),
                           ("lat_ns", ["drv_latency.py", "--n", str(a.n_lat), "--rate", str(a.rate_ns),
                                       "--concurrency", "20"])]
                reps = a.reps
            order0 = [t for t in targets if t in live]
            for rep in range(1, reps + 1):
                k = (rep - 1) % len(order0)
                order = order0[k:] + order0[:k]
                for metric, argv in metrics:
                    for t in order:
                        srv, base, key = live[t]
                        if metric == "rss" and t == "direct":
                            continue
                        run_driver(metric, t, rep,
                                   [PY, os.path.join(KIT, "gateway", argv[0]), *argv[1:], "--base-url", base,
                                    "--deadline", str(a.deadline), "--manifest", manifest,
                                    "--label", f"{metric} {t} rep={rep}"],
                                   srv if t != "direct" else None, key, manifest, a.deadline + 30,
                                   sample_rss=metric == "rss")
            for t in list(live):
                srv = live[t][0]
                if srv is not None and srv is not proxy:
                    meta[f"{t}_{mode}_peak_rss_mb"] = rss_mb(srv.pid, "VmHWM")
                    srv.stop()
                    servers.remove(srv)
    finally:
        for s in reversed(servers):
            s.stop()
        meta["wall_s"] = round(time.monotonic() - T0, 1)
        with open(os.path.join(RES, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    RES = os.environ["GW_RES"]
    os.makedirs(RES, exist_ok=True)
    main()
