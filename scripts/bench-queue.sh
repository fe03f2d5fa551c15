#!/usr/bin/env bash
# Job-queue throughput, libciagent against BullMQ, on one private Redis:
# the claim -> running -> finalize cycle with one worker, N jobs waiting.
#
#   scripts/bench-queue.sh [BUILD_DIR]      (default: build)
#
# Starts redis-server on a free 127.0.0.1 port (no persistence, no password),
# installs bench/bullmq's npm packages when missing, builds
# bench/queue_cycle_benchmark (configuring BUILD_DIR if needed), then runs
# our benchmark and BullMQ's cycle (bench/bullmq/cycle.mjs) one after the
# other and prints jobs/s of both, the ratio and PASS/FAIL against the 2x
# target. Both sides report the median of ROUNDS rounds, taken in
# alternation.
#
# Then where one job's time goes on our side: Redis's CPU time for the
# cycle's script (INFO commandstats around one more cycle run, less the
# backlog's enqueue scripts, measured alone just before), the worker's CPU
# time (the benchmark's cpu_time), and the rest: waiting on the loopback
# round trip and for the scheduler.
#
# Environment: CIAGENT_BENCH_JOBS (jobs per round, default 20000),
# CIAGENT_BENCH_ROUNDS (rounds per side, default 9).
# Exit status: 0 when both sides were measured (whether or not the target is
# met), 1 when a benchmark failed, 2 when a tool is missing.
# docs/performance.md explains the method and keeps the figures.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
build_dir=${1:-build}
jobs=${CIAGENT_BENCH_JOBS:-20000}
rounds=${CIAGENT_BENCH_ROUNDS:-9}
target_ratio=2

need_tools " (scripts/bootstrap.sh --with-node installs everything)" \
  redis-server redis-cli node npm meson ninja

work=$(mktemp -d "${TMPDIR:-/tmp}/ciagent-bench-queue.XXXXXX")
cleanup_on_exit "$work"

# --- dependencies and build -------------------------------------------------
if [[ ! -d bench/bullmq/node_modules/bullmq ]]; then
  echo "bench-queue: installing BullMQ (npm ci in bench/bullmq)"
  (cd bench/bullmq && npm ci --no-audit --no-fund --loglevel=error)
fi
ensure_bench_target "$build_dir" bench/queue_cycle_benchmark
bench="$build_dir/bench/queue_cycle_benchmark"

# --- a private Redis ----------------------------------------------------------
start_redis "$work"
port=$redis_port
export CIAGENT_BENCH_REDIS_URL="redis://127.0.0.1:$port"
export CIAGENT_BENCH_JOBS=$jobs

# --- the rounds -----------------------------------------------------------------
# The sides alternate, so that a change of load on the machine during the
# run falls on both alike.
echo "bench-queue: $rounds rounds of $jobs jobs per side, Redis on 127.0.0.1:$port"
for round in $(seq "$rounds"); do
  "$bench" --benchmark_filter='^BM_ClaimFinalizeCycle' \
    --benchmark_format=json >"$work/ours-$round.json" 2>"$work/ours-$round.log"
  node bench/bullmq/cycle.mjs "$jobs" >"$work/bullmq-$round.json"
  # shellcheck disable=SC2016  # ${...} below is JavaScript, not the shell's
  node -e '
    const fs = require("fs");
    const [ours, bull, round] = process.argv.slice(1);
    const b = JSON.parse(fs.readFileSync(ours, "utf8")).benchmarks[0];
    const ourRate = b.error_occurred ? `error: ${b.error_message}`
                                     : `${b.items_per_second.toFixed(0)} jobs/s`;
    const bullRate = JSON.parse(fs.readFileSync(bull, "utf8")).jobs_per_second;
    console.log(`  round ${round}: libciagent ${ourRate}, BullMQ ${bullRate.toFixed(0)} jobs/s`);
  ' "$work/ours-$round.json" "$work/bullmq-$round.json" "$round"
done
echo "bench-queue: producer side (BM_EnqueueJob, $rounds repetitions)"
"$bench" --benchmark_filter='^BM_EnqueueJob' \
  --benchmark_repetitions="$rounds" --benchmark_report_aggregates_only=true \
  --benchmark_format=json >"$work/enqueue.json" 2>"$work/enqueue.log"

# --- the table ---------------------------------------------------------------------
node - "$work" "$rounds" "$jobs" "$target_ratio" <<'EOF'
const fs = require('fs');
const path = require('path');
const [work, rounds, jobs, target] = process.argv.slice(2);
const read = (name) => JSON.parse(fs.readFileSync(path.join(work, name), 'utf8'));
// Google Benchmark's median: the middle value, or the mean of the two
// middle values.
function median(values) {
  const v = [...values].sort((a, b) => a - b);
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}
function rate(b) {
  if (b.error_occurred) {
    console.error(`bench-queue: ${b.name} failed: ${b.error_message}`);
    process.exit(1);
  }
  return b.items_per_second;
}
const ours = [];
const bull = [];
for (let round = 1; round <= Number(rounds); round++) {
  ours.push(rate(read(`ours-${round}.json`).benchmarks[0]));
  bull.push(read(`bullmq-${round}.json`).jobs_per_second);
}
const enqueueRuns = read('enqueue.json').benchmarks;
enqueueRuns.forEach(rate);
// One repetition has no aggregates: the run itself is the median.
const enqueue = enqueueRuns.find((b) => b.aggregate_name === 'median') ??
                (enqueueRuns.length === 1 ? enqueueRuns[0] : undefined);
const cycle = median(ours);
const bullmq = median(bull);
const bullVersion = JSON.parse(fs.readFileSync(
  'bench/bullmq/node_modules/bullmq/package.json', 'utf8')).version;
const ratio = cycle / bullmq;
const row = (label, value) => console.log(`${label.padEnd(36)}${value}`);
const jobsPerSecond = (x) => `${x.toFixed(0).padStart(8)} jobs/s`;
console.log('');
console.log(`claim -> running -> finalize, one worker, ${jobs} jobs waiting, ` +
            `median of ${rounds} rounds`);
row('libciagent (C++)', jobsPerSecond(cycle));
row(`BullMQ ${bullVersion} (Node ${process.versions.node})`, jobsPerSecond(bullmq));
row('ratio', `${ratio.toFixed(2).padStart(8)} x`);
row(`target >= ${target}x`, (ratio >= Number(target) ? 'PASS' : 'FAIL').padStart(8));
if (enqueue) row('producer: libciagent Enqueue', jobsPerSecond(rate(enqueue)));
EOF

# --- where the time goes ------------------------------------------------------------
evalsha_stats() {
  redis-cli -p "$port" INFO commandstats | tr -d '\r' |
    sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),usec=\([0-9]*\),.*/\1 \2/p'
}
redis-cli -p "$port" CONFIG RESETSTAT >/dev/null
"$bench" --benchmark_filter='^BM_EnqueueJob' >/dev/null 2>&1
read -r enqueue_calls enqueue_usec < <(evalsha_stats)
redis-cli -p "$port" CONFIG RESETSTAT >/dev/null
"$bench" --benchmark_filter='^BM_ClaimFinalizeCycle' --benchmark_format=json \
  >"$work/breakdown.json" 2>/dev/null
read -r cycle_calls cycle_usec < <(evalsha_stats)
node - "$work/breakdown.json" "$jobs" "$enqueue_calls" "$enqueue_usec" \
  "$cycle_calls" "$cycle_usec" <<'EOF'
const fs = require('fs');
const [file, jobs, eCalls, eUsec, cCalls, cUsec] = process.argv.slice(2);
const b = JSON.parse(fs.readFileSync(file, 'utf8')).benchmarks[0];
const perEnqueue = Number(eUsec) / Number(eCalls);
// The run's evalsha calls: `jobs` enqueues of the backlog, then the cycles.
const cycles = Number(cCalls) - Number(jobs);
const redis = (Number(cUsec) - Number(jobs) * perEnqueue) / cycles;
const wall = 1e6 / b.items_per_second;
const client = b.cpu_time;  // microseconds per job (Unit kMicrosecond)
const row = (label, us) => console.log(
  `${label.padEnd(36)}${us.toFixed(1).padStart(8)} us ${(100 * us / wall).toFixed(0).padStart(4)} %`);
console.log('');
console.log(`where one job's time goes (one more cycle run, ` +
            `${b.items_per_second.toFixed(0)} jobs/s)`);
row('Redis: the cycle script (CPU)', redis);
row('worker: libciagent (CPU)', client);
row('round trip and scheduling', wall - redis - client);
row('total (wall)', wall);
console.log(`${'(Redis: one enqueue script)'.padEnd(36)}${perEnqueue.toFixed(1).padStart(8)} us`);
EOF
