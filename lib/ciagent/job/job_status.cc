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

bool IsTerminal(JobStatus status) {
  return status != JobStatus::kQueued && status != JobStatus::kRunning;
}

}  // namespace ciagent
