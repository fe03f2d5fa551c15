#include "ciagent/pipeline/test_results.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "ciagent/base/status_macros.h"

namespace ciagent {
namespace {

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
// Nesting beyond this is not JUnit; refusing it bounds the element stack.
constexpr size_t kMaxXmlDepth = 256;
// The `message` attribute ToJunitXml writes: the first line of the message.
constexpr size_t kMaxFailureAttributeBytes = 256;

int64_t SaturatingAdd(int64_t a, int64_t b) {
  return a > kInt64Max - b ? kInt64Max : a + b;
}

// ---------------------------------------------------------------------------
// UTF-8.

// Decodes the character at the start of `s` (non-empty): its code point and
// length, or nullopt for an invalid sequence (overlong, surrogate, > 10FFFF).
struct Decoded {
  uint32_t code_point;
  size_t length;
};
std::optional<Decoded> DecodeUtf8(absl::string_view s) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char b0 = byte(0);
  if (b0 < 0x80) return Decoded{b0, 1};
  size_t length;
  uint32_t cp;
  uint32_t min;
  if ((b0 & 0xE0) == 0xC0) {
    length = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    length = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    length = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return std::nullopt;
  }
  if (s.size() < length) return std::nullopt;
  for (size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xC0) != 0x80) return std::nullopt;
    cp = (cp << 6) | (byte(i) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    return std::nullopt;
  }
  return Decoded{cp, length};
}

// XML 1.0's Char production.
bool IsXmlChar(uint32_t cp) {
  return cp == 0x9 || cp == 0xA || cp == 0xD || (cp >= 0x20 && cp <= 0xD7FF) ||
         (cp >= 0xE000 && cp <= 0xFFFD) || (cp >= 0x10000 && cp <= 0x10FFFF);
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// The longest prefix of `s` of at most `max` bytes that does not split a
// UTF-8 sequence (judged by continuation bytes only, so any bytes work).
absl::string_view CutUtf8(absl::string_view s, size_t max) {
  if (s.size() <= max) return s;
  size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return s.substr(0, cut);
}

// Appends `s` to `*out` without letting `*out` grow beyond `max` bytes.
void AppendCapped(absl::string_view s, size_t max, std::string* out) {
  if (out->size() >= max) return;
  absl::StrAppend(out, CutUtf8(s, max - out->size()));
}

// ---------------------------------------------------------------------------
// libtest lines.

absl::string_view StripLineEnd(absl::string_view line) {
  absl::ConsumeSuffix(&line, "\n");
  absl::ConsumeSuffix(&line, "\r");
  return line;
}

// "Running unittests src/lib.rs (target/debug/deps/app-1a2b3c)" ->
// "unittests src/lib.rs (app)"; older cargo: "Running target/debug/deps/
// app-1a2b3c" -> "app".
std::string SuiteOfRunningLine(absl::string_view rest) {
  absl::string_view target;
  absl::string_view binary = rest;
  if (absl::EndsWith(rest, ")")) {
    const size_t open = rest.rfind(" (");
    if (open != absl::string_view::npos) {
      target = rest.substr(0, open);
      binary = rest.substr(open + 2, rest.size() - open - 3);
    }
  }
  const size_t slash = binary.find_last_of("/\\");
  if (slash != absl::string_view::npos) binary.remove_prefix(slash + 1);
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

// Drops leading and trailing blank lines.
absl::string_view TrimBlankLines(absl::string_view text) {
  while (!text.empty() && text.front() == '\n') text.remove_prefix(1);
  while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  return text;
}

}  // namespace

void LibtestParser::FoldOpenBinary() {
  if (binary_open_) {
    results_.passed = SaturatingAdd(results_.passed, binary_passed_);
    results_.failed = SaturatingAdd(results_.failed, binary_failed_);
    results_.ignored = SaturatingAdd(results_.ignored, binary_ignored_);
  }
  binary_open_ = false;
  binary_passed_ = binary_failed_ = binary_ignored_ = 0;
}

void LibtestParser::StartBinary(std::string suite) {
  if (in_failure_block_) EndFailureBlock();
  FoldOpenBinary();
  failed_cases_.clear();
  suite_ = std::move(suite);
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
  if (absl::ConsumePrefix(&rest, "Running ")) {
    StartBinary(
        std::string(CutUtf8(SuiteOfRunningLine(rest), kMaxTestNameBytes)));
  } else if (absl::StartsWith(status, "Doc-tests ")) {
    StartBinary(std::string(CutUtf8(status, kMaxTestNameBytes)));
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
    results.passed = SaturatingAdd(results.passed, binary_passed_);
    results.failed = SaturatingAdd(results.failed, binary_failed_);
    results.ignored = SaturatingAdd(results.ignored, binary_ignored_);
  }
  return results;
}

// ---------------------------------------------------------------------------
// JUnit reading.

namespace {

using Attributes = std::vector<std::pair<std::string, std::string>>;

const std::string* FindAttribute(const Attributes& attributes,
                                 absl::string_view name) {
  for (const auto& [key, value] : attributes) {
    if (key == name) return &value;
  }
  return nullptr;
}

// Interprets the element events of a JUnit document.
class JunitBuilder {
 public:
  absl::Status Start(absl::string_view name, const Attributes& attributes,
                     size_t depth) {
    if (depth == 0) {
      if (name != "testsuites" && name != "testsuite") {
        return absl::InvalidArgumentError(
            absl::StrCat("root element is <", CutUtf8(name, 64),
                         ">, expected <testsuites> or <testsuite>"));
      }
      if (name == "testsuites") ReadDeclaredTotals(attributes);
    }
    if (name == "testsuite" && !in_case_) {
      const std::string* suite = FindAttribute(attributes, "name");
      suite_ = suite ? std::string(CutUtf8(*suite, kMaxTestNameBytes)) : "";
      return absl::OkStatus();
    }
    if (name == "testcase" && !in_case_) {
      const std::string* case_name = FindAttribute(attributes, "name");
      if (case_name == nullptr || case_name->empty()) {
        return absl::InvalidArgumentError("<testcase> without a name");
      }
      in_case_ = true;
      case_depth_ = depth;
      case_ = TestCase{};
      case_.name = std::string(CutUtf8(*case_name, kMaxTestNameBytes));
      case_.suite = suite_;
      if (case_.suite.empty()) {
        if (const std::string* c = FindAttribute(attributes, "classname")) {
          case_.suite = std::string(CutUtf8(*c, kMaxTestNameBytes));
        }
      }
      return absl::OkStatus();
    }
    if (in_case_ && depth == case_depth_ + 1) {
      const std::string* message = FindAttribute(attributes, "message");
      if (name == "failure" || name == "error") {
        if (case_.outcome != TestCase::Outcome::kFailed) {
          case_.outcome = TestCase::Outcome::kFailed;
          case_.message.clear();
          attribute_message_ = message ? *message : "";
          collecting_text_ = true;
          text_depth_ = depth;
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

  void Text(absl::string_view text, size_t depth) {
    if (collecting_text_ && depth == text_depth_ + 1) {
      AppendCapped(text, kMaxTestMessageBytes, &case_.message);
    }
  }

  void End(size_t depth) {
    if (collecting_text_ && depth == text_depth_) {
      collecting_text_ = false;
      if (TrimBlankLines(case_.message).empty()) {
        case_.message =
            std::string(CutUtf8(attribute_message_, kMaxTestMessageBytes));
      }
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
    if (declared_ && declared_passed_ >= results_.passed &&
        declared_failed_ >= results_.failed &&
        declared_ignored_ >= results_.ignored) {
      results_.passed = declared_passed_;
      results_.failed = declared_failed_;
      results_.ignored = declared_ignored_;
    }
    return std::move(results_);
  }

 private:
  void ReadDeclaredTotals(const Attributes& attributes) {
    int64_t values[4];
    const char* names[4] = {"tests", "failures", "errors", "skipped"};
    for (int i = 0; i < 4; ++i) {
      const std::string* value = FindAttribute(attributes, names[i]);
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

  void FinishCase() {
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
  bool collecting_text_ = false;
  size_t text_depth_ = 0;
  std::string attribute_message_;
  bool declared_ = false;
  int64_t declared_passed_ = 0;
  int64_t declared_failed_ = 0;
  int64_t declared_ignored_ = 0;
};

// A small XML 1.0 reader for what JUnit writers produce: elements,
// attributes, text, the predefined and numeric character references,
// CDATA, comments and processing instructions (the XML declaration among
// them). No DOCTYPE, hence no other entities. Input must be UTF-8.
class XmlReader {
 public:
  XmlReader(absl::string_view input, JunitBuilder* builder)
      : input_(input), builder_(builder) {}

  absl::Status Read() {
    absl::ConsumePrefix(&input_, "\xEF\xBB\xBF");
    absl::Status status = ReadDocument();
    if (!status.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("parse nextest JUnit: ", status.message(), " at line ",
                       LineOf(pos_)));
    }
    return status;
  }

 private:
  absl::Status ReadDocument() {
    CIAGENT_RETURN_IF_ERROR(ReadMisc());
    if (AtEnd() || Peek() != '<') return Error("expected the root element");
    CIAGENT_RETURN_IF_ERROR(ReadElements());
    CIAGENT_RETURN_IF_ERROR(ReadMisc());
    if (!AtEnd()) return Error("content after the root element");
    return absl::OkStatus();
  }

  // Whitespace, comments and processing instructions, outside the root.
  absl::Status ReadMisc() {
    while (true) {
      while (!AtEnd() && IsSpace(Peek())) ++pos_;
      if (LookingAt("<?")) {
        CIAGENT_RETURN_IF_ERROR(
            SkipPast("?>", "unterminated processing instruction"));
      } else if (LookingAt("<!--")) {
        CIAGENT_RETURN_IF_ERROR(SkipPast("-->", "unterminated comment"));
      } else if (LookingAt("<!DOCTYPE")) {
        return Error("DOCTYPE is not supported");
      } else {
        return absl::OkStatus();
      }
    }
  }

  // The root element and everything inside it, without recursion.
  absl::Status ReadElements() {
    if (LookingAt("</") || LookingAt("<!")) {
      return Error("expected the root element");
    }
    std::vector<std::string> open;
    do {
      if (AtEnd()) {
        return Error(absl::StrCat("unexpected end inside <",
                                  CutUtf8(open.back(), 64), ">"));
      }
      if (Peek() != '<') {
        std::string text;
        CIAGENT_RETURN_IF_ERROR(ReadText(&text));
        builder_->Text(text, open.size());
      } else if (LookingAt("</")) {
        pos_ += 2;
        absl::string_view name;
        CIAGENT_RETURN_IF_ERROR(ReadName(&name));
        SkipSpace();
        if (!Consume('>')) return Error("expected '>' in end tag");
        if (name != open.back()) {
          return Error(absl::StrCat("end tag </", CutUtf8(name, 64),
                                    "> does not match <",
                                    CutUtf8(open.back(), 64), ">"));
        }
        open.pop_back();
        builder_->End(open.size());
      } else if (LookingAt("<!--")) {
        CIAGENT_RETURN_IF_ERROR(SkipPast("-->", "unterminated comment"));
      } else if (LookingAt("<![CDATA[")) {
        pos_ += 9;
        const size_t end = input_.find("]]>", pos_);
        if (end == absl::string_view::npos) return Error("unterminated CDATA");
        const absl::string_view text = input_.substr(pos_, end - pos_);
        CIAGENT_RETURN_IF_ERROR(CheckChars(text));
        pos_ = end + 3;
        builder_->Text(NormalizeLineEnds(text), open.size());
      } else if (LookingAt("<?")) {
        CIAGENT_RETURN_IF_ERROR(
            SkipPast("?>", "unterminated processing instruction"));
      } else if (LookingAt("<!")) {
        return Error("unsupported markup declaration");
      } else {
        if (open.size() >= kMaxXmlDepth) {
          return Error(
              absl::StrCat("elements nested deeper than ", kMaxXmlDepth));
        }
        ++pos_;
        absl::string_view name;
        CIAGENT_RETURN_IF_ERROR(ReadName(&name));
        Attributes attributes;
        bool empty = false;
        CIAGENT_RETURN_IF_ERROR(ReadAttributes(&attributes, &empty));
        CIAGENT_RETURN_IF_ERROR(builder_->Start(name, attributes, open.size()));
        if (empty) {
          builder_->End(open.size());
        } else {
          open.emplace_back(name);
        }
      }
    } while (!open.empty());
    return absl::OkStatus();
  }

  absl::Status ReadAttributes(Attributes* attributes, bool* empty) {
    while (true) {
      const bool spaced = SkipSpace();
      if (Consume('>')) return absl::OkStatus();
      if (LookingAt("/>")) {
        pos_ += 2;
        *empty = true;
        return absl::OkStatus();
      }
      if (AtEnd()) return Error("unterminated start tag");
      if (!spaced) return Error("expected whitespace between attributes");
      absl::string_view name;
      CIAGENT_RETURN_IF_ERROR(ReadName(&name));
      SkipSpace();
      if (!Consume('=')) return Error("expected '=' after attribute name");
      SkipSpace();
      if (AtEnd() || (Peek() != '"' && Peek() != '\'')) {
        return Error("expected a quoted attribute value");
      }
      const char quote = input_[pos_++];
      const size_t end = input_.find(quote, pos_);
      if (end == absl::string_view::npos) {
        return Error("unterminated attribute value");
      }
      const absl::string_view raw = input_.substr(pos_, end - pos_);
      if (raw.find('<') != absl::string_view::npos) {
        return Error("'<' in attribute value");
      }
      std::string value;
      CIAGENT_RETURN_IF_ERROR(Unescape(raw, /*attribute=*/true, &value));
      pos_ = end + 1;
      if (FindAttribute(*attributes, name) != nullptr) {
        return Error(absl::StrCat("duplicate attribute ", CutUtf8(name, 64)));
      }
      attributes->emplace_back(std::string(name), std::move(value));
    }
  }

  absl::Status ReadText(std::string* text) {
    const size_t end = std::min(input_.find('<', pos_), input_.size());
    const absl::string_view raw = input_.substr(pos_, end - pos_);
    CIAGENT_RETURN_IF_ERROR(Unescape(raw, /*attribute=*/false, text));
    pos_ = end;
    return absl::OkStatus();
  }

  // Resolves references in `raw` (text or an attribute value, starting at
  // pos_) and checks its characters. Attribute values get their literal
  // whitespace normalized to spaces, text its line ends to "\n".
  absl::Status Unescape(absl::string_view raw, bool attribute,
                        std::string* out) {
    CIAGENT_RETURN_IF_ERROR(CheckChars(raw));
    out->reserve(raw.size());
    for (size_t i = 0; i < raw.size();) {
      const char c = raw[i];
      if (c == '&') {
        const size_t semicolon = raw.find(';', i);
        if (semicolon == absl::string_view::npos || semicolon - i > 12) {
          return ErrorAt(pos_ + i, "'&' not starting a character reference");
        }
        const absl::string_view ref = raw.substr(i + 1, semicolon - i - 1);
        if (!AppendReference(ref, out)) {
          return ErrorAt(pos_ + i,
                         absl::StrCat("unknown reference &", ref, ";"));
        }
        i = semicolon + 1;
      } else if (c == '\r') {
        out->push_back(attribute ? ' ' : '\n');
        i += (i + 1 < raw.size() && raw[i + 1] == '\n') ? 2 : 1;
      } else if (attribute && (c == '\n' || c == '\t')) {
        out->push_back(' ');
        ++i;
      } else {
        out->push_back(c);
        ++i;
      }
    }
    return absl::OkStatus();
  }

  static bool AppendReference(absl::string_view ref, std::string* out) {
    if (ref == "lt") return out->push_back('<'), true;
    if (ref == "gt") return out->push_back('>'), true;
    if (ref == "amp") return out->push_back('&'), true;
    if (ref == "quot") return out->push_back('"'), true;
    if (ref == "apos") return out->push_back('\''), true;
    if (!absl::ConsumePrefix(&ref, "#") || ref.empty()) return false;
    int base = 10;
    if (absl::ConsumePrefix(&ref, "x")) base = 16;
    if (ref.empty()) return false;
    uint32_t cp = 0;
    for (const char c : ref) {
      const int digit =
          absl::ascii_isdigit(static_cast<unsigned char>(c)) ? c - '0'
          : base == 16 && absl::ascii_isxdigit(static_cast<unsigned char>(c))
              ? absl::ascii_tolower(static_cast<unsigned char>(c)) - 'a' + 10
              : -1;
      if (digit < 0) return false;
      cp = cp * base + digit;
      if (cp > 0x10FFFF) return false;
    }
    if (!IsXmlChar(cp)) return false;
    AppendUtf8(cp, out);
    return true;
  }

  // `text` (starting at pos_) is UTF-8 made of XML characters.
  absl::Status CheckChars(absl::string_view text) {
    for (size_t i = 0; i < text.size();) {
      if (static_cast<unsigned char>(text[i]) >= 0x20) {
        if (static_cast<unsigned char>(text[i]) < 0x80) {
          ++i;
          continue;
        }
        const std::optional<Decoded> d = DecodeUtf8(text.substr(i));
        if (!d) return ErrorAt(pos_ + i, "invalid UTF-8");
        if (!IsXmlChar(d->code_point)) {
          return ErrorAt(pos_ + i, "character not allowed in XML");
        }
        i += d->length;
      } else if (text[i] == '\t' || text[i] == '\n' || text[i] == '\r') {
        ++i;
      } else {
        return ErrorAt(pos_ + i, "control character not allowed in XML");
      }
    }
    return absl::OkStatus();
  }

  static std::string NormalizeLineEnds(absl::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '\r') {
        out.push_back('\n');
        if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
      } else {
        out.push_back(text[i]);
      }
    }
    return out;
  }

  // An XML Name, ASCII-strict; other characters must be valid UTF-8.
  absl::Status ReadName(absl::string_view* name) {
    const size_t start = pos_;
    while (!AtEnd()) {
      const unsigned char c = static_cast<unsigned char>(Peek());
      const bool name_start = absl::ascii_isalpha(c) || c == '_' || c == ':';
      const bool name_char =
          name_start || absl::ascii_isdigit(c) || c == '-' || c == '.';
      if (c >= 0x80) {
        const std::optional<Decoded> d = DecodeUtf8(input_.substr(pos_));
        if (!d || !IsXmlChar(d->code_point)) return Error("invalid UTF-8");
        pos_ += d->length;
      } else if (pos_ == start ? name_start : name_char) {
        ++pos_;
      } else {
        break;
      }
    }
    if (pos_ == start) return Error("expected a name");
    *name = input_.substr(start, pos_ - start);
    return absl::OkStatus();
  }

  absl::Status SkipPast(absl::string_view end, absl::string_view what) {
    const size_t found = input_.find(end, pos_);
    if (found == absl::string_view::npos) return Error(what);
    CIAGENT_RETURN_IF_ERROR(CheckChars(input_.substr(pos_, found - pos_)));
    pos_ = found + end.size();
    return absl::OkStatus();
  }

  static bool IsSpace(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
  }
  bool SkipSpace() {
    const size_t start = pos_;
    while (!AtEnd() && IsSpace(Peek())) ++pos_;
    return pos_ != start;
  }
  bool AtEnd() const { return pos_ >= input_.size(); }
  char Peek() const { return input_[pos_]; }
  bool LookingAt(absl::string_view s) const {
    return absl::StartsWith(input_.substr(std::min(pos_, input_.size())), s);
  }
  bool Consume(char c) {
    if (AtEnd() || Peek() != c) return false;
    ++pos_;
    return true;
  }

  absl::Status Error(absl::string_view problem) {
    return absl::InvalidArgumentError(problem);
  }
  absl::Status ErrorAt(size_t pos, absl::string_view problem) {
    pos_ = pos;
    return Error(problem);
  }
  size_t LineOf(size_t pos) const {
    const absl::string_view before =
        input_.substr(0, std::min(pos, input_.size()));
    return 1 +
           static_cast<size_t>(std::count(before.begin(), before.end(), '\n'));
  }

  absl::string_view input_;
  size_t pos_ = 0;
  JunitBuilder* builder_;
};

}  // namespace

absl::StatusOr<TestResults> ParseNextestJunit(absl::string_view xml) {
  JunitBuilder builder;
  XmlReader reader(xml, &builder);
  absl::Status status = reader.Read();
  if (!status.ok()) return status;
  return builder.Results();
}

// ---------------------------------------------------------------------------
// JUnit writing.

namespace {

// Escapes `s` for text (attribute = false) or a double-quoted attribute
// value, replacing what XML cannot carry with U+FFFD.
void AppendEscaped(absl::string_view s, bool attribute, std::string* out) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const std::optional<Decoded> d = DecodeUtf8(s.substr(i));
      if (d && IsXmlChar(d->code_point)) {
        absl::StrAppend(out, s.substr(i, d->length));
        i += d->length;
      } else {
        out->append("\xEF\xBF\xBD");
        ++i;
      }
      continue;
    }
    ++i;
    switch (c) {
      case '&':
        out->append("&amp;");
        break;
      case '<':
        out->append("&lt;");
        break;
      case '>':
        out->append("&gt;");
        break;
      case '\r':
        out->append("&#13;");
        break;
      case '"':
        out->append(attribute ? "&quot;" : "\"");
        break;
      case '\'':
        out->append(attribute ? "&apos;" : "'");
        break;
      case '\n':
        out->append(attribute ? "&#10;" : "\n");
        break;
      case '\t':
        out->append(attribute ? "&#9;" : "\t");
        break;
      default:
        if (c < 0x20) {
          out->append("\xEF\xBF\xBD");
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
}

void AppendAttribute(absl::string_view name, absl::string_view value,
                     std::string* out) {
  absl::StrAppend(out, " ", name, "=\"");
  AppendEscaped(value, /*attribute=*/true, out);
  out->push_back('"');
}

// The first non-blank line of a failure message, for <failure message=..>.
absl::string_view Headline(absl::string_view message) {
  message = TrimBlankLines(message);
  message = message.substr(0, std::min(message.find('\n'), message.size()));
  return CutUtf8(message, kMaxFailureAttributeBytes);
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
        out->append(">\n      <failure");
        AppendAttribute("message", Headline(test.message), out);
        out->append(" type=\"test failure\">");
        AppendEscaped(test.message, /*attribute=*/false, out);
        out->append("</failure>\n    </testcase>\n");
        break;
    }
  }
  out->append("  </testsuite>\n");
}

}  // namespace

std::string ToJunitXml(const TestResults& results) {
  const int64_t tests = SaturatingAdd(
      SaturatingAdd(results.passed, results.failed), results.ignored);
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
