// TestHistoryStore: every test's recent outcomes per repository and branch,
// and the operators' quarantine list per repository, in Redis. Storage
// only: the agent (agent/queued_build.h) reads the quarantine before a run
// and records the run's outcomes before it finalizes; the pipeline turns
// the answer into the result (pipeline.h ApplyTestHistory).
//
// Keys (docs/redis-schema.md, "Test history"); <repo> is the first 16 hex
// digits of the SHA-256 of the job's `repo` URL, and the braces make every
// key of one repository hash to one Redis Cluster slot:
//   ci:tests:{<repo>}:quarantine         set of quarantined test names
//   ci:tests:{<repo>}:history:<branch>   hash: test name -> its history
// A history value is "<outcomes> <streak> <commit>:<seen> ...": outcomes,
// oldest first, one letter per run (P passed, F failed, K flaky), at most
// `max_outcomes`; the commit where the current failing streak began, or
// "-" after a pass; then the last `max_commits` commits the test ran on,
// newest first, each with what it did there (1 passed, 2 failed, 3 both).
// Each record refreshes the key's expiry (`ttl`), so a branch unused for
// that long disappears; a hash that grows past `max_tests` fields (tests
// renamed or deleted over time) keeps only the tests of the latest run.
// The update is one Lua script: concurrent runs of the same branch cannot
// lose each other's outcomes.
//
// Example:
//   TestHistoryStore store(redis_options, {});
//   CIAGENT_ASSIGN_OR_RETURN(std::vector<std::string> quarantined,
//                            store.ReadQuarantine(job.repo));
//   ... run ...
//   CIAGENT_ASSIGN_OR_RETURN(
//       std::vector<TestHistoryRecord> history,
//       store.Record(job.repo, job.branch, job.commit, runs));
//
// Errors: kUnavailable when Redis cannot be reached or answers an error
// (retry later; the caller may go on without history); kInvalidArgument
// for an empty repository, branch or commit.
//
// Thread-safety: one TestHistoryStore per thread (it owns a connection).
#ifndef CIAGENT_QUEUE_TEST_HISTORY_H_
#define CIAGENT_QUEUE_TEST_HISTORY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "ciagent/queue/redis_client.h"

namespace ciagent {

struct TestHistoryOptions {
  std::string key_prefix = "ci:tests:";
  // Outcomes kept per test and branch.
  int max_outcomes = 50;
  // Commits remembered per test (to see one pass and fail on the same one).
  int max_commits = 5;
  // A branch's history expires this long after its last record.
  absl::Duration ttl = absl::Hours(24 * 30);
  // Above this many tests in a branch's hash, only the latest run's stay.
  int max_tests = 20000;
};

// One test's outcome in the run being recorded.
struct TestRun {
  enum class Outcome { kPassed, kFailed, kFlaky };
  std::string name;
  Outcome outcome = Outcome::kPassed;
};

// A test's history after the run was recorded (the run included).
struct TestHistoryRecord {
  std::string name;
  int runs = 0;    // outcomes kept, at most max_outcomes
  int failed = 0;  // of them, runs where it failed (failed or flaky)
  // The commit where the current failing streak began; empty when the
  // test passed in this run.
  std::string failing_since;
  // It both passed and failed on this run's commit, in this run or
  // an earlier one: flaky by definition.
  bool passed_and_failed_on_commit = false;
};

// The <repo> part of the keys: first 16 hex digits of SHA-256(repo).
std::string TestHistoryRepoId(absl::string_view repo);
// ci:tests:{<repo>}:quarantine
std::string QuarantineKey(absl::string_view repo,
                          const TestHistoryOptions& options = {});
// ci:tests:{<repo>}:history:<branch>
std::string TestHistoryKey(absl::string_view repo, absl::string_view branch,
                           const TestHistoryOptions& options = {});

class TestHistoryStore {
 public:
  TestHistoryStore(RedisOptions redis, TestHistoryOptions options);

  // The operators' quarantined test names of `repo`, sorted.
  absl::StatusOr<std::vector<std::string>> ReadQuarantine(
      absl::string_view repo);

  // Adds `names` to, or removes them from, the operators' quarantine of
  // `repo` (ci-queue quarantine add / remove). Returns how many were not
  // there (add) or were there (remove).
  absl::StatusOr<int64_t> Quarantine(absl::string_view repo,
                                     absl::Span<const std::string> names);
  absl::StatusOr<int64_t> Release(absl::string_view repo,
                                  absl::Span<const std::string> names);

  // Adds this run's outcome of each test to its history on `branch`;
  // returns each test's history, in the order of `runs`. `run_id` (the
  // job's id and attempt) makes a retry safe: a Record whose run id the
  // branch has seen among its last 100 changes nothing and returns the
  // histories as they stand.
  absl::StatusOr<std::vector<TestHistoryRecord>> Record(
      absl::string_view repo, absl::string_view branch,
      absl::string_view commit, absl::Span<const TestRun> runs,
      absl::string_view run_id = "");

 private:
  // SADD or SREM of `names` on the quarantine set.
  absl::StatusOr<int64_t> ChangeQuarantine(absl::string_view command,
                                           absl::string_view repo,
                                           absl::Span<const std::string> names);

  RedisClient redis_;
  TestHistoryOptions options_;
};

}  // namespace ciagent

#endif  // CIAGENT_QUEUE_TEST_HISTORY_H_
