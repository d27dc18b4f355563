#!/usr/bin/env bash
# Builds the mehrd image from deploy/container/Containerfile with podman, offline.
#
#   deploy/container/build-image.sh [TAG]                 compile in the builder stage (default)
#   deploy/container/build-image.sh --prebuilt DIR [TAG]  take mehrd and mehr from DIR instead
#
# TAG defaults to localhost/mehrd:dev. The base images come from make-base.sh (run first). The
# builder stage uses the host's Rust toolchain (`rustc --print sysroot`, mounted read-only) and
# the host's cargo registry cache (an overlay mount: the build reads it, its writes are dropped),
# so it needs no network; the crates of Cargo.lock must be in that cache (any earlier
# `cargo build` on this host, or `cargo fetch`, puts them there).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=deploy/container/podman-env.sh
. "$ROOT/deploy/container/podman-env.sh"
podman_env

prebuilt=
if [ "${1:-}" = --prebuilt ]; then prebuilt="${2:?--prebuilt needs a directory}"; shift 2; fi
tag="${1:-localhost/mehrd:dev}"
for image in localhost/mehr-base:bookworm localhost/mehr-build:bookworm; do
  if [ -n "$prebuilt" ] && [ "$image" = localhost/mehr-build:bookworm ]; then continue; fi
  podman image exists "$image" || { echo "$image is missing: run deploy/container/make-base.sh" >&2; exit 1; }
done

args=(build --format docker -f "$ROOT/deploy/container/Containerfile" -t "$tag")
if [ -n "$prebuilt" ]; then
  # The prebuilt stage copies from the build context; stripped copies keep the image small.
  staging="$ROOT/deploy/container/prebuilt"
  rm -rf "$staging"; mkdir -p "$staging"
  trap 'rm -rf "$staging"' EXIT
  for bin in mehrd mehr; do strip -o "$staging/$bin" "$prebuilt/$bin"; done
  args+=(--build-arg BINARIES=prebuilt)
else
  sysroot="$(rustc --print sysroot)"
  registry="${CARGO_HOME:-$HOME/.cargo}/registry"
  [ -d "$registry" ] || { echo "no cargo registry cache at $registry: run cargo fetch" >&2; exit 1; }
  # Named explicitly: buildah 1.28 resolves a stage named by an ARG only from --build-arg.
  args+=(--build-arg BINARIES=compiled \
    --volume "$sysroot:/opt/rust:ro" --volume "$registry:/opt/cargo/registry:O")
fi
podman "${args[@]}" "$ROOT"
echo "built $tag: $(podman image inspect --format '{{.Size}}' "$tag" | numfmt --to=iec)" >&2
