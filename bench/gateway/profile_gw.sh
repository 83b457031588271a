#!/usr/bin/env bash
# Profile OUR gateway alone under the kit's load driver: CPU per request from /proc, optionally a
# py-spy or cProfile profile. Quicker than run.sh for iterating on the hot path; runs in its own
# loopback-only network namespace. Needs the upstream fixture of a previous `bash run.sh`
# (bench/gateway/.run/upstream) and the kit (DSK_SHARED_BENCH).
#
#   bash bench/gateway/profile_gw.sh [SRC_DIR] [json|sse] [N]      # CPU ticks for N requests
#   PROF=spy bash bench/gateway/profile_gw.sh                      # + py-spy (pip install py-spy)
#   ACCESS_LOG=false AUTH=none LOGS=0 bash bench/gateway/profile_gw.sh   # ablations: what each part costs
#   RATE=25 bash bench/gateway/profile_gw.sh $PWD/src json 300        # latency at 25 req/s, gateway then direct
#   PROF=strace bash bench/gateway/profile_gw.sh                    # + syscall counts (strace -c)
#   PROF=cprofile STATE_URL=redis://127.0.0.1:16379/0 LOGS=0 C=50 bash bench/gateway/profile_gw.sh
# Output in bench/gateway/.run/profile/: gw.log, spy.txt (py-spy raw stacks), strace.txt or gw.prof.
set -euo pipefail
GW=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$GW/../.." && pwd)
if [[ -z "${PROFILE_IN_NETNS:-}" ]] && [[ "${BENCH_NETNS:-auto}" != off ]] && unshare -n true 2>/dev/null; then
  PROFILE_IN_NETNS=1 exec unshare -n -- bash "$GW/profile_gw.sh" "$@"
fi
[[ -n "${PROFILE_IN_NETNS:-}" ]] && ip link set lo up
SRC=${1:-$REPO/src}; MODE=${2:-json}; N=${3:-2000}; PROF=${PROF:-0}
PY=${PY:-$REPO/.venv/bin/python}
KIT=${DSK_SHARED_BENCH:-$(dirname "$REPO")/shared/bench}
UPD=$GW/.run/upstream
[[ -f $UPD/nginx.conf ]] || { echo "no upstream fixture: run bench/gateway/run.sh once" >&2; exit 1; }
D=$GW/.run/profile; rm -rf "$D"; mkdir -p "$D"
nginx -p "$UPD/" -c "$UPD/nginx.conf" -e "$D/nginx.log" & NGP=$!
RP=""
if [[ "${STATE_URL:-}" == redis://* ]]; then
  port=$(sed -E 's|redis://[^:]+:([0-9]+).*|\1|' <<<"$STATE_URL")
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no > "$D/redis.log" 2>&1 & RP=$!
fi
sleep 0.5
cat > "$D/gw.toml" <<T
[gateway]
listen = "127.0.0.1:18500"
state = "${STATE_URL:-sqlite:///$D/gw.db}"
pepper_env = "BENCH_PEPPER"
access_log = ${ACCESS_LOG:-true}
auth = "${AUTH:-keys}"

[[upstream]]
name = "fixture"
base_url = "http://127.0.0.1:18080/$MODE/v1"
api_key_env = "BENCH_UPSTREAM_KEY"
T
[[ ${LOGS:-1} == 1 ]] && printf '\n[logs]\npath = "%s"\ncontent = false\n' "$D/logs.sqlite3" >> "$D/gw.toml"
export BENCH_PEPPER=profile-pepper-0123456789 BENCH_UPSTREAM_KEY=sk-bench-upstream PYTHONPATH=$SRC
KEY=$("$PY" -m deepseek_kit.cli.main keys create --config "$D/gw.toml" --name bench --rpm 100000000 \
      --tpm 1000000000000 --max-in-flight 100000 --budget-daily 1000000 | tail -1)
run=("$PY" -m deepseek_kit.cli.main serve --config "$D/gw.toml")
[[ $PROF == cprofile ]] && run=("$PY" -m cProfile -o "$D/gw.prof" -m deepseek_kit.cli.main serve --config "$D/gw.toml")
"${run[@]}" > "$D/gw.log" 2>&1 & GP=$!
for _ in $(seq 100); do "$PY" -c 'import urllib.request as u; u.urlopen("http://127.0.0.1:18500/healthz", timeout=1)' 2>/dev/null && break; sleep 0.2; done
SP=""
if [[ $PROF == spy ]]; then
  "$(dirname "$PY")/py-spy" record -r 400 --nonblocking --threads -f raw -o "$D/spy.txt" -p $GP > "$D/spy.log" 2>&1 & SP=$!
  sleep 1
fi
if [[ $PROF == strace ]]; then  # system calls per request, by name (slows the gateway down)
  strace -c -f -p $GP -o "$D/strace.txt" 2> "$D/strace.log" & SP=$!
  sleep 1
fi
S=""; [[ $MODE == sse ]] && S=--stream
t0=$(awk '{print $14+$15}' /proc/$GP/stat); u0=$(awk '{print $14" "$15" "$10}' /proc/$GP/stat)
if [[ -n ${RATE:-} ]]; then  # latency at an open-loop rate: the gateway, then nginx direct
  for url in http://127.0.0.1:18500/v1 http://127.0.0.1:18080/$MODE/v1; do
    BENCH_MODEL=deepseek-flash BENCH_API_KEY=$KEY "$PY" "$KIT/gateway/drv_latency.py" --n "$N" --rate "$RATE" \
      --concurrency 20 $S --base-url "$url" --manifest "$UPD/www/manifest.json" --deadline 300 --label lat \
      | "$PY" -c 'import json,sys; d=json.loads(sys.stdin.read()); print(sys.argv[1], {k: v for k, v in d.items() if k.startswith(("lat", "ttf", "first"))})' "$url"
    [[ $url == *18500* ]] && t1=$(awk '{print $14+$15}' /proc/$GP/stat) && u1=$(awk '{print $14" "$15" "$10}' /proc/$GP/stat)
  done
else
BENCH_MODEL=deepseek-flash BENCH_API_KEY=$KEY "$PY" "$KIT/gateway/drv_aiohttp_gw.py" --n "$N" --concurrency "${C:-100}" \
  $S --base-url http://127.0.0.1:18500/v1 --manifest "$UPD/www/manifest.json" --deadline 120 --label profile | tail -1
fi
[[ -n ${RATE:-} ]] || { t1=$(awk '{print $14+$15}' /proc/$GP/stat); u1=$(awk '{print $14" "$15" "$10}' /proc/$GP/stat); }
echo "gateway CPU: $((t1 - t0)) ticks of 1/$(getconf CLK_TCK) s for $N requests (+ the driver's warm-up); user/system: $(awk -v a="$u0" -v b="$u1" 'BEGIN{split(a,x," ");split(b,y," ");print y[1]-x[1]"/"y[2]-x[2]"; minor page faults: "y[3]-x[3]}')"
[[ -n $SP ]] && { kill -INT $SP; wait $SP || true; }
kill -INT $GP; wait $GP || true
kill -QUIT $NGP; wait $NGP || true
[[ -n $RP ]] && { redis-cli -p "$port" info commandstats > "$D/redis_stats.txt" 2>&1 || true; kill $RP; wait $RP || true; }
exit 0
