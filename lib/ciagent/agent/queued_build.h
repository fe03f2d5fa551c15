// Module `agent` (docs/architecture.md, "Layers") owns the composition with
// the queue: job intake (claim, fetch, job file), the queued build (pipeline
// under a lease, log shipping, fenced finalize or requeue). Only the tools
// (tools/) stand above it, and they stay thin shells over this module.
//
// Queued build: runs the pipeline for a job claimed by `ci-consume` and
// reports it through Redis, exactly once. This is what `ci-build --job`
// does with <workdir>/job.json (queue/claim_file.h).
//
// While the pipeline runs:
//   - the lease is renewed every `poll_interval` (1 s) on its own
//     connection; each renewal also reports a cancel request, so a cancel
//     stops the running step within about a second;
//   - every output line goes to the job's log stream through a LogShipper
//     (capped, secrets masked), with agent lines marking each step.
// Before the run the operators' quarantine of the repository is read, and
// after it every test's outcome is added to its history on the job's
// branch, which can make a failed test flaky (queue/test_history.h,
// pipeline/test_retry.h ApplyTestHistory); either is skipped, with a
// warning, when Redis does not answer.
// Then, in this order: the log is flushed, the JUnit/result files are the
// caller's, and the job is
//   - finalized (status, reason and the report's status fields, then acked,
//     in one fenced step) for success, failed, timeout, cancelled;
//   - finalized `error` when the pipeline could not run for a reason a
//     retry will not fix (no Cargo.toml, unknown step, a Cargo.toml
//     configuration that breaks a rule: the reason names the key and rule);
//   - requeued when the agent is shutting down (SIGTERM) or the failure was
//     infrastructure (out of resources, disk full);
//   - left alone when the lease was lost: another agent owns the job.
// A finalize that fails because Redis is unreachable is retried for
// `finalize_retry`; after that the job's lease lapses and another agent
// runs it again (the fence keeps a late result from this one out).
//
// Example:
//   CIAGENT_ASSIGN_OR_RETURN(ClaimFile claim, ReadClaimFile(path));
//   CIAGENT_RETURN_IF_ERROR(ApplyRedisEnvironment(&claim.redis));
//   QueuedBuildOptions options;
//   options.pipeline.cargo_home = "/cache/cargo";
//   CIAGENT_ASSIGN_OR_RETURN(QueuedBuildResult done,
//                            RunQueuedBuild(claim, options));
//
// Errors: kUnavailable when the final write could not reach Redis (the job
// is then redelivered after its lease); kInvalidArgument for bad options.
// Thread-safety: call from one thread; it starts and joins its own.
#ifndef CIAGENT_AGENT_QUEUED_BUILD_H_
#define CIAGENT_AGENT_QUEUED_BUILD_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ciagent/agent/log_shipper.h"
#include "ciagent/pipeline/pipeline.h"
#include "ciagent/pipeline/pipeline_result.h"
#include "ciagent/queue/claim_file.h"

namespace ciagent {

struct QueuedBuildOptions {
  // source_dir, work_dir default to <dir of job.json>/src and that dir;
  // steps, env, job_timeout and config come from the job over the
  // checkout's Cargo.toml configuration (pipeline_config.h
  // EffectiveConfig; job_timeout here is the default for jobs and
  // repositories that set none, max_timeout caps both); the callbacks are
  // set by RunQueuedBuild.
  PipelineOptions pipeline;
  LogShipperOptions logs;
  // How often the lease is renewed and a cancel looked for.
  absl::Duration poll_interval = absl::Seconds(1);
  // How long a failing finalize (Redis unreachable) is retried.
  absl::Duration finalize_retry = absl::Seconds(60);
};

enum class BuildDisposition {
  kFinalized,  // status written and entry acked
  kRequeued,   // given back for prompt redelivery
  kLeaseLost,  // taken over by another agent; nothing written
};

struct QueuedBuildResult {
  PipelineResult pipeline;
  BuildDisposition disposition = BuildDisposition::kFinalized;
  // Why, when requeued, lost or ended in error.
  std::string reason;
};

// `claim_file.redis` must hold the password already (ApplyRedisEnvironment).
absl::StatusOr<QueuedBuildResult> RunQueuedBuild(const ClaimFile& claim_file,
                                                 const QueuedBuildOptions& options);

}  // namespace ciagent

#endif  // CIAGENT_AGENT_QUEUED_BUILD_H_
