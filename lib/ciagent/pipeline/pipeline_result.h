// What one run of the Rust pipeline produced: the record of each step, the
// test results, the release executables and the job's final status. The
// pipeline (pipeline.h) fills a PipelineResult; report.h turns it into the
// --result JSON file, the status-hash fields, Prometheus metrics and the
// summary printed in local mode.
//
// Plain values; no behaviour. Safe to copy between threads.
#ifndef CIAGENT_PIPELINE_PIPELINE_RESULT_H_
#define CIAGENT_PIPELINE_PIPELINE_RESULT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ciagent/pipeline/pipeline_config.h"
#include "ciagent/pipeline/test_results.h"
#include "ciagent/job/job_status.h"

namespace ciagent {

enum class StepStatus {
  kOk,         // ran and exited 0
  kFailed,     // ran and failed (exit code or signal in StepRecord)
  kSkipped,    // not run: not selected, a step it needs failed, tool absent
  kTimeout,    // terminated by the step or job timeout
  kCancelled,  // terminated by a cancel request or an agent shutdown
};

// "ok", "failed", "skipped", "timeout", "cancelled".
absl::string_view StepStatusName(StepStatus status);

// A step's duration for people: "1.234s", "87ms" (whole milliseconds).
std::string FormatMillis(absl::Duration duration);

struct StepRecord {
  // "check", "build", "test", "clippy", "audit", "image" (job.h kKnownSteps).
  std::string name;
  StepStatus status = StepStatus::kSkipped;
  // Exit code of the step's command; -1 when it did not exit normally or
  // did not run.
  int exit_code = -1;
  absl::Duration duration = absl::ZeroDuration();
  // Why, for anything but kOk: "exit code 101", "cargo-audit is not
  // installed", "needs build, which failed", "not selected by the job".
  std::string reason;
  // clippy: warnings reported (0 for other steps).
  int64_t warnings = 0;
  // The step failed but the configuration allows it to
  // (StepConfig::allow_failure): it does not fail the job.
  bool allow_failure = false;
};

struct Artifact {
  std::string name;  // the executable's file name, e.g. "app"
  std::string path;  // absolute path in the target directory
  int64_t size_bytes = 0;
  std::string sha256;  // lowercase hex
};

// The build cache's part in a run (cache/build_cache.h). Unit counts are
// those of the build step (`cargo build --release`) alone: check, test and
// clippy build other units (other profiles, test harnesses) and are not
// counted.
struct CacheStats {
  // The exact cache key (hex SHA-256); empty when the run was uncached.
  std::string key;
  // "exact", "fallback" or "none" (CacheMatchName); "none" when uncached.
  std::string match = "none";
  // Why the run was uncached ("no cache dir", "cache busy: ..."); empty
  // when it used the cache.
  std::string uncached_reason;
  int64_t units = 0;
  int64_t fresh_units = 0;
  // Units of registry and git packages (not the workspace's own).
  int64_t dependency_units = 0;
  int64_t fresh_dependency_units = 0;
  // fresh_dependency_units / dependency_units, 0..1; 0 when there were no
  // dependency units.
  double dependency_hit_rate = 0;
  // sccache, when the run used it: compilations served from / added to it
  // over the whole run (every step).
  bool sccache_used = false;
  int64_t sccache_hits = 0;
  int64_t sccache_misses = 0;
};

// What the image step pushed; empty `digest`: no image.
struct ImageRecord {
  std::string reference;  // registry/repository:first-tag
  std::string digest;     // of the pushed manifest or index
  std::vector<std::string> tags;
  std::string builder;    // "buildah", "docker" or "assembly"
  int64_t blobs_uploaded = 0;
  int64_t blobs_existing = 0;  // already in the registry (or mounted)
  int64_t bytes_uploaded = 0;
  absl::Duration build_duration = absl::ZeroDuration();
  absl::Duration push_duration = absl::ZeroDuration();
};

// A failed or flaky test's history on the job's branch (kept in Redis by
// the agent: queue/test_history.h), the run included.
struct TestHistory {
  std::string name;
  int runs = 0;    // runs remembered (at most 50)
  int failed = 0;  // of them, runs where it failed (failed or flaky)
  // The commit where its current failing streak began.
  std::string failing_since;
};

struct PipelineResult {
  // kSuccess, kFailed, kTimeout, kCancelled or kError; kQueued when the
  // job was given back (agent shutdown or failure) instead of finished.
  JobStatus status = JobStatus::kSuccess;
  // Why, for anything but kSuccess, e.g. "test failed: 2 tests failed".
  std::string reason;
  // Every step of the plan, in order, including skipped ones.
  std::vector<StepRecord> steps;
  TestResults tests;
  std::vector<Artifact> artifacts;
  int64_t clippy_warnings = 0;
  CacheStats cache;
  ImageRecord image;
  // The configuration the run used (PipelineOptions::config).
  PipelineConfig config;
  // The branch of test_history; empty when no history was recorded.
  std::string test_history_branch;
  // The history of each failed or flaky test (ApplyTestHistory).
  std::vector<TestHistory> test_history;
  absl::Duration duration = absl::ZeroDuration();
  // The agent was asked to shut down (SIGTERM) mid-run: the job should be
  // requeued rather than finalized.
  bool interrupted = false;
};

}  // namespace ciagent

#endif  // CIAGENT_PIPELINE_PIPELINE_RESULT_H_
