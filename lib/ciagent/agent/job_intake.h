// Job intake: everything between "an agent starts" and "the build can run":
// claim one job, fetch its source into <workdir>/src while the lease is
// renewed, and write <workdir>/job.json (see queue/claim_file.h). This is
// what `ci-consume` does.
//
// What happens to the job when intake cannot finish:
//   - a final fetch error (bad credentials, missing commit, refused URL):
//     the job is finalized `error` with the reason — retrying cannot help;
//   - a transient one (network, busy mirror, disk) or SIGTERM: the job is
//     requeued for prompt redelivery to another agent;
//   - a cancel request seen while fetching: finalized `cancelled`;
//   - the lease lost meanwhile: nothing is written; the job is not ours.
//
// Example:
//   CIAGENT_ASSIGN_OR_RETURN(IntakeResult intake, TakeJob(options));
//   if (intake.outcome == IntakeOutcome::kReady) Build(intake.job_file);
#ifndef CIAGENT_AGENT_JOB_INTAKE_H_
#define CIAGENT_AGENT_JOB_INTAKE_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ciagent/git/fetch.h"
#include "ciagent/queue/job_queue.h"
#include "ciagent/queue/redis_client.h"

namespace ciagent {

struct IntakeOptions {
  RedisOptions redis;
  QueueOptions queue;
  // How long to wait for a job.
  absl::Duration wait = absl::Seconds(30);
  // job.json and src/ go here; created if missing.
  std::string workdir = "ci-work";
  // Fetch the source into <workdir>/src (off: the caller fetches).
  bool fetch_source = true;
  FetchOptions fetch;
  // Longest a fetch may take. Past it the job is requeued and
  // on_fetch_timeout runs (on another thread, while the fetch may still be
  // blocked in the network): a tool exits there.
  absl::Duration fetch_timeout = absl::Minutes(20);
  std::function<void()> on_fetch_timeout;
};

enum class IntakeOutcome {
  kReady,      // job.json written, source fetched: run the build
  kNoJob,      // nothing claimed within `wait`, or stopped while waiting
  kJobEnded,   // claimed, but finalized (error/cancelled) during intake
  kRequeued,   // claimed, then given back for redelivery
  kLeaseLost,  // claimed, then taken over by another agent
};

struct IntakeResult {
  IntakeOutcome outcome = IntakeOutcome::kNoJob;
  std::string job_file;  // kReady
  std::string job_id;    // when a job was claimed
  std::string reason;    // why, when not kReady
};

// kInvalidArgument (fix the flags, claim nothing) for settings no intake
// can run with: no consumer name, a negative wait, a lease, max_deliveries
// or max_entry_bytes not above zero, an unreadable fetch.ca_file. A bad
// path is this agent's fault, not the job's, so it is caught before a claim.
absl::Status ValidateIntakeOptions(const IntakeOptions& options);

// Errors are configuration or infrastructure failures before anything was
// claimed (bad group, Redis unreachable for the whole wait), or a requeue
// or finalize that failed (the job then waits for its lease to lapse).
absl::StatusOr<IntakeResult> TakeJob(const IntakeOptions& options);

}  // namespace ciagent

#endif  // CIAGENT_AGENT_JOB_INTAKE_H_
