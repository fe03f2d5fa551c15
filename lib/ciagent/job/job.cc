#include "ciagent/job/job.h"

#include <simdjson.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "ciagent/base/json_writer.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/job/env_rules.h"

namespace ciagent {
namespace {

namespace dom = simdjson::dom;

constexpr size_t kMaxJobIdBytes = 128;
constexpr size_t kMaxBranchBytes = 255;
constexpr size_t kMaxSteps = 16;
constexpr size_t kMaxImageNameBytes = 255;
constexpr size_t kMaxImageTagBytes = 128;
constexpr size_t kMaxEnvEntries = 128;
constexpr size_t kMaxEnvValueBytes = 4096;
// ExtractJobId looks into documents ParseJob rejected, some of them for
// their size; beyond this it does not try.
constexpr size_t kMaxExtractJsonBytes = 1024 * 1024;
// Offending values are quoted in messages up to this many bytes (after JSON
// escaping), so a hostile value cannot flood the dead-letter stream or logs.
constexpr size_t kMaxQuotedBytes = 64;

absl::string_view AbslView(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

absl::Status Invalid(absl::string_view field, absl::string_view rule) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", rule));
}

absl::Status InvalidJson(simdjson::error_code error) {
  return Invalid("job", absl::StrCat("invalid JSON (",
                                     simdjson::error_message(error), ")"));
}

bool IsUtf8Continuation(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

// " (got "value")", with the value JSON-quoted and, when the quoted form
// (escapes included) would exceed kMaxQuotedBytes, cut on a UTF-8 character
// boundary and followed by its full length.
std::string Got(absl::string_view value) {
  size_t cut = std::min(value.size(), kMaxQuotedBytes);
  std::string quoted;
  while (true) {
    while (cut > 0 && cut < value.size() && IsUtf8Continuation(value[cut])) {
      --cut;
    }
    quoted = JsonQuote(value.substr(0, cut));
    if (quoted.size() <= kMaxQuotedBytes + 2 || cut == 0) break;
    --cut;
  }
  if (cut == value.size()) return absl::StrCat(" (got ", quoted, ")");
  return absl::StrCat(" (got ", quoted, "... ", value.size(), " bytes)");
}

// ---------------------------------------------------------------------------
// Character classes and small grammars.

bool IsLowerAlnum(char c) {
  return absl::ascii_islower(static_cast<unsigned char>(c)) ||
         absl::ascii_isdigit(static_cast<unsigned char>(c));
}

bool IsAlnum(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c));
}

bool IsJobIdChar(char c) {
  return IsAlnum(c) || c == '.' || c == '_' || c == '-';
}

bool IsHexDigit(char c) {
  return absl::ascii_isxdigit(static_cast<unsigned char>(c));
}

// [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*, one '/'-separated component of an OCI
// repository name.
bool IsImageNameComponent(absl::string_view component) {
  size_t i = 0;
  while (true) {
    const size_t run_start = i;
    while (i < component.size() && IsLowerAlnum(component[i])) ++i;
    if (i == run_start) return false;
    if (i == component.size()) return true;
    const size_t separator_start = i;
    while (i < component.size() && !IsLowerAlnum(component[i])) ++i;
    const absl::string_view separator =
        component.substr(separator_start, i - separator_start);
    const bool dashes =
        absl::c_all_of(separator, [](char c) { return c == '-'; });
    if (separator != "." && separator != "_" && separator != "__" && !dashes) {
      return false;
    }
  }
}

absl::Status ValidateImageName(absl::string_view name) {
  const bool valid =
      !name.empty() && name.size() <= kMaxImageNameBytes &&
      absl::c_all_of(absl::StrSplit(name, '/'), IsImageNameComponent);
  if (valid) return absl::OkStatus();
  return Invalid("image.name",
                 absl::StrCat("must be at most 255 bytes matching "
                              "[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/"
                              "[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*",
                              Got(name)));
}

absl::Status ValidateImageTag(absl::string_view tag) {
  const bool valid = !tag.empty() && tag.size() <= kMaxImageTagBytes &&
                     (IsAlnum(tag[0]) || tag[0] == '_') &&
                     absl::c_all_of(tag, [](char c) {
                       return IsAlnum(c) || c == '.' || c == '_' || c == '-';
                     });
  if (valid) return absl::OkStatus();
  return Invalid(
      "image.tag",
      absl::StrCat("must match ^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$", Got(tag)));
}

absl::Status ValidateEnvName(absl::string_view name) {
  if (!IsValidEnvName(name)) {
    return Invalid("env", absl::StrCat("names must match ", kEnvNamePattern,
                                       Got(name)));
  }
  if (IsReservedEnvName(name)) {
    return Invalid(absl::StrCat("env.", name), "reserved by the agent");
  }
  return absl::OkStatus();
}

// The first `git check-ref-format --branch` rule (plus "not HEAD") that
// `branch` breaks, or "" when it breaks none.
absl::string_view BrokenBranchRule(absl::string_view branch) {
  if (branch.empty()) return "must not be empty";
  if (branch.size() > kMaxBranchBytes) return "must be at most 255 bytes";
  for (char c : branch) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) return "must not contain control characters";
    if (c == ' ' || c == '~' || c == '^' || c == ':' || c == '?' || c == '*' ||
        c == '[' || c == '\\') {
      return "must not contain space or any of ~^:?*[\\";
    }
  }
  // Parsed strings are always UTF-8; this keeps hand-built Jobs round-tripping.
  if (!simdjson::validate_utf8(branch.data(), branch.size())) {
    return "must be valid UTF-8";
  }
  if (branch == "@" || branch == "HEAD") return "must not be \"@\" or \"HEAD\"";
  if (branch.front() == '-') return "must not start with '-'";
  if (branch.front() == '/' || branch.back() == '/') {
    return "must not start or end with '/'";
  }
  if (branch.back() == '.') return "must not end with '.'";
  if (absl::StrContains(branch, "..")) return "must not contain \"..\"";
  if (absl::StrContains(branch, "@{")) return "must not contain \"@{\"";
  if (absl::StrContains(branch, "//")) return "must not contain \"//\"";
  for (absl::string_view component : absl::StrSplit(branch, '/')) {
    if (component.front() == '.') {
      return "must not have a path component starting with '.'";
    }
    if (absl::EndsWith(component, ".lock")) {
      return "must not have a path component ending with \".lock\"";
    }
  }
  return "";
}

// ---------------------------------------------------------------------------
// Reading the document.

// Per-thread parser and padded input buffer. Once they have grown to the
// largest document seen, parsing allocates nothing; a document larger than
// kRetainedBytes is parsed too, but the next small one starts from fresh
// buffers so that one large document does not pin megabytes per thread.
//
// The DOM API rather than On-Demand: the project builds without -march, so
// On-Demand compiles to simdjson's portable fallback kernel while DOM picks
// AVX2/AVX-512 at run time (about 2.5x faster on a typical job), and DOM
// validates the whole document, unknown fields included, before we look.
class ThreadParser {
 public:
  // The root element stays valid until the next Parse on this thread.
  simdjson::simdjson_result<dom::element> Parse(absl::string_view json) {
    constexpr size_t kRetainedBytes = JobParseOptions{}.max_json_bytes;
    if (json.size() <= kRetainedBytes &&
        capacity_ > kRetainedBytes + simdjson::SIMDJSON_PADDING) {
      parser_ = dom::parser();
      buffer_.reset();
      capacity_ = 0;
    }
    const size_t needed = json.size() + simdjson::SIMDJSON_PADDING;
    if (capacity_ < needed) {
      buffer_ = std::make_unique_for_overwrite<char[]>(needed);
      capacity_ = needed;
    }
    if (!json.empty()) std::memcpy(buffer_.get(), json.data(), json.size());
    std::memset(buffer_.get() + json.size(), 0, simdjson::SIMDJSON_PADDING);
    return parser_.parse(buffer_.get(), json.size(),
                         /*realloc_if_needed=*/false);
  }

 private:
  dom::parser parser_;
  std::unique_ptr<char[]> buffer_;
  size_t capacity_ = 0;
};

simdjson::simdjson_result<dom::element> ParseJson(absl::string_view json) {
  thread_local ThreadParser parser;
  return parser.Parse(json);
}

absl::string_view TypeName(dom::element value) {
  switch (value.type()) {
    case dom::element_type::ARRAY:
      return "array";
    case dom::element_type::OBJECT:
      return "object";
    case dom::element_type::INT64:
    case dom::element_type::UINT64:
    case dom::element_type::DOUBLE:
      return "number";
    case dom::element_type::STRING:
      return "string";
    case dom::element_type::BOOL:
      return "boolean";
    case dom::element_type::NULL_VALUE:
      return "null";
  }
  return "unknown";
}

absl::Status WrongType(absl::string_view field, absl::string_view expected,
                       dom::element value) {
  return Invalid(field, absl::StrCat("must be ", expected, " (got ",
                                     TypeName(value), ")"));
}

absl::StatusOr<absl::string_view> ReadString(dom::element value,
                                             absl::string_view field) {
  std::string_view text;
  if (value.get_string().get(text) != simdjson::SUCCESS) {
    return WrongType(field, "a string", value);
  }
  return AbslView(text);
}

// Reads `field` as a string that must pass `validate`, into `out`.
absl::Status ReadValidatedString(dom::element value, absl::string_view field,
                                 absl::Status (*validate)(absl::string_view),
                                 std::string* out) {
  CIAGENT_ASSIGN_OR_RETURN(absl::string_view text, ReadString(value, field));
  CIAGENT_RETURN_IF_ERROR(validate(text));
  *out = std::string(text);
  return absl::OkStatus();
}

// One member of a JSON object the parser knows: its key, the field name
// used in messages, and how to store it into a T.
template <typename T>
struct MemberRule {
  absl::string_view key;
  absl::string_view field;
  bool required;
  absl::Status (*parse)(dom::element value, const JobParseOptions& options,
                        T* out);
};

// Applies `rules` to the members of `object`: a known key may appear once,
// required ones must appear, unknown ones are ignored.
template <typename T, size_t N>
absl::Status ParseMembers(dom::object object, const MemberRule<T> (&rules)[N],
                          const JobParseOptions& options, T* out) {
  static_assert(N <= 32, "`seen` has one bit per rule");
  uint32_t seen = 0;
  for (const dom::key_value_pair& member : object) {
    const absl::string_view key = AbslView(member.key);
    const auto rule = absl::c_find_if(
        rules, [&](const MemberRule<T>& r) { return r.key == key; });
    if (rule == std::end(rules)) continue;
    const uint32_t bit = uint32_t{1} << (rule - std::begin(rules));
    if (seen & bit) return Invalid(rule->field, "appears more than once");
    seen |= bit;
    CIAGENT_RETURN_IF_ERROR(rule->parse(member.value, options, out));
  }
  for (size_t i = 0; i < N; ++i) {
    if (rules[i].required && !(seen & (uint32_t{1} << i))) {
      return Invalid(rules[i].field, "is required");
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Field parsers, one per member.

absl::Status ParseJobIdField(dom::element value, const JobParseOptions&,
                             Job* job) {
  return ReadValidatedString(value, "job_id", ValidateJobId, &job->job_id);
}

absl::Status ParseRepoField(dom::element value, const JobParseOptions& options,
                            Job* job) {
  CIAGENT_ASSIGN_OR_RETURN(absl::string_view repo, ReadString(value, "repo"));
  CIAGENT_RETURN_IF_ERROR(ValidateRepoUrl(repo, options.allow_file_urls));
  job->repo = std::string(repo);
  return absl::OkStatus();
}

absl::Status ParseBranchField(dom::element value, const JobParseOptions&,
                              Job* job) {
  return ReadValidatedString(value, "branch", ValidateBranchName, &job->branch);
}

absl::Status ParseCommitField(dom::element value, const JobParseOptions&,
                              Job* job) {
  CIAGENT_RETURN_IF_ERROR(
      ReadValidatedString(value, "commit", ValidateCommit, &job->commit));
  absl::AsciiStrToLower(&job->commit);
  return absl::OkStatus();
}

absl::Status ParseTimeoutField(dom::element value, const JobParseOptions&,
                               Job* job) {
  static_assert(kMaxJobTimeoutSeconds == 86400, "update kExpected");
  constexpr absl::string_view kExpected = "an integer in 1..86400";
  const auto out_of_range = [&](const auto& got) {
    return Invalid("timeout_s",
                   absl::StrCat("must be ", kExpected, " (got ", got, ")"));
  };
  int64_t seconds;
  switch (value.type()) {
    case dom::element_type::INT64:
      seconds = value.get_int64().value_unsafe();
      break;
    case dom::element_type::UINT64:
      return out_of_range(value.get_uint64().value_unsafe());
    case dom::element_type::DOUBLE:
      return out_of_range(value.get_double().value_unsafe());
    default:
      return WrongType("timeout_s", kExpected, value);
  }
  if (seconds < 1 || seconds > kMaxJobTimeoutSeconds) {
    return out_of_range(seconds);
  }
  job->timeout = absl::Seconds(seconds);
  return absl::OkStatus();
}

absl::Status ParseTestRetriesField(dom::element value, const JobParseOptions&,
                                   Job* job) {
  static_assert(kMaxTestRetries == 10, "update kExpected");
  constexpr absl::string_view kExpected = "an integer in 0..10";
  if (value.type() != dom::element_type::INT64) {
    return WrongType("test_retries", kExpected, value);
  }
  const int64_t retries = value.get_int64().value_unsafe();
  if (retries < 0 || retries > kMaxTestRetries) {
    return Invalid("test_retries",
                   absl::StrCat("must be ", kExpected, " (got ", retries, ")"));
  }
  job->test_retries = static_cast<int>(retries);
  return absl::OkStatus();
}

absl::Status ParseStepsField(dom::element value, const JobParseOptions&,
                             Job* job) {
  dom::array steps;
  if (value.get_array().get(steps) != simdjson::SUCCESS) {
    return WrongType("steps", "an array of strings", value);
  }
  if (steps.size() > kMaxSteps) {
    return Invalid("steps", absl::StrCat("must have at most ", kMaxSteps,
                                         " entries (got ", steps.size(), ")"));
  }
  job->steps.reserve(steps.size());
  size_t index = 0;
  for (dom::element element : steps) {
    const std::string field = absl::StrCat("steps[", index++, "]");
    CIAGENT_ASSIGN_OR_RETURN(absl::string_view step,
                             ReadString(element, field));
    if (!absl::c_linear_search(kKnownSteps, step)) {
      return Invalid(field,
                     absl::StrCat("must be one of ",
                                  absl::StrJoin(kKnownSteps, ", "), Got(step)));
    }
    if (absl::c_linear_search(job->steps, step)) {
      return Invalid(field, absl::StrCat("repeats ", JsonQuote(step)));
    }
    job->steps.emplace_back(step);
  }
  return absl::OkStatus();
}

absl::Status ParseImageNameField(dom::element value, const JobParseOptions&,
                                 ImageSpec* image) {
  return ReadValidatedString(value, "image.name", ValidateImageName,
                             &image->name);
}

absl::Status ParseImageTagField(dom::element value, const JobParseOptions&,
                                ImageSpec* image) {
  return ReadValidatedString(value, "image.tag", ValidateImageTag, &image->tag);
}

constexpr MemberRule<ImageSpec> kImageRules[] = {
    {"name", "image.name", true, ParseImageNameField},
    {"tag", "image.tag", false, ParseImageTagField},
};

absl::Status ParseImageField(dom::element value, const JobParseOptions& options,
                             Job* job) {
  dom::object object;
  if (value.get_object().get(object) != simdjson::SUCCESS) {
    return WrongType("image", "an object", value);
  }
  ImageSpec image;
  CIAGENT_RETURN_IF_ERROR(ParseMembers(object, kImageRules, options, &image));
  job->image = std::move(image);
  return absl::OkStatus();
}

absl::Status ParseEnvField(dom::element value, const JobParseOptions&,
                           Job* job) {
  dom::object env;
  if (value.get_object().get(env) != simdjson::SUCCESS) {
    return WrongType("env", "an object of strings", value);
  }
  if (env.size() > kMaxEnvEntries) {
    return Invalid("env", absl::StrCat("must have at most ", kMaxEnvEntries,
                                       " entries (got ", env.size(), ")"));
  }
  job->env.reserve(env.size());
  for (const auto& [key, member] : env) {
    const absl::string_view name = AbslView(key);
    CIAGENT_RETURN_IF_ERROR(ValidateEnvName(name));
    const auto field = [&] { return absl::StrCat("env.", name); };
    if (absl::c_any_of(job->env,
                       [&](const auto& e) { return e.first == name; })) {
      return Invalid(field(), "appears more than once");
    }
    std::string_view text;
    if (member.get_string().get(text) != simdjson::SUCCESS) {
      return WrongType(field(), "a string", member);
    }
    if (text.size() > kMaxEnvValueBytes) {
      return Invalid(field(),
                     absl::StrCat("value must be at most ", kMaxEnvValueBytes,
                                  " bytes (got ", text.size(), ")"));
    }
    if (absl::StrContains(AbslView(text), '\0')) {
      return Invalid(field(), "value must not contain NUL");
    }
    job->env.emplace_back(name, AbslView(text));
  }
  return absl::OkStatus();
}

constexpr MemberRule<Job> kJobRules[] = {
    {"job_id", "job_id", true, ParseJobIdField},
    {"repo", "repo", true, ParseRepoField},
    {"branch", "branch", true, ParseBranchField},
    {"commit", "commit", true, ParseCommitField},
    {"timeout_s", "timeout_s", false, ParseTimeoutField},
    {"steps", "steps", false, ParseStepsField},
    {"image", "image", false, ParseImageField},
    {"env", "env", false, ParseEnvField},
    {"test_retries", "test_retries", false, ParseTestRetriesField},
};

// ---------------------------------------------------------------------------
// Writing.

std::string StringArrayJson(const std::vector<std::string>& values) {
  std::string json = "[";
  for (const std::string& value : values) {
    if (json.size() > 1) json.push_back(',');
    AppendJsonString(&json, value);
  }
  json.push_back(']');
  return json;
}

std::string ImageJson(const ImageSpec& image) {
  JsonObjectBuilder builder;
  builder.Add("name", image.name);
  if (!image.tag.empty()) builder.Add("tag", image.tag);
  return std::move(builder).Build();
}

std::string EnvJson(
    const std::vector<std::pair<std::string, std::string>>& env) {
  JsonObjectBuilder builder;
  for (const auto& [name, value] : env) builder.Add(name, value);
  return std::move(builder).Build();
}

}  // namespace

absl::StatusOr<Job> ParseJob(absl::string_view json,
                             const JobParseOptions& options) {
  if (json.size() > options.max_json_bytes) {
    return Invalid(
        "job", absl::StrCat("document is ", json.size(),
                            " bytes; the limit is ", options.max_json_bytes));
  }
  dom::element root;
  if (simdjson::error_code error = ParseJson(json).get(root)) {
    return InvalidJson(error);
  }
  dom::object object;
  if (root.get_object().get(object) != simdjson::SUCCESS) {
    return WrongType("job", "a JSON object", root);
  }
  Job job;
  CIAGENT_RETURN_IF_ERROR(ParseMembers(object, kJobRules, options, &job));
  return job;
}

std::string JobToJson(const Job& job) {
  JsonObjectBuilder builder;
  builder.Add("job_id", job.job_id)
      .Add("repo", job.repo)
      .Add("branch", job.branch)
      .Add("commit", job.commit);
  if (job.timeout.has_value()) {
    builder.Add("timeout_s", absl::ToInt64Seconds(*job.timeout));
  }
  if (!job.steps.empty()) builder.AddRaw("steps", StringArrayJson(job.steps));
  if (job.image.has_value()) builder.AddRaw("image", ImageJson(*job.image));
  if (!job.env.empty()) builder.AddRaw("env", EnvJson(job.env));
  if (job.test_retries.has_value()) {
    builder.Add("test_retries", int64_t{*job.test_retries});
  }
  return std::move(builder).Build();
}

std::optional<std::string> ExtractJobId(absl::string_view json) {
  if (json.size() > kMaxExtractJsonBytes) return std::nullopt;
  dom::element root;
  dom::object object;
  if (ParseJson(json).get(root) != simdjson::SUCCESS ||
      root.get_object().get(object) != simdjson::SUCCESS) {
    return std::nullopt;
  }
  std::optional<std::string> job_id;
  for (const auto& [key, value] : object) {
    if (key != "job_id") continue;
    std::string_view text;
    // A second job_id makes the answer ambiguous: better none than a wrong one.
    if (job_id.has_value() ||
        value.get_string().get(text) != simdjson::SUCCESS ||
        !ValidateJobId(AbslView(text)).ok()) {
      return std::nullopt;
    }
    job_id.emplace(text);
  }
  return job_id;
}

absl::Status ValidateJobId(absl::string_view job_id) {
  if (job_id.empty() || job_id.size() > kMaxJobIdBytes ||
      !absl::c_all_of(job_id, IsJobIdChar)) {
    return Invalid("job_id", absl::StrCat("must match ^[A-Za-z0-9._-]{1,128}$",
                                          Got(job_id)));
  }
  if (job_id == "." || job_id == "..") {
    return Invalid("job_id",
                   absl::StrCat("must not be \".\" or \"..\"", Got(job_id)));
  }
  return absl::OkStatus();
}

absl::Status ValidateBranchName(absl::string_view branch) {
  const absl::string_view broken = BrokenBranchRule(branch);
  if (broken.empty()) return absl::OkStatus();
  return Invalid("branch", absl::StrCat(broken, Got(branch)));
}

absl::Status ValidateCommit(absl::string_view commit) {
  if ((commit.size() == 40 || commit.size() == 64) &&
      absl::c_all_of(commit, IsHexDigit)) {
    return absl::OkStatus();
  }
  return Invalid("commit",
                 absl::StrCat("must be 40 or 64 hex digits", Got(commit)));
}

}  // namespace ciagent
