#!/usr/bin/env bash
# Test retries: what rerunning the one failed test of a 1,000-test suite
# costs, against rerunning the whole suite (the naive retry), side by side.
# The crate is bench/retry_suite: 1,000 tests of 5 ms each, `t0500` failing
# on its first attempt only (CI_TEST_ATTEMPT).
#
#   scripts/bench-retry.sh [--rounds N] [--ci-build PATH] [CRATE]
#
#   CRATE           default bench/retry_suite
#   --rounds N      rounds (default 5); medians are printed
#   --ci-build PATH the binary to measure (default: build/tools/ci-build/ci-build)
#
# Each round, on one copy of the crate built beforehand (so no figure pays
# for compiling the tests):
#   first    ci-build --local --steps test --test-retries 0: the one
#            `cargo test` run (the job fails)
#   targeted ci-build --local --steps test --test-retries 1: the same run
#            and the retry (the job passes, one flaky test)
#   retry    what that retry runs, timed alone: `cargo test --no-run
#            --message-format=json` (everything fresh), the test
#            executable's `--list --format terse`, and `<exe> --exact
#            tests::t0500` with CI_TEST_ATTEMPT=2
#   naive    `cargo test --no-fail-fast` again with CI_TEST_ATTEMPT=2: the
#            whole suite rerun, as a retry without test selection would
# ci-build's figures are the test step's duration_ms from --result (one
# run of the suite is noisier, ±0.1 s here, than the retry itself costs);
# the others are bash's `time`.
#
# Exit status: 0 when every run did what it should, 1 when one did not, 2 on
# a usage error or a missing tool.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
rounds=5
ci_build=build/tools/ci-build/ci-build
# shellcheck disable=SC2034  # parse_cargo_bench_args reads and sets them
steps="test"
cargo_config=none
crate=bench/retry_suite

usage() { usage_from_header 7 11; }
parse_cargo_bench_args "$@"

work=$(mktemp -d "${TMPDIR:-/tmp}/ciagent-bench-retry.XXXXXX")
cleanup_on_exit "$work"
unset CI_CARGO_HOME CI_TARGET_DIR CI_CACHE_DIR CARGO_TARGET_DIR CI_TEST_RETRIES \
  CI_TEST_ATTEMPT RUSTFLAGS RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER
export CARGO_INCREMENTAL=0 CARGO_TERM_COLOR=never

src=$work/src
target=$work/target
cp -r "$crate/." "$src"
rm -rf "$src/target"
(cd "$src" && cargo test --no-run --locked --target-dir "$target") >"$work/build.log" 2>&1
exe=$(cd "$src" && cargo test --no-run --locked --target-dir "$target" \
  --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["profile"]["test"] and m.get("executable"):
        print(m["executable"])')

results=$work/results.tsv   # kind, round, seconds
: >"$results"

# step_seconds RESULT WANT_STATUS: the test step's duration from a result file.
step_seconds() {
  python3 - "$1" "$2" <<'PY'
import json, sys
result = json.load(open(sys.argv[1]))
if result["status"] != sys.argv[2]:
    sys.exit("status %s (%s), expected %s" % (result["status"], result["reason"], sys.argv[2]))
step = [s for s in result["steps"] if s["name"] == "test"][0]
print("%.3f" % (step["duration_ms"] / 1000))
PY
}

# ci_build_run KIND ROUND RETRIES WANT_STATUS
ci_build_run() {
  local result="$work/$1-$2.json" rc=0
  "$ci_build" --local "$src" --steps test --target-dir "$target" \
    --test-retries "$3" --result "$result" >"$work/$1-$2.out" 2>&1 </dev/null || rc=$?
  local seconds
  if ! seconds=$(step_seconds "$result" "$4" 2>&1); then
    echo "$prog: $1 run (round $2, exit $rc): $seconds" >&2
    tail -n 20 "$work/$1-$2.out" >&2
    exit 1
  fi
  printf '%s\t%s\t%s\n' "$1" "$2" "$seconds" >>"$results"
}

# timed_run KIND ROUND DIR COMMAND...: bash's time around COMMAND in DIR.
timed_run() {
  local kind=$1 round=$2 dir=$3 TIMEFORMAT='%3R' rc=0
  shift 3
  { time (cd "$dir" && CI_TEST_ATTEMPT=2 "$@" >"$work/$kind-$round.out" 2>&1); } \
    2>"$work/time" || rc=$?
  if ((rc != 0)); then
    echo "$prog: $kind run (round $round) exited $rc" >&2
    tail -n 20 "$work/$kind-$round.out" >&2
    exit 1
  fi
  printf '%s\t%s\t%s\n' "$kind" "$round" "$(cat "$work/time")" >>"$results"
}

echo "$prog: $(cargo --version); crate $crate (1000 tests); $rounds rounds; $(nproc) CPUs"
warn_if_loaded
for round in $(seq "$rounds"); do
  ci_build_run first "$round" 0 failed
  ci_build_run targeted "$round" 1 success
  timed_run naive "$round" "$src" cargo test --no-fail-fast --locked --target-dir "$target"
  timed_run retry "$round" "$src" sh -c \
    "cargo test --no-run --locked --target-dir '$target' --message-format=json >/dev/null &&
     '$exe' --list --format terse >/dev/null && '$exe' --exact tests::t0500"
  awk -F'\t' -v r="$round" '$2 == r { printf "  round %s  %-8s %7.3f s\n", r, $1, $3 }' "$results"
done

python3 - "$results" <<'PY'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
med = {k: statistics.median(float(r[2]) for r in rows if r[0] == k)
       for k in ("first", "targeted", "retry", "naive")}
print("bench-retry: test step (ci-build, medians): without retries %.3f s"
      " (fails), with the targeted retry %.3f s (passes); naive: %.3f s"
      % (med["first"], med["targeted"], med["first"] + med["naive"]))
print("bench-retry: the retry alone: targeted %.3f s vs whole suite again"
      " %.3f s: %.0fx less"
      % (med["retry"], med["naive"], med["naive"] / med["retry"]))
PY
