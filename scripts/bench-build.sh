#!/usr/bin/env bash
# Agent overhead: `ci-build --local` against a plain shell script
# (scripts/bench-build-peer.sh) running the same cargo commands on the same
# crate. Target: ci-build's median <= 1.05 x the peer's.
#
#   scripts/bench-build.sh [--rounds N] [--ci-build PATH] [--steps LIST]
#                          [--cargo-config FILE] [CRATE]
#
#   CRATE           a cargo project (default: tests/fixtures/with_deps)
#   --rounds N      timed rounds per side (default 5); the medians are compared
#   --ci-build PATH the binary to measure (default: build/tools/ci-build/ci-build)
#   --steps LIST    passed to both sides (default: check,build,test,clippy)
#   --cargo-config FILE
#                   installed as config.toml of the benchmark's CARGO_HOME
#                   (default: tests/fixtures/cargo-config-debian.toml, which
#                   builds from Debian's vendored crates, offline); `none`
#                   for no configuration
#
# Both sides run every round from the same state: a new, empty target
# directory each, one CARGO_HOME shared by all runs and warmed by one untimed
# run of the peer before the first round (registry, page cache). The crate is
# copied once into the work directory, so the checkout stays clean. The sides
# alternate which goes first. Each run is timed by bash's `time` around the
# whole process, after a `sync`: wall clock, and CPU time (user + system of
# the process and every descendant it waited for, so cargo and rustc count).
# stdout and stderr of both sides go to files.
# Both sides get CARGO_INCREMENTAL=0 and CARGO_TERM_COLOR=never (ci-build sets
# them itself too).
#
# `--ci-build scripts/bench-build-peer.sh` measures the peer against itself:
# the ratio it prints is the noise of the machine, not overhead. Other load
# on the machine moves the wall-clock ratio most: the script warns when the
# load average is high, and prints the per-round (paired) ratio and the CPU
# ratio beside the ratio of the medians, which is the one held to the target.
#
# Exit status: 0 when both sides were measured (whether or not the target is
# met), 1 when a run failed, 2 on a usage error or a missing tool.
# The figures belong in docs/performance.md.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
repo_root=$PWD
rounds=5
ci_build=build/tools/ci-build/ci-build
steps=check,build,test,clippy
cargo_config=tests/fixtures/cargo-config-debian.toml
crate=tests/fixtures/with_deps
target_ratio=1.05

usage() { usage_from_header 6 17; }
parse_cargo_bench_args "$@"
if [[ ,$steps, == *,clippy,* ]] && ! cargo clippy --version >/dev/null 2>&1; then
  echo "bench-build: the clippy step needs cargo clippy" >&2
  exit 2
fi
peer=$repo_root/scripts/bench-build-peer.sh

work=$(mktemp -d "${TMPDIR:-/tmp}/ciagent-bench-build.XXXXXX")
cleanup_on_exit "$work"

cp -r "$crate" "$work/crate"
rm -rf "$work/crate/target"
src=$work/crate
cargo_home=$work/cargo-home
mkdir -p "$cargo_home"
if [[ $cargo_config != none ]]; then cp "$cargo_config" "$cargo_home/config.toml"; fi
# Neither side may pick up settings from the caller's environment.
unset CI_CARGO_CONFIG CARGO_TARGET_DIR RUSTFLAGS RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER
export CARGO_HOME=$cargo_home CARGO_INCREMENTAL=0 CARGO_TERM_COLOR=never

results=$work/results.tsv   # side, round, wall seconds, CPU seconds
: >"$results"

# run SIDE ROUND: one timed run of a side into a new target directory.
run() {
  local side=$1 round=$2 target="$work/target-$1-$2" cmd
  case $side in
    peer) cmd=("$peer") ;;
    ci-build) cmd=("$ci_build") ;;
  esac
  cmd+=(--local "$src" --steps "$steps" --cargo-home "$cargo_home" --target-dir "$target")
  if [[ $side == ci-build ]]; then cmd+=(--result "$work/result-$round.json"); fi
  sync
  local rc=0 wall user sys TIMEFORMAT='%3R %3U %3S'
  { time "${cmd[@]}" >"$work/$side-$round.out" 2>"$work/$side-$round.err" </dev/null; } \
    2>"$work/time" || rc=$?
  if ((rc != 0)); then
    echo "bench-build: $side (round $round) exited $rc: ${cmd[*]}" >&2
    tail -n 30 "$work/$side-$round.err" >&2
    exit 1
  fi
  # A side that skipped the work would win for free.
  if [[ ,$steps, == *,build,* && ! -d $target/release ]]; then
    echo "bench-build: $side (round $round) left no release build in $target" >&2
    exit 1
  fi
  read -r wall user sys <"$work/time"
  local cpu
  cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.3f", u + s }')
  printf '%s\t%s\t%s\t%s\n' "$side" "$round" "$wall" "$cpu" >>"$results"
  printf '  %-9s %8s s wall %8s s CPU\n' "$side" "$wall" "$cpu"
  rm -rf "$target"
}

echo "bench-build: $(cargo --version); crate $crate; steps $steps; $rounds rounds; $(nproc) CPUs"
echo "bench-build: ci-build is $ci_build"
warn_if_loaded
echo " warm-up (untimed)"
run peer warmup
for round in $(seq "$rounds"); do
  echo " round $round"
  if ((round % 2)); then
    run peer "$round"
    run ci-build "$round"
  else
    run ci-build "$round"
    run peer "$round"
  fi
done

# ci-build's own view, when it wrote one: its status and duration_ms.
python3 - "$work" "$rounds" <<'PY'
import json, os, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
durations, statuses = [], set()
for r in range(1, rounds + 1):
    path = os.path.join(work, "result-%d.json" % r)
    if not os.path.exists(path):
        continue
    with open(path) as f:
        result = json.load(f)
    statuses.add(str(result.get("status")))
    if isinstance(result.get("duration_ms"), (int, float)):
        durations.append(result["duration_ms"])
if not statuses:
    print("bench-build: ci-build wrote no --result file")
else:
    line = "bench-build: ci-build result status: %s" % ", ".join(sorted(statuses))
    if durations:
        line += "; median duration_ms %.0f" % statistics.median(durations)
    print(line)
PY

awk -F'\t' -v rounds="$rounds" -v target="$target_ratio" '
function median(v, n,   i, j, t) {
  for (i = 2; i <= n; i++) {
    t = v[i]
    for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]
    v[j + 1] = t
  }
  return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
function side_median(side, col,   v, r) {
  for (r = 1; r <= rounds; r++) v[r] = x[side, r, col]
  return median(v, rounds)
}
function side_range(side,   r, lo, hi) {
  lo = hi = x[side, 1, 3]
  for (r = 2; r <= rounds; r++) {
    if (x[side, r, 3] < lo) lo = x[side, r, 3]
    if (x[side, r, 3] > hi) hi = x[side, r, 3]
  }
  return sprintf("%.2f-%.2f s", lo, hi)
}
$2 != "warmup" { x[$1, $2, 3] = $3; x[$1, $2, 4] = $4 }
END {
  p = side_median("peer", 3); c = side_median("ci-build", 3)
  pc = side_median("peer", 4); cc = side_median("ci-build", 4)
  for (r = 1; r <= rounds; r++) paired[r] = x["ci-build", r, 3] / x["peer", r, 3]
  printf "\nmedian of %d rounds           wall         CPU   wall range\n", rounds
  printf "%-28s%9.3f s %9.3f s   %s\n", "plain script (peer)", p, pc, side_range("peer")
  printf "%-28s%9.3f s %9.3f s   %s\n", "ci-build --local", c, cc, side_range("ci-build")
  printf "%-28s%9.3f x   target <= %s: %s\n", "ci-build / peer, wall", c / p, target,
         (c / p <= target) ? "PASS" : "FAIL"
  printf "%-28s%9.3f x\n", "median per-round ratio", median(paired, rounds)
  printf "%-28s%9.3f x\n", "ci-build / peer, CPU", (pc > 0 ? cc / pc : 0)
}' "$results"
