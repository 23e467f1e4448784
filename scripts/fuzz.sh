#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ and runs each for a bounded time,
# printing per target: seconds run, executions, crashes.
#
#   scripts/fuzz.sh [--seconds N] [--keep-going] [--build-only] [target...]
#
# Targets (default: all): http_request chunked sse request_convert
# response_convert stream_convert. N defaults to 60.
#
# Toolchain: cargo-fuzz passes nightly-only flags (-Zsanitizer=address,
# -Cpasses=sancov-module, ...). This machine has only a stable toolchain, so
# the build runs with RUSTC_BOOTSTRAP=1, which lets stable rustc accept -Z
# flags; the ASan runtime ships with the stable rust-std. cargo-fuzz itself
# is installed with `cargo install` when missing (about 4 minutes). The first
# build (all of ccproxy's dependencies, release + ASan) took 11 minutes on
# this 2-core machine under load; later builds take seconds.
#
# --keep-going runs libFuzzer in fork mode with -ignore_crashes=1, so a known
# crash does not end the run; every crash found is still saved.
#
# New inputs libFuzzer finds go into fuzz/corpus/<target>/ (ignored by git;
# only the seed-* files are committed). A crash stops that target's run and
# leaves the input in fuzz/artifacts/<target>/: add it to
# tests/fuzz_regressions.rs. Exit status is 1 when any target crashed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

SECONDS_PER=60
BUILD_ONLY=0
KEEP_GOING=()
TARGETS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_PER="$2"; shift 2 ;;
    --seconds=*) SECONDS_PER="${1#*=}"; shift ;;
    --build-only) BUILD_ONLY=1; shift ;;
    --keep-going) KEEP_GOING=(-fork=1 -ignore_crashes=1); shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) TARGETS+=("$1"); shift ;;
  esac
done
ALL=(http_request chunked sse request_convert response_convert stream_convert)
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")

if ! cargo fuzz --version > /dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
# Own target dir: the sanitizer flags would invalidate a shared one.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$ROOT/fuzz/target}"

echo "==> cargo fuzz build (RUSTC_BOOTSTRAP=1, target dir $CARGO_TARGET_DIR)"
start=$(date +%s)
# One `cargo fuzz build` builds all targets; it takes a single name otherwise.
if [ ${#TARGETS[@]} = ${#ALL[@]} ]; then
  cargo fuzz build
else
  for t in "${TARGETS[@]}"; do cargo fuzz build "$t"; done
fi
echo "build: $(( $(date +%s) - start ))s"
[ "$BUILD_ONLY" = 1 ] && exit 0

LOGS="$ROOT/fuzz/logs"
mkdir -p "$LOGS"
failed=0
printf '\n%-18s %8s %14s %8s\n' target seconds executions crashes
for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  before=$(find "fuzz/artifacts/$t" -type f | wc -l)
  log="$LOGS/$t.log"
  t0=$(date +%s)
  set +e
  cargo fuzz run "$t" -- -max_total_time="$SECONDS_PER" -timeout=10 -max_len=16384 \
    -print_final_stats=1 "${KEEP_GOING[@]}" > "$log" 2>&1
  rc=$?
  set -e
  took=$(( $(date +%s) - t0 ))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  if [ -z "$execs" ]; then
    # A crash ends the run before the final stats (fork mode prints none):
    # take the last status line.
    execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#' || true)
  fi
  after=$(find "fuzz/artifacts/$t" -type f | wc -l)
  crashes=$(( after - before ))
  if [ "$rc" != 0 ] || [ "$crashes" != 0 ]; then
    failed=1
    [ "$crashes" = 0 ] && crashes="rc=$rc"
  fi
  printf '%-18s %8s %14s %8s\n' "$t" "$took" "${execs:-?}" "$crashes"
done
echo "logs: $LOGS"
exit "$failed"
