// The states of a job as the status hash's `status` field names them
// (docs/redis-schema.md): queued, running, then one terminal state. Part of
// the job model so that the pipeline can report an outcome without knowing
// about the queue that carries it.
#ifndef CIAGENT_JOB_JOB_STATUS_H_
#define CIAGENT_JOB_JOB_STATUS_H_

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
bool IsTerminal(JobStatus status);

}  // namespace ciagent

#endif  // CIAGENT_JOB_JOB_STATUS_H_
