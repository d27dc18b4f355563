#!/usr/bin/env bash
# Runs Mehr's fuzz targets under libFuzzer (cargo-fuzz), each for a bounded time or number of
# executions, then minimizes each corpus in place. See fuzz/README.md.
#
#   fuzz/run.sh --all                     # every target, 60 s each
#   fuzz/run.sh --seconds 600 packet kiss # those targets, 10 minutes each
#   fuzz/run.sh --runs 10000000 --all     # 10 M executions each (the RELIABILITY.md run)
#   fuzz/run.sh --list                    # the targets
#
# Options: --seconds N (default 60) or --runs N bound each target; --jobs N runs N libFuzzer
# workers on one corpus (default 1); --no-cmin keeps the corpus as the run left it. FUZZ_NICE
# (default 10) is the niceness.
#
# New inputs go into fuzz/corpus/<target>/ (committed, replayed by `cargo test -p
# mehr-fuzz-targets`); a crash stops that target and is kept in fuzz/libfuzzer/artifacts/<target>/
# (copy it to fuzz/regressions/<target>/ with the fix). Limits: 512 MB RSS, and any single
# allocation of 128 MB or more counts as a crash, so a length field cannot make a decoder allocate
# without bound; 10 s per input. One line per target (executions, rate, corpus, outcome) is printed
# at the end and written to $FUZZ_LOG_DIR/summary.txt with each target's libFuzzer log beside it.
#
# Stable Rust with RUSTC_BOOTSTRAP=1 (cargo-fuzz passes nightly-only flags: -Zsanitizer=address
# and coverage instrumentation); cargo-fuzz is installed under $MEHR_CACHE/tools if missing.
# Exits 1 if any target crashed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MEHR_CACHE="${MEHR_CACHE:-$HOME/.cache/mehr}"
TOOLS="$MEHR_CACHE/tools"
export PATH="$TOOLS/bin:$PATH"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$MEHR_CACHE/fuzz-target}"
FUZZ_DIR="$ROOT/fuzz/libfuzzer"
NICE=(nice -n "${FUZZ_NICE:-10}")
# The cargo-fuzz release this script is written against.
CARGO_FUZZ_VERSION=0.13.2

usage() {
  sed -n '4,8p' "${BASH_SOURCE[0]}" | sed 's/^# *//' >&2
  exit 2
}

all_targets() {
  sed -n 's/^name = "\(.*\)"$/\1/p' "$FUZZ_DIR/Cargo.toml" | grep -v '^mehr-fuzz$'
}

seconds=60
runs=
jobs=1
cmin=1
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --list) all_targets; exit 0 ;;
    --all) mapfile -t targets < <(all_targets) ;;
    --seconds) seconds="${2:?--seconds needs a number}"; runs=; shift ;;
    --runs) runs="${2:?--runs needs a number}"; shift ;;
    --jobs) jobs="${2:?--jobs needs a number}"; shift ;;
    --no-cmin) cmin=0 ;;
    -h|--help) usage ;;
    -*) echo "unknown option $1" >&2; usage ;;
    *)
      if ! all_targets | grep -qx "$1"; then
        echo "unknown target $1; fuzz/run.sh --list shows them" >&2
        exit 2
      fi
      targets+=("$1") ;;
  esac
  shift
done
[ ${#targets[@]} -gt 0 ] || usage

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION into $TOOLS" >&2
  "${NICE[@]}" cargo install --locked --quiet --root "$TOOLS" --version "$CARGO_FUZZ_VERSION" cargo-fuzz
fi

# Pull answers carry up to 8 adverts of up to 2 KB; the other inputs fit in 4 KB.
max_len_of() {
  case "$1" in
    market_message) echo 20000 ;;
    *) echo 4096 ;;
  esac
}

bound=(-max_total_time="$seconds")
if [ -n "$runs" ]; then bound=(-runs="$runs"); fi
parallel=()
# Each worker runs its share; libFuzzer's -fork mode keeps one corpus for all of them.
if [ "$jobs" -gt 1 ]; then parallel=(-fork="$jobs"); fi

LOG_DIR="${FUZZ_LOG_DIR:-$FUZZ_DIR/logs}"
mkdir -p "$LOG_DIR"
summary="$LOG_DIR/summary.txt"
: >"$summary"
cd "$ROOT"
# Built up front, so a build error is reported as one rather than as a crash of a target.
for target in "${targets[@]}"; do
  "${NICE[@]}" cargo fuzz build --fuzz-dir "$FUZZ_DIR" -O "$target"
done

failed=0
for target in "${targets[@]}"; do
  corpus="$ROOT/fuzz/corpus/$target"
  artifacts="$FUZZ_DIR/artifacts/$target"
  log="$LOG_DIR/$target.log"
  mkdir -p "$corpus" "$artifacts"
  max_len="$(max_len_of "$target")"
  before="$(find "$corpus" -type f | wc -l)"
  echo "== $target (${runs:+$runs runs}${runs:-$seconds s})" >&2
  outcome=ok
  if ! "${NICE[@]}" cargo fuzz run --fuzz-dir "$FUZZ_DIR" -O "$target" "$corpus" -- \
      "${bound[@]}" -max_len="$max_len" -rss_limit_mb=512 -malloc_limit_mb=128 \
      -timeout=10 -print_final_stats=1 "${parallel[@]}" -artifact_prefix="$artifacts/" \
      >"$log" 2>&1; then
    outcome="CRASH (see $log, input in $artifacts/)"
    failed=1
  fi
  executions="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
  rss="$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)"
  if [ "$cmin" = 1 ] && [ "$outcome" = ok ]; then
    "${NICE[@]}" cargo fuzz cmin --fuzz-dir "$FUZZ_DIR" -O "$target" "$corpus" -- \
      -max_len="$max_len" -rss_limit_mb=512 >>"$log" 2>&1
  fi
  after="$(find "$corpus" -type f | wc -l)"
  line="$(printf '%-18s %12s execs %8s/s  peak %4s MB  corpus %4s -> %4s  %s' "$target" \
    "${executions:-?}" "${rate:-?}" "${rss:-?}" "$before" "$after" "$outcome")"
  echo "$line" | tee -a "$summary" >&2
done
echo "summary: $summary" >&2
exit $failed
