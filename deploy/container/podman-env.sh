# Sourced by the container scripts: picks deploy/container/containers.conf on hosts where
# podman's defaults cannot start a container (hybrid cgroups v1+v2, which crun refuses; hard
# rlimits below podman's rootful default of 1048576). A CONTAINERS_CONF already set is kept.
# shellcheck shell=bash
podman_env() {
  local here
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  if [ -n "${CONTAINERS_CONF:-}" ]; then return; fi
  local hard
  hard="$(ulimit -Hn)"
  if [ -d /sys/fs/cgroup/unified ] || { [ "$hard" != unlimited ] && [ "$hard" -lt 1048576 ]; }; then
    if ! command -v runc >/dev/null; then
      echo "this host needs podman's runc runtime (apt-get install runc)" >&2; return 1
    fi
    export CONTAINERS_CONF="$here/containers.conf"
  fi
}
