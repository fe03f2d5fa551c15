#include "ciagent/pipeline/pipeline_config.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <toml++/toml.h>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/types/span.h"
#include "ciagent/base/json_writer.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/job/env_rules.h"
#include "ciagent/oci/reference.h"

namespace ciagent {
namespace {

constexpr absl::string_view kCargoSteps[] = {"check", "build", "test",
                                             "clippy", "audit"};
constexpr absl::string_view kTopKeys[] = {
    "steps",   "features", "all-features", "no-default-features",
    "packages", "exclude", "env",          "timeout",
    "check",   "build",    "test",         "clippy",
    "audit",   "image"};
constexpr absl::string_view kStepKeys[] = {"args", "allow-failure", "timeout"};
constexpr absl::string_view kTestKeys[] = {
    "args", "allow-failure", "timeout", "runner", "retries", "flaky",
    "quarantine"};
constexpr absl::string_view kImageKeys[] = {
    "dockerfile", "context",  "name",    "build-args", "base",
    "binaries",   "path",     "entrypoint", "cmd",     "env",
    "workdir",    "user",     "ports",   "labels"};
// Keys that mean something only with `base` (assembly).
constexpr absl::string_view kAssemblyKeys[] = {
    "binaries", "path", "entrypoint", "cmd", "env",
    "workdir",  "user", "ports",      "labels"};

constexpr size_t kMaxListItems = 64;
constexpr size_t kMaxStringBytes = 1024;
constexpr size_t kMaxEnvEntries = 128;
constexpr size_t kMaxEnvValueBytes = 4096;
// Offending values are quoted up to this many bytes, so a hostile value
// cannot flood the job's log or status.
constexpr size_t kMaxQuotedBytes = 64;

// A cargo argument the agent controls, and why.
struct RefusedArg {
  absl::string_view flag;
  absl::string_view why;
  // Refused only for these steps; empty: every step.
  std::vector<absl::string_view> steps;
};

const RefusedArg kRefusedArgs[] = {
    {"--target-dir", "the agent chooses the target directory (build cache)"},
    {"--manifest-path", "the agent builds the checkout's root Cargo.toml"},
    {"--config", "cargo configuration is the operator's (CI_CARGO_CONFIG)"},
    {"-Z", "unstable cargo flags can change where and how the agent builds"},
    {"--message-format", "the agent reads cargo's JSON messages of this step",
     {"build", "clippy"}},
    {"--color", "the agent reads and stores the output uncoloured"},
    {"--offline", "network and lock-file use is the agent's (--locked)"},
    {"--frozen", "network and lock-file use is the agent's (--locked)"},
    {"--locked", "the agent passes --locked when Cargo.lock exists"},
};
// After `--` (arguments of the test harness or of clippy-driver): what
// would change output the agent parses.
const RefusedArg kRefusedHarnessArgs[] = {
    {"--color", "the agent reads and stores the output uncoloured"},
    {"--format", "the agent parses the test harness's default output"},
    {"-Z", "unstable harness flags change the output the agent parses"},
};

// toml++ speaks std::string_view; absl's is a distinct type here.
std::string_view StdView(absl::string_view s) { return {s.data(), s.size()}; }
absl::string_view AbslView(std::string_view s) { return {s.data(), s.size()}; }

std::string Quoted(absl::string_view value) {
  std::string shown(value.substr(0, kMaxQuotedBytes));
  std::string out = JsonQuote(shown);
  if (value.size() > kMaxQuotedBytes) {
    out.insert(out.size() - 1, "...");
  }
  return out;
}

// A key as it appears in a path: bare when TOML allows, else quoted.
std::string KeyText(absl::string_view key) {
  const bool bare = !key.empty() && absl::c_all_of(key, [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' ||
           c == '-';
  });
  return bare && key.size() <= kMaxQuotedBytes ? std::string(key)
                                               : Quoted(key);
}

std::string Join(absl::string_view path, absl::string_view key) {
  return absl::StrCat(path, ".", KeyText(key));
}

std::string Got(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string:
      return Quoted(node.as_string()->get());
    case toml::node_type::integer:
      return absl::StrCat(node.as_integer()->get());
    case toml::node_type::floating_point:
      return absl::StrCat(node.as_floating_point()->get());
    case toml::node_type::boolean:
      return node.as_boolean()->get() ? "true" : "false";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    default:
      return "a date or time";
  }
}

absl::Status Invalid(absl::string_view path, absl::string_view rule) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", rule));
}

absl::Status WrongType(absl::string_view path, absl::string_view expected,
                       const toml::node& node) {
  return Invalid(path, absl::StrCat("expected ", expected, ", got ", Got(node)));
}

size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      const bool same = absl::ascii_tolower(static_cast<unsigned char>(a[i - 1])) ==
                            absl::ascii_tolower(static_cast<unsigned char>(b[j - 1])) ||
                        (a[i - 1] == '_' && b[j - 1] == '-');
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (same ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The known key `key` was probably meant as, or "".
absl::string_view Suggestion(absl::string_view key,
                             absl::Span<const absl::string_view> known) {
  absl::string_view best;
  size_t best_distance = std::max<size_t>(2, key.size() / 3) + 1;
  for (absl::string_view candidate : known) {
    const size_t distance = EditDistance(key, candidate);
    if (distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

// Reads one table of the configuration, collecting warnings.
class ConfigReader {
 public:
  ConfigReader(const PipelineConfigOptions& options, PipelineConfig* config)
      : options_(options), config_(config) {}

  absl::Status ReadTop(const toml::table& table, const std::string& path);

 private:
  void WarnUnknown(const toml::table& table, const std::string& path,
                   absl::Span<const absl::string_view> known);
  absl::Status ReadStep(const toml::node& node, const std::string& path,
                        absl::string_view step, StepConfig* out);
  absl::Status ReadImage(const toml::node& node, const std::string& path);
  // The assembly keys of the image table (base, binaries, path, ...).
  absl::Status ReadAssembly(const toml::table& table, const std::string& path);
  // test.retries, test.flaky, test.quarantine.
  absl::Status ReadTestPolicy(const toml::table& table,
                              const std::string& path);
  absl::Status ReadArgs(const toml::node& node, const std::string& path,
                        absl::string_view step, std::vector<std::string>* out);
  absl::Status ReadTimeout(const toml::node& node, const std::string& path,
                           std::optional<absl::Duration>* out);
  absl::Status ReadEnv(const toml::node& node, const std::string& path,
                       std::vector<std::pair<std::string, std::string>>* out,
                       bool reserved_names);

  const PipelineConfigOptions& options_;
  PipelineConfig* config_;
};

absl::StatusOr<std::string> ReadString(const toml::node& node,
                                       const std::string& path,
                                       size_t max_bytes = kMaxStringBytes) {
  if (!node.is_string()) return WrongType(path, "a string", node);
  const std::string& value = node.as_string()->get();
  if (value.size() > max_bytes) {
    return Invalid(path, absl::StrCat("longer than ", max_bytes, " bytes"));
  }
  if (absl::StrContains(value, absl::string_view("\0", 1))) {
    return Invalid(path, "must not contain NUL");
  }
  return value;
}

absl::StatusOr<bool> ReadBool(const toml::node& node, const std::string& path) {
  if (!node.is_boolean()) return WrongType(path, "a boolean", node);
  return node.as_boolean()->get();
}

// An array of strings, each passing `rule` (which returns "" or the rule
// broken).
template <typename Rule>
absl::StatusOr<std::vector<std::string>> ReadStrings(const toml::node& node,
                                                     const std::string& path,
                                                     Rule rule) {
  if (!node.is_array()) return WrongType(path, "an array of strings", node);
  const toml::array& array = *node.as_array();
  if (array.size() > kMaxListItems) {
    return Invalid(path, absl::StrCat("more than ", kMaxListItems, " items"));
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < array.size(); ++i) {
    const std::string item_path = absl::StrCat(path, "[", i, "]");
    CIAGENT_ASSIGN_OR_RETURN(std::string value, ReadString(array[i], item_path));
    if (std::string broken = rule(value); !broken.empty()) {
      return Invalid(item_path, absl::StrCat(Quoted(value), " ", broken));
    }
    out.push_back(std::move(value));
  }
  return out;
}

// Feature and package names go to cargo as separate arguments: a leading
// '-' would make them flags.
// `extra`: the characters allowed besides letters, digits, '_' and '-'.
std::string NameRule(absl::string_view value, absl::string_view extra) {
  if (value.empty()) return "is empty";
  if (value[0] == '-') return "must not start with '-'";
  const bool valid = absl::c_all_of(value, [extra](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' ||
           c == '-' || absl::StrContains(extra, c);
  });
  if (valid) return "";
  std::string rule = "may hold only letters, digits, '_', '-'";
  for (char c : extra) absl::StrAppend(&rule, ", '", std::string(1, c), "'");
  return rule;
}

// A table's entries in the file's order (toml++ keeps them sorted by key).
std::vector<std::pair<absl::string_view, const toml::node*>> InFileOrder(
    const toml::table& table) {
  std::vector<std::pair<absl::string_view, const toml::node*>> entries;
  for (const auto& [key, node] : table) {
    entries.emplace_back(AbslView(key.str()), &node);
  }
  const auto position = [](const toml::node* node) {
    return std::pair(node->source().begin.line, node->source().begin.column);
  };
  std::stable_sort(entries.begin(), entries.end(),
                   [&position](const auto& a, const auto& b) {
                     return position(a.second) < position(b.second);
                   });
  return entries;
}

// A path relative to the checkout that stays inside it (lexically; the
// resolved path is checked when the checkout is there).
std::string InsideRule(absl::string_view value) {
  if (value.empty()) return "is empty";
  if (value[0] == '/') return "must be relative to the checkout";
  for (absl::string_view part : absl::StrSplit(value, '/')) {
    if (part == "..") return "must not contain '..'";
  }
  return "";
}

// `path` without "." components and repeated or trailing slashes.
std::string Normalized(absl::string_view path) {
  std::vector<absl::string_view> parts;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (!part.empty() && part != ".") parts.push_back(part);
  }
  return parts.empty() ? "." : absl::StrJoin(parts, "/");
}

absl::Status ConfigReader::ReadTop(const toml::table& table,
                                   const std::string& path) {
  WarnUnknown(table, path, kTopKeys);
  PipelineConfig& c = *config_;
  if (const toml::node* node = table.get("steps")) {
    std::vector<std::string> seen;
    CIAGENT_ASSIGN_OR_RETURN(
        c.steps, ReadStrings(*node, path + ".steps", [&seen](absl::string_view s) {
          if (!absl::c_linear_search(kKnownSteps, s)) {
            return absl::StrCat("is not a step (known: ",
                                absl::StrJoin(kKnownSteps, ", "), ")");
          }
          if (absl::c_linear_search(seen, s)) return std::string("is listed twice");
          seen.emplace_back(s);
          return std::string();
        }));
    if (c.steps.empty()) {
      return Invalid(path + ".steps",
                     "must name at least one step (leave it out for all)");
    }
  }
  if (const toml::node* node = table.get("features")) {
    CIAGENT_ASSIGN_OR_RETURN(
        c.features, ReadStrings(*node, path + ".features",
                                [](absl::string_view s) {
                                  return NameRule(s, "/+.");
                                }));
  }
  if (const toml::node* node = table.get("all-features")) {
    CIAGENT_ASSIGN_OR_RETURN(c.all_features,
                             ReadBool(*node, path + ".all-features"));
  }
  if (const toml::node* node = table.get("no-default-features")) {
    CIAGENT_ASSIGN_OR_RETURN(c.no_default_features,
                             ReadBool(*node, path + ".no-default-features"));
  }
  if (c.all_features && !c.features.empty()) {
    return Invalid(path + ".features",
                   "give features or all-features = true, not both");
  }
  const auto package_rule = [](absl::string_view s) {
    return NameRule(s, "@.+*?");
  };
  if (const toml::node* node = table.get("packages")) {
    CIAGENT_ASSIGN_OR_RETURN(c.packages,
                             ReadStrings(*node, path + ".packages", package_rule));
  }
  if (const toml::node* node = table.get("exclude")) {
    CIAGENT_ASSIGN_OR_RETURN(c.exclude,
                             ReadStrings(*node, path + ".exclude", package_rule));
  }
  if (!c.packages.empty() && !c.exclude.empty()) {
    return Invalid(path + ".exclude",
                   "applies to the whole workspace: give packages or "
                   "exclude, not both");
  }
  if (const toml::node* node = table.get("env")) {
    CIAGENT_RETURN_IF_ERROR(ReadEnv(*node, path + ".env", &c.env,
                                    /*reserved_names=*/true));
  }
  if (const toml::node* node = table.get("timeout")) {
    CIAGENT_RETURN_IF_ERROR(ReadTimeout(*node, path + ".timeout", &c.timeout));
  }
  for (absl::string_view step : kCargoSteps) {
    if (const toml::node* node = table.get(StdView(step))) {
      CIAGENT_RETURN_IF_ERROR(
          ReadStep(*node, Join(path, step), step, c.Step(step)));
    }
  }
  if (const toml::node* node = table.get("image")) {
    CIAGENT_RETURN_IF_ERROR(ReadImage(*node, path + ".image"));
  }
  return absl::OkStatus();
}

void ConfigReader::WarnUnknown(const toml::table& table,
                               const std::string& path,
                               absl::Span<const absl::string_view> known) {
  for (const auto& [name, node] : InFileOrder(table)) {
    if (absl::c_linear_search(known, name)) continue;
    std::string warning =
        absl::StrCat(Join(path, name), ": unknown key, ignored");
    if (absl::string_view close = Suggestion(name, known); !close.empty()) {
      absl::StrAppend(&warning, " (did you mean \"", close, "\"?)");
    }
    config_->warnings.push_back(std::move(warning));
  }
}

absl::Status ConfigReader::ReadStep(const toml::node& node,
                                    const std::string& path,
                                    absl::string_view step, StepConfig* out) {
  if (!node.is_table()) return WrongType(path, "a table", node);
  const toml::table& table = *node.as_table();
  const bool test = step == "test";
  WarnUnknown(table, path, test ? absl::Span<const absl::string_view>(kTestKeys)
                                : absl::Span<const absl::string_view>(kStepKeys));
  if (const toml::node* args = table.get("args")) {
    CIAGENT_RETURN_IF_ERROR(ReadArgs(*args, path + ".args", step, &out->args));
  }
  if (const toml::node* allow = table.get("allow-failure")) {
    CIAGENT_ASSIGN_OR_RETURN(out->allow_failure,
                             ReadBool(*allow, path + ".allow-failure"));
  }
  if (const toml::node* timeout = table.get("timeout")) {
    CIAGENT_RETURN_IF_ERROR(ReadTimeout(*timeout, path + ".timeout",
                                        &out->timeout));
  }
  if (const toml::node* runner = table.get("runner"); runner && test) {
    CIAGENT_ASSIGN_OR_RETURN(std::string name,
                             ReadString(*runner, path + ".runner"));
    if (name == "auto") {
      config_->test_runner = TestRunner::kAuto;
    } else if (name == "nextest") {
      config_->test_runner = TestRunner::kNextest;
    } else if (name == "cargo") {
      config_->test_runner = TestRunner::kCargo;
    } else {
      return Invalid(path + ".runner",
                     absl::StrCat("expected auto, nextest or cargo, got ",
                                  Quoted(name)));
    }
  }
  if (test) return ReadTestPolicy(table, path);
  return absl::OkStatus();
}

absl::Status ConfigReader::ReadTestPolicy(const toml::table& table,
                                          const std::string& path) {
  if (const toml::node* retries = table.get("retries")) {
    const std::optional<int64_t> value = retries->value<int64_t>();
    if (!retries->is_integer() || !value.has_value()) {
      return WrongType(path + ".retries", "an integer", *retries);
    }
    if (*value < 0 || *value > kMaxTestRetries) {
      return Invalid(path + ".retries",
                     absl::StrCat("must be in 0..", kMaxTestRetries, " (got ",
                                  *value, ")"));
    }
    config_->test_retries = static_cast<int>(*value);
  }
  if (const toml::node* flaky = table.get("flaky")) {
    CIAGENT_ASSIGN_OR_RETURN(std::string policy,
                             ReadString(*flaky, path + ".flaky"));
    if (policy == "pass") {
      config_->flaky = FlakyPolicy::kPass;
    } else if (policy == "fail") {
      config_->flaky = FlakyPolicy::kFail;
    } else {
      return Invalid(path + ".flaky", absl::StrCat("expected pass or fail, got ",
                                                   Quoted(policy)));
    }
  }
  if (const toml::node* quarantine = table.get("quarantine")) {
    CIAGENT_ASSIGN_OR_RETURN(
        config_->quarantine,
        ReadStrings(*quarantine, path + ".quarantine",
                    [](absl::string_view name) -> std::string {
                      return name.empty() ? "is empty" : "";
                    }));
  }
  return absl::OkStatus();
}

absl::Status ConfigReader::ReadArgs(const toml::node& node,
                                    const std::string& path,
                                    absl::string_view step,
                                    std::vector<std::string>* out) {
  bool harness = false;
  CIAGENT_ASSIGN_OR_RETURN(
      *out, ReadStrings(node, path, [&](absl::string_view arg) -> std::string {
        if (arg == "--" && !harness) {
          harness = true;
          return "";
        }
        for (const RefusedArg& refused :
             harness ? absl::Span<const RefusedArg>(kRefusedHarnessArgs)
                     : absl::Span<const RefusedArg>(kRefusedArgs)) {
          if (!refused.steps.empty() &&
              !absl::c_linear_search(refused.steps, step)) {
            continue;
          }
          const bool matches =
              refused.flag == "-Z"
                  ? absl::StartsWith(arg, "-Z")
                  : arg == refused.flag ||
                        absl::StartsWith(arg, absl::StrCat(refused.flag, "="));
          if (matches) {
            return absl::StrCat("is refused: ", refused.why);
          }
        }
        return "";
      }));
  return absl::OkStatus();
}

absl::Status ConfigReader::ReadTimeout(const toml::node& node,
                                       const std::string& path,
                                       std::optional<absl::Duration>* out) {
  absl::Duration duration;
  if (node.is_integer()) {
    const int64_t seconds = node.as_integer()->get();
    if (seconds <= 0 || seconds > int64_t{1} << 40) {
      return Invalid(path, absl::StrCat("must be a positive number of seconds "
                                        "or a duration like \"45m\", got ",
                                        seconds));
    }
    duration = absl::Seconds(seconds);
  } else if (node.is_string()) {
    const std::string& text = node.as_string()->get();
    if (!absl::ParseDuration(text, &duration) ||
        duration <= absl::ZeroDuration() ||
        duration == absl::InfiniteDuration()) {
      return Invalid(path, absl::StrCat("expected a positive duration like "
                                        "\"45m\", \"1h30m\" or \"90s\", got ",
                                        Quoted(text)));
    }
  } else {
    return WrongType(path, "a duration like \"45m\"", node);
  }
  if (duration > options_.max_timeout) {
    config_->warnings.push_back(absl::StrCat(
        path, ": ", absl::FormatDuration(duration),
        " is more than the agent's maximum, cut to ",
        absl::FormatDuration(options_.max_timeout)));
    duration = options_.max_timeout;
  }
  *out = duration;
  return absl::OkStatus();
}

absl::Status ConfigReader::ReadEnv(
    const toml::node& node, const std::string& path,
    std::vector<std::pair<std::string, std::string>>* out,
    bool reserved_names) {
  if (!node.is_table()) return WrongType(path, "a table of strings", node);
  const toml::table& table = *node.as_table();
  if (table.size() > kMaxEnvEntries) {
    return Invalid(path, absl::StrCat("more than ", kMaxEnvEntries, " entries"));
  }
  for (const auto& [key, value] : InFileOrder(table)) {
    const std::string name(key);
    const std::string item_path = Join(path, name);
    if (!IsValidEnvName(name)) {
      return Invalid(item_path,
                     absl::StrCat("names must match ", kEnvNamePattern));
    }
    if (reserved_names && IsReservedEnvName(name)) {
      return Invalid(item_path,
                     "reserved by the agent (it controls the toolchain, "
                     "paths, output and credentials of a build)");
    }
    CIAGENT_ASSIGN_OR_RETURN(std::string text,
                             ReadString(*value, item_path, kMaxEnvValueBytes));
    out->emplace_back(name, std::move(text));
  }
  return absl::OkStatus();
}

absl::Status ConfigReader::ReadImage(const toml::node& node,
                                     const std::string& path) {
  if (!node.is_table()) return WrongType(path, "a table", node);
  const toml::table& table = *node.as_table();
  WarnUnknown(table, path, kImageKeys);
  ImageConfig& image = config_->image;
  for (auto [key, field] : {std::pair{"dockerfile", &image.dockerfile},
                            std::pair{"context", &image.context}}) {
    const toml::node* value = table.get(key);
    if (value == nullptr) continue;
    const std::string key_path = Join(path, key);
    CIAGENT_ASSIGN_OR_RETURN(std::string text, ReadString(*value, key_path));
    if (std::string broken = InsideRule(text); !broken.empty()) {
      return Invalid(key_path, absl::StrCat(Quoted(text), " ", broken));
    }
    *field = Normalized(text);
  }
  if (image.context != "." &&
      !absl::StartsWith(image.dockerfile, image.context + "/")) {
    return Invalid(path + ".dockerfile",
                   absl::StrCat(Quoted(image.dockerfile),
                                " must lie inside the context ",
                                Quoted(image.context)));
  }
  if (const toml::node* value = table.get("name")) {
    CIAGENT_ASSIGN_OR_RETURN(image.name, ReadString(*value, path + ".name"));
    if (!oci::IsValidRepositoryName(image.name)) {
      return Invalid(path + ".name",
                     absl::StrCat(Quoted(image.name),
                                  " is not a repository name (lowercase "
                                  "[a-z0-9] parts separated by '.', '_', "
                                  "'__', '-' or '/')"));
    }
  }
  if (const toml::node* value = table.get("build-args")) {
    CIAGENT_RETURN_IF_ERROR(ReadEnv(*value, path + ".build-args",
                                    &image.build_args,
                                    /*reserved_names=*/false));
  }
  return ReadAssembly(table, path);
}

absl::Status ConfigReader::ReadAssembly(const toml::table& table,
                                        const std::string& path) {
  ImageConfig& image = config_->image;
  const toml::node* base = table.get("base");
  if (base == nullptr) {
    for (absl::string_view key : kAssemblyKeys) {
      if (table.contains(StdView(key))) {
        return Invalid(Join(path, key),
                       "applies to image assembly only: set image.base too");
      }
    }
    return absl::OkStatus();
  }
  CIAGENT_ASSIGN_OR_RETURN(image.base, ReadString(*base, path + ".base"));
  if (absl::StatusOr<oci::ImageReference> ref =
          oci::ParsePullReference(image.base);
      !ref.ok()) {
    return Invalid(path + ".base", ref.status().message());
  }
  for (absl::string_view key : {"dockerfile", "context", "build-args"}) {
    if (table.contains(StdView(key))) {
      return Invalid(Join(path, key),
                     "image.base assembles the image without a Dockerfile; "
                     "give one of base and dockerfile");
    }
  }
  std::vector<std::string> seen;
  if (const toml::node* value = table.get("binaries")) {
    CIAGENT_ASSIGN_OR_RETURN(
        image.binaries,
        ReadStrings(*value, path + ".binaries",
                    [&seen](absl::string_view name) -> std::string {
                      if (name.empty() || name == "." || name == ".." ||
                          absl::StrContains(name, '/')) {
                        return "is not an executable's file name";
                      }
                      if (absl::c_linear_search(seen, name)) {
                        return "is listed twice";
                      }
                      seen.emplace_back(name);
                      return "";
                    }));
  }
  if (const toml::node* value = table.get("path")) {
    CIAGENT_ASSIGN_OR_RETURN(std::string dir,
                             ReadString(*value, path + ".path"));
    if (!absl::StartsWith(dir, "/")) {
      return Invalid(path + ".path",
                     absl::StrCat(Quoted(dir), " must be absolute (inside /)"));
    }
    const size_t first = dir.find_first_not_of('/');
    const std::string relative =
        first == std::string::npos ? "" : dir.substr(first);
    if (std::string broken = InsideRule(relative);
        !relative.empty() && !broken.empty()) {
      return Invalid(path + ".path", absl::StrCat(Quoted(dir), " ", broken,
                                                  ": it must stay inside /"));
    }
    const std::string normal = Normalized(relative);
    image.path = normal == "." ? "/" : "/" + normal;
  }
  const auto not_empty = [](absl::string_view arg) -> std::string {
    return arg.empty() ? "is empty" : "";
  };
  for (auto [key, field] : {std::pair{"entrypoint", &image.entrypoint},
                            std::pair{"cmd", &image.cmd}}) {
    const toml::node* value = table.get(key);
    if (value == nullptr) continue;
    // A string is the one-word form: entrypoint = "/usr/local/bin/app".
    if (value->is_string()) {
      CIAGENT_ASSIGN_OR_RETURN(std::string word,
                               ReadString(*value, Join(path, key)));
      *field = {word};
      if (word.empty()) return Invalid(Join(path, key), "is empty");
      continue;
    }
    CIAGENT_ASSIGN_OR_RETURN(*field,
                             ReadStrings(*value, Join(path, key), not_empty));
  }
  if (const toml::node* value = table.get("env")) {
    CIAGENT_RETURN_IF_ERROR(ReadEnv(*value, path + ".env", &image.env,
                                    /*reserved_names=*/false));
  }
  for (auto [key, field] : {std::pair{"workdir", &image.workdir},
                            std::pair{"user", &image.user}}) {
    const toml::node* value = table.get(key);
    if (value == nullptr) continue;
    CIAGENT_ASSIGN_OR_RETURN(*field, ReadString(*value, Join(path, key)));
    if (field->empty()) return Invalid(Join(path, key), "is empty");
  }
  if (!image.workdir.empty() && !absl::StartsWith(image.workdir, "/")) {
    return Invalid(path + ".workdir",
                   absl::StrCat(Quoted(image.workdir), " must be absolute"));
  }
  if (const toml::node* value = table.get("ports")) {
    if (!value->is_array()) {
      return WrongType(path + ".ports", "an array of ports", *value);
    }
    const toml::array& array = *value->as_array();
    if (array.size() > kMaxListItems) {
      return Invalid(path + ".ports",
                     absl::StrCat("more than ", kMaxListItems, " items"));
    }
    for (size_t i = 0; i < array.size(); ++i) {
      const std::string item_path = absl::StrCat(path, ".ports[", i, "]");
      std::string port = array[i].is_integer()
                             ? absl::StrCat(array[i].as_integer()->get())
                             : "";
      if (port.empty()) {
        CIAGENT_ASSIGN_OR_RETURN(port, ReadString(array[i], item_path));
      }
      std::vector<std::string> parts = absl::StrSplit(port, '/');
      if (parts.size() == 1) parts.push_back("tcp");
      int number = 0;
      if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &number) ||
          number < 1 || number > 65535 ||
          (parts[1] != "tcp" && parts[1] != "udp" && parts[1] != "sctp")) {
        return Invalid(item_path,
                       absl::StrCat(Quoted(port),
                                    " is not a port: expected 1..65535, "
                                    "optionally with /tcp, /udp or /sctp"));
      }
      image.ports.push_back(absl::StrCat(number, "/", parts[1]));
    }
  }
  if (const toml::node* value = table.get("labels")) {
    if (!value->is_table()) {
      return WrongType(path + ".labels", "a table of strings", *value);
    }
    for (const auto& [key, node] : InFileOrder(*value->as_table())) {
      CIAGENT_ASSIGN_OR_RETURN(std::string text,
                               ReadString(*node, Join(path + ".labels", key),
                                          kMaxEnvValueBytes));
      image.labels.emplace_back(std::string(key), std::move(text));
    }
  }
  return absl::OkStatus();
}

// table[key] as a table; nullptr when absent or not a table.
const toml::table* Subtable(const toml::table* table, absl::string_view key) {
  if (table == nullptr) return nullptr;
  const toml::node* node = table->get(StdView(key));
  return node == nullptr ? nullptr : node->as_table();
}

std::string PairsJson(
    const std::vector<std::pair<std::string, std::string>>& pairs) {
  JsonObjectBuilder json;
  for (const auto& [name, value] : pairs) json.Add(name, value);
  return std::move(json).Build();
}

std::string TimeoutJson(const std::optional<absl::Duration>& timeout) {
  return timeout.has_value()
             ? absl::StrCat(absl::ToInt64Seconds(*timeout))
             : std::string("null");
}

std::string StepJson(const StepConfig& step) {
  JsonObjectBuilder json;
  json.AddRaw("args", JsonStringArray(step.args))
      .Add("allow_failure", step.allow_failure)
      .AddRaw("timeout_s", TimeoutJson(step.timeout));
  return std::move(json).Build();
}

}  // namespace

absl::string_view TestRunnerName(TestRunner runner) {
  switch (runner) {
    case TestRunner::kAuto:
      return "auto";
    case TestRunner::kNextest:
      return "nextest";
    case TestRunner::kCargo:
      return "cargo";
  }
  return "auto";
}

absl::string_view FlakyPolicyName(FlakyPolicy policy) {
  return policy == FlakyPolicy::kFail ? "fail" : "pass";
}

const StepConfig* PipelineConfig::Step(absl::string_view step) const {
  return const_cast<PipelineConfig*>(this)->Step(step);
}

StepConfig* PipelineConfig::Step(absl::string_view step) {
  if (step == "check") return &check;
  if (step == "build") return &build;
  if (step == "test") return &test;
  if (step == "clippy") return &clippy;
  if (step == "audit") return &audit;
  return nullptr;
}

absl::StatusOr<PipelineConfig> ParsePipelineConfig(
    absl::string_view cargo_toml, const PipelineConfigOptions& options) {
  if (cargo_toml.size() > options.max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Cargo.toml: larger than ", options.max_bytes, " bytes"));
  }
  toml::table document;
  try {
    document = toml::parse(StdView(cargo_toml));
  } catch (const toml::parse_error& error) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Cargo.toml:", error.source().begin.line, ":",
        error.source().begin.column, ": ", AbslView(error.description())));
  }
  const toml::table* workspace =
      Subtable(Subtable(Subtable(&document, "workspace"), "metadata"), "ciagent");
  const toml::table* package =
      Subtable(Subtable(Subtable(&document, "package"), "metadata"), "ciagent");
  PipelineConfig config;
  for (absl::string_view owner : {"workspace", "package"}) {
    const toml::table* metadata =
        Subtable(Subtable(&document, owner), "metadata");
    const toml::node* node = metadata ? metadata->get("ciagent") : nullptr;
    if (node != nullptr && !node->is_table()) {
      return WrongType(absl::StrCat(owner, ".metadata.ciagent"), "a table",
                       *node);
    }
  }
  if (workspace != nullptr && package != nullptr) {
    return absl::InvalidArgumentError(
        "workspace.metadata.ciagent and package.metadata.ciagent: give one, "
        "not both (workspace for a workspace, package for a single crate)");
  }
  const toml::table* table = workspace != nullptr ? workspace : package;
  if (table == nullptr) return config;
  config.source = workspace != nullptr ? "workspace.metadata.ciagent"
                                       : "package.metadata.ciagent";
  ConfigReader reader(options, &config);
  CIAGENT_RETURN_IF_ERROR(reader.ReadTop(*table, config.source));
  return config;
}

absl::StatusOr<PipelineConfig> ReadPipelineConfig(
    const std::string& source_dir, const PipelineConfigOptions& options) {
  const std::string manifest = source_dir + "/Cargo.toml";
  struct stat st;
  // No manifest: the pipeline refuses the checkout with its own message.
  if (stat(manifest.c_str(), &st) != 0 && errno == ENOENT) {
    return PipelineConfig{};
  }
  std::ifstream in(manifest, std::ios::binary);
  if (!in) {
    return absl::FailedPreconditionError(
        absl::StrCat("pipeline config: cannot read ", manifest));
  }
  std::string bytes(options.max_bytes + 1, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  bytes.resize(static_cast<size_t>(in.gcount()));
  CIAGENT_ASSIGN_OR_RETURN(PipelineConfig config,
                           ParsePipelineConfig(bytes, options));
  char root[PATH_MAX];
  if (realpath(source_dir.c_str(), root) == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("pipeline config: cannot resolve ", source_dir));
  }
  const std::string root_dir = root;
  for (auto [key, value] :
       {std::pair{"dockerfile", &config.image.dockerfile},
        std::pair{"context", &config.image.context}}) {
    char resolved[PATH_MAX];
    const std::string path = absl::StrCat(source_dir, "/", *value);
    // Absent: nothing to build from, the image step says so.
    if (realpath(path.c_str(), resolved) == nullptr) continue;
    const absl::string_view target = resolved;
    if (target != root_dir && !absl::StartsWith(target, root_dir + "/")) {
      return Invalid(
          absl::StrCat(config.source.empty() ? "workspace.metadata.ciagent"
                                             : config.source,
                       ".image.", key),
          absl::StrCat(Quoted(*value),
                       " leaves the checkout through a symbolic link"));
    }
  }
  return config;
}

PipelineConfig EffectiveConfig(PipelineConfig repository, const Job& job) {
  if (!job.steps.empty()) repository.steps = job.steps;
  if (job.timeout.has_value()) repository.timeout = job.timeout;
  if (job.test_retries.has_value()) {
    repository.test_retries = job.test_retries;
  }
  if (job.image.has_value() && !job.image->name.empty()) {
    repository.image.name = job.image->name;
  }
  for (const auto& variable : job.env) {
    std::erase_if(repository.env, [&variable](const auto& entry) {
      return entry.first == variable.first;
    });
    repository.env.push_back(variable);
  }
  return repository;
}

std::string PipelineConfigJson(const PipelineConfig& config) {
  JsonObjectBuilder image;
  image.Add("dockerfile", config.image.dockerfile)
      .Add("context", config.image.context)
      .Add("name", config.image.name)
      .AddRaw("build_args", PairsJson(config.image.build_args));
  if (config.image.assembled()) {
    image.Add("base", config.image.base)
        .AddRaw("binaries", JsonStringArray(config.image.binaries))
        .Add("path", config.image.path)
        .AddRaw("entrypoint", JsonStringArray(config.image.entrypoint))
        .AddRaw("cmd", JsonStringArray(config.image.cmd))
        .AddRaw("env", PairsJson(config.image.env))
        .Add("workdir", config.image.workdir)
        .Add("user", config.image.user)
        .AddRaw("ports", JsonStringArray(config.image.ports))
        .AddRaw("labels", PairsJson(config.image.labels));
  }
  JsonObjectBuilder json;
  json.Add("source", config.source)
      .AddRaw("steps", JsonStringArray(config.steps))
      .AddRaw("features", JsonStringArray(config.features))
      .Add("all_features", config.all_features)
      .Add("no_default_features", config.no_default_features)
      .AddRaw("packages", JsonStringArray(config.packages))
      .AddRaw("exclude", JsonStringArray(config.exclude))
      .AddRaw("env", PairsJson(config.env))
      .AddRaw("timeout_s", TimeoutJson(config.timeout));
  for (absl::string_view step : kCargoSteps) {
    json.AddRaw(step, StepJson(*config.Step(step)));
  }
  json.Add("test_runner", TestRunnerName(config.test_runner))
      .AddRaw("test_retries", config.test_retries.has_value()
                                  ? absl::StrCat(*config.test_retries)
                                  : "null")
      .Add("test_flaky", FlakyPolicyName(config.flaky))
      .AddRaw("test_quarantine", JsonStringArray(config.quarantine))
      .AddRaw("image", std::move(image).Build());
  return std::move(json).Build();
}

std::string PipelineConfigLine(const PipelineConfig& config) {
  return absl::StrCat(
      "config (",
      config.source.empty() ? "defaults: no ciagent table in Cargo.toml"
                            : absl::StrCat("from ", config.source),
      "): ", PipelineConfigJson(config));
}

}  // namespace ciagent
