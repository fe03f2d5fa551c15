// The claim -> running -> finalize cycle of bench/queue_cycle_benchmark.cc,
// done by BullMQ on the same Redis, so scripts/bench-queue.sh can print the
// ratio. One round per run:
//
//   CIAGENT_BENCH_REDIS_URL=redis://127.0.0.1:6390 node cycle.mjs [JOBS]
//
// prints {"jobs": N, "seconds": s, "jobs_per_second": x}.
//
// What is timed matches the C++ side: N jobs are added before the clock
// starts (addBulk, as our backlog is enqueued before the timed loop); then
// one Worker, concurrency 1, with BullMQ's default options, takes them one by
// one (moveToActive: the job is active and locked, i.e. running), runs a
// processor that returns at once, and completes them (moveToFinished: result
// stored, lock released, next job fetched). The clock runs from the start of
// the worker's loop, connections already open, to the N-th `completed` event.
// Every run uses a fresh queue name and obliterates the queue afterwards.
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Queue, Worker } from 'bullmq';

const url = process.env.CIAGENT_BENCH_REDIS_URL;
if (!url) {
  console.error(
    'cycle.mjs: CIAGENT_BENCH_REDIS_URL is not set: point it at a disposable ' +
      'Redis, e.g. redis://127.0.0.1:6390 (scripts/bench-queue.sh starts one)',
  );
  process.exit(2);
}
const jobs = Number.parseInt(
  process.argv[2] ?? process.env.CIAGENT_BENCH_JOBS ?? '20000',
  10,
);
if (!Number.isInteger(jobs) || jobs <= 0) {
  console.error(`cycle.mjs: JOBS must be a positive integer (got ${process.argv[2]})`);
  process.exit(2);
}

// The same document (field order, values, ~310 bytes) that the C++ side
// enqueues; only job_id varies.
function benchJob(n) {
  return {
    job_id: `bench-${String(n).padStart(8, '0')}`,
    repo: 'https://git.example.com/acme/app.git',
    branch: 'main',
    commit: '4f2c9a17d3be0e6c58a2f1b7c90d34e5a6b7c8d9',
    timeout_s: 1800,
    steps: ['check', 'build', 'test'],
    image: { name: 'acme/app', tag: 'v1' },
    env: { RUST_LOG: 'debug', RUSTFLAGS: '-D warnings', RUST_MIN_STACK: '16777216' },
  };
}

// BullMQ requires maxRetriesPerRequest: null on the worker's connections.
const connection = { url, maxRetriesPerRequest: null };
const queueName = `ciagent-bench-${randomBytes(8).toString('hex')}`;
const queue = new Queue(queueName, { connection });

let worker;
try {
  await queue.waitUntilReady();
  const chunk = 1000;
  for (let first = 0; first < jobs; first += chunk) {
    const batch = [];
    for (let n = first; n < Math.min(first + chunk, jobs); n++) {
      batch.push({ name: 'ci-job', data: benchJob(n) });
    }
    await queue.addBulk(batch);
  }

  let completed = 0;
  let failed = null;
  let finish;
  const done = new Promise((resolve) => {
    finish = resolve;
  });
  worker = new Worker(queueName, async () => null, {
    connection,
    concurrency: 1,
    autorun: false,
  });
  worker.on('completed', () => {
    completed += 1;
    if (completed === jobs) finish(performance.now());
  });
  worker.on('failed', (job, err) => {
    failed = err;
    finish(performance.now());
  });
  worker.on('error', (err) => {
    failed = err;
    finish(performance.now());
  });
  await worker.waitUntilReady();

  const start = performance.now();
  const running = worker.run();
  const end = await done;
  if (failed) throw failed;
  await worker.close();
  await running;
  worker = undefined;

  const seconds = (end - start) / 1000;
  console.log(
    JSON.stringify({ jobs, seconds, jobs_per_second: jobs / seconds }),
  );
} finally {
  if (worker) await worker.close(true);
  await queue.obliterate({ force: true });
  await queue.close();
}
