// The states of a job as the status hash's `status` field names them
// (docs/redis-schema.md): queued, running, then one terminal state. Part of
// the job model so that the pipeline can report an outcome without knowing
// about the queue that carries it.
#ifndef CIAGENT_JOB_JOB_STATUS_H_
#define CIAGENT_JOB_JOB_STATUS_H_

#include <optional>

#include "absl/strings/string_view.h"

namespace ciagent {

enum class JobStatus {
  kQueued,
  kRunning,
  kSuccess,
  kFailed,
  kTimeout,
  kCancelled,
  kError,
};
absl::string_view JobStatusName(JobStatus status);
// The status a name stands for; nullopt for a name that is not one.
std::optional<JobStatus> JobStatusFromName(absl::string_view name);
bool IsTerminal(JobStatus status);

}  // namespace ciagent

#endif  // CIAGENT_JOB_JOB_STATUS_H_
