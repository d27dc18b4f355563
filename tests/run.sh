#!/usr/bin/env bash
# Runs every test of the project: the API guard (buf lint and breaking), the supply-chain check
# (cargo deny), Rust unit and integration tests (real daemons as processes), the interop tests
# against real Python Reticulum (rns), the Python grpcio witness tests, the faults in network
# namespaces (five daemons on lossy veth links, a partition, kill -9 loops), the deployment tests
# (images built with podman from debootstrap bases, as root), and the Python SDK's tests. Sets
# up what it needs first (system packages, Python venvs, tools); safe to re-run.
# MEHR_SKIP_ML=1 skips the SDK's real-model example (its venv holds torch, several GB).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/deploy/setup.sh" test
MEHR_CACHE="${MEHR_CACHE:-$HOME/.cache/mehr}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$MEHR_CACHE/target}"
export MEHR_RNS_PYTHON="$MEHR_CACHE/venv/bin/python"
cd "$ROOT"

step() { printf '\n\033[1;32m==> %s\033[0m\n' "$*"; }

step "set-up decisions (deploy/lib/detect.sh against the fresh and prepared images' library lists)"
"$MEHR_CACHE/venv/bin/python" -m pytest -q tests/setup

step "supply chain: cargo deny (licences, banned and duplicated crypto crates, sources; deny.toml)"
"$MEHR_CACHE/tools/bin/cargo-deny" --log-level error check bans licenses sources

step "API guard: buf lint, buf breaking against the last release's image (docs/API.md)"
export MEHR_BUF="$MEHR_CACHE/buf/node_modules/.bin/buf"
"$MEHR_BUF" lint
"$MEHR_BUF" breaking --against proto/release/mehr-v1.binpb
"$MEHR_CACHE/venv/bin/python" -m pytest -q tests/proto

step "build (release profile: one build serves the node, the tests and the benchmarks)"
cargo build --release --workspace --bins --tests

step "Rust tests (including the ignored-by-default interop tests that need Python rns)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --workspace --run-ignored all --no-fail-fast
  cargo test --release --workspace --doc
else
  cargo test --release --workspace --no-fail-fast -- --include-ignored
fi

step "Python witness tests (grpcio against a real daemon; telemetry against real Prometheus and an OTLP receiver)"
export MEHRD_BIN="$CARGO_TARGET_DIR/release/mehrd"
"$MEHR_CACHE/venv/bin/python" -m pytest -q tests/python

step "faults in network namespaces: five daemons on lossy veth links, a partition, kill -9 (root)"
# MEHR_FAULTS_SECS (default 150) sets how long the faults last; RELIABILITY.md has the soak.
"$MEHR_CACHE/venv/bin/python" -m pytest -q -s -rs tests/faults

step "deployment: systemd unit, container image, Kubernetes manifests (tests/deploy, podman as root)"
"$ROOT/deploy/setup.sh" deploy
MEHR_DEPLOY_STRICT=1 "$MEHR_CACHE/venv-deploy/bin/python" -m pytest -q tests/deploy

step "Python SDK: pip builds the abi3 wheel (maturin, shared target dir), tests against real daemons"
WHEELS="$MEHR_CACHE/wheels"
rm -rf "$WHEELS"
# The venv's maturin builds it (on PATH for pip's build hook), no download.
PATH="$MEHR_CACHE/venv/bin:$PATH" "$MEHR_CACHE/venv/bin/python" -m pip wheel -q --no-deps \
  --no-build-isolation -w "$WHEELS" ./sdk-python
"$MEHR_CACHE/venv/bin/python" -m pip install -q --force-reinstall --no-deps "$WHEELS"/mehr-*.whl
if [ "${MEHR_SKIP_ML:-0}" != 1 ]; then
  "$ROOT/deploy/setup.sh" ml
  "$MEHR_CACHE/venv-ml/bin/python" -m pip install -q --force-reinstall --no-deps "$WHEELS"/mehr-*.whl
  export MEHR_ML_PYTHON="$MEHR_CACHE/venv-ml/bin/python"
fi
(cd sdk-python && "$MEHR_CACHE/venv/bin/python" -m pytest -q tests)

step "Node SDK: npm ci from the lockfile, the addon built from source (shared target dir), node --test against real daemons"
# MEHR_BROWSER_STRICT=1: the headless-Chromium test of the web example fails (not skips) without
# Chromium; its screenshot goes to $MEHR_TEST_ARTIFACTS when set, else sdk-node/test-artifacts/.
(cd sdk-node && npm ci --ignore-scripts --silent --no-audit --no-fund && node scripts/build-native.mjs \
  && MEHR_BROWSER_STRICT=1 npm test)
echo
echo "all tests passed"
