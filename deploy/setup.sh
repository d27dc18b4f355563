#!/usr/bin/env bash
# Prepares a fresh machine for building and testing Mehr. Idempotent and quiet when all is there.
#
#   deploy/setup.sh build   system packages for the Rust build (libclang for RocksDB's bindgen, a C++ compiler)
#   deploy/setup.sh test    the above, plus the Python venv the tests use (grpcio witness, rns, pytest)
#                           cargo-deny (supply-chain checks), iproute2 and iptables (the fault
#                           tests' namespaces, links and impairment), buf (proto lint and breaking
#                           checks, from npm), Prometheus (Debian's, scraping the telemetry test),
#                           Node.js >= 20 and npm (the Node SDK), Chromium (the Node SDK's web
#                           example is tested in headless Chromium)
#   deploy/setup.sh ml      the venv of the Python SDK's embedding example (torch: several GB)
#   deploy/setup.sh deploy  the deployment tests' tools (podman, runc, debootstrap, systemd-analyze)
#                           and their venv (kubectl, Kubernetes schemas, grpcio)
#
# Everything cached lives under $MEHR_CACHE (default ~/.cache/mehr): the shared cargo target dir
# the venvs and buf, so repeated runs are fast and the clone stays clean.
set -euo pipefail

MEHR_CACHE="${MEHR_CACHE:-$HOME/.cache/mehr}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$MEHR_CACHE/target}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# shellcheck source=deploy/lib/detect.sh
. "$ROOT/deploy/lib/detect.sh"

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*"; return 1; fi
}

ensure_system_packages() {
  local missing=()
  # bindgen (rocksdb) needs libclang; the C++ build needs a compiler; venvs need python3-venv.
  has_libclang || missing+=(libclang-dev)
  command -v c++ >/dev/null || missing+=(g++)
  command -v pkg-config >/dev/null || missing+=(pkg-config)
  python_can_make_venvs python3 || missing+=(python3-venv)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing system packages: ${missing[*]}"
    need_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive need_root apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # Fail here, in seconds, rather than in RocksDB's build script minutes later.
  if ! has_libclang; then
    log "no libclang that bindgen can load (libclang.so or libclang-<version>.so); install libclang-dev"
    exit 1
  fi
}

ensure_rust() {
  if ! command -v cargo >/dev/null; then
    log "cargo is not installed; install Rust with rustup (https://rustup.rs) and re-run"
    exit 1
  fi
}

# venv NAME REQUIREMENTS: creates $MEHR_CACHE/NAME from REQUIREMENTS when the file changed.
ensure_venv() {
  local name="$1" requirements="$2" dir="$MEHR_CACHE/$1"
  local stamp="$dir/.requirements"
  if [ -x "$dir/bin/python" ] && cmp -s "$requirements" "$stamp"; then return; fi
  log "preparing Python venv $dir"
  python3 -m venv "$dir"
  "$dir/bin/python" -m pip install -q --upgrade pip
  "$dir/bin/python" -m pip install -q -r "$requirements"
  cp "$requirements" "$stamp"
}

# The fault tests (tests/faults) build network namespaces and veth links (`ip`, iproute2),
# impair them with `tc netem` (iproute2) or, where the kernel lacks netem, NFQUEUE (`iptables`).
ensure_fault_tools() {
  # Only root can make namespaces; without root the fault tests skip and need none of this.
  [ "$(id -u)" -eq 0 ] || return 0
  local missing=()
  command -v ip >/dev/null && command -v tc >/dev/null || missing+=(iproute2)
  command -v iptables >/dev/null || missing+=(iptables)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing system packages for the fault tests: ${missing[*]}"
    need_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive need_root apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Prometheus: tests/python/test_telemetry.py runs the binary itself (its own config, storage dir
# and port); the package's service is not used.
ensure_prometheus() {
  command -v prometheus >/dev/null && return
  log "installing prometheus (Debian package)"
  need_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive need_root apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # Where systemd runs, the package starts a server on :9090; the tests do not want it.
  need_root systemctl disable --now prometheus >/dev/null 2>&1 || true
}

# cargo-deny (the supply-chain check of tests/run.sh, configured by deny.toml), pinned, built once
# into $MEHR_CACHE/tools (about 10 minutes on 2 cores the first time).
CARGO_DENY_VERSION=0.20.2
ensure_cargo_deny() {
  local tools="$MEHR_CACHE/tools"
  if "$tools/bin/cargo-deny" --version 2>/dev/null | grep -qx "cargo-deny $CARGO_DENY_VERSION"; then return; fi
  log "building cargo-deny $CARGO_DENY_VERSION into $tools"
  CARGO_TARGET_DIR="$MEHR_CACHE/tools-target" cargo install --locked --quiet --root "$tools" \
    --version "$CARGO_DENY_VERSION" cargo-deny
}

# The deployment tests (tests/deploy): podman builds and runs the image (runc for hosts where
# crun cannot start containers: see deploy/container/podman-env.sh), debootstrap makes the local
# base images, systemd-analyze checks the unit, strip makes small copies of the binaries.
ensure_deploy_tools() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v systemd-analyze >/dev/null || missing+=(systemd)
  command -v strip >/dev/null || missing+=(binutils)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing deployment test tools: ${missing[*]}"
    need_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive need_root apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  ensure_venv venv-deploy "$ROOT/tests/deploy/requirements.txt"
}

# buf (lint and breaking-change checks of proto/) from npm, pinned by tools/buf/package-lock.json;
# reinstalled when the lock file changes.
ensure_buf() {
  local dir="$MEHR_CACHE/buf" lock="$ROOT/tools/buf/package-lock.json"
  [ -f "$lock" ] || return 0
  if [ -x "$dir/node_modules/.bin/buf" ] && cmp -s "$lock" "$dir/package-lock.json"; then return; fi
  if ! command -v npm >/dev/null; then
    log "installing system packages: nodejs npm"
    need_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive need_root apt-get install -y -qq nodejs npm >/dev/null
  fi
  log "installing buf from npm into $dir"
  mkdir -p "$dir"
  cp "$ROOT/tools/buf/package.json" "$lock" "$dir/"
  (cd "$dir" && npm ci --silent --no-audit --no-fund >/dev/null)
}

# Node.js >= 20 and npm for the Node SDK (sdk-node): its addon builds from source with cargo,
# its npm packages come from sdk-node/package-lock.json (`npm ci` in tests/run.sh).
ensure_node() {
  local major=0
  if command -v node >/dev/null; then major="$(node -p 'process.versions.node.split(".")[0]')"; fi
  if [ "$major" -ge 20 ] && command -v npm >/dev/null; then return; fi
  log "installing system packages: nodejs npm (Node >= 20 needed, found ${major})"
  need_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive need_root apt-get install -y -qq nodejs npm >/dev/null
}

# Debian's Chromium: the Node SDK's web-store example is driven in a real (headless) browser by
# puppeteer-core (sdk-node/test/browser.test.mjs), which launches /usr/bin/chromium.
ensure_chromium() {
  if command -v chromium >/dev/null; then return; fi
  log "installing system packages: chromium (headless browser test of the Node SDK's web example)"
  need_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive need_root apt-get install -y -qq chromium >/dev/null
}

mkdir -p "$MEHR_CACHE"
case "${1:-build}" in
  build)
    ensure_system_packages; ensure_rust ;;
  test)
    ensure_system_packages; ensure_rust; ensure_cargo_deny; ensure_fault_tools; ensure_prometheus
    ensure_venv venv "$ROOT/tests/requirements.txt"
    ensure_buf
    ensure_node
    ensure_chromium ;;
  ml)
    ensure_system_packages
    ensure_venv venv-ml "$ROOT/sdk-python/examples/requirements-ml.txt" ;;
  deploy)
    ensure_deploy_tools ;;
  *) echo "usage: $0 build|test|ml|deploy" >&2; exit 2 ;;
esac
