#include "ciagent/job/job_status.h"

namespace ciagent {

absl::string_view JobStatusName(JobStatus status) {
  switch (status) {
    case JobStatus::kQueued:
      return "queued";
    case JobStatus::kRunning:
      return "running";
    case JobStatus::kSuccess:
      return "success";
    case JobStatus::kFailed:
      return "failed";
    case JobStatus::kTimeout:
      return "timeout";
    case JobStatus::kCancelled:
      return "cancelled";
    case JobStatus::kError:
      return "error";
  }
  return "error";
}

std::optional<JobStatus> JobStatusFromName(absl::string_view name) {
  for (JobStatus status :
       {JobStatus::kQueued, JobStatus::kRunning, JobStatus::kSuccess,
        JobStatus::kFailed, JobStatus::kTimeout, JobStatus::kCancelled,
        JobStatus::kError}) {
    if (JobStatusName(status) == name) return status;
  }
  return std::nullopt;
}

bool IsTerminal(JobStatus status) {
  return status != JobStatus::kQueued && status != JobStatus::kRunning;
}

}  // namespace ciagent
