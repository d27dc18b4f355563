#!/usr/bin/env bash
# Makes the two local base images that deploy/container/Containerfile builds FROM, with
# debootstrap and `podman import`, because no image registry is reachable here (only Debian's
# package mirror is):
#
#   localhost/mehr-base:bookworm    Debian 12 minbase: the runtime stage (glibc, libstdc++, passwd)
#   localhost/mehr-build:bookworm   minbase + a C/C++ toolchain, clang/libclang (RocksDB's bindgen),
#                                   pkg-config: the builder stage (Rust comes from the host, see
#                                   build-image.sh)
#   localhost/mehr-systemd:bookworm minbase + systemd as init: where tests/deploy boots the systemd
#                                   unit for real (`make-base.sh systemd`, not part of `all`)
#
#   deploy/container/make-base.sh [--force] [base|build|systemd|all]   (default: all; needs root)
#
# MEHR_DEBIAN_MIRROR picks the mirror (default http://deb.debian.org/debian); the .debs are kept
# in $MEHR_CACHE/debootstrap-cache so a second run downloads nothing. Existing images are kept
# unless --force is given.
set -euo pipefail

MIRROR="${MEHR_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
MEHR_CACHE="${MEHR_CACHE:-$HOME/.cache/mehr}"
DEB_CACHE="$MEHR_CACHE/debootstrap-cache"
BASE_IMAGE=localhost/mehr-base:$SUITE
BUILD_IMAGE=localhost/mehr-build:$SUITE
SYSTEMD_IMAGE=localhost/mehr-systemd:$SUITE
# What the Rust build of mehrd needs besides Rust (the same list as deploy/setup.sh build).
BUILD_PACKAGES=build-essential,clang,libclang-dev,pkg-config,ca-certificates

log() { printf '\033[1;34m[make-base]\033[0m %s\n' "$*" >&2; }

force=0
if [ "${1:-}" = --force ]; then force=1; shift; fi
which="${1:-all}"
case "$which" in base|build|systemd|all) ;; *) echo "usage: $0 [--force] [base|build|systemd|all]" >&2; exit 2 ;; esac
if [ "$(id -u)" -ne 0 ]; then echo "$0: debootstrap needs root" >&2; exit 1; fi
for tool in debootstrap podman; do
  command -v "$tool" >/dev/null || { echo "$0: $tool is missing (apt-get install $tool)" >&2; exit 1; }
done
mkdir -p "$DEB_CACHE"

# make IMAGE [PACKAGES]: debootstraps a minbase tree (plus PACKAGES), trims what a container never
# uses, and imports it as IMAGE.
make_image() {
  local image="$1" include="${2:-}" cmd='["/bin/bash"]'
  if [ "${3:-}" = --init ]; then cmd='["/sbin/init"]'; fi
  if [ $force = 0 ] && podman image exists "$image"; then
    log "$image exists (--force rebuilds it)"; return
  fi
  local root
  root="$(mktemp -d "${TMPDIR:-/var/tmp}/mehr-rootfs.XXXXXX")"
  # shellcheck disable=SC2064  # expand now: the trap must remove this very tree
  trap "rm -rf '$root'" RETURN
  log "debootstrap $SUITE (minbase${include:+ + $include}) from $MIRROR"
  debootstrap --variant=minbase --cache-dir="$DEB_CACHE" ${include:+--include="$include"} \
    "$SUITE" "$root" "$MIRROR" >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
  rm -f "$root.log"
  # Package lists, caches, docs and locales: dead weight in an image (apt-get update restores lists).
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* \
    "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log
  find "$root"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
  log "importing $image"
  tar --numeric-owner -C "$root" -c . |
    podman import -q --change "CMD $cmd" --change 'ENV LANG=C.UTF-8' - "$image" >/dev/null
  log "$image: $(podman image inspect --format '{{.Size}}' "$image" | numfmt --to=iec) "
}

case "$which" in
  base) make_image "$BASE_IMAGE" ;;
  build) make_image "$BUILD_IMAGE" "$BUILD_PACKAGES" ;;
  systemd) make_image "$SYSTEMD_IMAGE" systemd,systemd-sysv,dbus --init ;;
  all) make_image "$BASE_IMAGE"; make_image "$BUILD_IMAGE" "$BUILD_PACKAGES" ;;
esac
