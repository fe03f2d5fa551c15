#include "ciagent/pipeline/test_retry.h"

#include <toml++/toml.h>

#include <algorithm>
#include <string_view>

#include "absl/algorithm/container.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "ciagent/pipeline/internal/result_limits.h"

namespace ciagent {
namespace {

std::string_view StdView(absl::string_view s) { return {s.data(), s.size()}; }

std::string Dir(absl::string_view path) {
  const size_t slash = path.find_last_of('/');
  if (slash == absl::string_view::npos) return ".";
  return std::string(path.substr(0, std::max<size_t>(slash, 1)));
}

std::optional<toml::table> ParseToml(absl::string_view text) {
  if (text.empty()) return std::nullopt;
  try {
    return toml::parse(StdView(text));
  } catch (const toml::parse_error&) {
    return std::nullopt;
  }
}

// [package].<key> as cargo's environment has it: a string, or an array of
// strings joined by ':' (authors); `{ workspace = true }` is looked up in
// the workspace's [workspace.package]. Empty when unset.
std::string PackageField(const toml::table* package,
                         const toml::table* workspace_package,
                         std::string_view key) {
  const toml::node* node = package ? package->get(key) : nullptr;
  if (node != nullptr && node->is_table()) {
    const toml::node* inherit = node->as_table()->get("workspace");
    if (inherit == nullptr || !inherit->value_or(false)) return "";
    node = workspace_package ? workspace_package->get(key) : nullptr;
  }
  if (node == nullptr) return "";
  if (const toml::value<std::string>* text = node->as_string()) {
    return text->get();
  }
  std::vector<std::string> items;
  if (const toml::array* array = node->as_array()) {
    for (const toml::node& item : *array) {
      if (const toml::value<std::string>* text = item.as_string()) {
        items.push_back(text->get());
      }
    }
  }
  return absl::StrJoin(items, ":");
}

std::string Plural(int64_t n, absl::string_view word) {
  return absl::StrCat(n, " ", word, n == 1 ? "" : "s");
}

}  // namespace

std::string TestVerdict::Reason() const {
  std::vector<std::string> parts;
  if (failed > 0) parts.push_back(absl::StrCat(Plural(failed, "test"), " failed"));
  if (flaky > 0) {
    parts.push_back(absl::StrCat(Plural(flaky, "flaky test"),
                                 " (test.flaky = \"fail\")"));
  }
  return absl::StrJoin(parts, ", ");
}

TestVerdict JudgeTests(const TestPolicy& policy, TestResults* results) {
  TestVerdict verdict;
  results->quarantined_names.clear();
  int64_t named = 0, quarantined_failed = 0, quarantined_flaky = 0;
  for (TestCase& test : results->cases) {
    const bool failed = test.outcome == TestCase::Outcome::kFailed;
    const bool flaky = test.outcome == TestCase::Outcome::kFlaky;
    if (!failed && !flaky) continue;
    ++named;
    test.quarantined = absl::c_linear_search(policy.quarantine, test.name);
    if (!test.quarantined) continue;
    (failed ? quarantined_failed : quarantined_flaky) += 1;
    if (results->quarantined_names.size() < kMaxFailingNames) {
      results->quarantined_names.push_back(test.name);
    }
  }
  verdict.failed = std::max<int64_t>(0, results->failed - quarantined_failed);
  verdict.flaky = policy.flaky == FlakyPolicy::kFail
                      ? std::max<int64_t>(0, results->flaky - quarantined_flaky)
                      : 0;
  verdict.quarantined = quarantined_failed + quarantined_flaky;
  verdict.failures_named =
      results->complete && results->unfinished_binaries == 0 && named > 0 &&
      named == SaturatingAdd(results->failed, results->flaky);
  return verdict;
}

const CargoTestExecutable* FindTestExecutable(
    absl::Span<const CargoTestExecutable> executables,
    absl::string_view binary) {
  if (binary.empty()) return nullptr;
  for (const CargoTestExecutable& executable : executables) {
    if (!executable.harness) continue;
    absl::string_view path = executable.path;
    const size_t slash = path.find_last_of('/');
    if (slash != absl::string_view::npos) path.remove_prefix(slash + 1);
    if (path == binary) return &executable;
  }
  return nullptr;
}

std::vector<std::string> ParseTestList(absl::Span<const std::string> lines) {
  std::vector<std::string> tests;
  for (absl::string_view line : lines) {
    absl::ConsumeSuffix(&line, "\r");
    if (absl::ConsumeSuffix(&line, ": test") && !line.empty()) {
      tests.emplace_back(line);
    }
  }
  return tests;
}

const CargoTestExecutable* ChooseTestExecutable(
    absl::Span<const TestListing> listings, absl::string_view binary,
    absl::string_view name) {
  const CargoTestExecutable* only = nullptr;
  int holders = 0;
  for (const TestListing& listing : listings) {
    if (!absl::c_linear_search(listing.tests, name)) continue;
    if (FindTestExecutable({listing.executable, 1}, binary) != nullptr) {
      return listing.executable;
    }
    only = listing.executable;
    ++holders;
  }
  return holders == 1 ? only : nullptr;
}

std::vector<std::string> RerunArgv(const CargoTestExecutable& executable,
                                   absl::Span<const std::string> harness_args,
                                   absl::string_view name) {
  std::vector<std::string> argv = {executable.path};
  absl::c_copy(harness_args, std::back_inserter(argv));
  argv.push_back("--exact");
  argv.emplace_back(name);
  return argv;
}

std::optional<PackageIdParts> ParsePackageId(absl::string_view package_id) {
  PackageIdParts parts;
  if (const size_t hash = package_id.rfind('#');
      hash != absl::string_view::npos && absl::StrContains(package_id, "://")) {
    // <source>#<version> (the name is the URL's last path component) or
    // <source>#<name>@<version>.
    absl::string_view fragment = package_id.substr(hash + 1);
    if (const size_t at = fragment.find('@'); at != absl::string_view::npos) {
      parts.name = std::string(fragment.substr(0, at));
      parts.version = std::string(fragment.substr(at + 1));
    } else {
      absl::string_view url = package_id.substr(0, hash);
      url = url.substr(0, std::min(url.find('?'), url.size()));
      while (absl::ConsumeSuffix(&url, "/")) {
      }
      parts.name = std::string(url.substr(url.find_last_of('/') + 1));
      parts.version = std::string(fragment);
    }
  } else {
    // <name> <version> (<source>)
    std::vector<absl::string_view> words = absl::StrSplit(package_id, ' ');
    if (words.size() < 2) return std::nullopt;
    parts.name = std::string(words[0]);
    parts.version = std::string(words[1]);
  }
  if (parts.name.empty() || parts.version.empty()) return std::nullopt;
  return parts;
}

std::string PackageRoot(const CargoTestExecutable& test) {
  return Dir(test.manifest_path);
}

std::vector<std::pair<std::string, std::string>> CargoTestEnv(
    const CargoTestExecutable& test,
    absl::Span<const CargoTestExecutable> all, absl::string_view cargo,
    absl::string_view manifest_toml, absl::string_view workspace_toml) {
  std::vector<std::pair<std::string, std::string>> env = {
      {"CARGO", std::string(cargo)},
      {"CARGO_MANIFEST_DIR", PackageRoot(test)},
      {"CARGO_MANIFEST_PATH", test.manifest_path},
  };
  const std::optional<PackageIdParts> package = ParsePackageId(test.package_id);
  const std::string version = package ? package->version : "";
  // 1.2.3-beta.1+build: major, minor, patch, pre (build metadata dropped).
  absl::string_view core = version;
  core = core.substr(0, std::min(core.find('+'), core.size()));
  absl::string_view pre;
  if (const size_t dash = core.find('-'); dash != absl::string_view::npos) {
    pre = core.substr(dash + 1);
    core = core.substr(0, dash);
  }
  std::vector<absl::string_view> numbers = absl::StrSplit(core, '.');
  numbers.resize(3);
  env.insert(env.end(), {{"CARGO_PKG_NAME", package ? package->name : ""},
                         {"CARGO_PKG_VERSION", version},
                         {"CARGO_PKG_VERSION_MAJOR", std::string(numbers[0])},
                         {"CARGO_PKG_VERSION_MINOR", std::string(numbers[1])},
                         {"CARGO_PKG_VERSION_PATCH", std::string(numbers[2])},
                         {"CARGO_PKG_VERSION_PRE", std::string(pre)}});
  const std::optional<toml::table> manifest = ParseToml(manifest_toml);
  const std::optional<toml::table> workspace = ParseToml(workspace_toml);
  const toml::table* package_table =
      manifest ? (*manifest)["package"].as_table() : nullptr;
  const toml::table* workspace_package =
      workspace ? (*workspace)["workspace"]["package"].as_table() : nullptr;
  // A package that is its workspace's root inherits from its own file.
  if (workspace_package == nullptr && manifest) {
    workspace_package = (*manifest)["workspace"]["package"].as_table();
  }
  for (const auto& [variable, key] :
       {std::pair{"CARGO_PKG_AUTHORS", "authors"},
        std::pair{"CARGO_PKG_DESCRIPTION", "description"},
        std::pair{"CARGO_PKG_HOMEPAGE", "homepage"},
        std::pair{"CARGO_PKG_LICENSE", "license"},
        std::pair{"CARGO_PKG_LICENSE_FILE", "license-file"},
        std::pair{"CARGO_PKG_README", "readme"},
        std::pair{"CARGO_PKG_REPOSITORY", "repository"},
        std::pair{"CARGO_PKG_RUST_VERSION", "rust-version"}}) {
    env.emplace_back(variable,
                     PackageField(package_table, workspace_package, key));
  }
  for (const CargoTestExecutable& other : all) {
    if (other.harness || other.package_id != test.package_id) continue;
    env.emplace_back(absl::StrCat("CARGO_BIN_EXE_", other.target_name),
                     other.path);
  }
  const std::string deps = Dir(test.path);
  env.emplace_back("LD_LIBRARY_PATH", absl::StrCat(Dir(deps), ":", deps));
  return env;
}

std::string TestStepNote(const TestResults& results,
                         const TestVerdict& verdict) {
  std::vector<std::string> notes;
  if (results.flaky > 0) notes.push_back(Plural(results.flaky, "flaky test"));
  if (verdict.quarantined > 0) {
    notes.push_back(absl::StrCat(Plural(verdict.quarantined, "quarantined test"),
                                 " failed or flaky"));
  }
  return absl::StrJoin(notes, ", ");
}

void ApplyTestHistory(std::string branch, std::vector<TestHistory> history,
                      absl::Span<const std::string> flaky_on_commit,
                      PipelineResult* result) {
  result->test_history_branch = std::move(branch);
  result->test_history = std::move(history);
  TestResults& tests = result->tests;
  TestPolicy policy{.flaky = result->config.flaky};
  bool changed = false;
  for (TestCase& test : tests.cases) {
    if (test.quarantined) policy.quarantine.push_back(test.name);
    if (test.outcome != TestCase::Outcome::kFailed ||
        !absl::c_linear_search(flaky_on_commit, test.name)) {
      continue;
    }
    test.outcome = TestCase::Outcome::kFlaky;
    tests.failed = std::max<int64_t>(0, tests.failed - 1);
    tests.flaky = SaturatingAdd(tests.flaky, 1);
    std::erase(tests.failing_names, test.name);
    if (tests.flaky_names.size() < kMaxFailingNames) {
      tests.flaky_names.push_back(test.name);
    }
    changed = true;
  }
  const auto step = absl::c_find_if(
      result->steps, [](const StepRecord& s) { return s.name == "test"; });
  if (!changed || step == result->steps.end() ||
      step->status != StepStatus::kFailed) {
    return;
  }
  const TestVerdict verdict = JudgeTests(policy, &tests);
  if (verdict.FailsStep()) {
    step->reason = verdict.Reason();
  } else if (verdict.failures_named) {
    step->status = StepStatus::kOk;
    step->reason = TestStepNote(tests, verdict);
  }
  if (result->status != JobStatus::kFailed) return;
  result->status = JobStatus::kSuccess;
  result->reason.clear();
  for (const StepRecord& record : result->steps) {
    if (record.status == StepStatus::kFailed && !record.allow_failure) {
      result->status = JobStatus::kFailed;
      result->reason = absl::StrCat(record.name, " failed: ", record.reason);
      return;
    }
  }
}

void RecordRerun(const TestResults& rerun, int exit_code, size_t index,
                 TestResults* results) {
  TestCase& test = results->cases[index];
  ++test.attempts;
  results->reruns = SaturatingAdd(results->reruns, 1);
  const auto found = absl::c_find_if(rerun.cases, [&](const TestCase& c) {
    return c.name == test.name;
  });
  if (found != rerun.cases.end() &&
      found->outcome == TestCase::Outcome::kPassed) {
    test.outcome = TestCase::Outcome::kFlaky;
    results->failed = std::max<int64_t>(0, results->failed - 1);
    results->flaky = SaturatingAdd(results->flaky, 1);
    std::erase(results->failing_names, test.name);
    if (results->flaky_names.size() < kMaxFailingNames) {
      results->flaky_names.push_back(test.name);
    }
    return;
  }
  if (test.rerun_messages.size() >= kMaxRerunMessages) return;
  test.rerun_messages.push_back(
      found != rerun.cases.end() && !found->message.empty()
          ? found->message
          : absl::StrCat("attempt ", test.attempts, ": no result for the test",
                         " (exit code ", exit_code, ")"));
}

}  // namespace ciagent
