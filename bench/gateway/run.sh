#!/usr/bin/env bash
# Gateway-overhead benchmark: direct vs nginx proxy vs OUR gateway (`dsk serve --config`, SQLite
# and Redis state) vs LiteLLM proxy, all on 127.0.0.1 in front of the benchmark kit's nginx
# fixture upstream. Reuses the kit (DSK_SHARED_BENCH, as bench/run.sh does): its fixtures,
# nginx.conf, proxy.conf, LiteLLM configs and drivers (gateway/drv_aiohttp_gw.py, drv_latency.py).
#
#   bash bench/gateway/run.sh                                   # 3 reps, ~15 min on 2 cores
#   REPS=1 N_TPUT_NS=500 N_TPUT_S=50 N_LAT=200 RSS_STREAMS=200 TARGETS=direct,dsk bash bench/gateway/run.sh
# Knobs (env): REPS=3 PHASES=nonstream,stream,rss TARGETS=direct,nginx,bare,dsk,dsk_redis,litellm
#   N_TPUT_NS=2000 N_TPUT_S=200 N_LAT=500 RATE_NS=25 N_TTFC=40 RATE_S=4 RSS_STREAMS=500 DEADLINE=120
#   DSK_BASE_SRC=DIR (adds target dsk_base: the gateway from another src tree, before/after)
#   DSK_BASE_STATE=redis (dsk_base on Redis state instead of SQLite)
#   LITELLM=1 (0: skip installing/running it) BENCH_NETNS=auto|off  PY=python with aiohttp+msgspec
# Setup (outside the namespace, it may need the package index): LiteLLM in its own venv,
# bench/gateway/.venv (`litellm[proxy]`, never 1.107.0, as the kit's gateway/setup.sh does); if it
# cannot be installed the run goes on without it and says so. Then a loopback-only network
# namespace (`unshare -n`), run_gw.py, summarize_gw.py -> bench/gateway/results/<UTC stamp>/.
set -euo pipefail
GW=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$GW/../.." && pwd)
SHARED=${DSK_SHARED_BENCH:-$(dirname "$REPO")/shared/bench}
[[ -f "$SHARED/drivers/common.py" ]] || SHARED=$(dirname "$SHARED")
[[ -f "$SHARED/gateway/drv_latency.py" ]] || { echo "benchmark kit not found (set DSK_SHARED_BENCH)" >&2; exit 1; }
export DSK_SHARED_BENCH=$(cd "$SHARED" && pwd)
export PY=${PY:-$REPO/.venv/bin/python}
LLV="$GW/.venv"
if [[ -z "${BENCH_IN_NETNS:-}" ]]; then
  "$PY" -c 'import aiohttp, msgspec' || { echo "$PY lacks aiohttp/msgspec (set PY)" >&2; exit 1; }
  command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || { echo "nginx missing (apt-get install nginx-light)" >&2; exit 1; }
  if [[ "${LITELLM:-1}" == 1 ]] && ! LITELLM_LOCAL_MODEL_COST_MAP=True "$LLV/bin/python" -c 'import litellm.proxy.proxy_server' 2>/dev/null; then
    { [[ -x "$LLV/bin/python" ]] || python3 -m venv "$LLV"; } &&
      "$LLV/bin/pip" install -q 'litellm[proxy]!=1.107.0' aiohttp ||
      echo "note: LiteLLM could not be installed; the run goes on without it" >&2
  fi
  if [[ "${BENCH_NETNS:-auto}" != off ]] && unshare -n true 2>/dev/null; then
    export BENCH_IN_NETNS=1
    exec unshare -n -- bash "$GW/run.sh" "$@"
  fi
else
  ip link set lo up
fi
export LL_PY=""
if [[ "${LITELLM:-1}" == 1 ]] && LITELLM_LOCAL_MODEL_COST_MAP=True "$LLV/bin/python" -c 'import litellm.proxy.proxy_server' 2>/dev/null; then
  LL_PY="$LLV/bin/python"
fi
export LITELLM_LOCAL_MODEL_COST_MAP=True
export GW_RES="$GW/results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$GW_RES"
{
  echo "date_utc: $(date -u +%FT%TZ)"
  echo "host: $(uname -srm); cpus: $(nproc); load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "python: $("$PY" -c 'import sys; print(sys.version.split()[0])'); nginx: $(nginx -v 2>&1 | sed 's/.*: //')"
  echo "deepseek_kit: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$(git -C "$REPO" diff --quiet 2>/dev/null || echo '+dirty')"
  "$PY" -m pip list --format=freeze 2>/dev/null | grep -iE '^(aiohttp|msgspec|redis|uvloop)==' | tr '\n' ' '; echo
  [[ -n "$LL_PY" ]] && "$LL_PY" -m pip list --format=freeze 2>/dev/null | grep -iE '^(litellm|uvicorn|uvloop)==' | tr '\n' ' '; echo
  echo "netns: ${BENCH_IN_NETNS:-no}"
} > "$GW_RES/versions.txt"
cat "$GW_RES/versions.txt" >&2
timeout --kill-after=30 "${BUDGET_S:-3000}" "$PY" "$GW/run_gw.py" "$@" || echo "run_gw exit $?" >&2
"$PY" "$GW/summarize_gw.py" "$GW_RES" | tee "$GW_RES/summary.md"
