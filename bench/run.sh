#!/usr/bin/env bash
# deepseek-kit benchmark: ONE command runs everything and prints the summary.
#
#   bench/run.sh                          # 3 reps, ~10 min on 2 cores
#   REPS=1 CLIENTS="aiohttp deepseek_kit" bench/run.sh     # quick look
#
# Reuses the client-overhead kit ($DSK_SHARED_BENCH, default shared/bench beside the checkout) by path: its fixtures, nginx.conf,
# harness (drivers/common.py) and reference drivers. What it does:
#   1. setup (before the network namespace, it may need the registries): nginx-light via apt if
#      missing; Python = the repo's .venv (aiohttp, msgspec, openai, uvloop, deepseek_kit editable),
#      or with EXTRAS=1 a bench/.venv that also has httpx + litellm (deepseek_kit from ../src);
#   2. re-executes itself inside a private network namespace (`unshare -n`, loopback only);
#   3. fixtures (shared gen_fixtures.py) + a slow echo-module stream (gen_slow_fixture.py) in
#      bench/.run, nginx on 127.0.0.1:18080 with the shared nginx.conf, curl checks;
#   4. import times (import_time.py), REPS x configs x clients load runs (client order rotated per
#      rep), a paired interleaved A/B in one process (paired.py) and a no-socket micro-benchmark
#      (micro.py), 1,000-concurrent-stream RSS (rss_streams.py), cProfile of the deepseek_kit driver;
#   5. stops nginx (by pid), prints summary.md (medians, same-rep ratios vs aiohttp and openai,
#      target verdicts). Everything lands in bench/results/<UTC timestamp>/.
#
# Knobs: REPS=3  CLIENTS="aiohttp aiohttp_msgspec deepseek_kit openai"  EXTRAS=0 (1: + httpx httpx2
#   litellm, litellm skipped with a note if not importable)  UVLOOP=0 (1: + aiohttp_uvloop
#   deepseek_kit_uvloop)  CONFIGS_OVERRIDE="nonstream json 300 50;stream sse 40 20"  DEADLINE=240
#   IMPORT_RUNS=21  PAIRED=1  PAIRED_ROUNDS=20  MICRO=1  RSS=1  RSS_STREAMS=1000  PROFILE=1
#   BENCH_NETNS=auto|off|on  PY=/path/to/python
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH/.." && pwd)
SHARED=${DSK_SHARED_BENCH:-$(dirname "$REPO")/shared/bench}
[[ -f "$SHARED/drivers/common.py" ]] || SHARED=$(dirname "$SHARED")   # accept .../bench/drivers too
[[ -f "$SHARED/drivers/common.py" ]] || { echo "shared bench kit not found (set DSK_SHARED_BENCH)" >&2; exit 1; }
SHARED=$(cd "$SHARED" && pwd)
export DSK_SHARED_BENCH=$SHARED
EXTRAS=${EXTRAS:-0}
if [[ -n "${PY:-}" ]]; then :
elif [[ "$EXTRAS" == 1 ]]; then PY="$BENCH/.venv/bin/python"
else PY="$REPO/.venv/bin/python"; fi
export PY
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# ---- 1. setup (outside the namespace: apt / pip may need the registries)
if [[ -z "${BENCH_IN_NETNS:-}" ]]; then
  if [[ ! -x "$NGINX" ]]; then
    echo "installing nginx-light" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
  fi
  if [[ "$EXTRAS" == 1 && "$PY" == "$BENCH/.venv/bin/python" ]]; then
    if [[ ! -x "$PY" ]]; then
      "$REPO/.venv/bin/python" -m venv "$BENCH/.venv" 2>/dev/null || python3 -m venv "$BENCH/.venv"
    fi
    if ! "$PY" -c 'import aiohttp, msgspec, openai, uvloop, httpx' 2>/dev/null; then
      "$PY" -m pip install -q aiohttp msgspec openai uvloop httpx
    fi
    "$PY" -c 'import litellm' 2>/dev/null || "$PY" -m pip install -q litellm \
      || echo "note: litellm could not be installed; it will be skipped" >&2
    # deepseek_kit from the work tree, without installing (no build artefacts in the repo)
    echo "$REPO/src" > "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/deepseek_kit_src.pth"
  fi
  "$PY" -c 'import aiohttp, msgspec, deepseek_kit' \
    || { echo "$PY lacks aiohttp/msgspec/deepseek_kit (EXTRAS=1 builds bench/.venv)" >&2; exit 1; }
  if [[ "${BENCH_NETNS:-auto}" != off ]] && unshare -n true 2>/dev/null; then
    export BENCH_IN_NETNS=1
    exec unshare -n -- bash "$BENCH/run.sh" "$@"
  elif [[ "${BENCH_NETNS:-auto}" == on ]]; then
    echo "unshare -n not available and BENCH_NETNS=on" >&2; exit 1
  fi
else
  ip link set lo up
fi

# ---- 2. run parameters
REPS=${REPS:-3}
DEADLINE=${DEADLINE:-240}
PORT=18080
B="http://127.0.0.1:$PORT"
export LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_TELEMETRY=False
RUN="$BENCH/.run"
RES="$BENCH/results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RUN"/{logs,tmp,www,main.d,conf.d} "$RES"
rm -f "$RUN"/main.d/*.conf "$RUN"/conf.d/*.conf
export BENCH_MANIFEST="$RUN/www/manifest.json"
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$RES/run.log" >&2; }

if [[ -n "${CLIENTS:-}" ]]; then
  CLIENTS=($CLIENTS)
else
  CLIENTS=(aiohttp aiohttp_msgspec deepseek_kit deepseek_kit_full openai)
  [[ "$EXTRAS" == 1 ]] && CLIENTS+=(httpx httpx2 litellm)
  [[ "${UVLOOP:-0}" == 1 ]] && CLIENTS+=(aiohttp_uvloop deepseek_kit_uvloop)
fi
KEEP=()
for c in "${CLIENTS[@]}"; do
  case $c in deepseek_kit*) mod=deepseek_kit ;; aiohttp_msgspec) mod=msgspec ;; aiohttp_uvloop) mod=uvloop ;; *) mod=$c ;; esac
  if "$PY" -c "import $mod" 2>/dev/null; then KEEP+=("$c"); else log "note: skipping $c ($mod not importable with $PY)"; fi
done
CLIENTS=("${KEEP[@]}")

# ---- 3. fixtures + nginx
ECHO_SO=/usr/lib/nginx/modules/ngx_http_echo_module.so
if [[ -f "$ECHO_SO" ]]; then
  echo "load_module $ECHO_SO;" > "$RUN/main.d/echo.conf"
  "$PY" "$SHARED/fixtures/gen_fixtures.py" "$RUN/www" "$RUN/conf.d/sse_chunked.conf" > "$RES/manifest.json"
  "$PY" "$BENCH/gen_slow_fixture.py" "$RUN/conf.d/sse_slow.conf" >&2
  CONFIGS=("nonstream json 5000 100" "stream sse 500 50" "stream_ka sse-ka 500 50" "stream_chunked sse-chunked 500 50")
else
  log "note: no echo module ($ECHO_SO): no sse-chunked config, RSS test uses the static sse stream"
  "$PY" "$SHARED/fixtures/gen_fixtures.py" "$RUN/www" > "$RES/manifest.json"
  CONFIGS=("nonstream json 5000 100" "stream sse 500 50" "stream_ka sse-ka 500 50")
fi
[[ -n "${CONFIGS_OVERRIDE:-}" ]] && IFS=';' read -r -a CONFIGS <<< "$CONFIGS_OVERRIDE"
cp "$SHARED/nginx/nginx.conf" "$RUN/nginx.conf"
"$NGINX" -t -q -p "$RUN/" -c "$RUN/nginx.conf" -e "$RUN/logs/startup.log"
"$NGINX" -p "$RUN/" -c "$RUN/nginx.conf" -e "$RUN/logs/startup.log" &
NGINX_PID=$!
stop_nginx() {
  if kill -0 "$NGINX_PID" 2>/dev/null; then
    kill -QUIT "$NGINX_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
    kill -TERM "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
  fi
}
trap stop_nginx EXIT
trap 'exit 130' INT TERM
for _ in $(seq 50); do curl -s -o /dev/null "$B/nginx_status" && break; sleep 0.1; done
log "nginx pid $NGINX_PID on $B (netns=${BENCH_IN_NETNS:-no}); clients: ${CLIENTS[*]}; reps: $REPS"

{
  for p in json sse sse-ka sse-chunked; do
    [[ $p == sse-chunked && ! -f "$RUN/conf.d/sse_chunked.conf" ]] && continue
    curl -s -D "$RUN/h.txt" -o "$RUN/b.txt" -X POST -H 'Content-Type: application/json' \
      -d '{"model":"deepseek-chat","messages":[{"role":"user","content":"hi"}],"stream":true}' \
      "$B/$p/v1/chat/completions"
    printf '%-12s %s | %s | bytes=%s data_events=%s keepalive_comments=%s done=%s\n' "$p" \
      "$(head -1 "$RUN/h.txt" | tr -d '\r')" \
      "$(grep -iE '^(content-length|transfer-encoding)' "$RUN/h.txt" | tr -d '\r')" \
      "$(wc -c < "$RUN/b.txt")" "$(grep -c '^data: {' "$RUN/b.txt" || true)" \
      "$(grep -c '^: keep-alive' "$RUN/b.txt" || true)" "$(grep -c '^data: \[DONE\]' "$RUN/b.txt" || true)"
  done
} | tee "$RES/curl_checks.txt" >&2
grep -q '200 OK' "$RES/curl_checks.txt" || { echo "upstream check failed" >&2; exit 1; }

{
  echo "date_utc: $(date -u +%FT%TZ)"
  echo "host: $(uname -srm); cpus: $(nproc); $(grep -m1 'model name' /proc/cpuinfo | sed 's/\s\+/ /g')"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "python: $PY $("$PY" -c 'import sys; print(sys.version.split()[0])')"
  echo "nginx: $("$NGINX" -v 2>&1 | sed 's/.*: //')"
  echo "netns: ${BENCH_IN_NETNS:-no}"
  echo "repo: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null) ($(git -C "$REPO" status --porcelain -- src 2>/dev/null | wc -l) uncommitted path(s) under src/)"
  "$PY" -m pip list --format=freeze 2>/dev/null | grep -iE '^(aiohttp|msgspec|uvloop|httpx|httpx2|openai|litellm|pydantic|pydantic_core|multidict|yarl|deepseek.kit)==' || true
} | tee "$RES/versions.txt" >&2

# ---- 4a. import times
log "import times"
"$PY" "$BENCH/import_time.py" --runs "${IMPORT_RUNS:-21}" --json "$RES/import_time.jsonl" > "$RES/import_time.txt" \
  || log "  (import_time.py failed)"

# ---- 4b. load runs
NCLI=${#CLIENTS[@]}
for rep in $(seq 1 "$REPS"); do
  for cfg in "${CONFIGS[@]}"; do
    read -r name path n c <<< "$cfg"
    sflag=""; [[ $name != nonstream ]] && sflag="--stream"
    for i in $(seq 0 $((NCLI - 1))); do
      client=${CLIENTS[$(( (i + rep - 1) % NCLI ))]}   # rotate order per rep
      case $client in
        deepseek_kit)        cmd=("$PY" "$BENCH/drivers/drv_deepseek_kit.py") ;;
        deepseek_kit_uvloop) cmd=("$PY" "$BENCH/drivers/drv_deepseek_kit.py" --uvloop) ;;
        deepseek_kit_full)   cmd=("$PY" "$BENCH/drivers/drv_deepseek_kit_full.py") ;;
        httpx2)              cmd=("$PY" "$SHARED/drivers/drv_httpx.py" --impl httpx2) ;;
        *)                   cmd=("$PY" "$SHARED/drivers/drv_$client.py") ;;
      esac
      log "rep $rep/$REPS $name $client"
      timeout --kill-after=10 $((DEADLINE + 60)) "${cmd[@]}" --base-url "$B/$path/v1" \
        --n "$n" --concurrency "$c" $sflag --deadline "$DEADLINE" \
        --status-url "$B/nginx_status" --label "cfg=$name rep=$rep" \
        >> "$RES/raw.jsonl" 2>> "$RES/driver_stderr.log" || log "  (driver exit $?)"
      tail -1 "$RES/raw.jsonl" | cut -c1-200 >&2
    done
  done
done

# ---- 4b'. paired interleaved A/B in one process (same driver code; robust to machine noise),
#            and the in-process micro-benchmark of deepseek_kit's own layers (no sockets)
if [[ "${PAIRED:-1}" == 1 ]]; then
  log "paired A/B (${PAIRED_ROUNDS:-20} rounds)"
  pcfg=nonstream,stream,stream_ka; [[ -f "$RUN/conf.d/sse_chunked.conf" ]] && pcfg+=,stream_chunked
  timeout --kill-after=10 900 "$PY" "$BENCH/paired.py" --base "$B" --configs "$pcfg" --rounds "${PAIRED_ROUNDS:-20}" \
    --json "$RES/paired.jsonl" > "$RES/paired.txt" 2>> "$RES/driver_stderr.log" || log "  (paired exit $?)"
  cat "$RES/paired.txt" >&2
fi
if [[ "${MICRO:-1}" == 1 ]]; then
  log "micro (no sockets)"
  "$PY" "$BENCH/micro.py" > "$RES/micro.txt" 2>> "$RES/driver_stderr.log" || log "  (micro exit $?)"
fi

# ---- 4c. 1,000 concurrent streams: peak RSS
if [[ "${RSS:-1}" == 1 ]]; then
  log "RSS with ${RSS_STREAMS:-1000} concurrent streams"
  slow=sse-slow; [[ -f "$RUN/conf.d/sse_slow.conf" ]] || slow=sse
  timeout --kill-after=10 300 "$PY" "$BENCH/rss_streams.py" --base-url "$B/$slow/v1" \
    --streams "${RSS_STREAMS:-1000}" --status-url "$B/nginx_status" > "$RES/rss.json" 2>> "$RES/driver_stderr.log" \
    || log "  (rss_streams exit $?)"
  cat "$RES/rss.json" >&2
fi

# ---- 4d. where deepseek_kit's CPU goes (cProfile, timed region only)
if [[ "${PROFILE:-1}" == 1 ]]; then
  log "profiles"
  drv="$BENCH/drivers/drv_deepseek_kit.py"
  "$PY" "$BENCH/profile.py" "$drv" --base-url "$B/json/v1" --n 3000 --concurrency 100 > "$RES/profile_dsk_nonstream.txt" 2>&1 || true
  "$PY" "$BENCH/profile.py" "$drv" --base-url "$B/sse/v1" --n 300 --concurrency 50 --stream > "$RES/profile_dsk_stream.txt" 2>&1 || true
  [[ -f "$RUN/conf.d/sse_chunked.conf" ]] && { "$PY" "$BENCH/profile.py" "$drv" --base-url "$B/sse-chunked/v1" --n 300 \
    --concurrency 50 --stream > "$RES/profile_dsk_stream_chunked.txt" 2>&1 || true; }
fi

curl -s "$B/nginx_status" > "$RES/nginx_status_end.txt" || true
cp "$RUN/logs/error.log" "$RES/nginx_error.log" 2>/dev/null || true
stop_nginx
log "nginx stopped"
"$PY" "$SHARED/summarize.py" "$RES" > "$RES/summary_shared.md" 2>/dev/null || true   # its CPU/unit tables
"$PY" "$BENCH/summarize.py" "$RES" | tee "$RES/summary.md"
log "results in $RES"
