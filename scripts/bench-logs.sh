#!/usr/bin/env bash
# Build-log throughput into Redis: LogShipper (batched, on its own thread)
# against the naive peer (one XADD round trip per line), on one private Redis.
#
#   scripts/bench-logs.sh [BUILD_DIR]      (default: build)
#
# Starts redis-server on a free 127.0.0.1 port (no persistence, no password)
# in a temporary directory, builds bench/log_stream_benchmark (configuring
# BUILD_DIR if needed), then runs BM_LogShipper and BM_XaddPerLine in
# alternation, ROUNDS times each, so that a change of load on the machine
# falls on both alike. Prints lines/s per round with the load average, the
# medians, the ratio, PASS/FAIL against the 100k lines/s target, and the
# producer's own cost per Append() (BM_LogShipperAppend).
#
# Environment: CIAGENT_BENCH_LINES (lines per round, default 200000),
# CIAGENT_BENCH_ROUNDS (rounds per side, default 5).
# Exit status: 0 when both sides were measured (whether or not the target is
# met), 1 when a benchmark failed, 2 when a tool is missing.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
build_dir=${1:-build}
lines=${CIAGENT_BENCH_LINES:-200000}
rounds=${CIAGENT_BENCH_ROUNDS:-5}
target=100000

need_tools "" redis-server redis-cli python3 meson ninja

work=$(mktemp -d "${TMPDIR:-/tmp}/ciagent-bench-logs.XXXXXX")
cleanup_on_exit "$work"

# --- build ---------------------------------------------------------------------
ensure_bench_target "$build_dir" bench/log_stream_benchmark
bench="$build_dir/bench/log_stream_benchmark"

# --- a private Redis -------------------------------------------------------------
start_redis "$work"
port=$redis_port
export CIAGENT_BENCH_REDIS_URL="redis://127.0.0.1:$port"
export CIAGENT_BENCH_LINES=$lines

load() { cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '?'; }

# --- the rounds --------------------------------------------------------------------
echo "bench-logs: $rounds rounds of $lines lines per side, Redis on 127.0.0.1:$port," \
  "$(nproc) CPUs, load $(load)"
for round in $(seq "$rounds"); do
  for side in LogShipper XaddPerLine; do
    load >"$work/$side-$round.load"
    "$bench" --benchmark_filter="^BM_$side/" --benchmark_format=json \
      >"$work/$side-$round.json" 2>"$work/$side-$round.log"
  done
  python3 - "$work" "$round" <<'EOF'
import json, os, sys
work, rnd = sys.argv[1:]
def rate(side):
    b = json.load(open(os.path.join(work, f"{side}-{rnd}.json")))["benchmarks"][0]
    load = open(os.path.join(work, f"{side}-{rnd}.load")).read().strip()
    if b.get("error_occurred"):
        return f"error: {b['error_message']}"
    return f"{b['items_per_second']:>9.0f} lines/s (load {load})"
print(f"  round {rnd}: LogShipper {rate('LogShipper')}, XADD per line {rate('XaddPerLine')}")
EOF
done
"$bench" --benchmark_filter='^BM_LogShipperAppend/' --benchmark_repetitions=3 \
  --benchmark_report_aggregates_only=true --benchmark_format=json \
  >"$work/append.json" 2>"$work/append.log"

# --- the table -------------------------------------------------------------------------
python3 - "$work" "$rounds" "$lines" "$target" <<'EOF'
import json, os, statistics, sys
work, rounds, lines, target = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def runs(name):
    b = json.load(open(os.path.join(work, name)))["benchmarks"]
    for run in b:
        if run.get("error_occurred"):
            sys.exit(f"bench-logs: {run['name']} failed: {run['error_message']}")
    return b
ours = [runs(f"LogShipper-{r}.json")[0]["items_per_second"] for r in range(1, rounds + 1)]
naive = [runs(f"XaddPerLine-{r}.json")[0]["items_per_second"] for r in range(1, rounds + 1)]
producer = [runs(f"LogShipper-{r}.json")[0]["producer_ns_per_line"] for r in range(1, rounds + 1)]
append = next(b for b in runs("append.json") if b.get("aggregate_name") == "median")
o, n = statistics.median(ours), statistics.median(naive)
row = lambda label, value: print(f"{label:<44}{value}")
print()
print(f"{lines} lines into one job's log stream, median of {rounds} rounds (min-max)")
row("LogShipper (batches of 500, own thread)", f"{o:>9.0f} lines/s  ({min(ours):.0f}-{max(ours):.0f})")
row("naive: one XADD round trip per line", f"{n:>9.0f} lines/s  ({min(naive):.0f}-{max(naive):.0f})")
row("ratio", f"{o / n:>9.1f} x")
row(f"target >= {target} lines/s", f"{'PASS' if o >= target else 'FAIL':>9}")
row("producer, whole run incl. waits for room", f"{statistics.median(producer):>9.0f} ns/line")
row("producer, Append() into a non-full buffer", f"{1e9 / append['items_per_second']:>9.0f} ns/line")
EOF
