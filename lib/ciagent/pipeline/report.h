// What users read about a pipeline run: a PipelineResult (pipeline_result.h)
// rendered as the `--result` JSON file, as the extra fields of the job's
// Redis status hash, as Prometheus metrics and as the summary printed at the
// end of local mode. Pure functions: values in, text out.
//
// Example:
//   PipelineResult result = ...;
//   CIAGENT_RETURN_IF_ERROR(
//       WriteFileAtomically(result_path, ResultJson(result) + "\n"));
//   CIAGENT_RETURN_IF_ERROR(WriteFileAtomically(
//       metrics_path, PrometheusText(result, claim.job.job_id)));
//   outcome.fields = StatusFields(result);  // JobQueue::Finalize
//   std::cout << HumanSummary(result);      // local mode
//
// Every output is well-formed whatever the bytes in names and reasons (test
// names may hold quotes, control characters, invalid UTF-8): the JSON is
// valid UTF-8 JSON (bad bytes become U+FFFD), Prometheus label values are
// escaped, and the summary escapes control characters, so a test name
// cannot move the terminal's cursor or change its colours.
//
// Thread-safe: no state.
#ifndef CIAGENT_PIPELINE_REPORT_H_
#define CIAGENT_PIPELINE_REPORT_H_

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "ciagent/pipeline/pipeline_result.h"

namespace ciagent {

// At most this many failing test names are listed by HumanSummary.
inline constexpr size_t kSummaryFailingNames = 20;

// The `--result` file, one JSON object (no trailing newline):
//   {"status":"failed","reason":"test failed: 1 test failed",
//    "steps":[{"name":"check","status":"ok","exit_code":0,
//              "duration_ms":1200,"reason":"","warnings":0,
//              "allow_failure":false}, ...],
//    "tests":{"passed":10,"failed":1,"ignored":2,"flaky":1,"reruns":3},
//    "failed_tests":["math::subtracts"],
//    "flaky_tests":["net::connects"],
//    "quarantined_tests":[],
//    "test_attempts":[{"name":"math::subtracts","suite":"unittests src/lib.rs (app)",
//                      "outcome":"failed","attempts":3,"quarantined":false},
//                     {"name":"net::connects",...,"outcome":"flaky",
//                      "attempts":2,"quarantined":false}],
//    "artifacts":[{"name":"app","path":"/src/target/release/app",
//                  "size_bytes":4096,"sha256":"ab12..."}],
//    "clippy_warnings":3,
//    "cache":{"key":"9c1e...","match":"exact","uncached_reason":"",
//             "units":8,"fresh_units":6,"dependency_units":6,
//             "fresh_dependency_units":6,"dependency_hit_rate":1},
//    "image":{"reference":"git.example.com/acme/app:1f2e...",
//             "digest":"sha256:...","tags":["1f2e...","main"],
//             "builder":"buildah","blobs_uploaded":2,"blobs_existing":0,
//             "bytes_uploaded":1048576,"build_ms":5200,"push_ms":300},
//    "config":{...},
//    "duration_ms":83000}
// `image` is {} when no image was pushed. `config` is
// PipelineConfigJson(result.config): the configuration the run used.
// A step's `allow_failure` is true when it failed without failing the job.
// `cache` is result.cache (pipeline_result.h CacheStats): the build step's
// units; dependency_hit_rate is a number from 0 to 1.
// `status` is JobStatusName(result.status); `failed_tests` holds the
// failing names kept in result.tests (at most kMaxFailingNames), as do
// `flaky_tests` (failed, then passed on a retry) and `quarantined_tests`
// (failed or flaky, in the quarantine: they did not fail the job).
// `tests.passed` counts tests that passed at once; `tests.reruns` the
// retries run. `test_attempts` has one object per failed or flaky test
// kept (at most 2 * kMaxFailingNames): its outcome and how many times it
// ran, and with a recorded history (PipelineResult::test_history) its
// "history": {"branch":"main","runs":12,"failed":3,"failing_since":"<commit>"}
// (failed k of the last n runs on the branch; the commit where the current
// failing streak began, "" once it passed).
std::string ResultJson(const PipelineResult& result);

// The fields the pipeline adds to the job's status hash when it finalizes
// (JobOutcome::fields), in this order:
//   tests_passed, tests_failed, tests_ignored   integers
//   failed_tests          JSON array of the first 100 failing test names
//   tests_flaky           integer
//   flaky_tests           JSON array of the first 100 flaky test names
//   quarantined_tests     JSON array of the quarantined failed/flaky names
//   test_attempts         JSON array: `test_attempts` of ResultJson
//   artifacts             JSON array of {"name","size_bytes","sha256"}
//   steps                 JSON array of the step objects of ResultJson
//   clippy_warnings       integer
//   pipeline_duration_ms  integer: the pipeline's own duration
//   cache                 JSON object: the `cache` object of ResultJson
//   image                 registry/repository:tag pushed; "" without image
//   image_digest          sha256:... of the pushed manifest; "" without
//   config                JSON object: the `config` object of ResultJson
// None collides with the queue's own fields; in particular the queue sets
// `duration_ms` itself (from the attempt's start, fetch included), hence
// `pipeline_duration_ms`.
std::vector<std::pair<std::string, std::string>> StatusFields(
    const PipelineResult& result);

// Prometheus text exposition format 0.0.4, for node_exporter's textfile
// collector (or a push gateway). Gauges:
//   ciagent_job_duration_seconds
//   ciagent_job_result{status="success"|"failed"|"timeout"|"cancelled"|"error"}
//       1 for the job's status, 0 for the others
//   ciagent_job_failure{reason="test"}  unsuccessful jobs only: 1 for what
//       ended it (the first failed step; timeout, cancelled, error)
//   ciagent_step_duration_seconds{step="check",status="ok"}  one per step
//   ciagent_step_allowed_failure{step="clippy"}  1 per step that failed
//       without failing the job (allow-failure); absent when none did
//   ciagent_tests{outcome="passed"|"failed"|"ignored"|"flaky"}
//   ciagent_tests_quarantined  failed or flaky tests that were quarantined
//   ciagent_test_reruns  reruns of failed tests
//   ciagent_clippy_warnings
//   ciagent_cache_dependency_hit_ratio  0..1, the build step's
//   ciagent_cache_match{match="exact"|"fallback"|"none"}  1 for the match
//   ciagent_sccache_compilations{result="hit"|"miss"}  when sccache was used
//   ciagent_artifact_size_bytes{artifact="app"}  one per artifact
//   ciagent_image_build_seconds, ciagent_image_push_seconds,
//   ciagent_image_uploaded_bytes  when an image was pushed
// When `job_id` is not empty every sample carries a `job_id` label: then
// the files of several jobs can sit side by side in one textfile directory
// without clashing series, and a job's figures can be found by its id. The
// cost is one set of series per job, so whoever writes one file per job
// should delete files that were scraped (keep the last few). With an empty
// `job_id` (one file overwritten by each job; ci-build's local mode passes
// "local") the series are
// the same from job to job. (`job` is not used: Prometheus sets it.)
std::string PrometheusText(const PipelineResult& result,
                           absl::string_view job_id);

// The plain-text summary printed at the end of local mode: one aligned line
// per step (name, status, duration, reason), test totals, up to
// kSummaryFailingNames failing and as many flaky tests (each with its
// attempts when retried, and "(quarantined)"), the artifacts and the final
// status.
// No colours; ends with a newline.
std::string HumanSummary(const PipelineResult& result);

}  // namespace ciagent

#endif  // CIAGENT_PIPELINE_REPORT_H_
