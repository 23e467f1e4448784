#!/usr/bin/env bash
# Runs ccproxy's benchmark suite and stores everything in
# benchmark-results/<UTC timestamp>-<git short sha>/:
#   - criterion micro-benchmarks (handlers, converter, upstream)
#   - loadgen scenarios for every payload profile, streaming and not, against
#     three targets side by side: direct (loadgen -> mock, the floor),
#     ccproxy (loadgen -> ccproxy -> mock) and nginx (a pass-through reverse
#     proxy doing no conversion, the cost of one proxy hop)
#   - ccproxy with --workers 1 and 2
#   - RSS of ccproxy idle and under load
#   - summary.md with ratios, latency plots (SVG), the machine description
# and finally prints the comparison with the previous run.
#
# Usage: scripts/run-benchmarks.sh [--quick] [--no-criterion] [--out DIR]
#   --quick         a short smoke run (a few seconds per scenario, two profiles)
#   --no-criterion  skip the criterion benches
# Everything runs on loopback with bounded durations.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=0
CRITERION=1
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --no-criterion) CRITERION=0 ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release"
SHA=$(git rev-parse --short HEAD 2>/dev/null || echo nogit)
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT="${OUT:-benchmark-results/$STAMP-$SHA}"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PREV=$(ls -1d "$ROOT"/benchmark-results/*/ 2>/dev/null | grep -v "$(basename "$OUT")" | sort | tail -1 || true)

if [ "$QUICK" = 1 ]; then
  DURATION=1s; WARMUP=500ms; PROFILES="simple claude-code"; CRIT_ARGS="--warm-up-time 0.2 --measurement-time 0.5 --sample-size 10"
else
  DURATION=10s; WARMUP=2s; PROFILES="simple multi-turn large tools claude-code"; CRIT_ARGS="--warm-up-time 1 --measurement-time 3"
fi
CONNECTIONS=32

log() { printf '\n==> %s\n' "$*"; }

log "building release binaries"
cargo build --release -p ccproxy -p loadgen 2>&1 | tail -1

PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  if [ -f "$OUT/nginx/nginx.pid" ]; then kill "$(cat "$OUT/nginx/nginx.pid")" 2>/dev/null || true; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "port $1 did not open" >&2; return 1
}
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# --- the machine ------------------------------------------------------------
{
  echo "date_utc: $STAMP"
  echo "git: $(git rev-parse HEAD 2>/dev/null || echo none)"
  echo "cpu: $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ //')"
  echo "cores: $(nproc)"
  echo "memory: $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo)"
  echo "kernel: $(uname -r)"
  echo "rustc: $(rustc --version)"
  echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //' || echo missing)"
  echo "quick: $QUICK"
} > "$OUT/machine.txt"

# --- nginx (installed when missing) -------------------------------------------
if ! command -v nginx >/dev/null 2>&1; then
  log "installing nginx (apt)"
  (apt-get install -y -q nginx-light >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q nginx-light >/dev/null)) \
    || echo "warning: nginx could not be installed; the nginx column will be empty" >&2
fi

# --- criterion --------------------------------------------------------------
if [ "$CRITERION" = 1 ] && ls benches/*.rs >/dev/null 2>&1; then
  log "criterion benches"
  # shellcheck disable=SC2086
  cargo bench -p ccproxy -- $CRIT_ARGS 2>&1 | tee "$OUT/criterion.txt" | grep -E "^[a-z_/ -]+ +time:|thrpt:|allocs" || true
  if [ -d "$TARGET_DIR/criterion" ]; then cp -r "$TARGET_DIR/criterion" "$OUT/criterion"; fi
fi

# --- the fleet ---------------------------------------------------------------
MOCK_PORT=$(free_port)
"$BIN/loadgen" mock --listen "127.0.0.1:$MOCK_PORT" --threads 1 > "$OUT/mock.log" 2>&1 &
PIDS+=($!)
wait_port "$MOCK_PORT"

NGINX_PORT=""
if command -v nginx >/dev/null 2>&1; then
  NGINX_PORT=$(free_port)
  mkdir -p "$OUT/nginx"
  sed -e "s#@DIR@#$OUT/nginx#g" -e "s#@PORT@#$NGINX_PORT#g" -e "s#@MOCK@#$MOCK_PORT#g" \
    scripts/bench/nginx.conf.in > "$OUT/nginx/nginx.conf"
  nginx -c "$OUT/nginx/nginx.conf" -p "$OUT/nginx"
  wait_port "$NGINX_PORT"
fi

start_proxy() {  # $1 = workers; prints "pid port"
  local port; port=$(free_port)
  RUST_LOG=warn "$BIN/ccproxy" --listen "127.0.0.1:$port" --workers "$1" \
    --upstream "http://127.0.0.1:$MOCK_PORT/v1" --upstream-key bench-key --model mock-model \
    > "$OUT/ccproxy-w$1.log" 2>&1 &
  local pid=$!
  wait_port "$port"
  echo "$pid $port"
}

run_load() {  # $1 = name, $2 = url, $3 = expect, $4 = profile, $5 = stream flag, [$6 = extra args]
  local dir="$OUT/runs/$1"
  mkdir -p "$dir"
  # shellcheck disable=SC2086
  "$BIN/loadgen" run --url "$2" --expect "$3" --profile "$4" $5 --connections "$CONNECTIONS" --threads 1 \
    --duration "$DURATION" --warmup "$WARMUP" --out "$dir" ${6:-} > "$dir/stdout.txt" 2>&1 || true
  grep -E "req/s|errors" "$dir/stdout.txt" | sed "s#^#  $1: #" || true
}

read -r P2 PORT2 < <(start_proxy 2)
PIDS+=("$P2")
sleep 0.5
echo "ccproxy_w2_idle_rss_kb: $(rss_kb "$P2")" > "$OUT/memory.txt"

for profile in $PROFILES; do
  for mode in json sse; do
    flag=""; [ "$mode" = sse ] && flag="--stream"
    log "$profile ($mode)"
    run_load "direct-$profile-$mode" "http://127.0.0.1:$MOCK_PORT/v1/chat/completions" openai "$profile" "$flag"
    run_load "ccproxy-$profile-$mode" "http://127.0.0.1:$PORT2/v1/messages" anthropic "$profile" "$flag"
    if [ -n "$NGINX_PORT" ]; then
      run_load "nginx-$profile-$mode" "http://127.0.0.1:$NGINX_PORT/v1/chat/completions" openai "$profile" "$flag"
    fi
  done
done
echo "ccproxy_w2_after_load_rss_kb: $(rss_kb "$P2")" >> "$OUT/memory.txt"
echo "ccproxy_w2_peak_rss_kb: $(hwm_kb "$P2")" >> "$OUT/memory.txt"
kill "$P2" 2>/dev/null || true

log "worker scaling (simple, json): --workers 1"
read -r P1 PORT1 < <(start_proxy 1)
PIDS+=("$P1")
run_load "ccproxy-w1-simple-json" "http://127.0.0.1:$PORT1/v1/messages" anthropic simple ""
echo "ccproxy_w1_peak_rss_kb: $(hwm_kb "$P1")" >> "$OUT/memory.txt"
kill "$P1" 2>/dev/null || true

# --- report ------------------------------------------------------------------
log "report"
python3 scripts/bench/report.py "$OUT" > "$OUT/summary.md"
"$BIN/loadgen" compare $(for p in $PROFILES; do for t in direct ccproxy nginx; do d="$OUT/runs/$t-$p-json"; [ -d "$d" ] && echo "$d"; done; done | head -3) \
  --out "$OUT/latency-simple-json.svg" > /dev/null 2>&1 || true
for p in $PROFILES; do
  for m in json sse; do
    dirs=""
    for t in direct ccproxy nginx; do d="$OUT/runs/$t-$p-$m"; [ -f "$d/summary.json" ] && dirs="$dirs $d"; done
    # shellcheck disable=SC2086
    [ -n "$dirs" ] && "$BIN/loadgen" compare $dirs --out "$OUT/latency-$p-$m.svg" > "$OUT/compare-$p-$m.txt" 2>&1 || true
  done
done
cat "$OUT/summary.md"

if [ -n "$PREV" ] && [ -d "$PREV/runs" ]; then
  log "compared with the previous run: $(basename "$PREV")"
  for p in $PROFILES; do
    for m in json sse; do
      a="$PREV/runs/ccproxy-$p-$m"; b="$OUT/runs/ccproxy-$p-$m"
      if [ -f "$a/summary.json" ] && [ -f "$b/summary.json" ]; then
        echo "-- ccproxy $p $m"
        "$BIN/loadgen" compare "$a" "$b" --out "$OUT/vs-previous-$p-$m.svg" 2>&1 | tail -n +1
      fi
    done
  done
fi
echo
echo "results in $OUT"
