#!/usr/bin/env bash
# Builds mehrd and mehr and starts a node on embedded defaults (data in ~/.local/share/mehr,
# API on its Unix socket and 127.0.0.1:7440). Arguments are passed to mehrd, e.g.
#   deploy/start.sh --data-dir /tmp/node1 --api-listen 127.0.0.1:7441
# The binaries land in $CARGO_TARGET_DIR/release (default ~/.cache/mehr/target/release).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/deploy/setup.sh" build
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${MEHR_CACHE:-$HOME/.cache/mehr}/target}"
cd "$ROOT"
echo "building mehrd (the first build takes ~20 min on 2 cores: RocksDB and Cranelift are large)…" >&2
cargo build --release -q --bin mehrd --bin mehr
BIN="$CARGO_TARGET_DIR/release"
echo "mehr CLI: $BIN/mehr   (add it to PATH: export PATH=\"$BIN:\$PATH\")" >&2
exec "$BIN/mehrd" "$@"
