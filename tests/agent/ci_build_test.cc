// Runs the ci-build binary against a real redis-server and real cargo, and
// checks its documented contract: the job's final status and fields, the
// log stream, the ack, cancel, SIGTERM, timeouts, masking, the repository's
// configuration, local mode and exit codes.
#include <signal.h>
#include <simdjson.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ciagent/job/job.h"
#include "ciagent/queue/claim_file.h"
#include "ciagent/queue/job_queue.h"
#include "ciagent/queue/test_history.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/cargo_fixture.h"
#include "testing/cargo_registry_server.h"
#include "testing/git_server.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"
#include "testing/vendored_crate.h"

namespace ciagent {
namespace {

using ::ciagent::testing::kClippyWarnings;
using ::ciagent::testing::kFailingName;
using ::ciagent::testing::kFailingPassed;
using ::ciagent::testing::kPassingIgnored;
using ::ciagent::testing::kPassingPassed;

using ::ciagent::testing::ReadFileOrEmpty;
using ::ciagent::testing::Subprocess;
using ::ciagent::testing::SubprocessOptions;
using ::testing::HasSubstr;
using ::testing::Not;

// Exit codes as documented in `ci-build --help`.
constexpr int kSuccess = 0;
constexpr int kBuildFailed = 1;
constexpr int kUsageError = 2;
constexpr int kTimedOut = 124;
constexpr int kCancelled = 130;
constexpr int kTerminated = 143;

constexpr char kSecret[] = "tok-9f8e7d6c5b4a";
// Tokens of private dependencies (the registry's as Gitea wants it).
constexpr char kGitDependencyToken[] = "gdep-8a7b6c5d4e3f";
constexpr char kRegistryToken[] = "rdep-1b2c3d4e5f6a";

class CiBuildTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(tool_, testing::PathFromEnv("CIAGENT_CI_BUILD"));
    ASSERT_OK_AND_ASSIGN(dir_, testing::MakeTempDir("ci-build"));
    workdir_ = dir_ + "/work";
    ASSERT_EQ(mkdir(workdir_.c_str(), 0755), 0);
  }
  void TearDown() override {
    if (!dir_.empty()) testing::RemoveTree(dir_);
  }

  // Claims a job for `fixture` as ci-consume would: the entry is pending
  // for consumer "agent-a", job.json written, the crate in <workdir>/src.
  void ClaimJob(const testing::RedisServer& redis, const std::string& fixture,
                Job job = {}) {
    if (job.job_id.empty()) job.job_id = "job-" + fixture;
    job.repo = "https://git.example.com/acme/" + fixture + ".git";
    job.branch = "main";
    if (job.commit.empty()) job.commit = std::string(40, 'c');
    ASSERT_OK_AND_ASSIGN(redis_options_, RedisOptionsFromUrl(redis.url()));
    queue_options_.consumer = "agent-a";
    queue_options_.create_group = true;
    JobQueue queue(redis_options_, queue_options_);
    ASSERT_OK(queue.Enqueue(job).status());
    ASSERT_OK_AND_ASSIGN(claim_, queue.Claim(absl::Seconds(5)));
    ASSERT_OK(WriteClaimFile(workdir_ + "/job.json", claim_, queue_options_,
                             redis_options_));
    ASSERT_OK_AND_ASSIGN(std::string copied,
                         testing::CopyFixture(fixture, workdir_));
    ASSERT_EQ(rename(copied.c_str(), (workdir_ + "/src").c_str()), 0);
  }

  std::unique_ptr<Subprocess> Start(std::vector<std::string> flags,
                                    std::map<std::string, std::string> env) {
    std::vector<std::string> argv = {tool_};
    argv.insert(argv.end(), flags.begin(), flags.end());
    SubprocessOptions options;
    options.env = std::move(env);
    options.env["CI_TARGET_DIR"] = dir_ + "/target";
    options.env["CI_CARGO_HOME"] = dir_ + "/cargo-home";
    options.unset_env = {"REDIS_PASSWORD", "CI_SECRET_ENV", "CIAGENT_LOG_LEVEL"};
    options.stdout_path = dir_ + "/stdout";
    options.stderr_path = dir_ + "/stderr";
    absl::StatusOr<std::unique_ptr<Subprocess>> process =
        Subprocess::Start(argv, options);
    EXPECT_OK(process.status());
    return process.ok() ? *std::move(process) : nullptr;
  }

  int Run(std::vector<std::string> flags,
          std::map<std::string, std::string> env) {
    std::unique_ptr<Subprocess> process = Start(std::move(flags), std::move(env));
    if (process == nullptr) return -1;
    absl::StatusOr<int> code = process->Wait(absl::Minutes(5));
    EXPECT_OK(code.status());
    return code.value_or(-1);
  }

  std::string StatusField(const std::string& field) {
    RedisClient redis(redis_options_);
    absl::StatusOr<RedisReply> reply = redis.Command(
        {"HGET", queue_options_.StatusKey(claim_.job.job_id), field});
    return reply.ok() ? reply->str : "";
  }

  int64_t PendingEntries() {
    RedisClient redis(redis_options_);
    absl::StatusOr<RedisReply> reply = redis.Command(
        {"XPENDING", queue_options_.stream, queue_options_.group});
    if (!reply.ok() || !reply->is_array() || reply->elements.empty()) return -1;
    return reply->elements[0].integer;
  }

  // "<step>|<stream>|<line>" for every entry of the job's log stream.
  std::vector<std::string> LogLines() {
    RedisClient redis(redis_options_);
    absl::StatusOr<RedisReply> reply = redis.Command(
        {"XRANGE", queue_options_.LogKey(claim_.job.job_id), "-", "+"});
    std::vector<std::string> lines;
    if (!reply.ok()) return lines;
    for (const RedisReply& entry : reply->elements) {
      std::map<std::string, std::string> fields;
      const auto& kv = entry.elements[1].elements;
      for (size_t i = 0; i + 1 < kv.size(); i += 2) {
        fields[kv[i].str] = kv[i + 1].str;
      }
      lines.push_back(absl::StrCat(fields["step"], "|", fields["stream"], "|",
                                   fields["line"]));
    }
    return lines;
  }

  bool LogContains(absl::string_view needle) {
    for (const std::string& line : LogLines()) {
      if (absl::StrContains(line, needle)) return true;
    }
    return false;
  }

  // Appends `text` to the claimed checkout's Cargo.toml: the repository's
  // own [package.metadata.ciagent] table.
  void AppendToManifest(absl::string_view text) {
    std::ofstream(workdir_ + "/src/Cargo.toml", std::ios::app) << text;
  }

  // A stand-in cargo (for behaviour that does not depend on what cargo
  // does: environment, masking, timeouts): a shell script in PATH.
  std::string StandInCargo(absl::string_view script) {
    const std::string bin = dir_ + "/bin";
    mkdir(bin.c_str(), 0755);
    std::ofstream(bin + "/cargo") << "#!/bin/sh\n" << script << "\n";
    chmod((bin + "/cargo").c_str(), 0755);
    return bin + ":/usr/bin:/bin";
  }

  // Claims a job for the hanging_test fixture's test step, starts ci-build
  // on it and returns once the test's stubborn pair (a process in the
  // test's group and one in a session of its own, both ignoring SIGTERM)
  // is running.
  void StartHangingBuild(const testing::RedisServer& redis,
                         const std::string& path,
                         std::unique_ptr<Subprocess>* build) {
    ClaimJob(redis, "hanging_test", Job{.steps = {"test"}});
    *build = Start({"--job", workdir_ + "/job.json", "--grace", "1"},
                   {{"PATH", path}});
    ASSERT_NE(*build, nullptr);
    const std::string marker = HangingFixtureMarker();
    const absl::Time deadline = absl::Now() + absl::Minutes(3);
    while (testing::ProcessesWithArgv0(marker) < 2 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(200));
    }
    ASSERT_EQ(testing::ProcessesWithArgv0(marker), 2);
  }

  // The fixture marks its processes with its own directory (a job cannot
  // set CIAGENT_* variables).
  std::string HangingFixtureMarker() const { return workdir_ + "/src"; }

  std::string tool_;
  std::string dir_;
  std::string workdir_;
  RedisOptions redis_options_;
  QueueOptions queue_options_;
  ClaimedJob claim_;
};

TEST_F(CiBuildTest, PassingJobIsFinalizedSuccessWithResultsLogsAndAck) {
  CIAGENT_REQUIRE_CARGO(path);
  CIAGENT_START_REDIS(redis);
  ClaimJob(*redis, "passing");
  ASSERT_EQ(PendingEntries(), 1);

  int code = Run({"--job", workdir_ + "/job.json", "--result",
                  dir_ + "/result.json", "--metrics-file", dir_ + "/job.prom"},
                 {{"PATH", path}});

  EXPECT_EQ(code, kSuccess) << ReadFileOrEmpty(dir_ + "/stderr");
  EXPECT_EQ(StatusField("status"), "success");
  EXPECT_EQ(StatusField("tests_passed"), absl::StrCat(kPassingPassed));
  EXPECT_EQ(StatusField("tests_failed"), "0");
  EXPECT_THAT(StatusField("artifacts"), HasSubstr("\"name\":\"passing\""));
  EXPECT_THAT(StatusField("steps"), HasSubstr("\"name\":\"clippy\""));
  EXPECT_EQ(PendingEntries(), 0);
  EXPECT_TRUE(LogContains("test|stdout|test result: ok."));
  EXPECT_TRUE(LogContains("build|agent|step build ok"));
  EXPECT_THAT(ReadFileOrEmpty(dir_ + "/result.json"),
              HasSubstr("\"status\":\"success\""));
  EXPECT_THAT(ReadFileOrEmpty(dir_ + "/job.prom"),
              HasSubstr("ciagent_job_duration_seconds"));
  EXPECT_THAT(ReadFileOrEmpty(workdir_ + "/junit.xml"), HasSubstr("<testsuite"));
}

TEST_F(CiBuildTest, FailingTestIsAFinalFailureNamingTheTest) {
  CIAGENT_REQUIRE_CARGO(path);
  CIAGENT_START_REDIS(redis);
  ClaimJob(*redis, "failing_test", Job{.steps = {"check", "test"}});

  int code = Run({"--job", workdir_ + "/job.json"}, {{"PATH", path}});

  EXPECT_EQ(code, kBuildFailed);
  EXPECT_EQ(StatusField("status"), "failed");
  EXPECT_EQ(StatusField("reason"), "test failed: 1 test failed");
  EXPECT_EQ(StatusField("tests_failed"), "1");
  EXPECT_THAT(StatusField("failed_tests"), HasSubstr(kFailingName));
  EXPECT_EQ(PendingEntries(), 0);
}

TEST_F(CiBuildTest, CancelRequestKillsTheBuildAndEveryProcessItStarted) {
  CIAGENT_REQUIRE_CARGO(path);
  CIAGENT_START_REDIS(redis);
  const std::string marker = HangingFixtureMarker();
  std::unique_ptr<Subprocess> build;
  ASSERT_NO_FATAL_FAILURE(StartHangingBuild(*redis, path, &build));
  EXPECT_EQ(StatusField("status"), "running");
  EXPECT_EQ(PendingEntries(), 1);

  JobQueue api(redis_options_, queue_options_);
  ASSERT_OK(api.RequestCancel(claim_.job.job_id, "superseded"));
  const absl::Time cancelled_at = absl::Now();
  ASSERT_OK_AND_ASSIGN(int code, build->Wait(absl::Seconds(30)));

  EXPECT_EQ(code, kCancelled);
  EXPECT_LT(absl::Now() - cancelled_at, absl::Seconds(5));
  EXPECT_EQ(StatusField("status"), "cancelled");
  EXPECT_THAT(StatusField("reason"), HasSubstr("superseded"));
  EXPECT_EQ(PendingEntries(), 0);
  EXPECT_EQ(testing::ProcessesWithMarker(marker), 0);
}

TEST_F(CiBuildTest, SigtermKillsTheBuildAndRequeuesTheJob) {
  CIAGENT_REQUIRE_CARGO(path);
  CIAGENT_START_REDIS(redis);
  const std::string marker = HangingFixtureMarker();
  std::unique_ptr<Subprocess> build;
  ASSERT_NO_FATAL_FAILURE(StartHangingBuild(*redis, path, &build));

  kill(build->pid(), SIGTERM);
  ASSERT_OK_AND_ASSIGN(int code, build->Wait(absl::Seconds(15)));

  EXPECT_EQ(code, kTerminated);
  EXPECT_EQ(StatusField("status"), "queued");
  EXPECT_EQ(testing::ProcessesWithMarker(marker), 0);
  // Another agent gets it at once, as the second delivery.
  QueueOptions other = queue_options_;
  other.consumer = "agent-b";
  JobQueue queue(redis_options_, other);
  ASSERT_OK_AND_ASSIGN(ClaimedJob again, queue.Claim(absl::Seconds(2)));
  EXPECT_EQ(again.job.job_id, claim_.job.job_id);
  EXPECT_EQ(again.attempt, 2);
}

TEST_F(CiBuildTest, JobTimeoutEndsTheJobAsTimeout) {
  CIAGENT_START_REDIS(redis);
  ClaimJob(*redis, "passing",
           Job{.timeout = absl::Seconds(2), .steps = {"check"}});
  const std::string path = StandInCargo("exec sleep 60");

  int code = Run({"--job", workdir_ + "/job.json", "--grace", "1"},
                 {{"PATH", path}});

  EXPECT_EQ(code, kTimedOut);
  EXPECT_EQ(StatusField("status"), "timeout");
  EXPECT_THAT(StatusField("reason"), HasSubstr("timed out"));
  EXPECT_EQ(PendingEntries(), 0);
}

TEST_F(CiBuildTest, SecretValuesAreMaskedInTheLogAndNeverInOutput) {
  CIAGENT_START_REDIS(redis);
  ClaimJob(*redis, "passing", Job{.steps = {"check"}});
  const std::string path = StandInCargo("echo \"token is $DEPLOY_TOKEN\"");

  int code = Run({"--job", workdir_ + "/job.json", "--secret-env",
                  "DEPLOY_TOKEN"},
                 {{"PATH", path}, {"DEPLOY_TOKEN", kSecret},
                  {"GIT_TOKEN", "git-tok-123456"}});

  EXPECT_EQ(code, kSuccess) << ReadFileOrEmpty(dir_ + "/stderr");
  EXPECT_TRUE(LogContains("check|stdout|token is [MASKED]"));
  EXPECT_FALSE(LogContains(kSecret));
  EXPECT_THAT(ReadFileOrEmpty(dir_ + "/stderr"), Not(HasSubstr(kSecret)));
  EXPECT_THAT(ReadFileOrEmpty(dir_ + "/stderr"),
              Not(HasSubstr("git-tok-123456")));
}

TEST_F(CiBuildTest, LogIsCappedWithOneTruncationMarker) {
  CIAGENT_START_REDIS(redis);
  ClaimJob(*redis, "passing", Job{.steps = {"check"}});
  const std::string path = StandInCargo("seq 1 5000");

  int code = Run({"--job", workdir_ + "/job.json", "--log-max-bytes", "2000"},
                 {{"PATH", path}});

  EXPECT_EQ(code, kSuccess);
  int markers = 0;
  for (const std::string& line : LogLines()) {
    if (absl::StrContains(line, "truncat")) ++markers;
  }
  EXPECT_EQ(markers, 1);
  EXPECT_FALSE(LogContains("check|stdout|5000"));
}

// The repository's configuration under the job's, as queue mode records it:
// feature_gated's tests compile only with the feature the repository asks
// for, and the effective configuration lands in the status hash and the
// result JSON alike.
TEST_F(CiBuildTest, QueuedJobRecordsTheRepositoryConfigurationItRanWith) {
  CIAGENT_REQUIRE_CARGO(path);
  CIAGENT_START_REDIS(redis);
  ClaimJob(*redis, "feature_gated", Job{.steps = {"check", "test"}});
  AppendToManifest(
      "\n[package.metadata.ciagent]\n"
      "steps = [\"check\", \"build\", \"test\", \"clippy\"]\n"
      "features = [\"extra\"]\n"
      "env = { FEATURE_GATED_MODE = \"configured\" }\n"
      "timeout = \"20m\"\n"
      "[package.metadata.ciagent.clippy]\n"
      "allow-failure = true\n");

  int code = Run({"--job", workdir_ + "/job.json", "--result",
                  dir_ + "/result.json"},
                 {{"PATH", path}});

  EXPECT_EQ(code, kSuccess) << ReadFileOrEmpty(dir_ + "/stderr");
  EXPECT_EQ(StatusField("status"), "success");
  EXPECT_EQ(StatusField("tests_passed"), "1");
  EXPECT_TRUE(LogContains("|agent|config (from package.metadata.ciagent): "));
  const std::string status_config = StatusField("config");
  simdjson::dom::parser status_parser;
  simdjson::dom::element config;
  ASSERT_EQ(status_parser.parse(status_config).get(config), simdjson::SUCCESS)
      << status_config;
  EXPECT_EQ(std::string_view(config["source"]), "package.metadata.ciagent");
  EXPECT_EQ(std::string_view(config["features"].at(0)), "extra");
  EXPECT_EQ(std::string_view(config["env"]["FEATURE_GATED_MODE"]),
            "configured");
  EXPECT_EQ(int64_t(config["timeout_s"]), 20 * 60);
  EXPECT_TRUE(bool(config["clippy"]["allow_failure"]));
  // The job's steps win over the repository's.
  EXPECT_EQ(simdjson::minify(config["steps"]), R"(["check","test"])");

  simdjson::dom::parser result_parser;
  simdjson::dom::element result;
  ASSERT_EQ(result_parser.load(dir_ + "/result.json").get(result),
            simdjson::SUCCESS);
  EXPECT_EQ(std::string_view(result["status"]), "success");
  EXPECT_EQ(simdjson::minify(result["config"]), simdjson::minify(config));
}

// A configuration the repository must fix ends the job `error`, not
// requeued, with the key's path and the rule as the reason.
TEST_F(CiBuildTest, BadRepositoryConfigurationEndsTheJobErrorNamingTheKey) {
  CIAGENT_REQUIRE_CARGO(path);
  CIAGENT_START_REDIS(redis);
  ClaimJob(*redis, "passing", Job{.steps = {"check"}});
  AppendToManifest(
      "\n[package.metadata.ciagent.clippy]\nallow-failure = \"yes\"\n");

  int code = Run({"--job", workdir_ + "/job.json", "--result",
                  dir_ + "/result.json"},
                 {{"PATH", path}});

  constexpr char kReason[] =
      "package.metadata.ciagent.clippy.allow-failure: expected a boolean, "
      "got \"yes\"";
  EXPECT_EQ(code, kBuildFailed) << ReadFileOrEmpty(dir_ + "/stderr");
  EXPECT_EQ(StatusField("status"), "error");
  EXPECT_EQ(StatusField("reason"), kReason);
  EXPECT_EQ(PendingEntries(), 0);
  EXPECT_TRUE(LogContains(absl::StrCat("|agent|build could not run: ", kReason)));
  EXPECT_FALSE(LogContains("check|"));
  simdjson::dom::parser parser;
  simdjson::dom::element result;
  ASSERT_EQ(parser.load(dir_ + "/result.json").get(result), simdjson::SUCCESS);
  EXPECT_EQ(std::string_view(result["status"]), "error");
  EXPECT_EQ(std::string_view(result["reason"]), kReason);
}

TEST_F(CiBuildTest, LocalModeBuildsACheckoutAndPrintsASummary) {
  CIAGENT_REQUIRE_CARGO(path);
  ASSERT_OK_AND_ASSIGN(std::string src, testing::CopyFixture("failing_test", dir_));

  int code = Run({"--local", src, "--steps", "check,test", "--result",
                  dir_ + "/result.json"},
                 {{"PATH", path}});

  EXPECT_EQ(code, kBuildFailed);
  const std::string out = ReadFileOrEmpty(dir_ + "/stdout");
  EXPECT_THAT(out, HasSubstr("[test] test result: FAILED."));
  EXPECT_THAT(out, HasSubstr(kFailingName));
  simdjson::dom::parser parser;
  simdjson::dom::element result;
  ASSERT_EQ(parser.load(dir_ + "/result.json").get(result), simdjson::SUCCESS);
  EXPECT_EQ(std::string_view(result["status"]), "failed");
  EXPECT_EQ(int64_t(result["tests"]["failed"]), 1);
  EXPECT_EQ(std::string_view(result["failed_tests"].at(0)),
            std::string_view(kFailingName));
}

// A checkout depending on a crate on a token-protected git server and on
// another from a token-protected registry builds and tests with the agent's
// credentials, given as operators give them (files, variables); no token
// reaches the log stream, the status hash, ci-build's output, the work dir,
// the cache or any process's argv or environment.
TEST_F(CiBuildTest, PrivateGitAndRegistryDependenciesBuildAndNoTokenLeaks) {
  CIAGENT_REQUIRE_CARGO(path);
  CIAGENT_REQUIRE_VENDORED_CRATE(itoa, "itoa");
  CIAGENT_START_REDIS(redis);
  CIAGENT_START_GIT_SERVER(git, {.username = "ci",
                                 .password = kGitDependencyToken});
  ASSERT_OK_AND_ASSIGN(std::string repo, git->CreateBareRepo("itoa"));
  ASSERT_OK(testing::CommitTree(repo, "main", itoa, "itoa"));
  const std::string crates = dir_ + "/crates";
  std::filesystem::create_directories(crates);
  std::filesystem::copy(itoa, dir_ + "/itoa", std::filesystem::copy_options::recursive);
  ASSERT_OK(testing::PackageCrate(dir_ + "/itoa", path, crates).status());
  CIAGENT_START_CARGO_REGISTRY(
      registry, {.crates_dir = crates,
                 .token = absl::StrCat("Bearer ", kRegistryToken)});
  ClaimJob(*redis, "passing", Job{.steps = {"check", "test"}});
  // The checkout becomes a crate using both: itoa from git, renamed, and
  // itoa from the registry.
  testing::RemoveTree(workdir_ + "/src");
  std::filesystem::create_directories(workdir_ + "/src/src");
  std::ofstream(workdir_ + "/src/Cargo.toml")
      << "[package]\nname = \"app\"\nversion = \"0.1.0\"\n"
         "edition = \"2021\"\n\n[dependencies]\n"
         "itoa_git = { package = \"itoa\", git = \"" << git->RepoUrl("itoa")
      << "\", branch = \"main\" }\n"
         "itoa = { version = \"1\", registry = \"gitea\" }\n";
  std::ofstream(workdir_ + "/src/src/lib.rs")
      << "#[test]\nfn both_private_crates_format_alike() {\n"
         "    assert_eq!(itoa::Buffer::new().format(7u8),\n"
         "               itoa_git::Buffer::new().format(7u8));\n}\n";
  ASSERT_OK(testing::WriteText(dir_ + "/git-token", kGitDependencyToken, 0600));
  ASSERT_OK(testing::WriteText(dir_ + "/registry-token",
                               absl::StrCat("Bearer ", kRegistryToken), 0600));

  std::unique_ptr<Subprocess> build = Start(
      {"--job", workdir_ + "/job.json"},
      {{"PATH", path},
       {"GIT_USERNAME", "ci"},
       {"GIT_TOKEN_FILE", dir_ + "/git-token"},
       {"CI_GIT_CREDENTIAL_HOSTS", absl::StrCat("http://127.0.0.1:", git->port())},
       {"CI_CARGO_REGISTRIES", absl::StrCat("gitea=", registry->index_url())},
       {"CI_CARGO_REGISTRY_GITEA_TOKEN_FILE", dir_ + "/registry-token"}});
  ASSERT_NE(build, nullptr);
  int processes_with_token = 0;
  while (build->running()) {
    processes_with_token += testing::ProcessesWithMarker(kGitDependencyToken) +
                            testing::ProcessesWithMarker(kRegistryToken);
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_OK_AND_ASSIGN(int code, build->Wait(absl::Seconds(10)));

  EXPECT_EQ(code, kSuccess) << ReadFileOrEmpty(dir_ + "/stderr");
  EXPECT_EQ(StatusField("status"), "success") << StatusField("reason");
  EXPECT_EQ(StatusField("tests_passed"), "1");
  EXPECT_EQ(processes_with_token, 0);
  RedisClient client(redis_options_);
  ASSERT_OK_AND_ASSIGN(
      RedisReply status,
      client.Command({"HGETALL", queue_options_.StatusKey(claim_.job.job_id)}));
  for (const char* token : {kGitDependencyToken, kRegistryToken}) {
    for (const RedisReply& field : status.elements) {
      EXPECT_THAT(field.str, Not(HasSubstr(token)));
    }
    EXPECT_FALSE(LogContains(token));
    EXPECT_THAT(ReadFileOrEmpty(dir_ + "/stdout"), Not(HasSubstr(token)));
    EXPECT_THAT(ReadFileOrEmpty(dir_ + "/stderr"), Not(HasSubstr(token)));
    for (const std::string& tree : {workdir_, dir_ + "/cargo-home"}) {
      for (const auto& entry :
           std::filesystem::recursive_directory_iterator(tree)) {
        if (entry.is_regular_file()) {
          EXPECT_THAT(ReadFileOrEmpty(entry.path().string()),
                      Not(HasSubstr(token)))
              << entry.path();
        }
      }
    }
  }
}

// Build scripts run as the agent's user and can read what cargo reads; a
// build that prints the private dependencies' tokens gets them masked.
TEST_F(CiBuildTest, PrivateDependencyTokensABuildPrintsAreMasked) {
  CIAGENT_START_REDIS(redis);
  ClaimJob(*redis, "passing", Job{.steps = {"check"}});
  const std::string path = StandInCargo(
      "cat \"$XDG_CONFIG_HOME/git-token\"; echo\n"
      "for f in \"$XDG_CONFIG_HOME\"/registry-*.token; do cat \"$f\"; echo; "
      "done");
  ASSERT_OK(testing::WriteText(dir_ + "/git-token", kGitDependencyToken, 0600));

  // The job's repository (git.example.com) is the default allowed origin.
  int code = Run({"--job", workdir_ + "/job.json"},
                 {{"PATH", path},
                  {"GIT_TOKEN_FILE", dir_ + "/git-token"},
                  {"CI_CARGO_REGISTRIES",
                   "gitea=sparse+https://registry.example/index/"},
                  {"CI_CARGO_REGISTRY_GITEA_TOKEN", kRegistryToken}});

  EXPECT_EQ(code, kSuccess) << ReadFileOrEmpty(dir_ + "/stderr");
  EXPECT_TRUE(LogContains(
      "config|agent|private dependencies: git credentials for "
      "https://git.example.com; registries: gitea"));
  EXPECT_EQ(absl::c_count(LogLines(), "check|stdout|[MASKED]"), 2);
  EXPECT_FALSE(LogContains(kGitDependencyToken));
  EXPECT_FALSE(LogContains(kRegistryToken));
}

// History across queued runs of the flaky_tests fixture on one branch:
// commit A, then B, then A again, with a test told to fail on the last two.
// On the third run that test failed on a commit where it had passed: flaky
// by definition. The operators' quarantine (a Redis set) covers the rest,
// and the job passes.
TEST_F(CiBuildTest, TestHistoryAcrossRunsMakesAFailureOnAPassingCommitFlaky) {
  CIAGENT_REQUIRE_CARGO(path);
  CIAGENT_START_REDIS(redis);
  const std::string commit_a(40, 'a'), commit_b(40, 'b');
  const std::string base = workdir_;
  // One object of the status hash's test_attempts, with its history.
  const auto attempt = [](absl::string_view name, absl::string_view outcome,
                          bool quarantined, int runs, int failed,
                          absl::string_view since) {
    return absl::StrCat(
        R"j("name":")j", name,
        R"j(","suite":"unittests src/lib.rs (flaky_tests)","outcome":")j",
        outcome, R"j(","attempts":3,"quarantined":)j",
        quarantined ? "true" : "false",
        R"j(,"history":{"branch":"main","runs":)j", runs, R"j(,"failed":)j",
        failed, R"j(,"failing_since":")j", since, R"j("}})j");
  };
  const auto run = [&](int n, const std::string& commit, bool told_to_fail) {
    workdir_ = absl::StrCat(base, "-", n);
    ASSERT_EQ(mkdir(workdir_.c_str(), 0755), 0);
    Job job{.job_id = absl::StrCat("flaky-", n),
            .commit = commit,
            .steps = {"check", "test"}};
    if (told_to_fail) job.env = {{"FLAKY_FIXTURE_FAIL", "1"}};
    ClaimJob(*redis, "flaky_tests", job);
    Run({"--job", workdir_ + "/job.json"}, {{"PATH", path}});
  };

  run(1, commit_a, false);
  EXPECT_EQ(StatusField("status"), "failed");
  EXPECT_THAT(StatusField("test_attempts"),
              HasSubstr(attempt("tests::always_fails", "failed", false, 1, 1,
                                commit_a)));

  run(2, commit_b, true);
  EXPECT_EQ(StatusField("status"), "failed");
  EXPECT_THAT(StatusField("failed_tests"), HasSubstr("tests::fails_when_told"));
  EXPECT_THAT(StatusField("test_attempts"),
              HasSubstr(attempt("tests::fails_when_told", "failed", false, 2, 1,
                                commit_b)));

  RedisClient client(redis_options_);
  ASSERT_OK(client
                .Command({"SADD",
                          QuarantineKey("https://git.example.com/acme/"
                                        "flaky_tests.git"),
                          "tests::always_fails", "tests::foo",
                          "src/lib.rs - add (line 10)"})
                .status());
  run(3, commit_a, true);
  EXPECT_EQ(StatusField("status"), "success") << StatusField("reason");
  EXPECT_EQ(StatusField("tests_flaky"), "3");
  EXPECT_THAT(StatusField("flaky_tests"), HasSubstr("tests::fails_when_told"));
  EXPECT_THAT(StatusField("failed_tests"),
              Not(HasSubstr("tests::fails_when_told")));
  EXPECT_THAT(StatusField("quarantined_tests"),
              HasSubstr("tests::quarantined_fails"));
  EXPECT_THAT(StatusField("quarantined_tests"),
              HasSubstr("src/lib.rs - add (line 10)"));
  EXPECT_THAT(StatusField("test_attempts"),
              HasSubstr(attempt("tests::always_fails", "failed", true, 3, 3,
                                commit_a)));
  EXPECT_THAT(StatusField("test_attempts"),
              HasSubstr(R"j("name":"tests::fails_when_told",)j"
                        R"j("suite":"unittests src/lib.rs (flaky_tests)",)j"
                        R"j("outcome":"flaky","attempts":3,)j"));
}

TEST_F(CiBuildTest, UsageErrorsExitTwo) {
  EXPECT_EQ(Run({}, {}), kUsageError);
  EXPECT_EQ(Run({"--job", dir_ + "/missing.json"}, {}), kUsageError);
  EXPECT_EQ(Run({"--local", dir_, "--job", dir_ + "/x"}, {}), kUsageError);
  EXPECT_EQ(Run({"--local", dir_, "--timeout", "0"}, {}), kUsageError);
}

}  // namespace
}  // namespace ciagent
