#include "ciagent/pipeline/console_observer.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace ciagent {
namespace {

void WriteLine(std::FILE* out, absl::string_view step, absl::string_view line) {
  std::string text = absl::StrCat("[", step, "] ", line, "\n");
  std::fwrite(text.data(), 1, text.size(), out);
}

}  // namespace

void ConsoleObserver::StepStarted(absl::string_view step) {
  WriteLine(out_, step, "--- started");
  std::fflush(out_);
}

void ConsoleObserver::StepOutput(absl::string_view step,
                                 absl::string_view /*stream*/,
                                 absl::string_view line) {
  WriteLine(out_, step, line);
}

void ConsoleObserver::StepFinished(const StepRecord& record) {
  std::string line = absl::StrCat("--- ", StepStatusName(record.status));
  if (record.status != StepStatus::kSkipped) {
    absl::StrAppend(&line, " in ", FormatMillis(record.duration));
  }
  if (!record.reason.empty()) absl::StrAppend(&line, ": ", record.reason);
  WriteLine(out_, record.name, line);
  std::fflush(out_);
}

}  // namespace ciagent
