// Module `base` (docs/architecture.md, "Layers") owns the foundation every
// module stands on: status helpers and error conventions, clock, JSON-lines
// logging with secret masking, secrets from env/*_FILE, backoff, signals, file
// locks, atomic files, the process runner. It must not know about jobs, Redis,
// git, registries, cargo: nothing of what the agent does, only how a program
// does it.
//
// Status helpers shared by every module.
//
// Error convention (from absl's canonical codes), which every libciagent API
// follows so that a caller knows what to do with a failure:
//   kUnavailable        transient infrastructure trouble: retry the call
//                       (with backoff), or requeue the job.
//   kDeadlineExceeded   the operation ran out of time; same as kUnavailable
//                       unless the deadline was the job's own.
//   kAborted            lost a race (e.g. the lease of a job): give up this
//                       attempt; another agent owns the work now.
//   kInvalidArgument    bad input (a malformed job, a bad flag): never retry.
//   kFailedPrecondition the environment is wrong (missing consumer group,
//                       missing tool): don't retry until an operator fixes it.
//   kUnauthenticated /
//   kPermissionDenied   credentials rejected: final.
//   kNotFound           the object does not exist: final.
//
// Example:
//   absl::StatusOr<Job> Load(absl::string_view json) {
//     CIAGENT_ASSIGN_OR_RETURN(Job job, ParseJob(json));
//     CIAGENT_RETURN_IF_ERROR(Validate(job));
//     return job;
//   }
#ifndef CIAGENT_BASE_STATUS_MACROS_H_
#define CIAGENT_BASE_STATUS_MACROS_H_

#include "absl/strings/string_view.h"
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ciagent {

// True when retrying the same operation later may succeed.
bool IsTransient(const absl::Status& status);

// Returns `status` with `context` prepended to its message ("context: message"),
// keeping its code and payloads. OK stays OK.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

}  // namespace ciagent

#define CIAGENT_STATUS_CONCAT_INNER_(a, b) a##b
#define CIAGENT_STATUS_CONCAT_(a, b) CIAGENT_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status) and returns it from the enclosing
// function when it is not OK.
#define CIAGENT_RETURN_IF_ERROR(expr)                      \
  do {                                                     \
    if (absl::Status ciagent_status_ = (expr);             \
        !ciagent_status_.ok()) {                           \
      return ciagent_status_;                              \
    }                                                      \
  } while (false)

// Evaluates `expr` (an absl::StatusOr<T>); returns its status when not OK,
// otherwise moves the value into `lhs`, which may be a declaration.
#define CIAGENT_ASSIGN_OR_RETURN(lhs, expr)                                   \
  CIAGENT_ASSIGN_OR_RETURN_IMPL_(                                             \
      CIAGENT_STATUS_CONCAT_(ciagent_statusor_, __LINE__), lhs, expr)

#define CIAGENT_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                   \
  if (!statusor.ok()) {                                     \
    return std::move(statusor).status();                    \
  }                                                         \
  lhs = std::move(statusor).value()

#endif  // CIAGENT_BASE_STATUS_MACROS_H_
