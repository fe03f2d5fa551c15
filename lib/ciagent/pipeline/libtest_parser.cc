// LibtestParser (see test_results.h): `cargo test` output, line by line.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "ciagent/pipeline/internal/result_limits.h"
#include "ciagent/pipeline/test_results.h"

namespace ciagent {
namespace {

absl::string_view StripLineEnd(absl::string_view line) {
  absl::ConsumeSuffix(&line, "\n");
  absl::ConsumeSuffix(&line, "\r");
  return line;
}

// "unittests src/lib.rs (target/debug/deps/app-1a2b3c)" -> target
// "unittests src/lib.rs", binary "app-1a2b3c"; older cargo:
// "target/debug/deps/app-1a2b3c" -> no target, binary "app-1a2b3c".
void SplitRunningLine(absl::string_view rest, absl::string_view* target,
                      absl::string_view* binary) {
  *target = absl::string_view();
  *binary = rest;
  if (absl::EndsWith(rest, ")")) {
    const size_t open = rest.rfind(" (");
    if (open != absl::string_view::npos) {
      *target = rest.substr(0, open);
      *binary = rest.substr(open + 2, rest.size() - open - 3);
    }
  }
  const size_t slash = binary->find_last_of("/\\");
  if (slash != absl::string_view::npos) binary->remove_prefix(slash + 1);
}

// "Running unittests src/lib.rs (target/debug/deps/app-1a2b3c)" ->
// "unittests src/lib.rs (app)"; older cargo: "Running target/debug/deps/
// app-1a2b3c" -> "app".
std::string SuiteOfRunningLine(absl::string_view rest) {
  absl::string_view target, binary;
  SplitRunningLine(rest, &target, &binary);
  absl::ConsumeSuffix(&binary, ".exe");
  // cargo names test binaries <name>-<16 hex digits of metadata hash>.
  const size_t dash = binary.rfind('-');
  if (dash != absl::string_view::npos && dash + 1 < binary.size() &&
      std::all_of(binary.begin() + dash + 1, binary.end(), [](char c) {
        return absl::ascii_isxdigit(static_cast<unsigned char>(c));
      })) {
    binary = binary.substr(0, dash);
  }
  if (target.empty()) return std::string(binary);
  if (binary.empty()) return std::string(target);
  return absl::StrCat(target, " (", binary, ")");
}

// The test executable's file name, as the `Running` line gives it.
std::string BinaryOfRunningLine(absl::string_view rest) {
  absl::string_view target, binary;
  SplitRunningLine(rest, &target, &binary);
  return std::string(binary);
}

// "---- a::b stdout ----" -> "a::b".
std::optional<absl::string_view> FailureBlockName(absl::string_view line) {
  if (!absl::ConsumePrefix(&line, "---- ") ||
      !absl::ConsumeSuffix(&line, " ----")) {
    return std::nullopt;
  }
  if (!absl::ConsumeSuffix(&line, " stdout") &&
      !absl::ConsumeSuffix(&line, " stderr")) {
    return std::nullopt;
  }
  return line;
}

}  // namespace

void LibtestParser::FoldOpenBinary() {
  if (binary_open_) {
    results_.unfinished_binaries =
        SaturatingAdd(results_.unfinished_binaries, 1);
    results_.passed = SaturatingAdd(results_.passed, binary_passed_);
    results_.failed = SaturatingAdd(results_.failed, binary_failed_);
    results_.ignored = SaturatingAdd(results_.ignored, binary_ignored_);
  }
  binary_open_ = false;
  binary_passed_ = binary_failed_ = binary_ignored_ = 0;
}

void LibtestParser::StartBinary(std::string suite, std::string binary) {
  if (in_failure_block_) EndFailureBlock();
  FoldOpenBinary();
  failed_cases_.clear();
  suite_ = std::move(suite);
  binary_ = std::move(binary);
}

void LibtestParser::EndFailureBlock() {
  in_failure_block_ = false;
  const auto it = failed_cases_.find(block_name_);
  if (it != failed_cases_.end()) {
    std::string& message = results_.cases[it->second].message;
    if (message.empty()) {
      message = std::string(TrimBlankLines(block_text_));
    }
  }
  block_name_.clear();
  block_text_.clear();
}

void LibtestParser::AddTestLine(absl::string_view name,
                                absl::string_view outcome_text) {
  absl::ConsumeSuffix(&name, " - should panic");
  if (name.empty()) return;
  TestCase::Outcome outcome;
  absl::string_view reason;
  if (outcome_text == "ok" || absl::StartsWith(outcome_text, "ok ")) {
    outcome = TestCase::Outcome::kPassed;
    binary_passed_ = SaturatingAdd(binary_passed_, 1);
  } else if (outcome_text == "FAILED" ||
             absl::StartsWith(outcome_text, "FAILED ")) {
    outcome = TestCase::Outcome::kFailed;
    binary_failed_ = SaturatingAdd(binary_failed_, 1);
  } else if (outcome_text == "ignored" ||
             absl::StartsWith(outcome_text, "ignored ") ||
             absl::StartsWith(outcome_text, "ignored, ")) {
    outcome = TestCase::Outcome::kIgnored;
    binary_ignored_ = SaturatingAdd(binary_ignored_, 1);
    if (absl::ConsumePrefix(&outcome_text, "ignored, ")) reason = outcome_text;
  } else {
    return;  // a benchmark ("bench: ...") or something else
  }
  const bool failed = outcome == TestCase::Outcome::kFailed;
  const bool keep_name =
      failed && results_.failing_names.size() < kMaxFailingNames;
  const std::string capped_name(CutUtf8(name, kMaxTestNameBytes));
  if (keep_name) results_.failing_names.push_back(capped_name);
  if (results_.cases.size() < kMaxTestCases || keep_name) {
    if (failed) failed_cases_.emplace(capped_name, results_.cases.size());
    results_.cases.push_back(TestCase{
        .suite = suite_,
        .name = capped_name,
        .outcome = outcome,
        .message = std::string(CutUtf8(reason, kMaxTestNameBytes)),
        .binary = binary_,
    });
  }
}

// "test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered
// out; finished in 0.00s". False if `line` is not of that form.
bool LibtestParser::AddResultLine(absl::string_view line) {
  const size_t dot = line.find(". ");
  if (dot == absl::string_view::npos) return false;
  line.remove_prefix(dot + 2);
  std::optional<int64_t> passed, failed, ignored;
  while (!line.empty()) {
    const size_t end = std::min(line.find(';'), line.size());
    absl::string_view part = absl::StripAsciiWhitespace(line.substr(0, end));
    line.remove_prefix(std::min(end + 1, line.size()));
    const size_t space = part.find(' ');
    if (space == absl::string_view::npos) continue;
    int64_t n;
    if (!absl::SimpleAtoi(part.substr(0, space), &n) || n < 0) continue;
    const absl::string_view what = part.substr(space + 1);
    if (what == "passed") passed = n;
    if (what == "failed") failed = n;
    if (what == "ignored") ignored = n;
  }
  if (!passed || !failed) return false;
  results_.passed = SaturatingAdd(results_.passed, *passed);
  results_.failed = SaturatingAdd(results_.failed, *failed);
  results_.ignored = SaturatingAdd(results_.ignored, ignored.value_or(0));
  results_.complete = true;
  binary_open_ = false;
  binary_passed_ = binary_failed_ = binary_ignored_ = 0;
  return true;
}

void LibtestParser::AddLine(absl::string_view line) {
  line = StripLineEnd(line);

  if (in_failure_block_) {
    if (std::optional<absl::string_view> name = FailureBlockName(line)) {
      EndFailureBlock();
      in_failure_block_ = true;
      block_name_ = std::string(CutUtf8(*name, kMaxTestNameBytes));
      return;
    }
    if (line == "failures:" || absl::StartsWith(line, "test result: ")) {
      EndFailureBlock();  // and go on with the line below
    } else {
      // Room for the "\n" too, so the capped text still ends on a line.
      if (block_text_.size() < kMaxTestMessageBytes) {
        AppendCapped(line, kMaxTestMessageBytes, &block_text_);
        AppendCapped("\n", kMaxTestMessageBytes, &block_text_);
      }
      return;
    }
  }

  if (absl::StartsWith(line, "test result: ")) {
    AddResultLine(line.substr(13));
    return;
  }
  if (std::optional<absl::string_view> name = FailureBlockName(line)) {
    in_failure_block_ = true;
    block_name_ = std::string(CutUtf8(*name, kMaxTestNameBytes));
    return;
  }
  if (absl::StartsWith(line, "test ")) {
    const size_t dots = line.rfind(" ... ");
    if (dots != absl::string_view::npos && dots >= 5) {
      AddTestLine(line.substr(5, dots - 5), line.substr(dots + 5));
    }
    return;
  }
  if (absl::StartsWith(line, "running ") &&
      (absl::EndsWith(line, " test") || absl::EndsWith(line, " tests"))) {
    FoldOpenBinary();
    binary_open_ = true;
    return;
  }
  // cargo's status lines are right-aligned: "     Running ...".
  const absl::string_view status = absl::StripLeadingAsciiWhitespace(line);
  if (status.size() == line.size()) return;
  absl::string_view rest = status;
  std::string suite, binary;
  if (absl::ConsumePrefix(&rest, "Running ")) {
    suite = std::string(CutUtf8(SuiteOfRunningLine(rest), kMaxTestNameBytes));
    binary = std::string(CutUtf8(BinaryOfRunningLine(rest), kMaxTestNameBytes));
  } else if (absl::StartsWith(status, "Doc-tests ")) {
    suite = std::string(CutUtf8(status, kMaxTestNameBytes));
  } else {
    return;
  }
  // cargo's line (stderr) read after the binary's first line (stdout):
  // it names the binary already open. Were that binary another one that
  // died before any test line, its successor's own `running` line folds it.
  if (binary_open_ && !in_failure_block_ &&
      binary_passed_ + binary_failed_ + binary_ignored_ == 0) {
    suite_ = std::move(suite);
    binary_ = std::move(binary);
    return;
  }
  StartBinary(std::move(suite), std::move(binary));
}

void LibtestParser::AddStatusLine(absl::string_view line) {
  line = absl::StripLeadingAsciiWhitespace(StripLineEnd(line));
  if (absl::ConsumePrefix(&line, "Running ")) {
    suite_ = std::string(CutUtf8(SuiteOfRunningLine(line), kMaxTestNameBytes));
    binary_ = std::string(CutUtf8(BinaryOfRunningLine(line), kMaxTestNameBytes));
  } else if (absl::StartsWith(line, "Doc-tests ")) {
    suite_ = std::string(CutUtf8(line, kMaxTestNameBytes));
    binary_.clear();
  }
}

TestResults LibtestParser::Finish() const {
  TestResults results = results_;
  if (in_failure_block_) {
    const auto it = failed_cases_.find(block_name_);
    if (it != failed_cases_.end() &&
        results.cases[it->second].message.empty()) {
      results.cases[it->second].message =
          std::string(TrimBlankLines(block_text_));
    }
  }
  if (binary_open_) {
    results.unfinished_binaries =
        SaturatingAdd(results.unfinished_binaries, 1);
    results.passed = SaturatingAdd(results.passed, binary_passed_);
    results.failed = SaturatingAdd(results.failed, binary_failed_);
    results.ignored = SaturatingAdd(results.ignored, binary_ignored_);
  }
  return results;
}

}  // namespace ciagent
