// Module `pipeline` (docs/architecture.md, "Layers") owns the Rust pipeline,
// usable without Redis (ci-build --local): the steps and their commands,
// timeouts and cancel, cargo-message and test-result parsing, the result and
// its reports. It must not know about the queue and Redis (the agent connects
// a run to a job), and how images are built (the image step is plugged in
// through PipelineOptions::image_step).
//
// The Rust pipeline: the steps an agent runs on a checked-out crate or
// workspace, and what they produced.
//
// Steps, in order (job.h kKnownSteps), each a cargo command run through
// RunProcess (base/process_runner.h) in its own process group:
//   check   cargo check --workspace --all-targets [--locked]
//   build   cargo build --workspace --release [--locked]
//             --message-format=json-render-diagnostics   (needs check)
//   test    cargo nextest run --workspace --no-fail-fast --profile ciagent
//             when cargo-nextest is in PATH (JUnit output), else
//           cargo test --workspace --no-fail-fast [--locked] (needs check);
//           then each failed test again, up to the retries
//           (test_retry.h; nextest gets --retries N)
//   clippy  cargo clippy --workspace --all-targets [--locked]
//             --message-format=json                      (needs check)
//   audit   cargo audit, then cargo deny check, each when installed;
//           skipped when neither is
//   image   PipelineOptions::image_step, when set    (needs build and test):
//           build the Dockerfile, push the image (image/image_step.h)
// `--locked` is passed when Cargo.lock exists.
//
// Configuration. `config` (pipeline_config.h: the repository's
// [workspace.metadata.ciagent] with the job's settings over it) shapes the
// commands: `--workspace` becomes `-p <package>` for each of `packages`, or
// gains `--exclude <name>` for each of `exclude`; check, build, test and
// clippy get `--features a,b`, `--all-features`, `--no-default-features`;
// each step's `args` are appended last, as argv (after `--locked`, so a
// `--` in them passes the rest to the test harness or clippy-driver). A
// step with `allow_failure` that fails is recorded `failed` with
// StepRecord::allow_failure and does not fail the job (its dependents are
// still skipped). A step's `timeout` replaces `step_timeout`. The test
// runner is `config.test_runner`: nextest demanded but not installed fails
// the step. The image step gets `config.image` (Dockerfile, context, name,
// build args). The effective configuration is the observer's first line
// (step "config", stream "agent"), followed by one line per reader
// warning (unknown keys), and is the result's `config`. A step whose needs failed,
// timed out or was cancelled is skipped with that reason; a step that is not
// selected (PipelineOptions::steps) is skipped and satisfies its dependents.
// A failed test step does not stop clippy or audit: a developer sees every
// problem of the push at once.
//
// Environment. Every step gets exactly: PATH, HOME, RUSTUP_HOME (when set),
// CARGO_HOME, CARGO_TARGET_DIR, CARGO_INCREMENTAL=0, CARGO_TERM_COLOR=never,
// CI=true, then `env` (the job's variables) and `secret_env`. Nothing else
// from the agent's environment reaches a build. When `cargo_config` is set,
// that file is installed as <cargo_home>/config.toml first (private
// registries, mirrors, source replacement). With `private_dependencies`,
// the steps also get what reaches private git dependencies and registries
// (private_dependencies.h: a credential helper and token files in a
// private directory under the work dir, removed when the run ends).
//
// Cache. With `cache_dir` set (docs/caching.md), CARGO_HOME defaults to
// <cache_dir>/cargo-home and, unless `target_dir` is set, the target dir is
// the cache's dir for the checkout's key (cache/build_cache.h), locked for
// the whole run; another agent building the same key is waited for up to
// `cache_lock_timeout`, then the run goes on uncached in
// <source_dir>/target. Any cache failure makes the run uncached, never
// failed. One `agent` line of step "cache" says which it was. The result's
// `cache` holds the key, the match and the build step's unit counts (its
// dependency hit rate); without a cache dir the counts are still there.
//
// Output. Lines go to the PipelineObserver as they come. cargo's JSON
// messages (build, clippy stdout) are consumed, not forwarded; diagnostics
// reach the observer rendered, as `stderr` lines, as cargo prints them. Before each command the observer
// gets one `agent` line with the command.
//
// Termination. The whole run has `job_timeout`; each step also has
// `step_timeout`. On either, or when `cancel_requested`/`stop_requested`
// turns true, the step's process group gets SIGTERM, `grace`, then SIGKILL
// (run the tool as a child subreaper so grandchildren that escaped the group
// die too; see process_runner.h). The remaining steps are skipped.
//
// Results. PipelineResult::status: kTimeout when a timeout hit, kCancelled
// on cancel or stop (and `interrupted` on stop), kFailed when a step failed
// (or clippy warned while clippy_warnings_fail), else kSuccess. Test results
// come from libtest output or nextest's JUnit file; a JUnit file is written
// to `junit_path` either way. Retries, the flaky policy and the quarantine
// (config.test_retries, else `test_retries`; config.flaky;
// config.quarantine and `quarantine`) decide the test step's status
// (test_retry.h): a failure every rerun or the quarantine explains leaves
// the step ok. Artifacts are the workspace's release
// executables, with size and sha256.
//
// Example:
//   PipelineOptions options;
//   options.source_dir = "/ci/job/src";
//   options.work_dir = "/ci/job";
//   options.cargo_home = "/cache/cargo";
//   options.job_timeout = absl::Minutes(30);
//   options.cancel_requested = [&] { return renewer.cancel_requested(); };
//   CIAGENT_ASSIGN_OR_RETURN(PipelineResult result,
//                            RunPipeline(options, &observer));
//
// Errors: a step that fails is a result, not an error. RunPipeline returns
// an error only when the agent itself could not do its work, which says
// what to do with the job:
//   kUnavailable        out of processes/descriptors, a step failed
//                       saying "No space left on device", or cargo could
//                       not reach a dependency's server (a git dependency
//                       or a registry down, 5xx, timing out;
//                       dependency_failure.h): requeue. A dependency that
//                       refuses our credentials fails the step instead,
//                       its reason saying why.
//   kInvalidArgument    bad options (no source_dir, unknown step): fix them.
//   kFailedPrecondition source_dir has no Cargo.toml, cargo is not in PATH,
//                       cargo_config unreadable: the job cannot build here.
//
// Thread-safety: RunPipeline runs on the calling thread; the observer and
// the callbacks are called on that thread only. One pipeline per process at
// a time (see process_runner.h on subreapers).
#ifndef CIAGENT_PIPELINE_PIPELINE_H_
#define CIAGENT_PIPELINE_PIPELINE_H_

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ciagent/base/process_runner.h"
#include "ciagent/pipeline/pipeline_config.h"
#include "ciagent/pipeline/pipeline_result.h"
#include "ciagent/pipeline/private_dependencies.h"

namespace ciagent {

// Sees the run as it happens. Default implementations do nothing.
class PipelineObserver {
 public:
  virtual ~PipelineObserver() = default;
  virtual void StepStarted(absl::string_view /*step*/) {}
  // One line of a step's output; `stream` is "stdout", "stderr" or "agent".
  virtual void StepOutput(absl::string_view /*step*/,
                          absl::string_view /*stream*/,
                          absl::string_view /*line*/) {}
  virtual void StepFinished(const StepRecord& /*record*/) {}
};

// What the image step gets from the pipeline.
struct ImageStepContext {
  const PipelineResult& so_far;  // the build step's artifacts among others
  const std::string& source_dir;
  const std::string& work_dir;
  // What is left of the job's time (and of the step timeout).
  absl::Duration time_left;
  // Polled while building; true ends the step (cancel or agent stop).
  std::function<bool()> should_stop;
  // The step's output lines; `stream` as in PipelineObserver::StepOutput.
  std::function<void(absl::string_view stream, absl::string_view line)> output;
  // The configuration's image settings (PipelineOptions::config.image);
  // null: the defaults (ImageConfig{}).
  const ImageConfig* image = nullptr;
};

// Runs the image step: the record says how it went (ok, failed with the
// reason, timeout, cancelled; skipped with the reason when there is nothing
// to build) and `image` what was pushed. An error status is the agent's
// failure, not the job's (a registry unreachable after retries, a full
// disk): the run ends with that error and the job is requeued.
using ImageStep = std::function<absl::StatusOr<StepRecord>(
    const ImageStepContext& context, ImageRecord* image)>;

struct PipelineOptions {
  // The checkout; Cargo.toml at its root. Required.
  std::string source_dir;
  // Where the agent keeps its files for this job (JUnit, nextest config).
  // Empty: source_dir's parent.
  std::string work_dir;
  // Empty: the cache's dir with a cache dir, else <source_dir>/target.
  std::string target_dir;
  // CARGO_HOME of the steps. Empty: <cache_dir>/cargo-home with a cache
  // dir, else $CARGO_HOME of the agent, else $HOME/.cargo.
  std::string cargo_home;
  // The cache root; empty: the run is uncached (see Cache above).
  std::string cache_dir;
  // Compile through a private sccache server on <cache_dir>/sccache when
  // `sccache` is in PATH (cache/sccache.h); its hits and misses over the
  // whole run go to the result's `cache`. Without a cache dir or sccache,
  // the run goes on without it and its log says why.
  bool sccache = false;
  // How long to wait for another agent building the same cache key.
  absl::Duration cache_lock_timeout = absl::Minutes(10);
  // After the run, delete the workspace crates' own artifacts from the
  // cached target dir (CachedTargetDir::DropWorkspaceArtifacts): the cache
  // keeps only dependencies. The result's artifact paths are then gone.
  bool cache_drop_workspace_artifacts = false;
  // An operator cargo config.toml installed into cargo_home; empty: none.
  std::string cargo_config;
  // PATH of the steps. Empty: the agent's PATH.
  std::string path;
  // The job's variables (job.h: validated, non-secret), or the effective
  // configuration's (ApplyPipelineConfig: the repository's, then the
  // job's).
  std::vector<std::pair<std::string, std::string>> env;
  // Variables the operator passes to builds that are secret (registry
  // tokens): given to the steps; the caller masks their values in logs.
  std::vector<std::pair<std::string, std::string>> secret_env;
  // Credentials for private git dependencies and cargo registries; the
  // caller masks their tokens in logs.
  PrivateDependencies private_dependencies;
  // Steps to run, a subset of kKnownSteps in any order; empty: all.
  std::vector<std::string> steps;
  absl::Duration job_timeout = absl::Minutes(30);
  absl::Duration step_timeout = absl::InfiniteDuration();
  // The agent's maximum: the job's and the repository's timeouts are cut to
  // it (ApplyPipelineConfig, ReadPipelineConfig).
  absl::Duration max_timeout = absl::Seconds(kMaxJobTimeoutSeconds);
  // The effective configuration (see Configuration above); the defaults
  // give the commands listed at the top of this file.
  PipelineConfig config;
  // The agent's retries of a failed test (CI_TEST_RETRIES) when the
  // configuration sets none (config.test_retries); cut to kMaxTestRetries.
  int test_retries = 0;
  // Quarantined test names besides the configuration's (the operators'
  // per-repository list, which the agent reads from Redis).
  std::vector<std::string> quarantine;
  // SIGTERM → SIGKILL delay when terminating a step.
  absl::Duration grace = absl::Seconds(10);
  // Fail the clippy step when it reports warnings.
  bool clippy_warnings_fail = false;
  // Empty: <work_dir>/junit.xml.
  std::string junit_path;
  // Polled about every 100 ms while a step runs. A cancel ends the job
  // `cancelled`; a stop (agent shutdown) also sets `interrupted`.
  std::function<bool()> cancel_requested;
  std::function<bool()> stop_requested;
  // Runs the image step (image/image_step.h); unset: the step is skipped.
  ImageStep image_step;
};

absl::StatusOr<PipelineResult> RunPipeline(const PipelineOptions& options,
                                           PipelineObserver* observer);

// Makes `config` (EffectiveConfig's) the run's configuration: options'
// steps and env become the configuration's, its timeout (cut to
// max_timeout) replaces the agent's default job_timeout, and
// options->config holds it. What the configuration leaves unset keeps the
// agent's value.
void ApplyPipelineConfig(PipelineConfig config, PipelineOptions* options);

// What the agent does before every run: reads the repository's
// configuration from options->source_dir (timeouts cut to max_timeout), lays
// `job`'s settings over it (EffectiveConfig) and applies the result.
// ReadPipelineConfig's errors: kInvalidArgument for a configuration the
// repository must fix, kFailedPrecondition when Cargo.toml cannot be read.
absl::Status ConfigureForJob(const Job& job, PipelineOptions* options);


}  // namespace ciagent

#endif  // CIAGENT_PIPELINE_PIPELINE_H_
