#!/usr/bin/env bash
# Build cache: a cold `ci-build --local` (empty cache root) against a warm one
# (the cache the cold run left), each on a fresh copy of the crate, as a new
# checkout of the same commit would be. Targets: warm >= 5x faster (wall
# clock, whole pipeline), dependency hit rate of the warm build >= 95 %.
#
#   scripts/bench-cache.sh [--rounds N] [--ci-build PATH] [--steps LIST]
#                          [--cargo-config FILE] [CRATE]
#
#   CRATE           a cargo project (default: tests/fixtures/many_deps, 38
#                   registry packages from Debian's vendored crates)
#   --rounds N      cold/warm pairs (default 3); medians are compared
#   --ci-build PATH the binary to measure (default: build/tools/ci-build/ci-build)
#   --steps LIST    pipeline steps (default: build,test — the build and its
#                   tests; check and clippy may be added)
#   --cargo-config FILE
#                   the operator cargo config (default:
#                   tests/fixtures/cargo-config-debian.toml, offline builds
#                   from Debian's vendored crates); `none` for none
#
# Each round: a new cache root; cold run on copy A; warm run on copy B (a new
# directory: the workspace's own units rebuild, as after a fresh checkout).
# The cache's CARGO_HOME is the cache root's, so the cold run also starts
# with an empty CARGO_HOME (with a directory source there is nothing to
# download). Times are bash's `time` around the whole ci-build process after
# a `sync`. The hit rate and match come from ci-build's --result file.
#
# Exit status: 0 when every run succeeded (whether or not the targets are
# met), 1 when a run failed, 2 on a usage error or a missing tool.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
rounds=3
ci_build=build/tools/ci-build/ci-build
steps=build,test
cargo_config=tests/fixtures/cargo-config-debian.toml
crate=tests/fixtures/many_deps

usage() { usage_from_header 7 20; }
parse_cargo_bench_args "$@"
if [[ $cargo_config != none ]]; then
  cargo_config=$(cd "$(dirname "$cargo_config")" && pwd)/$(basename "$cargo_config")
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ciagent-bench-cache.XXXXXX")
cleanup_on_exit "$work"

# Nothing of the caller's environment may steer the builds.
unset CI_CARGO_HOME CI_TARGET_DIR CI_CACHE_DIR CARGO_TARGET_DIR CARGO_HOME \
  RUSTFLAGS RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER
if [[ $cargo_config != none ]]; then export CI_CARGO_CONFIG=$cargo_config; fi

results=$work/results.tsv   # kind, round, wall seconds, match, hit rate, dep units
: >"$results"

# run KIND ROUND CACHE: one timed ci-build on a fresh copy of the crate.
run() {
  local kind=$1 round=$2 cache=$3 src="$work/checkout-$1-$2"
  mkdir -p "$src"
  cp -r "$crate/." "$src"
  rm -rf "$src/target"
  local result="$work/result-$kind-$round.json"
  sync
  local rc=0 wall TIMEFORMAT='%3R'
  { time "$ci_build" --local "$src" --steps "$steps" --cache-dir "$cache" \
      --result "$result" >"$work/$kind-$round.out" 2>"$work/$kind-$round.err" \
      </dev/null; } 2>"$work/time" || rc=$?
  if ((rc != 0)); then
    echo "bench-cache: $kind run (round $round) exited $rc" >&2
    tail -n 30 "$work/$kind-$round.out" "$work/$kind-$round.err" >&2
    exit 1
  fi
  read -r wall <"$work/time"
  python3 - "$result" "$kind" "$round" "$wall" >>"$results" <<'PY'
import json, sys
path, kind, rnd, wall = sys.argv[1:]
cache = json.load(open(path))["cache"]
print("\t".join([kind, rnd, wall, cache["match"],
                 str(cache["dependency_hit_rate"]),
                 str(cache["dependency_units"])]))
PY
  tail -n 1 "$results" | awk -F'\t' '{ printf "  %-4s %8s s  match %-8s dependency hit rate %5.1f %% of %d units\n", $1, $3, $4, $5 * 100, $6 }'
  rm -rf "$src"
}

echo "bench-cache: $(cargo --version); crate $crate; steps $steps; $rounds rounds; $(nproc) CPUs"
warn_if_loaded
for round in $(seq "$rounds"); do
  echo " round $round"
  cache="$work/cache-$round"
  run cold "$round" "$cache"
  run warm "$round" "$cache"
  rm -rf "$cache"
done

python3 - "$results" <<'PY'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
cold = [float(r[2]) for r in rows if r[0] == "cold"]
warm = [float(r[2]) for r in rows if r[0] == "warm"]
hits = [float(r[4]) for r in rows if r[0] == "warm"]
matches = sorted({r[3] for r in rows if r[0] == "warm"})
units = max(int(r[5]) for r in rows)
c, w = statistics.median(cold), statistics.median(warm)
ratio = c / w if w > 0 else float("inf")
hit = min(hits)
print("bench-cache: cold median %.2f s, warm median %.2f s: warm is %.1fx faster"
      " (target >= 5x: %s)" % (c, w, ratio, "met" if ratio >= 5 else "NOT met"))
print("bench-cache: warm dependency hit rate %.1f %% (lowest of %d), match %s,"
      " %d dependency units (target >= 95 %%: %s)"
      % (hit * 100, len(hits), ",".join(matches), units,
         "met" if hit >= 0.95 else "NOT met"))
PY
