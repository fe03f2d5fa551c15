// libFuzzer target for DependencyFailureReader (pipeline/dependency_failure.h),
// which reads every stderr line of a build step: output no one controls.
// The input is split into lines as the process runner splits them. Beyond
// "no crash, no sanitizer report", it checks:
//   - a failure is reported only when the output has a line starting with
//     "error: " (cargo's dependency chains always do);
//   - a reported failure has a cause and names a git URL or a registry, and
//     its description for the pipeline is a non-empty line;
//   - feeding the same lines again to a new reader gives the same answer.
// Any violation calls abort() so the fuzzer records the input.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "ciagent/pipeline/dependency_failure.h"

namespace {

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "dependency_failure_fuzzer: violated: %s\n", what);
    std::abort();
  }
}

std::optional<ciagent::DependencyFailure> Read(
    const std::vector<absl::string_view>& lines) {
  ciagent::DependencyFailureReader reader;
  for (absl::string_view line : lines) reader.AddLine(line);
  return reader.failure();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  const std::vector<absl::string_view> lines = absl::StrSplit(input, '\n');
  const std::optional<ciagent::DependencyFailure> failure = Read(lines);
  if (!failure.has_value()) return 0;
  bool has_error_line = false;
  for (absl::string_view line : lines) {
    has_error_line = has_error_line || absl::StartsWith(line, "error: ");
  }
  Check(has_error_line, "a failure needs cargo's error line");
  Check(!failure->cause.empty(), "a failure has a cause");
  ciagent::PrivateDependencies dependencies;
  dependencies.git_origins = {"https://gitea.example"};
  const std::string described =
      ciagent::DescribeDependencyFailure(*failure, dependencies);
  Check(!described.empty() && !absl::StrContains(described, '\n'),
        "the description is one line");
  const std::optional<ciagent::DependencyFailure> again = Read(lines);
  Check(again.has_value() && again->kind == failure->kind &&
            again->git_url == failure->git_url &&
            again->registry == failure->registry &&
            again->cause == failure->cause,
        "the reader is deterministic");
  return 0;
}
