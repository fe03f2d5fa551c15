#include "ciagent/pipeline/pipeline.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>

#include "absl/algorithm/container.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "ciagent/base/atomic_file.h"
#include "ciagent/base/clock.h"
#include "ciagent/base/log.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/pipeline/cargo_messages.h"
#include "ciagent/pipeline/dependency_failure.h"
#include "ciagent/pipeline/test_retry.h"
#include "ciagent/cache/build_cache.h"
#include "ciagent/cache/prune.h"
#include "ciagent/cache/sccache.h"
#include "ciagent/job/job.h"

namespace ciagent {
namespace {

// What a step's stdout carries, which decides how it is read.
enum class StdoutKind {
  kText,          // forwarded as is
  kCargoJson,     // cargo JSON messages: parsed, not forwarded
  kLibtest,       // forwarded and parsed as libtest output
};

struct Command {
  std::vector<std::string> argv;
  StdoutKind stdout_kind = StdoutKind::kText;
  // Variables set (or replaced) on top of the step's environment.
  std::vector<std::pair<std::string, std::string>> env = {};
  // Empty: the checkout.
  std::string working_dir = {};
  // Where kLibtest / kCargoJson output is parsed; null: the run's parsers.
  LibtestParser* libtest = nullptr;
  CargoMessageParser* cargo_messages = nullptr;
  // Set: stdout lines are kept here instead of being shown.
  std::vector<std::string>* capture = nullptr;
  // The command ends by then too (a step of several commands shares its
  // step timeout).
  absl::Time deadline = absl::InfiniteFuture();
};

// The attempt variable every test run gets (test_retry.h).
constexpr absl::string_view kTestAttemptVariable = "CI_TEST_ATTEMPT";

std::string ReadSmallFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  if (in) text << in.rdbuf();
  return text.str();
}


struct StepDefinition {
  absl::string_view name;
  std::vector<absl::string_view> needs;
};

// The plan, in run order.
const StepDefinition kPlan[] = {
    {"check", {}},
    {"build", {"check"}},
    {"test", {"check"}},
    {"clippy", {"check"}},
    {"audit", {}},
    {"image", {"build", "test"}},
};

bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

std::string EnvOrEmpty(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? "" : value;
}

std::string Parent(absl::string_view path) {
  size_t slash = path.find_last_of('/');
  if (slash == absl::string_view::npos) return ".";
  if (slash == 0) return "/";
  return std::string(path.substr(0, slash));
}

absl::Status CopyFile(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) {
    return absl::FailedPreconditionError(
        absl::StrCat("cargo config ", from, ": cannot read"));
  }
  std::stringstream contents;
  contents << in.rdbuf();
  return WriteFileAtomically(to, contents.str());
}

absl::Status MakeDirs(const std::string& dir) {
  std::string partial;
  for (absl::string_view part : absl::StrSplit(dir, '/')) {
    absl::StrAppend(&partial, part, "/");
    if (part.empty()) continue;
    if (mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::UnavailableError(
          absl::StrCat("create ", partial, ": ", std::strerror(errno)));
    }
  }
  return absl::OkStatus();
}

// Runs the plan; one object per RunPipeline call.
class PipelineRun {
 public:
  PipelineRun(const PipelineOptions& options, PipelineObserver* observer)
      : options_(options), observer_(observer) {}

  absl::StatusOr<PipelineResult> Run();

 private:
  absl::Status Prepare();
  // Installs the credentials of private dependencies for the steps.
  absl::Status UsePrivateDependencies();
  // Sets target_dir_ from the cache, or says why the run is uncached.
  void UseCache(const std::string& cargo_home);
  void UseSccache();
  void TouchSccacheStamp();
  void FinishSccache();
  void FinishCache();
  // nullopt: the step runs; else the reason it is skipped.
  std::optional<std::string> SkipReason(const StepDefinition& step) const;
  absl::StatusOr<StepRecord> RunStep(absl::string_view name);
  absl::StatusOr<StepRecord> RunImageStep();
  absl::StatusOr<StepRecord> RunCargoSteps(absl::string_view name,
                                           const std::vector<Command>& commands);
  absl::StatusOr<ProcessResult> RunCommand(absl::string_view step,
                                           const Command& command);
  // True when `run` was ended by a timeout, cancel or stop: `record` says
  // which.
  bool Terminated(const ProcessResult& run, absl::Time started,
                  StepRecord* record);
  std::vector<Command> CommandsFor(absl::string_view step) const;
  // The test step's status from its tests: retries, quarantine, flaky
  // policy (test_retry.h).
  absl::StatusOr<StepRecord> FinishTestStep(StepRecord record);
  // Reruns each failed libtest test up to the policy's retries.
  absl::Status RetryFailedTests(StepRecord* record);
  // The test step's configured args: before `--` (cargo's) and after it
  // (the test harness's).
  std::pair<std::vector<std::string>, std::vector<std::string>> TestArgs()
      const;
  void FinishTests();
  void CollectArtifacts();
  void Decide();
  // The configuration's timeout of `step`, else the agent's.
  absl::Duration StepTimeout(absl::string_view step) const;
  bool Selected(absl::string_view step) const;
  const StepRecord* Record(absl::string_view step) const;
  // cargo <args> [--locked] <the configuration's args of `step`>.
  std::vector<std::string> Cargo(absl::string_view step,
                                 std::vector<std::string> args) const;
  // --workspace/-p/--exclude and the feature flags of the configuration.
  std::vector<std::string> Selection(bool features) const;

  const PipelineOptions& options_;
  PipelineObserver* observer_;
  PipelineObserver null_observer_;

  std::vector<std::pair<std::string, std::string>> env_;
  std::string path_;
  std::string work_dir_;
  std::string target_dir_;
  std::string junit_path_;
  bool locked_ = false;
  // The test step runs cargo nextest (else cargo test).
  bool nextest_ = false;
  // Retries, flaky policy and quarantine of the test step.
  TestPolicy test_policy_;
  // result_.tests holds the test results read (and retried).
  bool tests_read_ = false;
  bool nextest_installed_ = false;
  absl::Time start_;
  absl::Time deadline_;

  PipelineResult result_;
  LibtestParser libtest_;
  CargoMessageParser cargo_messages_;
  // The cached target dir, locked while the run lasts.
  std::optional<CachedTargetDir> cache_;
  std::unique_ptr<SccacheServer> sccache_;
  // Set when a step was terminated: the rest of the plan is skipped.
  std::optional<std::string> ended_;
  std::optional<StepStatus> ended_status_;
  // A step's output said the disk is full: its failure is the agent's.
  bool disk_full_ = false;
  // The current command's stderr, read for dependencies cargo could not get.
  DependencyFailureReader dependency_errors_;
  // Credentials of private dependencies, while the run lasts.
  std::unique_ptr<DependencyAccess> dependency_access_;
};

absl::StatusOr<PipelineResult> PipelineRun::Run() {
  if (observer_ == nullptr) observer_ = &null_observer_;
  CIAGENT_RETURN_IF_ERROR(Prepare());
  for (const StepDefinition& step : kPlan) {
    std::optional<std::string> skip = SkipReason(step);
    if (skip.has_value()) {
      StepRecord record;
      record.name = std::string(step.name);
      record.status = StepStatus::kSkipped;
      record.reason = *std::move(skip);
      observer_->StepFinished(record);
      result_.steps.push_back(std::move(record));
      continue;
    }
    observer_->StepStarted(step.name);
    CIAGENT_ASSIGN_OR_RETURN(StepRecord record, RunStep(step.name));
    if (const StepConfig* config = options_.config.Step(step.name);
        config != nullptr && config->allow_failure &&
        record.status == StepStatus::kFailed) {
      record.allow_failure = true;
    }
    observer_->StepFinished(record);
    if (record.status == StepStatus::kTimeout ||
        record.status == StepStatus::kCancelled) {
      ended_ = absl::StrCat("job ended during ", step.name, ": ",
                            record.reason);
      ended_status_ = record.status;
    }
    result_.steps.push_back(std::move(record));
  }
  FinishTests();
  Decide();
  FinishSccache();
  FinishCache();
  result_.duration = absl::Now() - start_;
  return std::move(result_);
}

absl::Status PipelineRun::Prepare() {
  start_ = absl::Now();
  deadline_ = start_ + options_.job_timeout;
  if (options_.source_dir.empty()) {
    return absl::InvalidArgumentError("pipeline: source_dir is required");
  }
  result_.config = options_.config;
  test_policy_.retries = std::clamp(
      options_.config.test_retries.value_or(options_.test_retries), 0,
      kMaxTestRetries);
  test_policy_.flaky = options_.config.flaky;
  test_policy_.quarantine = options_.config.quarantine;
  absl::c_copy(options_.quarantine,
               std::back_inserter(test_policy_.quarantine));
  result_.config.test_retries = test_policy_.retries;
  observer_->StepOutput("config", "agent",
                        PipelineConfigLine(options_.config));
  for (const std::string& warning : options_.config.warnings) {
    observer_->StepOutput("config", "agent",
                          absl::StrCat("config warning: ", warning));
  }
  if (test_policy_.retries > 0 || !test_policy_.quarantine.empty()) {
    observer_->StepOutput(
        "config", "agent",
        absl::StrCat("tests: ", test_policy_.retries, " retries, flaky = ",
                     FlakyPolicyName(test_policy_.flaky), ", quarantined: ",
                     test_policy_.quarantine.empty()
                         ? "none"
                         : absl::StrJoin(test_policy_.quarantine, ", ")));
  }
  for (const std::string& step : options_.steps) {
    if (!absl::c_linear_search(kKnownSteps, absl::string_view(step))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "pipeline: unknown step \"", step, "\" (known: ",
          absl::StrJoin(kKnownSteps, ", "), ")"));
    }
  }
  if (!FileExists(options_.source_dir + "/Cargo.toml")) {
    return absl::FailedPreconditionError(absl::StrCat(
        "pipeline: ", options_.source_dir, " has no Cargo.toml"));
  }
  path_ = options_.path.empty() ? EnvOrEmpty("PATH") : options_.path;
  if (FindExecutable("cargo", path_).empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("pipeline: cargo is not in PATH (", path_, ")"));
  }
  work_dir_ = options_.work_dir.empty() ? Parent(options_.source_dir)
                                        : options_.work_dir;
  target_dir_ = options_.target_dir.empty()
                    ? options_.source_dir + "/target"
                    : options_.target_dir;
  junit_path_ = options_.junit_path.empty() ? work_dir_ + "/junit.xml"
                                            : options_.junit_path;
  std::string cargo_home = options_.cargo_home;
  if (cargo_home.empty() && !options_.cache_dir.empty()) {
    cargo_home = options_.cache_dir + "/cargo-home";
  }
  if (cargo_home.empty()) cargo_home = EnvOrEmpty("CARGO_HOME");
  if (cargo_home.empty()) cargo_home = EnvOrEmpty("HOME") + "/.cargo";
  if (!options_.cargo_config.empty()) {
    CIAGENT_RETURN_IF_ERROR(MakeDirs(cargo_home));
    CIAGENT_RETURN_IF_ERROR(
        CopyFile(options_.cargo_config, cargo_home + "/config.toml"));
  }
  locked_ = FileExists(options_.source_dir + "/Cargo.lock");
  nextest_installed_ = !FindExecutable("cargo-nextest", path_).empty();
  nextest_ = options_.config.test_runner == TestRunner::kNextest ||
             (options_.config.test_runner == TestRunner::kAuto &&
              nextest_installed_);

  env_ = {{"PATH", path_},
          {"HOME", EnvOrEmpty("HOME")},
          {"CARGO_HOME", cargo_home},
          {"CARGO_TARGET_DIR", target_dir_},
          {"CARGO_INCREMENTAL", "0"},
          {"CARGO_TERM_COLOR", "never"},
          {"CI", "true"}};
  if (std::string rustup = EnvOrEmpty("RUSTUP_HOME"); !rustup.empty()) {
    env_.emplace_back("RUSTUP_HOME", rustup);
  }
  absl::c_copy(options_.env, std::back_inserter(env_));
  absl::c_copy(options_.secret_env, std::back_inserter(env_));
  CIAGENT_RETURN_IF_ERROR(UsePrivateDependencies());
  UseCache(cargo_home);
  for (auto& [name, value] : env_) {
    if (name == "CARGO_TARGET_DIR") value = target_dir_;
  }
  UseSccache();
  return absl::OkStatus();
}

absl::Status PipelineRun::UsePrivateDependencies() {
  const PrivateDependencies& dependencies = options_.private_dependencies;
  if (dependencies.empty()) return absl::OkStatus();
  CIAGENT_ASSIGN_OR_RETURN(dependency_access_,
                           DependencyAccess::Install(dependencies, work_dir_));
  absl::c_copy(dependency_access_->env(), std::back_inserter(env_));
  std::vector<std::string> registries;
  for (const PrivateRegistry& registry : dependencies.registries) {
    registries.push_back(registry.name);
  }
  const bool git = !dependencies.git.token.empty();
  observer_->StepOutput(
      "config", "agent",
      absl::StrCat("private dependencies: git credentials for ",
                   git && !dependencies.git_origins.empty()
                       ? absl::StrJoin(dependencies.git_origins, ", ")
                       : "no host",
                   "; registries: ",
                   registries.empty() ? "none" : absl::StrJoin(registries, ", ")));
  return absl::OkStatus();
}

void PipelineRun::UseSccache() {
  if (!options_.sccache) return;
  if (options_.cache_dir.empty()) {
    observer_->StepOutput("cache", "agent",
                          "sccache: not used (no cache dir)");
    return;
  }
  SccacheOptions sccache;
  sccache.dir = options_.cache_dir + "/sccache";
  sccache.path = path_;
  TouchSccacheStamp();
  absl::StatusOr<std::unique_ptr<SccacheServer>> server =
      SccacheServer::Start(sccache);
  if (!server.ok()) {
    observer_->StepOutput(
        "cache", "agent",
        absl::StrCat("sccache: not used (", server.status().message(), ")"));
    return;
  }
  sccache_ = *std::move(server);
  // The job's own RUSTC_WRAPPER cannot exist (reserved); ours comes last.
  absl::c_copy(sccache_->Env(), std::back_inserter(env_));
  observer_->StepOutput("cache", "agent",
                        absl::StrCat("sccache: ", sccache.dir));
}

// The pruner's last-use stamp of the sccache entry (docs/caching.md).
void PipelineRun::TouchSccacheStamp() {
  const absl::Status touched =
      TouchLastUseStamp(options_.cache_dir + "/sccache");
  if (!touched.ok()) {
    LogWarning("sccache last-use stamp not written", {{"error", touched}});
  }
}

void PipelineRun::FinishSccache() {
  if (sccache_ == nullptr) return;
  TouchSccacheStamp();
  absl::StatusOr<SccacheStats> stats = sccache_->Stats();
  if (stats.ok()) {
    result_.cache.sccache_used = true;
    result_.cache.sccache_hits = stats->hits;
    result_.cache.sccache_misses = stats->misses;
    observer_->StepOutput(
        "cache", "agent",
        absl::StrCat("sccache: ", stats->hits, " hits, ", stats->misses,
                     " misses"));
  } else {
    LogWarning("sccache statistics unreadable", {{"error", stats.status()}});
  }
  sccache_.reset();
}

void PipelineRun::UseCache(const std::string& cargo_home) {
  CacheStats& stats = result_.cache;
  if (options_.cache_dir.empty()) {
    stats.uncached_reason = "no cache dir";
  } else if (!options_.target_dir.empty()) {
    stats.uncached_reason = "target dir given";
  } else {
    BuildCacheOptions cache;
    cache.cache_dir = options_.cache_dir;
    cache.source_dir = options_.source_dir;
    cache.env = env_;
    cache.lock_timeout = options_.cache_lock_timeout;
    absl::StatusOr<CachedTargetDir> dir = AcquireTargetDir(cache);
    if (dir.ok()) {
      cache_.emplace(*std::move(dir));
      target_dir_ = cache_->path();
      stats.key = cache_->key().exact;
      stats.match = std::string(CacheMatchName(cache_->match()));
      std::string line = absl::StrCat("cache: ", stats.match, " match, key ",
                                      stats.key, ", target dir ", target_dir_);
      if (!cache_->copied_from().empty()) {
        absl::StrAppend(&line, " (copied from ", cache_->copied_from(), ")");
      }
      absl::StrAppend(&line, ", CARGO_HOME ", cargo_home);
      observer_->StepOutput("cache", "agent", line);
      return;
    }
    stats.uncached_reason =
        absl::StrCat(dir.status().code() == absl::StatusCode::kUnavailable
                         ? "cache busy or unavailable: "
                         : "cache unusable: ",
                     dir.status().message());
    LogWarning("building uncached", {{"error", dir.status()}});
  }
  observer_->StepOutput(
      "cache", "agent",
      absl::StrCat("cache: none, building uncached (", stats.uncached_reason,
                   "), target dir ", target_dir_));
}

void PipelineRun::FinishCache() {
  if (!cache_.has_value() || !options_.cache_drop_workspace_artifacts) {
    cache_.reset();
    return;
  }
  absl::StatusOr<int64_t> dropped = cache_->DropWorkspaceArtifacts();
  if (!dropped.ok()) {
    LogWarning("workspace artifacts not dropped from the cache",
               {{"error", dropped.status()}});
  }
  cache_.reset();
}

bool PipelineRun::Selected(absl::string_view step) const {
  return options_.steps.empty() ||
         absl::c_linear_search(options_.steps, step);
}

const StepRecord* PipelineRun::Record(absl::string_view step) const {
  for (const StepRecord& record : result_.steps) {
    if (record.name == step) return &record;
  }
  return nullptr;
}

std::optional<std::string> PipelineRun::SkipReason(
    const StepDefinition& step) const {
  if (!Selected(step.name)) return std::string("not selected by the job");
  if (ended_.has_value()) return *ended_;
  for (absl::string_view need : step.needs) {
    const StepRecord* record = Record(need);
    if (record == nullptr || !Selected(need)) continue;
    if (record->status != StepStatus::kOk) {
      return absl::StrCat("needs ", need, ", which ",
                          record->status == StepStatus::kSkipped
                              ? "was skipped"
                              : StepStatusName(record->status));
    }
  }
  if (step.name == "clippy" &&
      FindExecutable("cargo-clippy", path_).empty()) {
    return std::string("cargo-clippy is not installed");
  }
  if (step.name == "audit" && FindExecutable("cargo-audit", path_).empty() &&
      FindExecutable("cargo-deny", path_).empty()) {
    return std::string("cargo-audit and cargo-deny are not installed");
  }
  if (step.name == "image" && !options_.image_step) {
    return std::string("no image builder configured");
  }
  return std::nullopt;
}

std::vector<std::string> PipelineRun::Cargo(
    absl::string_view step, std::vector<std::string> args) const {
  args.insert(args.begin(), "cargo");
  if (locked_) args.push_back("--locked");
  if (const StepConfig* config = options_.config.Step(step)) {
    absl::c_copy(config->args, std::back_inserter(args));
  }
  return args;
}

std::vector<std::string> PipelineRun::Selection(bool features) const {
  const PipelineConfig& config = options_.config;
  std::vector<std::string> args;
  if (config.packages.empty()) {
    args.push_back("--workspace");
    for (const std::string& name : config.exclude) {
      args.insert(args.end(), {"--exclude", name});
    }
  } else {
    for (const std::string& name : config.packages) {
      args.insert(args.end(), {"-p", name});
    }
  }
  if (!features) return args;
  if (!config.features.empty()) {
    args.insert(args.end(), {"--features", absl::StrJoin(config.features, ",")});
  }
  if (config.all_features) args.push_back("--all-features");
  if (config.no_default_features) args.push_back("--no-default-features");
  return args;
}

std::vector<Command> PipelineRun::CommandsFor(absl::string_view step) const {
  constexpr absl::string_view kJson = "--message-format=json-render-diagnostics";
  const auto with_selection = [this](std::vector<std::string> head,
                                     std::vector<std::string> tail) {
    absl::c_copy(Selection(/*features=*/true), std::back_inserter(head));
    absl::c_copy(tail, std::back_inserter(head));
    return head;
  };
  if (step == "check") {
    return {{Cargo(step, with_selection({"check"}, {"--all-targets"}))}};
  }
  if (step == "build") {
    return {{Cargo(step, with_selection({"build"},
                                        {"--release", std::string(kJson)})),
             StdoutKind::kCargoJson}};
  }
  if (step == "test") {
    if (nextest_) {
      return {{Cargo(step, with_selection(
                               {"nextest", "run"},
                               {"--no-fail-fast", "--retries",
                                absl::StrCat(test_policy_.retries),
                                "--profile", "ciagent", "--tool-config-file",
                                absl::StrCat("ciagent:", work_dir_,
                                             "/nextest.toml")}))}};
    }
    return {{Cargo(step, with_selection({"test"}, {"--no-fail-fast"})),
             StdoutKind::kLibtest,
             {{std::string(kTestAttemptVariable), "1"}}}};
  }
  if (step == "clippy") {
    // Plain JSON: with json-render-diagnostics cargo sends no
    // compiler-message on stdout, and warnings could not be counted.
    return {{Cargo(step, with_selection({"clippy"}, {"--all-targets",
                                                     "--message-format=json"})),
             StdoutKind::kCargoJson}};
  }
  if (step == "audit") {
    std::vector<Command> commands;
    // The configuration's audit args are cargo audit's.
    if (!FindExecutable("cargo-audit", path_).empty()) {
      commands.push_back({Cargo(step, {"audit"})});
    }
    if (!FindExecutable("cargo-deny", path_).empty()) {
      commands.push_back({{"cargo", "deny", "check"}});
    }
    return commands;
  }
  return {};
}

absl::StatusOr<StepRecord> PipelineRun::RunStep(absl::string_view name) {
  if (name == "image") return RunImageStep();
  if (name == "test" && nextest_ && !nextest_installed_) {
    StepRecord record;
    record.name = "test";
    record.status = StepStatus::kFailed;
    record.reason =
        "cargo-nextest is not installed (the configuration's test.runner is "
        "\"nextest\")";
    return record;
  }
  if (name == "test") {
    if (nextest_) {
      CIAGENT_RETURN_IF_ERROR(WriteFileAtomically(
          work_dir_ + "/nextest.toml",
          absl::StrCat("[profile.ciagent]\nfail-fast = false\n"
                       "[profile.ciagent.junit]\npath = \"junit.xml\"\n")));
    }
    CIAGENT_ASSIGN_OR_RETURN(StepRecord record,
                             RunCargoSteps(name, CommandsFor(name)));
    return FinishTestStep(std::move(record));
  }
  return RunCargoSteps(name, CommandsFor(name));
}

absl::StatusOr<StepRecord> PipelineRun::RunImageStep() {
  const absl::Time started = absl::Now();
  const ImageStepContext context{
      .so_far = result_,
      .source_dir = options_.source_dir,
      .work_dir = work_dir_,
      .time_left = std::max(absl::ZeroDuration(),
                            std::min(deadline_ - started, StepTimeout("image"))),
      .should_stop =
          [this] {
            return (options_.cancel_requested && options_.cancel_requested()) ||
                   (options_.stop_requested && options_.stop_requested());
          },
      .output =
          [this](absl::string_view stream, absl::string_view line) {
            observer_->StepOutput("image", stream, line);
          },
      .image = &options_.config.image};
  CIAGENT_ASSIGN_OR_RETURN(StepRecord record,
                           options_.image_step(context, &result_.image));
  record.name = "image";
  if (record.duration == absl::ZeroDuration()) {
    record.duration = absl::Now() - started;
  }
  if (record.status == StepStatus::kCancelled && options_.stop_requested &&
      options_.stop_requested()) {
    result_.interrupted = true;
  }
  return record;
}

absl::StatusOr<StepRecord> PipelineRun::RunCargoSteps(
    absl::string_view name, const std::vector<Command>& commands) {
  StepRecord record;
  record.name = std::string(name);
  record.status = StepStatus::kOk;
  record.exit_code = 0;
  int64_t warnings_before = cargo_messages_.warnings();
  const CargoMessageParser& counts = cargo_messages_;
  const int64_t units_before = counts.units();
  const int64_t fresh_before = counts.fresh_units();
  const int64_t dependency_before = counts.dependency_units();
  const int64_t fresh_dependency_before = counts.fresh_dependency_units();
  absl::Time started = absl::Now();
  for (const Command& command : commands) {
    CIAGENT_ASSIGN_OR_RETURN(ProcessResult run, RunCommand(name, command));
    record.exit_code = run.exit_code;
    if (Terminated(run, started, &record)) break;
    if (run.exit_code != 0 && disk_full_) {
      return absl::UnavailableError(absl::StrCat(
          "step ", name, ": no space left on device (",
          absl::StrJoin(command.argv, " "), " exited with code ",
          run.exit_code, ")"));
    }
    if (std::optional<DependencyFailure> dependency =
            dependency_errors_.failure();
        run.exit_code != 0 && dependency.has_value()) {
      std::string reason =
          DescribeDependencyFailure(*dependency, options_.private_dependencies);
      if (dependency->kind == DependencyFailure::Kind::kUnavailable) {
        return absl::UnavailableError(
            absl::StrCat("step ", name, ": ", reason));
      }
      record.status = StepStatus::kFailed;
      record.reason = std::move(reason);
      break;
    }
    if (run.exit_code != 0) {
      record.status = StepStatus::kFailed;
      record.reason =
          run.exit_code >= 0
              ? absl::StrCat(command.argv[1], " exited with code ",
                             run.exit_code)
              : absl::StrCat(command.argv[1], " killed by signal ",
                             run.term_signal);
      // cargo audit failing should not hide cargo deny's findings.
      if (name != "audit") break;
    }
  }
  record.duration = absl::Now() - started;
  if (name == "clippy") {
    record.warnings = cargo_messages_.warnings() - warnings_before;
    result_.clippy_warnings = record.warnings;
    if (record.status == StepStatus::kOk && record.warnings > 0 &&
        options_.clippy_warnings_fail) {
      record.status = StepStatus::kFailed;
      record.reason = absl::StrCat(record.warnings, " clippy warning",
                                   record.warnings == 1 ? "" : "s");
    }
  }
  if (name == "build") {
    CacheStats& stats = result_.cache;
    stats.units = counts.units() - units_before;
    stats.fresh_units = counts.fresh_units() - fresh_before;
    stats.dependency_units = counts.dependency_units() - dependency_before;
    stats.fresh_dependency_units =
        counts.fresh_dependency_units() - fresh_dependency_before;
    stats.dependency_hit_rate =
        stats.dependency_units == 0
            ? 0.0
            : static_cast<double>(stats.fresh_dependency_units) /
                  static_cast<double>(stats.dependency_units);
  }
  if (name == "build" && record.status == StepStatus::kOk) {
    CollectArtifacts();
  }
  return record;
}

bool PipelineRun::Terminated(const ProcessResult& run, absl::Time started,
                             StepRecord* record) {
  if (run.timed_out) {
    record->status = StepStatus::kTimeout;
    record->reason =
        absl::StrCat("timed out after ", FormatMillis(absl::Now() - started));
    return true;
  }
  if (run.stopped) {
    record->status = StepStatus::kCancelled;
    bool stop = options_.stop_requested && options_.stop_requested();
    result_.interrupted = result_.interrupted || stop;
    record->reason = stop ? "agent shutting down" : "cancel requested";
    return true;
  }
  return false;
}

std::pair<std::vector<std::string>, std::vector<std::string>>
PipelineRun::TestArgs() const {
  std::pair<std::vector<std::string>, std::vector<std::string>> args;
  bool harness = false;
  for (const std::string& arg : options_.config.test.args) {
    if (arg == "--" && !harness) {
      harness = true;
      continue;
    }
    (harness ? args.second : args.first).push_back(arg);
  }
  return args;
}

absl::StatusOr<StepRecord> PipelineRun::FinishTestStep(StepRecord record) {
  if (record.status == StepStatus::kFailed && !nextest_) {
    const absl::Time started = absl::Now() - record.duration;
    CIAGENT_RETURN_IF_ERROR(RetryFailedTests(&record));
    record.duration = absl::Now() - started;
  }
  FinishTests();
  if (record.status != StepStatus::kOk &&
      record.status != StepStatus::kFailed) {
    return record;
  }
  const TestVerdict verdict = JudgeTests(test_policy_, &result_.tests);
  if (verdict.FailsStep()) {
    record.status = StepStatus::kFailed;
    record.reason = verdict.Reason();
    return record;
  }
  if (record.status == StepStatus::kFailed && !verdict.failures_named) {
    return record;  // not (only) tests: a crash, a build error
  }
  // Every failure was retried into a pass, quarantined, or let through.
  record.status = StepStatus::kOk;
  record.reason = TestStepNote(result_.tests, verdict);
  return record;
}

absl::Status PipelineRun::RetryFailedTests(StepRecord* record) {
  result_.tests = libtest_.Finish();
  tests_read_ = true;
  TestResults& tests = result_.tests;
  std::vector<size_t> failed;
  for (size_t i = 0; i < tests.cases.size(); ++i) {
    if (tests.cases[i].outcome == TestCase::Outcome::kFailed) {
      failed.push_back(i);
    }
  }
  if (test_policy_.retries == 0 || failed.empty()) return absl::OkStatus();
  // The reruns share the step's timeout with the first run.
  const absl::Time started = absl::Now() - record->duration;
  const absl::Time step_deadline = started + StepTimeout("test");
  auto [cargo_args, harness_args] = TestArgs();
  std::vector<std::string> argv = {"cargo", "test", "--no-run",
                                   "--message-format=json"};
  absl::c_copy(Selection(/*features=*/true), std::back_inserter(argv));
  if (locked_) argv.push_back("--locked");
  absl::c_copy(cargo_args, std::back_inserter(argv));
  CargoMessageParser built;
  CIAGENT_ASSIGN_OR_RETURN(
      ProcessResult build,
      RunCommand("test", {.argv = argv,
                          .stdout_kind = StdoutKind::kCargoJson,
                          .cargo_messages = &built,
                          .deadline = step_deadline}));
  if (Terminated(build, started, record)) return absl::OkStatus();
  if (build.exit_code != 0) {
    observer_->StepOutput(
        "test", "agent",
        absl::StrCat("retries: cargo test --no-run exited with code ",
                     build.exit_code, "; failed tests are not retried"));
    return absl::OkStatus();
  }
  const std::string cargo = FindExecutable("cargo", path_);
  const std::string workspace_toml =
      ReadSmallFile(options_.source_dir + "/Cargo.toml");
  // Each harness's tests, from `<executable> --list --format terse`: the
  // `Running` line may be missing or read late, so it is checked.
  std::vector<TestListing> listings;
  for (const CargoTestExecutable& executable : built.test_executables()) {
    if (!executable.harness) continue;
    std::vector<std::string> lines;
    CIAGENT_ASSIGN_OR_RETURN(
        ProcessResult list,
        RunCommand("test", {.argv = {executable.path, "--list", "--format",
                                     "terse"},
                            .working_dir = PackageRoot(executable),
                            .capture = &lines,
                            .deadline = step_deadline}));
    if (Terminated(list, started, record)) return absl::OkStatus();
    if (list.exit_code == 0) {
      listings.push_back({&executable, ParseTestList(lines)});
    }
  }
  for (size_t index : failed) {
    const TestCase& test = tests.cases[index];
    const CargoTestExecutable* executable =
        ChooseTestExecutable(listings, test.binary, test.name);
    if (executable == nullptr) {
      observer_->StepOutput(
          "test", "agent",
          absl::StrCat("retries: ", test.name, " not retried (",
                       test.binary.empty()
                           ? absl::StrCat(test.suite, " has no executable")
                           : absl::StrCat("no executable ", test.binary),
                       ")"));
      continue;
    }
    std::vector<std::pair<std::string, std::string>> env = CargoTestEnv(
        *executable, built.test_executables(), cargo,
        ReadSmallFile(executable->manifest_path), workspace_toml);
    env.emplace_back(kTestAttemptVariable, "");
    for (int attempt = 2; attempt <= test_policy_.retries + 1; ++attempt) {
      env.back().second = absl::StrCat(attempt);
      LibtestParser rerun;
      CIAGENT_ASSIGN_OR_RETURN(
          ProcessResult run,
          RunCommand("test",
                     {.argv = RerunArgv(*executable, harness_args, test.name),
                      .stdout_kind = StdoutKind::kLibtest,
                      .env = env,
                      .working_dir = PackageRoot(*executable),
                      .libtest = &rerun,
                      .deadline = step_deadline}));
      if (Terminated(run, started, record)) return absl::OkStatus();
      RecordRerun(rerun.Finish(), run.exit_code, index, &tests);
      if (tests.cases[index].outcome == TestCase::Outcome::kFlaky) break;
    }
    const TestCase& retried = tests.cases[index];
    const bool flaky = retried.outcome == TestCase::Outcome::kFlaky;
    observer_->StepOutput(
        "test", "agent",
        absl::StrCat("retries: ", retried.name,
                     flaky ? absl::StrCat(" passed on attempt ",
                                          retried.attempts, " (flaky)")
                           : absl::StrCat(" failed all ", retried.attempts,
                                          " attempts")));
    LogInfo("test retried", {{"test", retried.name},
                             {"attempts", retried.attempts},
                             {"outcome", flaky ? "flaky" : "failed"}});
  }
  return absl::OkStatus();
}

absl::StatusOr<ProcessResult> PipelineRun::RunCommand(absl::string_view step,
                                                      const Command& command) {
  observer_->StepOutput(step, "agent",
                        absl::StrCat("$ ", absl::StrJoin(command.argv, " ")));
  ProcessOptions process;
  process.argv = command.argv;
  process.working_dir = command.working_dir.empty() ? options_.source_dir
                                                    : command.working_dir;
  process.env = env_;
  for (const auto& variable : command.env) {
    std::erase_if(process.env, [&variable](const auto& entry) {
      return entry.first == variable.first;
    });
    process.env.push_back(variable);
  }
  LibtestParser& libtest =
      command.libtest != nullptr ? *command.libtest : libtest_;
  CargoMessageParser& cargo_messages = command.cargo_messages != nullptr
                                           ? *command.cargo_messages
                                           : cargo_messages_;
  process.grace = options_.grace;
  absl::Duration left = std::min(deadline_, command.deadline) - absl::Now();
  process.timeout =
      std::max(absl::ZeroDuration(), std::min(left, StepTimeout(step)));
  dependency_errors_ = DependencyFailureReader();
  process.should_stop = [this] {
    return (options_.cancel_requested && options_.cancel_requested()) ||
           (options_.stop_requested && options_.stop_requested());
  };
  return RunProcess(process, [&](StreamKind kind, absl::string_view line) {
    if (kind == StreamKind::kStderr) {
      // cargo's and rustc's own errors come on stderr (a test printing the
      // phrase on stdout is not a full disk).
      if (absl::StrContains(line, "No space left on device")) disk_full_ = true;
      dependency_errors_.AddLine(line);
      // cargo's `Running` lines, which name the test binary, come here.
      if (command.stdout_kind == StdoutKind::kLibtest) {
        libtest.AddStatusLine(line);
      }
      observer_->StepOutput(step, "stderr", line);
      return;
    }
    if (command.capture != nullptr) {
      command.capture->emplace_back(line);
      return;
    }
    switch (command.stdout_kind) {
      case StdoutKind::kCargoJson: {
        std::string rendered;
        // Not JSON (a build script's stray print, say): keep it visible.
        if (!cargo_messages.AddLine(line, &rendered)) {
          observer_->StepOutput(step, "stdout", line);
        }
        // A diagnostic, as cargo would have printed it on stderr.
        if (!rendered.empty()) {
          for (absl::string_view part : absl::StrSplit(rendered, '\n')) {
            observer_->StepOutput(step, "stderr", part);
          }
        }
        return;
      }
      case StdoutKind::kLibtest:
        libtest.AddLine(line);
        break;
      case StdoutKind::kText:
        break;
    }
    observer_->StepOutput(step, "stdout", line);
  });
}

void PipelineRun::FinishTests() {
  if (tests_read_) return;
  tests_read_ = true;
  if (nextest_) {
    std::ifstream in(target_dir_ + "/nextest/ciagent/junit.xml");
    if (in) {
      std::stringstream xml;
      xml << in.rdbuf();
      absl::StatusOr<TestResults> parsed = ParseNextestJunit(xml.str());
      if (parsed.ok()) {
        result_.tests = *std::move(parsed);
      } else {
        LogWarning("nextest JUnit output unreadable",
                   {{"error", parsed.status()}});
      }
    }
  } else {
    result_.tests = libtest_.Finish();
  }
}

void PipelineRun::CollectArtifacts() {
  result_.artifacts.clear();
  for (const CargoExecutable& executable : cargo_messages_.executables()) {
    absl::StatusOr<Artifact> artifact =
        DescribeArtifact(executable.name, executable.path);
    if (artifact.ok()) {
      result_.artifacts.push_back(*std::move(artifact));
    } else {
      LogWarning("release executable unreadable",
                 {{"path", executable.path}, {"error", artifact.status()}});
    }
  }
}

absl::Duration PipelineRun::StepTimeout(absl::string_view step) const {
  const StepConfig* config = options_.config.Step(step);
  if (config != nullptr && config->timeout.has_value()) {
    return std::min(*config->timeout, options_.max_timeout);
  }
  return options_.step_timeout;
}

void PipelineRun::Decide() {
  if (Record("test") != nullptr && Record("test")->status != StepStatus::kSkipped) {
    absl::Status written =
        WriteFileAtomically(junit_path_, ToJunitXml(result_.tests));
    if (!written.ok()) {
      LogWarning("JUnit file not written", {{"error", written}});
    }
  }
  result_.status = JobStatus::kSuccess;
  if (ended_status_.has_value()) {
    result_.status = *ended_status_ == StepStatus::kTimeout
                         ? JobStatus::kTimeout
                         : JobStatus::kCancelled;
    result_.reason = *ended_;
    return;
  }
  for (const StepRecord& record : result_.steps) {
    if (record.status == StepStatus::kFailed && !record.allow_failure) {
      result_.status = JobStatus::kFailed;
      result_.reason = absl::StrCat(record.name, " failed: ", record.reason);
      return;
    }
  }
}

}  // namespace

absl::StatusOr<PipelineResult> RunPipeline(const PipelineOptions& options,
                                           PipelineObserver* observer) {
  PipelineRun run(options, observer);
  return run.Run();
}

void ApplyPipelineConfig(PipelineConfig config, PipelineOptions* options) {
  options->steps = config.steps;
  options->env = config.env;
  if (config.timeout.has_value()) options->job_timeout = *config.timeout;
  options->job_timeout = std::min(options->job_timeout, options->max_timeout);
  options->config = std::move(config);
}

absl::Status ConfigureForJob(const Job& job, PipelineOptions* options) {
  CIAGENT_ASSIGN_OR_RETURN(
      PipelineConfig repository,
      ReadPipelineConfig(options->source_dir,
                         {.max_timeout = options->max_timeout}));
  ApplyPipelineConfig(EffectiveConfig(std::move(repository), job), options);
  return absl::OkStatus();
}

}  // namespace ciagent
