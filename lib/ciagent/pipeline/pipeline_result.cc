#include "ciagent/pipeline/pipeline_result.h"

namespace ciagent {

absl::string_view StepStatusName(StepStatus status) {
  switch (status) {
    case StepStatus::kOk:
      return "ok";
    case StepStatus::kFailed:
      return "failed";
    case StepStatus::kSkipped:
      return "skipped";
    case StepStatus::kTimeout:
      return "timeout";
    case StepStatus::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

std::string FormatMillis(absl::Duration duration) {
  return absl::FormatDuration(absl::Trunc(duration, absl::Milliseconds(1)));
}

}  // namespace ciagent
