// libFuzzer target for test-result parsing. Beyond "no crash, no sanitizer
// report", it checks the properties the pipeline relies on:
//   - LibtestParser keeps its caps on any lines: failing names, cases,
//     names and messages;
//   - every kept failing name has its case, and counts are never negative;
//   - ToJunitXml always writes a document ParseNextestJunit accepts;
//   - for accepted JUnit, ParseNextestJunit(ToJunitXml(r)) gives the same
//     counts, failing names and cases (suite, name, outcome);
//   - every JUnit rejection is kInvalidArgument with a short message.
// Any violation calls abort() so the fuzzer records the input.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "ciagent/pipeline/test_results.h"

namespace {

using ciagent::TestCase;
using ciagent::TestResults;

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "test_results_fuzzer: violated: %s\n", what);
    std::abort();
  }
}

void CheckBounded(const TestResults& results) {
  Check(results.passed >= 0 && results.failed >= 0 && results.ignored >= 0,
        "counts are never negative");
  Check(results.failing_names.size() <= ciagent::kMaxFailingNames,
        "failing names are capped");
  Check(results.cases.size() <=
            ciagent::kMaxTestCases + ciagent::kMaxFailingNames,
        "cases are capped");
  size_t next_name = 0;
  for (const TestCase& test : results.cases) {
    Check(!test.name.empty(), "cases have names");
    Check(test.name.size() <= ciagent::kMaxTestNameBytes &&
              test.suite.size() <= ciagent::kMaxTestNameBytes,
          "names are capped");
    Check(test.message.size() <= ciagent::kMaxTestMessageBytes,
          "messages are capped");
    if (test.outcome == TestCase::Outcome::kFailed &&
        next_name < results.failing_names.size() &&
        test.name == results.failing_names[next_name]) {
      ++next_name;
    }
  }
  Check(next_name == results.failing_names.size(),
        "every failing name has its case, in order");
}

bool SameCountsAndNames(const TestResults& a, const TestResults& b) {
  if (a.passed != b.passed || a.failed != b.failed || a.ignored != b.ignored ||
      a.failing_names != b.failing_names || a.cases.size() != b.cases.size()) {
    return false;
  }
  for (size_t i = 0; i < a.cases.size(); ++i) {
    if (a.cases[i].suite != b.cases[i].suite ||
        a.cases[i].name != b.cases[i].name ||
        a.cases[i].outcome != b.cases[i].outcome) {
      return false;
    }
  }
  return true;
}

// ToJunitXml's output parses, whatever the results hold.
TestResults Reparse(const TestResults& results) {
  const absl::StatusOr<TestResults> again =
      ciagent::ParseNextestJunit(ciagent::ToJunitXml(results));
  Check(again.ok(), "ToJunitXml output parses");
  CheckBounded(*again);
  return *again;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);

  ciagent::LibtestParser parser;
  for (absl::string_view line : absl::StrSplit(input, '\n')) {
    parser.AddLine(line);
  }
  const TestResults libtest = parser.Finish();
  CheckBounded(libtest);
  Check(parser.Finish() == libtest, "Finish does not change the parser");
  Reparse(libtest);

  const absl::StatusOr<TestResults> junit = ciagent::ParseNextestJunit(input);
  if (junit.ok()) {
    CheckBounded(*junit);
    Check(junit->complete, "accepted JUnit is complete");
    const TestResults again = Reparse(*junit);
    Check(SameCountsAndNames(again, *junit),
          "ParseNextestJunit(ToJunitXml(r)) has r's counts and names");
    Check(ciagent::ToJunitXml(again) == ciagent::ToJunitXml(*junit),
          "ToJunitXml is a fixed point");
  } else {
    Check(junit.status().code() == absl::StatusCode::kInvalidArgument,
          "rejections are kInvalidArgument");
    Check(junit.status().message().size() < 300,
          "rejection messages are short");
  }
  return 0;
}
