#!/usr/bin/env bash
# The one test command of ccproxy: formatting, lints, build, Rust tests, then
# the Python suite (official anthropic SDK conformance and real Claude Code
# end to end) against the freshly built debug binary. Idempotent: the venv
# and node_modules are created only when missing or out of date.
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

printf '\nscripts/test.sh: ALL CHECKS PASSED (fmt, clippy, build, cargo test, SDK conformance, Claude Code e2e)\n'
