// Module `job` (docs/architecture.md, "Layers") owns the job model: what a job
// asks for (Job), its JSON form and validation, and the states a job goes
// through (job_status.h). It must not know about where a job is stored or how
// it is run: no Redis, no git, no cargo.
//
// The job model: what one CI job asks the agent to do, and its JSON form.
//
// A job arrives as the `job` field of a Redis stream entry, as JSON:
//   {"job_id": "push-1234", "repo": "https://git.example.com/acme/app.git",
//    "branch": "main", "commit": "<40 or 64 hex digits>",
//    "timeout_s": 1800, "steps": ["check", "test"],
//    "image": {"name": "acme/app", "tag": "v1"},
//    "env": {"RUST_LOG": "debug"}, "test_retries": 2}
// The first four fields are required; the others are optional. Unknown
// fields are ignored so producers can add fields before agents know them.
//
// ParseJob validates every field; a rejection is kInvalidArgument and its
// message names the field and the rule, e.g.
//   job_id: must match ^[A-Za-z0-9._-]{1,128}$ (got "../etc")
// Such a job is never retried: the queue dead-letters it with that message.
//
// Example:
//   absl::StatusOr<Job> job = ParseJob(entry_json, JobParseOptions{});
//   if (!job.ok()) return DeadLetter(job.status().message());
//
// All functions are thread-safe (ParseJob and ExtractJobId use a
// thread-local parser, reused so that parsing does not allocate per call).
#ifndef CIAGENT_JOB_JOB_H_
#define CIAGENT_JOB_JOB_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ciagent/job/repo_url.h"  // ValidateRepoUrl, the rule for `repo`

namespace ciagent {

struct ImageSpec {
  // Repository path in the registry, e.g. "acme/app". Lowercase
  // [a-z0-9] components separated by '.', '_', '__', '-' or '/'.
  std::string name;
  // Tag, ^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$. Empty: the pipeline chooses.
  std::string tag;

  friend bool operator==(const ImageSpec&, const ImageSpec&) = default;
};

struct Job {
  std::string job_id;  // ^[A-Za-z0-9._-]{1,128}$, and not "." or ".."
  std::string repo;    // http(s) URL without credentials (repo_url.h)
  std::string branch;  // a valid git branch name (git check-ref-format)
  std::string commit;  // 40 (SHA-1) or 64 (SHA-256) hex digits, lowercase

  // Whole-job timeout; nullopt means the agent's default.
  std::optional<absl::Duration> timeout;
  // Subset of pipeline steps to run, in job order; empty means all.
  std::vector<std::string> steps;
  std::optional<ImageSpec> image;
  // Non-secret environment variables for the build, in the JSON's order.
  std::vector<std::pair<std::string, std::string>> env;
  // How many more times each failed test is run (0..kMaxTestRetries);
  // nullopt: the repository's `test.retries`, else the agent's default.
  std::optional<int> test_retries;

  friend bool operator==(const Job&, const Job&) = default;
};

struct JobParseOptions {
  // Accept file:// repository URLs. Tests and local demos only.
  bool allow_file_urls = false;
  // Larger documents are rejected before parsing.
  size_t max_json_bytes = 64 * 1024;
};

// Pipeline step names a job may list in `steps`.
inline constexpr absl::string_view kKnownSteps[] = {
    "check", "build", "test", "clippy", "audit", "image"};

// Most retries of a failed test a job or a repository may ask for.
inline constexpr int kMaxTestRetries = 10;

// Longest `timeout_s` accepted: one day.
inline constexpr int64_t kMaxJobTimeoutSeconds = 24 * 60 * 60;

// Parses and validates one job document. kInvalidArgument on any violation.
absl::StatusOr<Job> ParseJob(absl::string_view json,
                             const JobParseOptions& options = {});

// The canonical JSON form of `job` (fields in the order documented above;
// optional fields only when set). ParseJob(JobToJson(job)) == job for every
// job ParseJob can return; a hand-built Job must hold valid UTF-8 strings
// and a whole number of seconds in `timeout` for that to hold.
std::string JobToJson(const Job& job);

// Best effort: the `job_id` of a document that failed ParseJob, when it is a
// JSON object with exactly one `job_id` member, a string that passes
// ValidateJobId, so the failure can be recorded under the job's status key.
// nullopt otherwise (including for documents over 1 MiB). Never fails on
// any input.
std::optional<std::string> ExtractJobId(absl::string_view json);

// Individual rules, exposed for other modules and for tests. Each returns
// OK or kInvalidArgument naming `field` and the rule. ValidateRepoUrl, the
// rule for `repo`, has its own header, repo_url.h (included above).
absl::Status ValidateJobId(absl::string_view job_id);
absl::Status ValidateBranchName(absl::string_view branch);
absl::Status ValidateCommit(absl::string_view commit);

}  // namespace ciagent

#endif  // CIAGENT_JOB_JOB_H_
