// The JUnit functions of test_results.h: ParseNextestJunit gives the
// elements of nextest's file their meaning (internal/xml.h reads the XML),
// ToJunitXml writes libtest results in the same form.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "ciagent/pipeline/internal/result_limits.h"
#include "ciagent/pipeline/internal/xml.h"
#include "ciagent/pipeline/test_results.h"

namespace ciagent {
namespace {

// Interprets the element events of a JUnit document.
class JunitBuilder : public XmlHandler {
 public:
  absl::Status Start(absl::string_view name, const XmlAttributes& attributes,
                     size_t depth) override {
    if (depth == 0) {
      if (name != "testsuites" && name != "testsuite") {
        return absl::InvalidArgumentError(
            absl::StrCat("root element is <", CutUtf8(name, 64),
                         ">, expected <testsuites> or <testsuite>"));
      }
      if (name == "testsuites") ReadDeclaredTotals(attributes);
    }
    if (name == "testsuite" && !in_case_) {
      const std::string* suite = FindXmlAttribute(attributes, "name");
      suite_ = suite ? std::string(CutUtf8(*suite, kMaxTestNameBytes)) : "";
      return absl::OkStatus();
    }
    if (name == "testcase" && !in_case_) {
      const std::string* case_name = FindXmlAttribute(attributes, "name");
      if (case_name == nullptr || case_name->empty()) {
        return absl::InvalidArgumentError("<testcase> without a name");
      }
      in_case_ = true;
      failed_ = false;
      case_depth_ = depth;
      case_ = TestCase{};
      case_.name = std::string(CutUtf8(*case_name, kMaxTestNameBytes));
      case_.suite = suite_;
      if (case_.suite.empty()) {
        if (const std::string* c = FindXmlAttribute(attributes, "classname")) {
          case_.suite = std::string(CutUtf8(*c, kMaxTestNameBytes));
        }
      }
      return absl::OkStatus();
    }
    if (in_case_ && depth == case_depth_ + 1) {
      const std::string* message = FindXmlAttribute(attributes, "message");
      if (name == "failure" || name == "error") {
        if (!failed_) {
          failed_ = true;
          Collect(&case_.message, message, depth);
        }
      } else if (name == "flakyFailure" || name == "flakyError" ||
                 name == "rerunFailure" || name == "rerunError") {
        ++case_.attempts;
        if (case_.attempts == 2 && name.substr(0, 5) == "flaky") {
          Collect(&case_.message, message, depth);  // the first attempt's
        } else if (case_.rerun_messages.size() < kMaxRerunMessages) {
          Collect(&case_.rerun_messages.emplace_back(), message, depth);
        }
      } else if (name == "skipped" &&
                 case_.outcome == TestCase::Outcome::kPassed) {
        case_.outcome = TestCase::Outcome::kIgnored;
        if (message) {
          case_.message = std::string(CutUtf8(*message, kMaxTestNameBytes));
        }
      }
    }
    return absl::OkStatus();
  }

  void Text(absl::string_view text, size_t depth) override {
    if (text_target_ != nullptr && depth == text_depth_ + 1) {
      AppendCapped(text, kMaxTestMessageBytes, text_target_);
    }
  }

  void End(size_t depth) override {
    if (text_target_ != nullptr && depth == text_depth_) {
      // Only the layout of child elements (nextest's <system-out> in a
      // <flakyFailure>): the attribute says more.
      if (absl::StripAsciiWhitespace(*text_target_).empty()) {
        *text_target_ =
            std::string(CutUtf8(attribute_message_, kMaxTestMessageBytes));
      }
      text_target_ = nullptr;
      attribute_message_.clear();
    }
    if (in_case_ && depth == case_depth_) {
      in_case_ = false;
      FinishCase();
    }
  }

  TestResults Results() {
    results_.complete = true;
    // Stated totals that cover the cases read win: the cases were capped.
    // A flaky test is among the stated tests, neither failed nor skipped.
    if (declared_ &&
        declared_passed_ >= SaturatingAdd(results_.passed, results_.flaky) &&
        declared_failed_ >= results_.failed &&
        declared_ignored_ >= results_.ignored) {
      results_.passed = declared_passed_ - results_.flaky;
      results_.failed = declared_failed_;
      results_.ignored = declared_ignored_;
    }
    return std::move(results_);
  }

 private:
  void ReadDeclaredTotals(const XmlAttributes& attributes) {
    int64_t values[4];
    const char* names[4] = {"tests", "failures", "errors", "skipped"};
    for (int i = 0; i < 4; ++i) {
      const std::string* value = FindXmlAttribute(attributes, names[i]);
      if (value == nullptr || !absl::SimpleAtoi(*value, &values[i]) ||
          values[i] < 0) {
        return;
      }
    }
    const int64_t tests = values[0];
    if (values[1] > tests || values[2] > tests - values[1] ||
        values[3] > tests - values[1] - values[2]) {
      return;
    }
    declared_ = true;
    declared_failed_ = values[1] + values[2];
    declared_ignored_ = values[3];
    declared_passed_ = tests - declared_failed_ - declared_ignored_;
  }

  // Collects the text of the element opened at `depth` into `*target`; its
  // `message` attribute when it has no text.
  void Collect(std::string* target, const std::string* message, size_t depth) {
    target->clear();
    attribute_message_ = message ? *message : "";
    text_target_ = target;
    text_depth_ = depth;
  }

  void FinishCase() {
    if (failed_) {
      case_.outcome = TestCase::Outcome::kFailed;
    } else if (case_.attempts > 1 &&
               case_.outcome == TestCase::Outcome::kPassed) {
      case_.outcome = TestCase::Outcome::kFlaky;
    }
    results_.reruns = SaturatingAdd(results_.reruns, case_.attempts - 1);
    switch (case_.outcome) {
      case TestCase::Outcome::kPassed:
        results_.passed = SaturatingAdd(results_.passed, 1);
        break;
      case TestCase::Outcome::kFailed:
        results_.failed = SaturatingAdd(results_.failed, 1);
        break;
      case TestCase::Outcome::kIgnored:
        results_.ignored = SaturatingAdd(results_.ignored, 1);
        break;
      case TestCase::Outcome::kFlaky:
        results_.flaky = SaturatingAdd(results_.flaky, 1);
        if (results_.flaky_names.size() < kMaxFailingNames) {
          results_.flaky_names.push_back(case_.name);
        }
        break;
    }
    const bool keep_name = case_.outcome == TestCase::Outcome::kFailed &&
                           results_.failing_names.size() < kMaxFailingNames;
    if (keep_name) results_.failing_names.push_back(case_.name);
    if (results_.cases.size() < kMaxTestCases || keep_name) {
      results_.cases.push_back(std::move(case_));
    }
    case_ = TestCase{};
  }

  TestResults results_;
  std::string suite_;
  bool in_case_ = false;
  size_t case_depth_ = 0;
  TestCase case_;
  bool failed_ = false;  // the case has a <failure> or <error>
  // Where the text of the element being read goes; null: nowhere.
  std::string* text_target_ = nullptr;
  size_t text_depth_ = 0;
  std::string attribute_message_;
  bool declared_ = false;
  int64_t declared_passed_ = 0;
  int64_t declared_failed_ = 0;
  int64_t declared_ignored_ = 0;
};

}  // namespace

absl::StatusOr<TestResults> ParseNextestJunit(absl::string_view xml) {
  JunitBuilder builder;
  absl::Status status = ReadXml(xml, &builder);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("parse nextest JUnit: ", status.message()));
  }
  return builder.Results();
}

// ---------------------------------------------------------------------------
// JUnit writing.

namespace {

// The `message` attribute ToJunitXml writes: the first line of the message.
constexpr size_t kMaxFailureAttributeBytes = 256;

void AppendAttribute(absl::string_view name, absl::string_view value,
                     std::string* out) {
  absl::StrAppend(out, " ", name, "=\"");
  AppendXmlEscaped(value, /*attribute=*/true, out);
  out->push_back('"');
}

// The first non-blank line of a failure message, for <failure message=..>.
absl::string_view Headline(absl::string_view message) {
  message = TrimBlankLines(message);
  message = message.substr(0, std::min(message.find('\n'), message.size()));
  return CutUtf8(message, kMaxFailureAttributeBytes);
}

// <failure>, <rerunFailure> or <flakyFailure>, as Surefire writes them.
void AppendFailure(absl::string_view element, absl::string_view message,
                   std::string* out) {
  absl::StrAppend(out, "      <", element);
  AppendAttribute("message", Headline(message), out);
  out->append(" type=\"test failure\">");
  AppendXmlEscaped(message, /*attribute=*/false, out);
  absl::StrAppend(out, "</", element, ">\n");
}

void AppendTestsuite(const TestResults& results, size_t begin, size_t end,
                     std::string* out) {
  int64_t failures = 0, skipped = 0;
  for (size_t i = begin; i < end; ++i) {
    failures += results.cases[i].outcome == TestCase::Outcome::kFailed;
    skipped += results.cases[i].outcome == TestCase::Outcome::kIgnored;
  }
  out->append("  <testsuite");
  AppendAttribute("name", results.cases[begin].suite, out);
  absl::StrAppend(out, " tests=\"", end - begin, "\" failures=\"", failures,
                  "\" errors=\"0\" skipped=\"", skipped, "\">\n");
  for (size_t i = begin; i < end; ++i) {
    const TestCase& test = results.cases[i];
    out->append("    <testcase");
    AppendAttribute("name", test.name, out);
    AppendAttribute("classname", test.suite, out);
    switch (test.outcome) {
      case TestCase::Outcome::kPassed:
        out->append("/>\n");
        break;
      case TestCase::Outcome::kIgnored:
        out->append("><skipped");
        if (!test.message.empty())
          AppendAttribute("message", test.message, out);
        out->append("/></testcase>\n");
        break;
      case TestCase::Outcome::kFailed:
      case TestCase::Outcome::kFlaky: {
        // Flaky: every failed attempt is a <flakyFailure>. Failed: the
        // first is the <failure>, the reruns are <rerunFailure>s.
        const bool flaky = test.outcome == TestCase::Outcome::kFlaky;
        out->append(">\n");
        AppendFailure(flaky ? "flakyFailure" : "failure", test.message, out);
        for (const std::string& rerun : test.rerun_messages) {
          AppendFailure(flaky ? "flakyFailure" : "rerunFailure", rerun, out);
        }
        out->append("    </testcase>\n");
        break;
      }
    }
  }
  out->append("  </testsuite>\n");
}

}  // namespace

std::string ToJunitXml(const TestResults& results) {
  const int64_t tests = SaturatingAdd(
      SaturatingAdd(SaturatingAdd(results.passed, results.failed),
                    results.ignored),
      results.flaky);
  std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  absl::StrAppend(&out, "<testsuites name=\"cargo-test\" tests=\"", tests,
                  "\" failures=\"", results.failed,
                  "\" errors=\"0\" skipped=\"", results.ignored, "\">\n");
  for (size_t begin = 0; begin < results.cases.size();) {
    size_t end = begin + 1;
    while (end < results.cases.size() &&
           results.cases[end].suite == results.cases[begin].suite) {
      ++end;
    }
    AppendTestsuite(results, begin, end, &out);
    begin = end;
  }
  out.append("</testsuites>\n");
  return out;
}

}  // namespace ciagent
