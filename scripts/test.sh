#!/usr/bin/env bash
# The one test command of ccproxy: formatting, lints, build, Rust tests, a
# short run of every fuzz target, then the Python suite (official anthropic
# SDK conformance and real Claude Code end to end) against the freshly built
# debug binary, then a benchmark smoke run. Idempotent: the venv,
# node_modules and cargo-fuzz are installed only when missing or out of date.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build"
cargo build

step "cargo test --workspace"
cargo test --workspace

step "fuzz smoke (scripts/fuzz.sh --seconds 5: every target builds, then runs 5 s)"
# Installs cargo-fuzz on first use. A crash here is a real finding: its
# input is left in fuzz/artifacts/<target>/ and the step fails.
scripts/fuzz.sh --seconds 5

step "Python test environment (.venv)"
VENV="$ROOT/.venv"
REQ="$ROOT/tests/py/requirements.txt"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
STAMP="$VENV/.requirements.sha256"
WANT="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ"
  echo "$WANT" > "$STAMP"
fi

step "Claude Code (tests/e2e)"
E2E="$ROOT/tests/e2e"
if [ ! -x "$E2E/node_modules/.bin/claude" ] \
   || [ "$E2E/package-lock.json" -nt "$E2E/node_modules/.package-lock.json" ]; then
  (cd "$E2E" && npm ci --no-audit --no-fund --loglevel=error)
fi
"$E2E/node_modules/.bin/claude" --version

step "pytest tests/py"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
export CCPROXY_BIN="${CCPROXY_BIN:-$TARGET/debug/ccproxy}"
"$VENV/bin/python" -m pytest tests/py -q

step "benchmark pipeline smoke (scripts/run-benchmarks.sh --quick --no-criterion)"
# Proves the pipeline end to end; asserts files and zero errors, never timing.
SMOKE="$(mktemp -d)"
if ! scripts/run-benchmarks.sh --quick --no-criterion --out "$SMOKE/run" > "$SMOKE/log" 2>&1; then
  cat "$SMOKE/log"; exit 1
fi
for f in summary.md machine.txt memory.txt; do
  test -s "$SMOKE/run/$f" || { echo "benchmark smoke: $f missing"; exit 1; }
done
ls "$SMOKE"/run/runs/ccproxy-*/latency.hgrm > /dev/null
ls "$SMOKE"/run/latency-*.svg > /dev/null
"$VENV/bin/python" - "$SMOKE/run" <<'PY'
import glob, json, sys
bad = []
for path in glob.glob(sys.argv[1] + "/runs/*/summary.json"):
    s = json.load(open(path))
    if s["requests"] <= 0 or s["errors"]["total"] != 0:
        bad.append((path, s["requests"], s["errors"]))
if bad:
    sys.exit(f"benchmark smoke: runs with errors or no requests: {bad}")
print("benchmark smoke: all runs served requests with zero errors")
PY
rm -rf "$SMOKE"

printf '\nscripts/test.sh: ALL CHECKS PASSED (fmt, clippy, build, cargo test, fuzz smoke, SDK conformance, Claude Code e2e, benchmark smoke)\n'
