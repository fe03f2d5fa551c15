// Private dependencies against real servers and real cargo: a workspace
// depending on a crate kept on a token-protected git server (over cargo's own
// libgit2 and over the git CLI, with a submodule), or on a token-protected
// sparse registry, builds and tests with the agent's credentials; fails
// saying why without them; requeues when the server is down; and no token
// reaches the log, any process's argv or environment, the checkout or the
// cache.
//
// The private crate is itoa, as Debian vendors it (librust-itoa-dev): a real
// crate with its own layout, not one shaped by these tests.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "ciagent/pipeline/pipeline.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/cargo_fixture.h"
#include "testing/cargo_registry_server.h"
#include "testing/git_repo.h"
#include "testing/git_server.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"
#include "testing/vendored_crate.h"

namespace ciagent {
namespace {

namespace fs = std::filesystem;

using ::ciagent::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kGitToken[] = "gtok-5e4d3c2b1a09";
constexpr char kRegistryToken[] = "Bearer rtok-0a1b2c3d4e5f";

constexpr char kAppLib[] = R"(pub fn render(n: u32) -> String {
    itoa::Buffer::new().format(n).to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_with_the_private_crate() {
        assert_eq!(super::render(4096), "4096");
    }
}
)";

// Sees every line; counts processes showing `marker` while the run lasts.
class LeakWatch : public PipelineObserver {
 public:
  explicit LeakWatch(std::string marker) : marker_(std::move(marker)) {
    sampler_ = std::thread([this] {
      while (!done_) {
        int seen = testing::ProcessesWithMarker(marker_);
        if (seen > processes_) processes_ = seen;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    });
  }
  ~LeakWatch() override { Stop(); }
  void Stop() {
    done_ = true;
    if (sampler_.joinable()) sampler_.join();
  }
  void StepOutput(absl::string_view step, absl::string_view stream,
                  absl::string_view line) override {
    lines.push_back(absl::StrCat(step, "|", stream, "|", line));
  }
  int processes() const { return processes_; }
  std::vector<std::string> lines;

 private:
  std::string marker_;
  std::atomic<bool> done_{false};
  std::atomic<int> processes_{0};
  std::thread sampler_;
};

// Files under `dir` whose contents hold `needle`.
std::vector<std::string> FilesContaining(const std::string& dir,
                                         const std::string& needle) {
  std::vector<std::string> found;
  std::error_code error;
  for (auto it = fs::recursive_directory_iterator(dir, error);
       it != fs::recursive_directory_iterator(); it.increment(error)) {
    if (!it->is_regular_file()) continue;
    if (absl::StrContains(testing::ReadFileOrEmpty(it->path().string()),
                          needle)) {
      found.push_back(it->path().string());
    }
  }
  return found;
}

class PrivateDependenciesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CIAGENT_REQUIRE_CARGO(path);
    path_ = path;
    CIAGENT_REQUIRE_VENDORED_CRATE(itoa, "itoa");
    itoa_dir_ = itoa;
    ASSERT_OK_AND_ASSIGN(dir_, testing::MakeTempDir("private-deps"));
  }
  void TearDown() override { testing::RemoveTree(dir_); }

  // Starts the git server (user "ci", kGitToken) holding itoa as "itoa",
  // with a submodule "extra" (another private repository) whose URL names
  // the server as `host` does.
  void StartGitServer(const std::string& host, int fail_first = 0) {
    CIAGENT_START_GIT_SERVER(server, {.username = "ci",
                                      .password = kGitToken,
                                      .fail_first_requests = fail_first});
    git_ = std::move(server);
    ASSERT_OK_AND_ASSIGN(std::string extra, git_->CreateBareRepo("extra"));
    ASSERT_OK_AND_ASSIGN(
        std::string extra_commit,
        testing::CommitFiles(extra, "main", {{"NOTICE", "private\n"}}, "one"));
    ASSERT_OK_AND_ASSIGN(std::string itoa, git_->CreateBareRepo("itoa"));
    ASSERT_OK(testing::CommitTree(itoa, "main", itoa_dir_, "itoa"));
    ASSERT_OK(testing::CommitSubmodule(itoa, "main", "extra",
                                       UrlAt(host, "extra"), extra_commit,
                                       "extra as a submodule")
                  .status());
  }

  std::string UrlAt(const std::string& host, const std::string& repo) const {
    return absl::StrReplaceAll(git_->RepoUrl(repo), {{"127.0.0.1", host}});
  }

  // Writes a crate "app" under <dir_>/<name> whose dependency on itoa is
  // `dependency` (a TOML inline table).
  std::string WriteApp(const std::string& name, const std::string& dependency) {
    const std::string app = dir_ + "/" + name;
    fs::create_directories(app + "/src");
    std::ofstream(app + "/Cargo.toml")
        << "[package]\nname = \"app\"\nversion = \"0.1.0\"\n"
           "edition = \"2021\"\n\n[dependencies]\nitoa = "
        << dependency << "\n";
    std::ofstream(app + "/src/lib.rs") << kAppLib;
    return app;
  }

  PipelineOptions Options(const std::string& app) {
    PipelineOptions options;
    options.source_dir = app;
    options.work_dir = app + "-work";
    fs::create_directories(options.work_dir);
    options.target_dir = app + "-target";
    options.cargo_home = dir_ + "/cargo-home";
    options.path = path_;
    options.steps = {"check", "test"};
    options.job_timeout = absl::Minutes(4);
    options.grace = absl::Seconds(2);
    return options;
  }

  // The crate "app" (under <dir_>/<name>) depending on itoa from the git
  // server as `host` names it, with the agent's git credentials (`token`)
  // for `origin` (default: that host's).
  PipelineOptions AppUsingGitItoa(const std::string& host,
                                  const std::string& token = kGitToken,
                                  std::string origin = "",
                                  const std::string& name = "app") {
    PipelineOptions options = Options(WriteApp(
        name, absl::StrCat("{ git = \"", UrlAt(host, "itoa"),
                           "\", branch = \"main\" }")));
    if (origin.empty()) {
      origin = absl::StrCat("http://", host, ":", git_->port());
    }
    options.private_dependencies = GitAccess(origin, token);
    return options;
  }

  // The crate "app" depending on itoa from the registry "gitea".
  PipelineOptions AppUsingRegistryItoa() {
    return Options(
        WriteApp("app", "{ version = \"1\", registry = \"gitea\" }"));
  }

  PrivateDependencies GitAccess(const std::string& origin,
                                const std::string& token = kGitToken) {
    PrivateDependencies dependencies;
    dependencies.git = {.username = "ci", .token = token};
    dependencies.git_origins = {origin};
    return dependencies;
  }

  // Runs the pipeline watching for `token`; expects it nowhere.
  absl::StatusOr<PipelineResult> RunWatched(const PipelineOptions& options,
                                            const std::string& token) {
    LeakWatch watch(token);
    absl::StatusOr<PipelineResult> result = RunPipeline(options, &watch);
    watch.Stop();
    EXPECT_EQ(watch.processes(), 0) << "a process had the token in argv/env";
    for (const std::string& line : watch.lines) {
      EXPECT_THAT(line, Not(HasSubstr(token)));
    }
    for (const std::string& dir :
         {options.source_dir, options.work_dir, options.cargo_home}) {
      EXPECT_THAT(FilesContaining(dir, token), ::testing::IsEmpty()) << dir;
    }
    for (const auto& entry : fs::directory_iterator(options.work_dir)) {
      EXPECT_THAT(entry.path().filename().string(),
                  Not(HasSubstr(".ciagent-credentials")))
          << "the credentials directory outlived the run";
    }
    lines_ = std::move(watch.lines);
    return result;
  }

  const StepRecord& Step(const PipelineResult& result, const std::string& name) {
    for (const StepRecord& step : result.steps) {
      if (step.name == name) return step;
    }
    static const StepRecord none;
    ADD_FAILURE() << "no step " << name;
    return none;
  }

  // Packs itoa for the registry into <dir_>/crates.
  std::string PackItoa() {
    const std::string crates = dir_ + "/crates";
    fs::create_directories(crates);
    const std::string copy = dir_ + "/itoa-src";
    fs::copy(itoa_dir_, copy, fs::copy_options::recursive);
    absl::StatusOr<std::string> crate =
        testing::PackageCrate(copy, path_, crates);
    EXPECT_OK(crate.status());
    return crates;
  }

  std::string path_;
  std::string itoa_dir_;
  std::string dir_;
  std::unique_ptr<testing::GitServer> git_;
  std::vector<std::string> lines_;
};

TEST_F(PrivateDependenciesTest, GitDependencyByAddressBuildsAndTestsOverTheGitCli) {
  StartGitServer("127.0.0.1");
  if (HasFatalFailure() || IsSkipped()) return;
  ASSERT_OK_AND_ASSIGN(PipelineResult result,
                       RunWatched(AppUsingGitItoa("127.0.0.1"), kGitToken));
  EXPECT_EQ(result.status, JobStatus::kSuccess) << result.reason;
  EXPECT_EQ(result.tests.passed, 1);
  // The submodule of the dependency came from the private server too.
  EXPECT_THAT(git_->RequestLog(),
              HasSubstr("GET /extra.git/info/refs 200"));
  EXPECT_THAT(lines_, ::testing::Contains(HasSubstr(
                          "private dependencies: git credentials for "
                          "http://127.0.0.1:")));
}

TEST_F(PrivateDependenciesTest, GitDependencyByNameBuildsOverCargosOwnGit) {
  StartGitServer("localhost");
  if (HasFatalFailure() || IsSkipped()) return;
  ASSERT_OK_AND_ASSIGN(PipelineResult result,
                       RunWatched(AppUsingGitItoa("localhost"), kGitToken));
  EXPECT_EQ(result.status, JobStatus::kSuccess) << result.reason;
  EXPECT_EQ(result.tests.passed, 1);
  EXPECT_THAT(git_->RequestLog(), HasSubstr("GET /extra.git/info/refs 200"));
}

TEST_F(PrivateDependenciesTest, ANextJobFindsTheGitDependencyInTheCache) {
  StartGitServer("127.0.0.1");
  if (HasFatalFailure() || IsSkipped()) return;
  PipelineOptions first = AppUsingGitItoa("127.0.0.1", kGitToken, "", "first");
  first.steps = {"check"};
  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(first, nullptr));
  ASSERT_EQ(result.status, JobStatus::kSuccess) << result.reason;
  const std::string requests = git_->RequestLog();
  ASSERT_THAT(requests, HasSubstr("/itoa.git/"));

  // A new checkout of the same commit: Cargo.lock pins the dependency.
  PipelineOptions second =
      AppUsingGitItoa("127.0.0.1", kGitToken, "", "second");
  second.steps = {"check"};
  fs::copy_file(first.source_dir + "/Cargo.lock",
                second.source_dir + "/Cargo.lock");
  ASSERT_OK_AND_ASSIGN(result, RunPipeline(second, nullptr));
  EXPECT_EQ(result.status, JobStatus::kSuccess) << result.reason;
  EXPECT_EQ(git_->RequestLog(), requests) << "the second job fetched again";
}

TEST_F(PrivateDependenciesTest, WithoutATokenTheStepSaysNoneIsConfigured) {
  StartGitServer("127.0.0.1");
  if (HasFatalFailure() || IsSkipped()) return;
  PipelineOptions options = AppUsingGitItoa("127.0.0.1", /*token=*/"");
  options.steps = {"check"};
  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, nullptr));
  EXPECT_EQ(result.status, JobStatus::kFailed);
  EXPECT_EQ(Step(result, "check").reason,
            absl::StrCat("authentication failed for git dependency ",
                         git_->RepoUrl("itoa"),
                         " (host allowed, no git token configured)"));
}

TEST_F(PrivateDependenciesTest, AWrongTokenIsReportedAsRejected) {
  StartGitServer("localhost");
  if (HasFatalFailure() || IsSkipped()) return;
  PipelineOptions options = AppUsingGitItoa("localhost", "not-the-token");
  options.steps = {"check"};
  ASSERT_OK_AND_ASSIGN(PipelineResult result,
                       RunWatched(options, "not-the-token"));
  EXPECT_EQ(result.status, JobStatus::kFailed);
  EXPECT_EQ(Step(result, "check").reason,
            absl::StrCat("authentication failed for git dependency ",
                         UrlAt("localhost", "itoa"),
                         " (host allowed, token rejected)"));
}

TEST_F(PrivateDependenciesTest, AHostNotAllowedGetsNoCredentials) {
  StartGitServer("127.0.0.1");
  if (HasFatalFailure() || IsSkipped()) return;
  PipelineOptions options =
      AppUsingGitItoa("127.0.0.1", kGitToken, "https://gitea.example");
  options.steps = {"check"};
  ASSERT_OK_AND_ASSIGN(PipelineResult result,
                       RunWatched(options, kGitToken));
  EXPECT_EQ(result.status, JobStatus::kFailed);
  EXPECT_EQ(Step(result, "check").reason,
            absl::StrCat("authentication failed for git dependency ",
                         git_->RepoUrl("itoa"),
                         " (host not in the allowed list: "
                         "https://gitea.example)"));
  EXPECT_THAT(git_->RequestLog(), Not(HasSubstr(" 200")));
}

TEST_F(PrivateDependenciesTest, AGitServerThatIsDownRequeuesTheJob) {
  StartGitServer("127.0.0.1", /*fail_first=*/1000);
  if (HasFatalFailure() || IsSkipped()) return;
  PipelineOptions options = AppUsingGitItoa("127.0.0.1");
  options.steps = {"check"};
  options.env = {{"CARGO_NET_RETRY", "0"}};
  EXPECT_THAT(RunPipeline(options, nullptr),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr(absl::StrCat("git dependency ",
                                              git_->RepoUrl("itoa"),
                                              " unavailable: "))));
}

TEST_F(PrivateDependenciesTest, RegistryDependencyBuildsAndTestsWithTheToken) {
  const std::string crates = PackItoa();
  CIAGENT_START_CARGO_REGISTRY(
      registry, {.crates_dir = crates, .token = kRegistryToken});
  PipelineOptions options = AppUsingRegistryItoa();
  options.private_dependencies.registries = {
      {.name = "gitea", .index = registry->index_url(), .token = kRegistryToken}};
  ASSERT_OK_AND_ASSIGN(PipelineResult result,
                       RunWatched(options, "rtok-0a1b2c3d4e5f"));
  EXPECT_EQ(result.status, JobStatus::kSuccess) << result.reason;
  EXPECT_EQ(result.tests.passed, 1);
  EXPECT_THAT(registry->RequestLog(),
              HasSubstr("GET /api/v1/crates/itoa/"));
}

TEST_F(PrivateDependenciesTest, RegistryTheOperatorConfiguredButNoTokenFailsClearly) {
  const std::string crates = PackItoa();
  CIAGENT_START_CARGO_REGISTRY(
      registry, {.crates_dir = crates, .token = kRegistryToken});
  PipelineOptions options = AppUsingRegistryItoa();
  options.steps = {"check"};
  // The operator's cargo config names the registry; nobody gave a token.
  options.cargo_config = dir_ + "/operator-config.toml";
  std::ofstream(options.cargo_config)
      << "[registries.gitea]\nindex = \"" << registry->index_url() << "\"\n";
  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, nullptr));
  EXPECT_EQ(result.status, JobStatus::kFailed);
  EXPECT_EQ(Step(result, "check").reason,
            "authentication failed for registry `gitea` (no token "
            "configured: name it in CI_CARGO_REGISTRIES)");

  // The same registry named with a wrong token.
  options.private_dependencies.registries = {
      {.name = "gitea", .index = "", .token = "Bearer wrong"}};
  ASSERT_OK_AND_ASSIGN(result, RunPipeline(options, nullptr));
  EXPECT_EQ(Step(result, "check").reason,
            "authentication failed for registry `gitea` (token rejected)");
}

TEST_F(PrivateDependenciesTest, ARegistryThatIsDownRequeuesTheJob) {
  const std::string crates = PackItoa();
  CIAGENT_START_CARGO_REGISTRY(registry, {.crates_dir = crates,
                                          .token = kRegistryToken,
                                          .fail_first_requests = 1000});
  PipelineOptions options = AppUsingRegistryItoa();
  options.steps = {"check"};
  options.env = {{"CARGO_NET_RETRY", "0"}};
  options.private_dependencies.registries = {
      {.name = "gitea", .index = registry->index_url(), .token = kRegistryToken}};
  EXPECT_THAT(RunPipeline(options, nullptr),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("registry `gitea` unavailable: ")));
}

}  // namespace
}  // namespace ciagent
