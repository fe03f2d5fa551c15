// Build-log throughput into a real Redis, lines/s over wall-clock time:
//
//   BM_LogShipper     LogShipper: the producer Append()s every line as fast
//                     as it can (masking two secrets), then Flush(); timed
//                     until the last line is readable. The sender batches
//                     500 lines per pipelined round trip.
//   BM_XaddPerLine    the naive peer: the same lines, masked the same way,
//                     each written with its own XADD round trip (JobLog
//                     given one line at a time) on the producer's thread.
//   BM_LogShipperAppend  the producer's cost alone: Append() of lines that
//                     fit the buffer, so no time is spent waiting for Redis
//                     (the process runner's thread pays this per line).
//
// Both sides write the same fields (seq, attempt, step, stream, line) with
// XADD MAXLEN ~ to a stream of their own and delete it afterwards.
// scripts/bench-logs.sh starts a private redis-server, runs the first two
// in alternation and prints the medians next to the 100k lines/s target:
//
//   export CIAGENT_BENCH_REDIS_URL=redis://127.0.0.1:6391
//   build/bench/log_stream_benchmark --benchmark_filter='BM_(LogShipper|XaddPerLine)/'
//
// CIAGENT_BENCH_LINES sets the lines per run (default 200000).
#include <cstdint>
#include <cstdlib>
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
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/agent/log_shipper.h"
#include "ciagent/base/secret_masker.h"
#include "ciagent/queue/job_log.h"
#include "ciagent/queue/job_queue.h"
#include "ciagent/queue/redis_client.h"

namespace ciagent {
namespace {

constexpr int64_t kDefaultLines = 200000;
// Lines that fit LogShipperOptions' default 8 MiB buffer, for the
// Append-only benchmark.
constexpr int64_t kAppendOnlyLines = 20000;

int64_t BenchLines() {
  int64_t lines = 0;
  const char* value = std::getenv("CIAGENT_BENCH_LINES");
  if (value != nullptr && absl::SimpleAtoi(value, &lines) && lines > 0) {
    return lines;
  }
  return kDefaultLines;
}

absl::StatusOr<RedisOptions> BenchRedisOptions() {
  const char* url = std::getenv("CIAGENT_BENCH_REDIS_URL");
  if (url == nullptr || *url == '\0') {
    return absl::FailedPreconditionError(
        "CIAGENT_BENCH_REDIS_URL is not set: point it at a disposable Redis, "
        "e.g. redis://127.0.0.1:6391 (scripts/bench-logs.sh starts one)");
  }
  CIAGENT_ASSIGN_OR_RETURN(RedisOptions options, RedisOptionsFromUrl(url));
  CIAGENT_RETURN_IF_ERROR(ApplyRedisEnvironment(&options));
  return options;
}

const std::vector<std::string>& Secrets() {
  static const auto* secrets = new std::vector<std::string>{
      "ghp_16C7e42F292c6912E7710c838347Ae178B4a", "registry-p4ssw0rd"};
  return *secrets;
}

// What `cargo build` and `cargo test` print, 30 to 110 bytes a line; one
// line in eight carries a secret, so masking does real work.
std::string OutputLine(int64_t i) {
  switch (i % 8) {
    case 0:
      return absl::StrCat("   Compiling serde_derive v1.0.", i % 200,
                          " (proc-macro) [unit ", i, "]");
    case 1:
      return absl::StrCat("test tests::parser::case_", i, " ... ok");
    case 2:
      return absl::StrCat("warning: unused variable: `frame_", i,
                          "` --> src/codec/frame.rs:", i % 900, ":13");
    case 3:
      return absl::StrCat("    Checking tokio v1.38.0 (job ", i, ")");
    case 4:
      return absl::StrCat("  = note: `#[warn(unused_variables)]` on by default",
                          " [", i, "]");
    case 5:
      return absl::StrCat("curl -H 'Authorization: token ", Secrets()[0],
                          "' https://git.example.com/api/", i);
    case 6:
      return absl::StrCat("test result: ok. ", i % 97,
                          " passed; 0 failed; 0 ignored; finished in 0.",
                          i % 10, "s");
    default:
      return absl::StrCat(
          "    Finished `test` profile [unoptimized + debuginfo]"
          " target(s) in ",
          i % 60, ".", i % 100, "s");
  }
}

// One job's log stream on keys of this run, deleted on destruction.
class ScratchLog {
 public:
  static absl::StatusOr<std::unique_ptr<ScratchLog>> Create() {
    CIAGENT_ASSIGN_OR_RETURN(RedisOptions redis, BenchRedisOptions());
    absl::BitGen random;
    QueueOptions queue;
    queue.key_prefix =
        absl::StrFormat("bench:%016x:job:", absl::Uniform<uint64_t>(random));
    // Neither cap may cut a run short.
    queue.log_max_len = 100'000'000;
    ClaimedJob claim;
    claim.job.job_id = "bench-log";
    claim.attempt = 1;
    auto scratch = std::unique_ptr<ScratchLog>(
        new ScratchLog(std::move(redis), std::move(queue), std::move(claim)));
    // Fail early, before any clock runs, when Redis is not there.
    CIAGENT_RETURN_IF_ERROR(scratch->client_.Command({"PING"}).status());
    return scratch;
  }

  ScratchLog(const ScratchLog&) = delete;
  ScratchLog& operator=(const ScratchLog&) = delete;
  ~ScratchLog() {
    // Best effort: a failure only leaves a key in a disposable Redis.
    (void)client_.Command({"UNLINK", key_});
  }

  const RedisOptions& redis() const { return redis_; }
  const QueueOptions& queue() const { return queue_; }
  const ClaimedJob& claim() const { return claim_; }
  RedisClient& client() { return client_; }

  absl::StatusOr<int64_t> Length() {
    CIAGENT_ASSIGN_OR_RETURN(RedisReply reply, client_.Command({"XLEN", key_}));
    return reply.integer;
  }

 private:
  ScratchLog(RedisOptions redis, QueueOptions queue, ClaimedJob claim)
      : redis_(std::move(redis)),
        queue_(std::move(queue)),
        claim_(std::move(claim)),
        client_(redis_),
        key_(queue_.LogKey(claim_.job.job_id)) {}

  RedisOptions redis_;
  QueueOptions queue_;
  ClaimedJob claim_;
  RedisClient client_;
  std::string key_;
};

void Skip(benchmark::State& state, absl::string_view what,
          const absl::Status& status) {
  state.SkipWithError(absl::StrCat(what, ": ", status.ToString()).c_str());
}

// The lines are made before the clock starts, so both sides time only the
// shipping.
std::vector<std::string> MakeLines(int64_t n) {
  std::vector<std::string> lines;
  lines.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) lines.push_back(OutputLine(i));
  return lines;
}

LogShipperOptions ShipperOptions() {
  LogShipperOptions options;
  options.max_bytes = int64_t{1} << 40;
  options.secrets = Secrets();
  return options;
}

void CheckStored(benchmark::State& state, ScratchLog& scratch, int64_t n) {
  absl::StatusOr<int64_t> length = scratch.Length();
  if (!length.ok()) return Skip(state, "XLEN", length.status());
  if (*length != n) {
    Skip(state, "check",
         absl::InternalError(
             absl::StrCat("stored ", *length, " of ", n, " lines")));
  }
}

// Timed: Append() of every line, then Flush() until the last one is in
// Redis. The shipper is started (thread, connection) before the clock.
void BM_LogShipper(benchmark::State& state) {
  const int64_t n = BenchLines();
  const std::vector<std::string> lines = MakeLines(n);
  for (auto _ : state) {
    state.PauseTiming();
    absl::StatusOr<std::unique_ptr<ScratchLog>> scratch = ScratchLog::Create();
    if (!scratch.ok()) return Skip(state, "set up", scratch.status());
    auto shipper =
        std::make_unique<LogShipper>((*scratch)->redis(), (*scratch)->queue(),
                                     (*scratch)->claim(), ShipperOptions());
    state.ResumeTiming();

    const absl::Time start = absl::Now();
    for (int64_t i = 0; i < n; ++i) {
      shipper->Append("test", (i & 1) ? "stderr" : "stdout", lines[i]);
    }
    const absl::Duration producing = absl::Now() - start;
    if (absl::Status flushed = shipper->Flush(); !flushed.ok()) {
      return Skip(state, "flush", flushed);
    }

    state.PauseTiming();
    const LogShipperStats stats = shipper->stats();
    if (absl::Status closed = shipper->Close(); !closed.ok()) {
      return Skip(state, "close", closed);
    }
    if (stats.dropped != 0 || stats.truncated != 0) {
      return Skip(
          state, "check",
          absl::InternalError(absl::StrCat(stats.dropped, " lines dropped, ",
                                           stats.truncated, " truncated")));
    }
    CheckStored(state, **scratch, n);
    // Producer time per line, including waits for room while Redis was
    // behind: what the build's output rate was held to.
    state.counters["producer_ns_per_line"] =
        absl::ToDoubleNanoseconds(producing) / static_cast<double>(n);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_LogShipper)
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Timed: for every line, mask it and XADD it in its own round trip, as a
// sink that writes each line straight to Redis would.
void BM_XaddPerLine(benchmark::State& state) {
  const int64_t n = BenchLines();
  const std::vector<std::string> lines = MakeLines(n);
  const SecretMasker masker(Secrets());
  for (auto _ : state) {
    state.PauseTiming();
    absl::StatusOr<std::unique_ptr<ScratchLog>> scratch = ScratchLog::Create();
    if (!scratch.ok()) return Skip(state, "set up", scratch.status());
    RedisClient redis((*scratch)->redis());
    if (absl::Status up = redis.Connect(); !up.ok()) {
      return Skip(state, "connect", up);
    }
    JobLog log(&redis, (*scratch)->queue(), (*scratch)->claim());
    state.ResumeTiming();

    for (int64_t i = 0; i < n; ++i) {
      const LogLine line = {"test", (i & 1) ? "stderr" : "stdout",
                            masker.Mask(lines[i])};
      if (absl::Status appended = log.Append(absl::MakeConstSpan(&line, 1));
          !appended.ok()) {
        return Skip(state, "append", appended);
      }
    }

    state.PauseTiming();
    CheckStored(state, **scratch, n);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_XaddPerLine)
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Timed: Append() alone, for lines that fit the buffer; the shipper sends
// them meanwhile on its own thread, and the flush is not timed.
void BM_LogShipperAppend(benchmark::State& state) {
  const std::vector<std::string> lines = MakeLines(kAppendOnlyLines);
  for (auto _ : state) {
    state.PauseTiming();
    absl::StatusOr<std::unique_ptr<ScratchLog>> scratch = ScratchLog::Create();
    if (!scratch.ok()) return Skip(state, "set up", scratch.status());
    LogShipper shipper((*scratch)->redis(), (*scratch)->queue(),
                       (*scratch)->claim(), ShipperOptions());
    state.ResumeTiming();

    for (int64_t i = 0; i < kAppendOnlyLines; ++i) {
      shipper.Append("test", "stdout", lines[i]);
    }

    state.PauseTiming();
    if (absl::Status closed = shipper.Close(); !closed.ok()) {
      return Skip(state, "close", closed);
    }
    if (shipper.stats().dropped != 0) {
      return Skip(state, "check", absl::InternalError("lines dropped"));
    }
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * kAppendOnlyLines);
}
BENCHMARK(BM_LogShipperAppend)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace ciagent
