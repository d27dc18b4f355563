#!/usr/bin/env bash
# Runs every test of the project: Rust unit and integration tests (real daemons as processes),
# the interop tests against real Python Reticulum (rns), and the Python grpcio witness tests.
# Sets up what it needs first (system packages, Python venv); safe to re-run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/deploy/setup.sh" test
MEHR_CACHE="${MEHR_CACHE:-$HOME/.cache/mehr}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$MEHR_CACHE/target}"
export MEHR_RNS_PYTHON="$MEHR_CACHE/venv/bin/python"
cd "$ROOT"

step() { printf '\n\033[1;32m==> %s\033[0m\n' "$*"; }

step "build (release profile: one build serves the node, the tests and the benchmarks)"
cargo build --release --workspace --bins --tests

step "Rust tests (including the ignored-by-default interop tests that need Python rns)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --workspace --run-ignored all --no-fail-fast
  cargo test --release --workspace --doc
else
  cargo test --release --workspace --no-fail-fast -- --include-ignored
fi

step "Python witness tests (grpcio against a real daemon)"
export MEHRD_BIN="$CARGO_TARGET_DIR/release/mehrd"
"$MEHR_CACHE/venv/bin/python" -m pytest -q tests/python
echo
echo "all tests passed"
