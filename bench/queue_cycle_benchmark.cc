// Job-queue throughput against a real Redis, one worker on one connection:
//
//   BM_ClaimFinalizeCycle  a long-running worker's loop, as BullMQ's Worker
//                          runs it: FinalizeAndClaimNext (result, ack, and
//                          the next job claimed and marked running) — one
//                          round trip per job.
//   BM_ClaimThenFinalize   the one-job agent's path: Claim (reclaim check,
//                          read, mark running) then Finalize — two round
//                          trips per job.
//   BM_EnqueueJob          the producer's path per job: Enqueue.
//
// items_per_second is jobs/s, over wall-clock time (the work is round trips
// to Redis, so CPU time would flatter us). scripts/bench-queue.sh runs this
// next to the same cycle with BullMQ on the same Redis and prints the ratio;
// docs/performance.md has the method and the figures.
//
//   export CIAGENT_BENCH_REDIS_URL=redis://127.0.0.1:6390
//   build/bench/queue_cycle_benchmark --benchmark_repetitions=5
//
// The Redis must be disposable or at least idle: every run works on keys of
// its own (bench:<random>:...) and deletes them afterwards, but a busy server
// skews the figures. CIAGENT_BENCH_JOBS sets the jobs per cycle run (default
// 20000), so the BullMQ side can be given the same number.
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/job/job.h"
#include "ciagent/queue/job_queue.h"
#include "ciagent/queue/redis_client.h"

namespace ciagent {
namespace {

constexpr int64_t kDefaultCycleJobs = 20000;

int64_t CycleJobs() {
  int64_t jobs = 0;
  const char* value = std::getenv("CIAGENT_BENCH_JOBS");
  if (value != nullptr && absl::SimpleAtoi(value, &jobs) && jobs > 0) {
    return jobs;
  }
  return kDefaultCycleJobs;
}

absl::StatusOr<RedisOptions> BenchRedisOptions() {
  const char* url = std::getenv("CIAGENT_BENCH_REDIS_URL");
  if (url == nullptr || *url == '\0') {
    return absl::FailedPreconditionError(
        "CIAGENT_BENCH_REDIS_URL is not set: point it at a disposable Redis, "
        "e.g. redis://127.0.0.1:6390 (scripts/bench-queue.sh starts one)");
  }
  CIAGENT_ASSIGN_OR_RETURN(RedisOptions options, RedisOptionsFromUrl(url));
  CIAGENT_RETURN_IF_ERROR(ApplyRedisEnvironment(&options));
  return options;
}

// A realistic job, about 300 bytes of JSON, the same document that
// bench/bullmq/cycle.mjs gives BullMQ (only the job_id differs per job).
Job BenchJob(std::string job_id) {
  Job job;
  job.job_id = std::move(job_id);
  job.repo = "https://git.example.com/acme/app.git";
  job.branch = "main";
  job.commit = "4f2c9a17d3be0e6c58a2f1b7c90d34e5a6b7c8d9";
  job.timeout = absl::Seconds(1800);
  job.steps = {"check", "build", "test"};
  job.image = ImageSpec{.name = "acme/app", .tag = "v1"};
  job.env = {{"RUST_LOG", "debug"},
             {"RUSTFLAGS", "-D warnings"},
             {"RUST_MIN_STACK", "16777216"}};
  return job;
}

// A queue on keys that belong to one benchmark run (stream, group, status
// hashes and dead letters all under bench:<random>:), deleted on
// destruction so runs neither see each other's jobs nor leave data behind.
class ScratchQueue {
 public:
  static absl::StatusOr<std::unique_ptr<ScratchQueue>> Create() {
    CIAGENT_ASSIGN_OR_RETURN(RedisOptions redis, BenchRedisOptions());
    absl::BitGen random;
    const std::string run = absl::StrFormat(
        "%016x", absl::Uniform<uint64_t>(random));
    QueueOptions options;
    options.stream = absl::StrCat("bench:", run, ":jobs");
    options.group = "bench-workers";
    options.key_prefix = absl::StrCat("bench:", run, ":job:");
    options.consumer = "bench-consumer";
    options.create_group = true;
    auto scratch = std::unique_ptr<ScratchQueue>(new ScratchQueue(
        absl::StrCat("bench:", run, ":"), JobQueue(redis, options)));
    CIAGENT_RETURN_IF_ERROR(scratch->queue_.EnsureGroup());
    return scratch;
  }

  ~ScratchQueue() {
    // Best effort: a failure only leaves keys in a disposable Redis.
    (void)DeleteKeys();
  }

  ScratchQueue(const ScratchQueue&) = delete;
  ScratchQueue& operator=(const ScratchQueue&) = delete;

  JobQueue& queue() { return queue_; }

  Job NextJob() { return BenchJob(absl::StrFormat("bench-%08d", next_++)); }

 private:
  ScratchQueue(std::string key_namespace, JobQueue queue)
      : key_namespace_(std::move(key_namespace)), queue_(std::move(queue)) {}

  absl::Status DeleteKeys() {
    const std::string pattern = absl::StrCat(key_namespace_, "*");
    std::string cursor = "0";
    do {
      CIAGENT_ASSIGN_OR_RETURN(
          RedisReply reply,
          queue_.redis().Command(
              {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"}));
      if (!reply.is_array() || reply.elements.size() != 2) {
        return absl::InternalError("SCAN: unexpected reply");
      }
      cursor = reply.elements[0].str;
      std::vector<std::string> unlink = {"UNLINK"};
      for (const RedisReply& key : reply.elements[1].elements) {
        unlink.push_back(key.str);
      }
      if (unlink.size() > 1) {
        CIAGENT_RETURN_IF_ERROR(queue_.redis().Command(unlink).status());
      }
    } while (cursor != "0");
    return absl::OkStatus();
  }

  std::string key_namespace_;
  JobQueue queue_;
  int64_t next_ = 0;
};

void Skip(benchmark::State& state, absl::string_view what,
          const absl::Status& status) {
  state.SkipWithError(absl::StrCat(what, ": ", status.ToString()).c_str());
}

// The backlog is enqueued before the timed loop, one job per iteration, as
// BullMQ's side adds its jobs with addBulk before its clock starts. Doing it
// there, rather than around each iteration with PauseTiming/ResumeTiming,
// keeps the timer out of the loop and measures what an agent sees when work
// is waiting.
bool EnqueueBacklog(benchmark::State& state, ScratchQueue& scratch) {
  for (benchmark::IterationCount i = 0; i < state.max_iterations; ++i) {
    if (absl::StatusOr<std::string> id = scratch.queue().Enqueue(scratch.NextJob());
        !id.ok()) {
      Skip(state, "enqueue backlog", id.status());
      return false;
    }
  }
  return true;
}

// Timed per job: one FinalizeAndClaimNext — the fenced result write and ack
// of the current job and, in the same script, the claim of the next one
// (reclaim check, read, mark running). The first job is claimed before the
// clock starts, as BullMQ's worker has its first job in hand after run().
void BM_ClaimFinalizeCycle(benchmark::State& state) {
  absl::StatusOr<std::unique_ptr<ScratchQueue>> scratch = ScratchQueue::Create();
  if (!scratch.ok()) return Skip(state, "set up queue", scratch.status());
  if (!EnqueueBacklog(state, **scratch)) return;
  JobQueue& queue = (*scratch)->queue();
  absl::StatusOr<ClaimedJob> first = queue.Claim(absl::ZeroDuration());
  if (!first.ok()) return Skip(state, "claim", first.status());
  std::optional<ClaimedJob> current = *std::move(first);

  const JobOutcome success = {JobStatus::kSuccess};
  for (auto _ : state) {
    if (!current.has_value()) {
      Skip(state, "claim", absl::NotFoundError("backlog ran out"));
      break;
    }
    absl::StatusOr<std::optional<ClaimedJob>> next =
        queue.FinalizeAndClaimNext(*current, success);
    if (!next.ok()) {
      Skip(state, "finalize and claim", next.status());
      break;
    }
    current = *std::move(next);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ClaimFinalizeCycle)
    ->Iterations(CycleJobs())
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// Timed per job: Claim (one EVALSHA that reclaims a lapsed lease or reads a
// new entry and marks it running) and Finalize (one fenced EVALSHA that
// writes the result and acks): what an agent that runs one job does.
void BM_ClaimThenFinalize(benchmark::State& state) {
  absl::StatusOr<std::unique_ptr<ScratchQueue>> scratch = ScratchQueue::Create();
  if (!scratch.ok()) return Skip(state, "set up queue", scratch.status());
  if (!EnqueueBacklog(state, **scratch)) return;
  JobQueue& queue = (*scratch)->queue();
  const JobOutcome success = {JobStatus::kSuccess};
  for (auto _ : state) {
    absl::StatusOr<ClaimedJob> claim = queue.Claim(absl::ZeroDuration());
    if (!claim.ok()) {
      Skip(state, "claim", claim.status());
      break;
    }
    if (absl::Status finalized = queue.Finalize(*claim, success);
        !finalized.ok()) {
      Skip(state, "finalize", finalized);
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ClaimThenFinalize)
    ->Iterations(CycleJobs())
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// Timed per job: Enqueue (XGROUP CREATE, answered BUSYGROUP, then one
// pipeline of DEL, HSET, XADD). Building the Job stays inside the loop: it
// costs well under a microsecond, less than pausing the timer would.
void BM_EnqueueJob(benchmark::State& state) {
  absl::StatusOr<std::unique_ptr<ScratchQueue>> scratch = ScratchQueue::Create();
  if (!scratch.ok()) return Skip(state, "set up queue", scratch.status());
  JobQueue& queue = (*scratch)->queue();
  for (auto _ : state) {
    if (absl::StatusOr<std::string> id = queue.Enqueue((*scratch)->NextJob());
        !id.ok()) {
      Skip(state, "enqueue", id.status());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EnqueueJob)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace ciagent
