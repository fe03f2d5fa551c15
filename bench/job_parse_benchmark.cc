// Job parsing and serialization: what one job costs the agent before any
// work starts. ParseJob runs once per claimed job, so these numbers matter
// only as a regression guard (and to show parsing does not allocate beyond
// the Job itself).
#include <string>

#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "ciagent/job/job.h"

namespace ciagent {
namespace {

// A typical job with every optional field: about 400 bytes.
constexpr char kTypicalJob[] =
    R"({"job_id":"push-1234","repo":"https://git.example.com:3000/acme/payments.git",)"
    R"("branch":"feature/faster-incremental-builds","commit":"0123456789abcdef0123456789abcdef01234567",)"
    R"("timeout_s":1800,"steps":["check","build","test","clippy","image"],)"
    R"("image":{"name":"acme/payments","tag":"v1.42.0-rc.1"},)"
    R"("env":{"RUST_LOG":"info,payments=debug","RUST_BACKTRACE":"1","RUST_MIN_STACK":"16777216",)"
    R"("TEST_THREADS":"4"}})";

constexpr char kMinimalJob[] =
    R"({"job_id":"push-1","repo":"https://git.example.com/acme/app.git",)"
    R"("branch":"main","commit":"0123456789abcdef0123456789abcdef01234567"})";

void ParseRepeatedly(benchmark::State& state, const std::string& json) {
  for (auto _ : state) {
    absl::StatusOr<Job> job = ParseJob(json);
    if (!job.ok()) {
      state.SkipWithError(std::string(job.status().message()).c_str());
      return;
    }
    benchmark::DoNotOptimize(job);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() *
                          static_cast<int64_t>(json.size()));
  state.counters["doc_bytes"] = static_cast<double>(json.size());
}

void BM_ParseJob(benchmark::State& state) {
  ParseRepeatedly(state, kTypicalJob);
}
BENCHMARK(BM_ParseJob);

void BM_ParseJobMinimal(benchmark::State& state) {
  ParseRepeatedly(state, kMinimalJob);
}
BENCHMARK(BM_ParseJobMinimal);

void BM_JobToJson(benchmark::State& state) {
  const absl::StatusOr<Job> job = ParseJob(kTypicalJob);
  if (!job.ok()) {
    state.SkipWithError(std::string(job.status().message()).c_str());
    return;
  }
  for (auto _ : state) {
    std::string json = JobToJson(*job);
    benchmark::DoNotOptimize(json);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_JobToJson);

}  // namespace
}  // namespace ciagent
