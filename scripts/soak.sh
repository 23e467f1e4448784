#!/usr/bin/env bash
# Soak and fault tests for ccproxy (issue 5), loopback only, bounded in time.
#
# Usage: scripts/soak.sh [--out DIR] [--no-build] [idle] [slowloris] [faults]
#   (no scenario named: all three, about 3 minutes in total)
#
#   idle       10,000 idle keep-alive connections (one GET /health each, then silent)
#              held while `loadgen run` applies normal load; p99 with and without them.
#   slowloris  1,000 clients trickling a request head (one byte every 2 s) while normal
#              clients are served; p99 with and without them; every slow client must be
#              closed at the header deadline (10 s), none held past it.
#   faults     one ccproxy, its upstream a `loadgen mock --fault F --fault-every 2`
#              restarted per fault: reset mid-stream, 500, 429 with retry-after,
#              malformed body, slow first byte (below and above first_byte_timeout).
#              Loadgen runs JSON and SSE load per fault; a strict probe checks answer
#              shapes; workers must survive, RSS must come back near baseline.
#
# Writes benchmark-results/soak-<UTC stamp>/ (summary.md, per-scenario facts, loadgen
# summaries) and prints summary.md. Exit status 1 when any check failed.
# Knobs (environment): IDLE_CONNS=10000 SLOW_CLIENTS=1000 LOAD_RATE=400 LOAD_CONNS=16
#   LOAD_SECS=8 WORKERS=2. Raises `ulimit -n` to 65536 (or the hard limit) and stops
#   with a clear message when that is below IDLE_CONNS + 2048.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

OUT=""
BUILD=1
SCENARIOS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift ;;
    --no-build) BUILD=0 ;;
    idle|slowloris|faults) SCENARIOS+=("$1") ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ ${#SCENARIOS[@]} -eq 0 ] && SCENARIOS=(idle slowloris faults)

IDLE_CONNS=${IDLE_CONNS:-10000}
SLOW_CLIENTS=${SLOW_CLIENTS:-1000}
LOAD_RATE=${LOAD_RATE:-400}
LOAD_CONNS=${LOAD_CONNS:-16}
LOAD_SECS=${LOAD_SECS:-8}
WORKERS=${WORKERS:-2}
HEADER_TIMEOUT=10

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT="${OUT:-benchmark-results/soak-$STAMP}"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
CLIENTS="python3 $ROOT/scripts/soak/clients.py"
# shellcheck source=scripts/bench/lib.sh
. "$ROOT/scripts/bench/lib.sh"

log() { printf '\n==> %s\n' "$*" >&2; }
die() { echo "soak: $*" >&2; exit 2; }

# --- preconditions -------------------------------------------------------------
NEED_FDS=$((IDLE_CONNS + 2048))
raise_nofile "$NEED_FDS" || die "too few open files for $IDLE_CONNS idle connections; or lower IDLE_CONNS"
read -r PLO PHI < /proc/sys/net/ipv4/ip_local_port_range
[ $((PHI - PLO)) -gt $((IDLE_CONNS + 1000)) ] || die "ephemeral port range $PLO-$PHI is too small for $IDLE_CONNS connections"
command -v python3 >/dev/null || die "python3 is needed"

if [ "$BUILD" = 1 ]; then
  log "building release binaries"
  cargo build --release -p ccproxy -p loadgen 2>&1 | tail -1
fi
[ -x "$BIN/ccproxy" ] && [ -x "$BIN/loadgen" ] || die "no release binaries in $BIN"

{
  echo "date_utc: $STAMP"
  echo "git: $(git rev-parse HEAD 2>/dev/null || echo none)"
  echo "cpu: $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ //')"
  echo "cores: $(nproc)"
  echo "loadavg_at_start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "kernel: $(uname -r)"
  echo "nofile: $(ulimit -n)"
  echo "knobs: IDLE_CONNS=$IDLE_CONNS SLOW_CLIENTS=$SLOW_CLIENTS LOAD_RATE=$LOAD_RATE LOAD_CONNS=$LOAD_CONNS LOAD_SECS=$LOAD_SECS WORKERS=$WORKERS"
} > "$OUT/machine.txt"

# --- plumbing (helpers shared with run-benchmarks.sh are in scripts/bench/lib.sh) ----
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

http_get() {  # $1 port, $2 path -> "STATUS BODY" (bounded)
  python3 - "$1" "$2" <<'EOF'
import http.client, sys
try:
    c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
    c.request("GET", sys.argv[2]); r = c.getresponse(); print(r.status, r.read().decode("utf-8", "replace").replace("\n", " "))
except Exception as e:
    print(0, type(e).__name__)
EOF
}
fact() { echo "$2 $3" >> "$OUT/$1/facts.txt"; }

start_mock() {  # $1 port, $2 log, rest: extra args
  local port=$1 logf=$2; shift 2
  "$BIN/loadgen" mock --listen "127.0.0.1:$port" --threads 1 "$@" > "$logf" 2>&1 &
  MOCK_PID=$!
  PIDS+=("$MOCK_PID")
  wait_port "$port"
}

start_proxy() {  # $1 dir, $2 mock port, $3 retries; sets PROXY_PID PROXY_PORT
  PROXY_PORT=$(free_port)
  cat > "$1/ccproxy.toml" <<EOF
listen = "127.0.0.1:$PROXY_PORT"
workers = $WORKERS
retries = $3
[limits]
header_timeout_secs = $HEADER_TIMEOUT
idle_timeout_secs = 75
[upstream]
base_url = "http://127.0.0.1:$2/v1"
api_key = "soak-upstream-key"
model = "mock-model"
first_byte_timeout_secs = 2
EOF
  RUST_LOG=warn "$BIN/ccproxy" --config "$1/ccproxy.toml" > "$1/ccproxy.log" 2>&1 &
  PROXY_PID=$!
  PIDS+=("$PROXY_PID")
  wait_port "$PROXY_PORT"
  sleep 0.3
}

load() {  # $1 dir name, [$2 = --stream], [$3 duration], [$4 warmup]; RATE= (empty) for closed loop
  mkdir -p "$1"
  local rate=""; [ -n "${RATE-$LOAD_RATE}" ] && rate="--rate ${RATE-$LOAD_RATE}"
  # The sampler tells a stalled proxy from a starved machine (see sample.py).
  python3 "$ROOT/scripts/soak/sample.py" "$PROXY_PID" "$1/sample" &
  local sp=$!
  # shellcheck disable=SC2086
  "$BIN/loadgen" run --url "http://127.0.0.1:$PROXY_PORT/v1/messages" --profile simple ${2:-} \
    $rate --connections "$LOAD_CONNS" --threads 1 --timeout 10s \
    --duration "${3:-${LOAD_SECS}s}" --warmup "${4:-2s}" --out "$1" > "$1/stdout.txt" 2>&1 || true
  kill -TERM "$sp" 2>/dev/null || true
  wait "$sp" 2>/dev/null || true
  grep -E "req/s|ERROR" "$1/stdout.txt" | head -2 | sed "s#^#  $(basename "$1"): #" >&2 || true
}

worker_state() {  # $1 scenario: records /health, /status workers, threads, panics
  local tag=$2
  fact "$1" "health_$tag" "$(http_get "$PROXY_PORT" /health | cut -d' ' -f1)"
  fact "$1" "status_workers_$tag" "$(http_get "$PROXY_PORT" /status | grep -o '"workers":[0-9]*' | cut -d: -f2)"
  fact "$1" "threads_$tag" "$(threads "$PROXY_PID")"
  fact "$1" "alive_$tag" "$(kill -0 "$PROXY_PID" 2>/dev/null && echo 1 || echo 0)"
}

condense_log() {  # $1 log file: above 256 KiB, keep the first/last lines and counts per message
  local f=$1
  [ -f "$f" ] && [ "$(stat -c %s "$f")" -gt 262144 ] || return 0
  {
    echo "# $(wc -l < "$f") lines condensed by scripts/soak.sh: distinct messages (numbers as N), then head and tail"
    sed -e 's/^[^ ]* *//' -e 's/[0-9]\+/N/g' "$f" | sort | uniq -c | sort -rn | head -40
    echo "# head"; head -20 "$f"; echo "# tail"; tail -20 "$f"
  } > "$f.condensed"
  rm -f "$f"
}

finish_proxy() {  # $1 scenario dir
  fact "$1" panics "$(grep -ci panic "$OUT/$1/ccproxy.log" || true)"
  fact "$1" peak_rss_kb "$(hwm_kb "$PROXY_PID")"
  kill "$PROXY_PID" "$MOCK_PID" 2>/dev/null || true
  local rc=0
  wait "$PROXY_PID" 2>/dev/null || rc=$?
  wait "$MOCK_PID" 2>/dev/null || true
  fact "$1" exit_code_on_sigterm "$rc"
  condense_log "$OUT/$1/ccproxy.log"
}

# --- 1. idle keep-alive connections -----------------------------------------------
scenario_idle() {
  local d="$OUT/idle"; mkdir -p "$d"
  log "idle: $IDLE_CONNS idle keep-alive connections + load ($LOAD_RATE req/s)"
  local mp; mp=$(free_port); start_mock "$mp" "$d/mock.log"
  start_proxy "$d" "$mp" 2
  fact idle rss_start_kb "$(rss_kb "$PROXY_PID")"
  worker_state idle before
  load "$d/load-without"
  fact idle rss_before_kb "$(rss_kb "$PROXY_PID")"
  fact idle fds_before "$(fds "$PROXY_PID")"
  rm -f "$d/ready"
  $CLIENTS idle --port "$PROXY_PORT" -n "$IDLE_CONNS" --hold 90 --ready-file "$d/ready" --out "$d/idle-clients.json" \
    > /dev/null 2> "$d/idle-clients.log" &
  local cp=$!; PIDS+=("$cp")
  for _ in $(seq 1 600); do [ -f "$d/ready" ] && break; sleep 0.1; done
  [ -f "$d/ready" ] || echo "idle clients did not finish opening within 60 s" >&2
  # Steady state is the question: past the 250 ms hot window every idle
  # connection has parked, and the burst of opening them is over.
  sleep 1
  fact idle fds_idle "$(fds "$PROXY_PID")"
  fact idle rss_idle_kb "$(rss_kb "$PROXY_PID")"
  load "$d/load-with"
  fact idle rss_during_kb "$(rss_kb "$PROXY_PID")"
  fact idle fds_during "$(fds "$PROXY_PID")"
  worker_state idle during
  kill -TERM "$cp" 2>/dev/null || true
  wait "$cp" 2>/dev/null || true
  # A little traffic after the close lets each worker's allocator purge what it freed.
  load "$d/load-after" "" 2s 0s
  sleep 1
  fact idle fds_after "$(fds "$PROXY_PID")"
  fact idle rss_after_kb "$(rss_kb "$PROXY_PID")"
  fact idle hwm_cycle1_kb "$(hwm_kb "$PROXY_PID")"
  # A second open/close cycle: if the peak does not rise, the second 10,000
  # connections reused the first ones' memory, so nothing leaked.
  $CLIENTS idle --port "$PROXY_PORT" -n "$IDLE_CONNS" --hold 1 --out "$d/idle-clients-2.json" \
    > /dev/null 2> "$d/idle-clients-2.log" || true
  load "$d/load-after2" "" 2s 0s
  sleep 1
  fact idle rss_after2_kb "$(rss_kb "$PROXY_PID")"
  fact idle hwm_cycle2_kb "$(hwm_kb "$PROXY_PID")"
  fact idle fds_after2 "$(fds "$PROXY_PID")"
  worker_state idle after
  finish_proxy idle
}

# --- 2. slowloris ---------------------------------------------------------------------
scenario_slowloris() {
  local d="$OUT/slowloris"; mkdir -p "$d"
  log "slowloris: $SLOW_CLIENTS clients, one byte every 2 s, header deadline ${HEADER_TIMEOUT}s, + load"
  local mp; mp=$(free_port); start_mock "$mp" "$d/mock.log"
  start_proxy "$d" "$mp" 2
  fact slowloris rss_start_kb "$(rss_kb "$PROXY_PID")"
  worker_state slowloris before
  load "$d/load-without"
  fact slowloris rss_before_kb "$(rss_kb "$PROXY_PID")"
  fact slowloris fds_before "$(fds "$PROXY_PID")"
  # Long enough that the first wave crosses the deadline and reconnects during the load.
  local dur=$((LOAD_SECS + 2 + HEADER_TIMEOUT))
  $CLIENTS slow --port "$PROXY_PORT" -n "$SLOW_CLIENTS" --interval 2 --deadline "$HEADER_TIMEOUT" --ramp 2 \
    --duration "$dur" --out "$d/slow-clients.json" > /dev/null 2> "$d/slow-clients.log" &
  local cp=$!; PIDS+=("$cp")
  sleep 3
  fact slowloris fds_slow "$(fds "$PROXY_PID")"
  load "$d/load-with"
  fact slowloris rss_during_kb "$(rss_kb "$PROXY_PID")"
  fact slowloris fds_during "$(fds "$PROXY_PID")"
  worker_state slowloris during
  wait "$cp" 2>/dev/null || true
  # As in the idle scenario: a little traffic lets the workers' allocators purge.
  load "$d/load-after" "" 2s 0s
  sleep 1
  fact slowloris fds_after "$(fds "$PROXY_PID")"
  fact slowloris rss_after_kb "$(rss_kb "$PROXY_PID")"
  worker_state slowloris after
  finish_proxy slowloris
}

# --- 3. upstream fault matrix -----------------------------------------------------------
# name|mock fault|modes
FAULTS=(
  "reset|reset-mid-stream|json sse"
  "500|status:500|json sse"
  "429-retry-after|status:429:1|json sse"
  "malformed|malformed|json sse"
  "slow-300ms|slow-first-byte:300ms|json sse"
  "slow-3s-timeout|slow-first-byte:3s|json sse"
)
scenario_faults() {
  local d="$OUT/faults"; mkdir -p "$d"
  log "faults: upstream fault matrix under load (--fault-every 2, ccproxy retries = 0)"
  local mp; mp=$(free_port); start_mock "$mp" "$d/mock-none.log"
  # retries = 0: every injected fault must reach a client, as an Anthropic error.
  start_proxy "$d" "$mp" 0
  # Closed loop: faulted requests are slow (up to the 2 s first-byte timeout)
  # and an open-loop schedule would only pile up a backlog.
  local RATE=""
  fact faults rss_start_kb "$(rss_kb "$PROXY_PID")"
  worker_state faults before
  load "$d/baseline-json" "" 3s 1s
  load "$d/baseline-sse" --stream 3s 1s
  fact faults rss_before_kb "$(rss_kb "$PROXY_PID")"
  fact faults fds_before "$(fds "$PROXY_PID")"
  local max_rss=0
  for row in "${FAULTS[@]}"; do
    IFS='|' read -r name fault modes <<< "$row"
    kill "$MOCK_PID" 2>/dev/null || true; wait "$MOCK_PID" 2>/dev/null || true
    start_mock "$mp" "$d/mock-$name.log" --fault "$fault" --fault-every 2
    for m in $modes; do
      local flag=""; [ "$m" = sse ] && flag=--stream
      load "$d/$name-$m" "$flag" 3s 1s
    done
    $CLIENTS probe --port "$PROXY_PORT" -n 2 --timeout 10 --out "$d/$name-probe.json" > /dev/null 2>&1 || true
    local r; r=$(rss_kb "$PROXY_PID"); [ "$r" -gt "$max_rss" ] && max_rss=$r
    fact faults "health_after_$name" "$(http_get "$PROXY_PORT" /health | cut -d' ' -f1)"
  done
  fact faults rss_during_kb "$max_rss"
  kill "$MOCK_PID" 2>/dev/null || true; wait "$MOCK_PID" 2>/dev/null || true
  start_mock "$mp" "$d/mock-recovered.log"
  load "$d/recovered-json" "" 3s 1s
  load "$d/recovered-sse" --stream 3s 1s
  sleep 2
  fact faults rss_after_kb "$(rss_kb "$PROXY_PID")"
  fact faults fds_after "$(fds "$PROXY_PID")"
  fact faults in_flight_after "$(http_get "$PROXY_PORT" /metrics | grep -o 'ccproxy_in_flight_streams [0-9][0-9]*' | awk '{print $2}')"
  worker_state faults after
  finish_proxy faults
}

for s in "${SCENARIOS[@]}"; do
  mkdir -p "$OUT/$s"; : > "$OUT/$s/facts.txt"
  "scenario_$s"
done

echo "loadavg_at_end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"
set +e
python3 "$ROOT/scripts/soak/summary.py" "$OUT" > "$OUT/summary.md"
rc=$?
cat "$OUT/summary.md"
echo
echo "results in $OUT"
exit $rc
