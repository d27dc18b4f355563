#!/usr/bin/env bash
# Executions per CPU second of built fuzz targets, for comparing two builds of a target on a
# machine whose other load makes wall-clock rates meaningless (RELIABILITY.md, "Faster stateful
# targets"):
#
#   fuzz/measure-cpu.sh RUNS BIN_DIR TARGET...
#
# Runs each BIN_DIR/TARGET (a cargo-fuzz binary, e.g. $CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release)
# for RUNS executions (the corpus replay included) with a fixed seed over a scratch copy of
# fuzz/corpus/TARGET, with run.sh's limits, and prints executions / (user + system) seconds.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -ge 3 ] || { sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# *//' >&2; exit 2; }
runs=$1
dir=$2
shift 2
for target in "$@"; do
  scratch="$(mktemp -d)"
  cp "$ROOT/fuzz/corpus/$target/"* "$scratch/"
  log="$scratch.log"
  /usr/bin/time -f '%U %S' -o "$scratch.time" nice -n "${FUZZ_NICE:-19}" "$dir/$target" "$scratch" \
    -runs="$runs" -seed=1 -max_len=4096 -rss_limit_mb=512 -malloc_limit_mb=128 -timeout=10 \
    -print_final_stats=1 >"$log" 2>&1
  read -r user system <"$scratch.time"
  executions="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
  awk -v t="$target" -v n="$executions" -v u="$user" -v s="$system" \
    'BEGIN { printf "%-18s %10d execs  %7.1f CPU s  %8.0f exec/CPU s\n", t, n, u + s, n / (u + s) }'
  rm -rf "$scratch" "$scratch.time" "$log"
done
