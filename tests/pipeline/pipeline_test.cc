// The Rust pipeline against real cargo and the fixture crates in
// tests/fixtures (their expected outcomes: tests/fixtures/README.md).
#include "ciagent/pipeline/pipeline.h"

#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "ciagent/base/process_runner.h"
#include "ciagent/pipeline/pipeline_config.h"
#include "ciagent/pipeline/test_results.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/cargo_fixture.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"

namespace ciagent {
namespace {

using ::ciagent::testing::kClippyWarnings;
using ::ciagent::testing::kFailingName;
using ::ciagent::testing::kFailingPassed;
using ::ciagent::testing::kPassingIgnored;
using ::ciagent::testing::kPassingPassed;

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using ::ciagent::testing::StatusIs;

// Records what the observer saw, to check streaming and step boundaries.
class RecordingObserver : public PipelineObserver {
 public:
  void StepStarted(absl::string_view step) override {
    started.emplace_back(step);
  }
  void StepOutput(absl::string_view step, absl::string_view stream,
                  absl::string_view line) override {
    lines.push_back(absl::StrCat(step, "|", stream, "|", line));
  }
  std::vector<std::string> started;
  std::vector<std::string> lines;

  bool Saw(absl::string_view needle) const { return Count(needle) > 0; }
  int Count(absl::string_view needle) const {
    int n = 0;
    for (const std::string& line : lines) n += absl::StrContains(line, needle);
    return n;
  }
};

auto Step(absl::string_view name, StepStatus status) {
  return AllOf(Field(&StepRecord::name, std::string(name)),
               Field(&StepRecord::status, status));
}

std::string Sha256Of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream data;
  data << in.rdbuf();
  const std::string bytes = data.str();
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &size, EVP_sha256(), nullptr);
  std::string hex;
  for (unsigned int i = 0; i < size; ++i) {
    absl::StrAppend(&hex, absl::Hex(digest[i], absl::kZeroPad2));
  }
  return hex;
}

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(BecomeChildSubreaper());
    ASSERT_OK_AND_ASSIGN(tmp_, testing::MakeTempDir("pipeline"));
  }
  void TearDown() override {
    if (!tmp_.empty()) testing::RemoveTree(tmp_);
  }

  // Options for a fresh copy of fixture `name`, with its own target and
  // cargo home under the test's temp dir.
  PipelineOptions OptionsFor(const std::string& name, const std::string& path) {
    absl::StatusOr<std::string> src = testing::CopyFixture(name, tmp_);
    EXPECT_OK(src.status());
    PipelineOptions options;
    options.source_dir = src.value_or("");
    options.work_dir = tmp_;
    options.target_dir = tmp_ + "/target";
    options.cargo_home = tmp_ + "/cargo-home";
    options.path = path;
    options.grace = absl::Seconds(2);
    return options;
  }

  // Options for a stand-in crate: src/ with a bare Cargo.toml, and `tools`
  // (name => shell script body) as executables in bin/, which heads PATH.
  // For behaviour that does not depend on what cargo does.
  PipelineOptions StandInCrate(
      const std::vector<std::pair<std::string, std::string>>& tools) {
    EXPECT_EQ(mkdir((tmp_ + "/bin").c_str(), 0755), 0);
    EXPECT_EQ(mkdir((tmp_ + "/src").c_str(), 0755), 0);
    std::ofstream(tmp_ + "/src/Cargo.toml") << "[package]\n";
    for (const auto& [name, script] : tools) {
      const std::string tool = tmp_ + "/bin/" + name;
      std::ofstream(tool) << "#!/bin/sh\n" << script;
      EXPECT_EQ(chmod(tool.c_str(), 0755), 0);
    }
    PipelineOptions options;
    options.source_dir = tmp_ + "/src";
    options.path = tmp_ + "/bin:/usr/bin:/bin";
    return options;
  }

  std::string tmp_;
};

TEST_F(PipelineTest, PassingCrateRunsEveryStepAndReportsItsTests) {
  CIAGENT_REQUIRE_CARGO(path);
  PipelineOptions options = OptionsFor("passing", path);
  RecordingObserver observer;

  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, &observer));

  EXPECT_EQ(result.status, JobStatus::kSuccess) << result.reason;
  EXPECT_THAT(result.steps,
              ElementsAre(Step("check", StepStatus::kOk),
                          Step("build", StepStatus::kOk),
                          Step("test", StepStatus::kOk),
                          Step("clippy", StepStatus::kOk),
                          Step("audit", StepStatus::kSkipped),
                          Step("image", StepStatus::kSkipped)));
  EXPECT_THAT(result.steps[4].reason, HasSubstr("not installed"));
  EXPECT_EQ(result.tests.passed, kPassingPassed);
  EXPECT_EQ(result.tests.failed, 0);
  EXPECT_EQ(result.tests.ignored, kPassingIgnored);
  EXPECT_EQ(observer.started,
            (std::vector<std::string>{"check", "build", "test", "clippy"}));
  // Commands are announced, cargo's JSON is not forwarded.
  EXPECT_TRUE(observer.Saw("build|agent|$ cargo build --workspace --release"));
  EXPECT_FALSE(observer.Saw("\"reason\":\"compiler-artifact\""));
  EXPECT_TRUE(observer.Saw("test|stdout|test result: ok."));

  ASSERT_EQ(result.artifacts.size(), 1u);
  const Artifact& binary = result.artifacts[0];
  EXPECT_EQ(binary.name, "passing");
  EXPECT_EQ(binary.path, options.target_dir + "/release/passing");
  EXPECT_EQ(binary.sha256, Sha256Of(binary.path));
  EXPECT_GT(binary.size_bytes, 0);
  EXPECT_THAT(testing::ReadFileOrEmpty(tmp_ + "/junit.xml"),
              HasSubstr("<testsuites"));
}

TEST_F(PipelineTest, FailingTestFailsTheJobNamesTheTestAndStillRunsClippy) {
  CIAGENT_REQUIRE_CARGO(path);
  PipelineOptions options = OptionsFor("failing_test", path);

  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, nullptr));

  EXPECT_EQ(result.status, JobStatus::kFailed);
  EXPECT_EQ(result.reason, "test failed: 1 test failed");
  EXPECT_THAT(result.steps, Contains(Step("test", StepStatus::kFailed)));
  EXPECT_THAT(result.steps, Contains(Step("clippy", StepStatus::kOk)));
  EXPECT_EQ(result.tests.failed, 1);
  EXPECT_EQ(result.tests.passed, kFailingPassed);
  EXPECT_THAT(result.tests.failing_names, ElementsAre(kFailingName));
  EXPECT_THAT(testing::ReadFileOrEmpty(tmp_ + "/junit.xml"),
              HasSubstr("<failure"));
}

TEST_F(PipelineTest, CompileErrorSkipsTheStepsThatNeedCheck) {
  CIAGENT_REQUIRE_CARGO(path);
  PipelineOptions options = OptionsFor("compile_error", path);
  RecordingObserver observer;

  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, &observer));

  EXPECT_EQ(result.status, JobStatus::kFailed);
  EXPECT_THAT(result.reason, HasSubstr("check failed"));
  EXPECT_THAT(result.steps, ElementsAre(Step("check", StepStatus::kFailed),
                                        Step("build", StepStatus::kSkipped),
                                        Step("test", StepStatus::kSkipped),
                                        Step("clippy", StepStatus::kSkipped),
                                        Step("audit", StepStatus::kSkipped),
                                        Step("image", StepStatus::kSkipped)));
  EXPECT_EQ(result.steps[0].exit_code, 101);
  EXPECT_EQ(result.steps[1].reason, "needs check, which failed");
  // The compiler's message reaches the log, rendered.
  EXPECT_TRUE(observer.Saw("check|stderr|error[E0308]: mismatched types"));
}

TEST_F(PipelineTest, JobSelectsASubsetOfSteps) {
  CIAGENT_REQUIRE_CARGO(path);
  PipelineOptions options = OptionsFor("passing", path);
  options.steps = {"test", "check"};

  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, nullptr));

  EXPECT_EQ(result.status, JobStatus::kSuccess);
  EXPECT_THAT(result.steps, ElementsAre(Step("check", StepStatus::kOk),
                                        Step("build", StepStatus::kSkipped),
                                        Step("test", StepStatus::kOk),
                                        Step("clippy", StepStatus::kSkipped),
                                        Step("audit", StepStatus::kSkipped),
                                        Step("image", StepStatus::kSkipped)));
  EXPECT_EQ(result.steps[1].reason, "not selected by the job");
  EXPECT_THAT(result.artifacts, IsEmpty());
}

TEST_F(PipelineTest, ClippyWarningsAreCountedAndFailOnlyWhenConfigured) {
  CIAGENT_REQUIRE_CARGO(path);
  PipelineOptions options = OptionsFor("clippy_warning", path);
  options.steps = {"check", "clippy"};

  ASSERT_OK_AND_ASSIGN(PipelineResult lenient, RunPipeline(options, nullptr));
  options.clippy_warnings_fail = true;
  ASSERT_OK_AND_ASSIGN(PipelineResult strict, RunPipeline(options, nullptr));

  EXPECT_EQ(lenient.status, JobStatus::kSuccess);
  EXPECT_EQ(lenient.clippy_warnings, kClippyWarnings);
  EXPECT_EQ(strict.status, JobStatus::kFailed);
  EXPECT_EQ(strict.clippy_warnings, kClippyWarnings);
  EXPECT_EQ(strict.reason,
            absl::StrCat("clippy failed: ", kClippyWarnings, " clippy warnings"));
}

TEST_F(PipelineTest, TimeoutKillsTheStepAndEveryProcessItStarted) {
  CIAGENT_REQUIRE_CARGO(path);
  PipelineOptions options = OptionsFor("hanging_test", path);
  const std::string marker = absl::StrCat("ciagent-marker-", getpid(), "-timeout");
  options.env = {{"CIAGENT_FIXTURE_MARKER", marker}};
  options.steps = {"check", "test"};
  options.step_timeout = absl::Seconds(40);
  // Compiling the test binary takes part of it; the test then hangs.
  options.job_timeout = absl::Seconds(40);
  options.grace = absl::Seconds(1);

  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, nullptr));

  EXPECT_EQ(result.status, JobStatus::kTimeout);
  EXPECT_THAT(result.steps, Contains(Step("test", StepStatus::kTimeout)));
  EXPECT_THAT(result.reason, HasSubstr("timed out"));
  EXPECT_EQ(testing::ProcessesWithMarker(marker), 0);
}

TEST_F(PipelineTest, CancelStopsTheRunningStepAndSkipsTheRest) {
  CIAGENT_REQUIRE_CARGO(path);
  PipelineOptions options = OptionsFor("hanging_test", path);
  const std::string marker = absl::StrCat("ciagent-marker-", getpid(), "-cancel");
  options.env = {{"CIAGENT_FIXTURE_MARKER", marker}};
  options.steps = {"test", "clippy"};
  // Cancel once the hanging test has started its stubborn processes.
  options.cancel_requested = [&] {
    return testing::ProcessesWithArgv0(marker) == 2;
  };

  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, nullptr));

  EXPECT_EQ(result.status, JobStatus::kCancelled);
  EXPECT_FALSE(result.interrupted);
  EXPECT_THAT(result.steps, Contains(Step("test", StepStatus::kCancelled)));
  EXPECT_THAT(result.steps, Contains(Step("clippy", StepStatus::kSkipped)));
  EXPECT_EQ(testing::ProcessesWithMarker(marker), 0);
}

TEST_F(PipelineTest, DependenciesBuildOfflineThroughTheOperatorCargoConfig) {
  CIAGENT_REQUIRE_CARGO(path);
  PipelineOptions options = OptionsFor("with_deps", path);
  ASSERT_OK_AND_ASSIGN(std::string fixtures, testing::FixturesDir());
  options.cargo_config = fixtures + "/cargo-config-debian.toml";
  options.steps = {"check", "build", "test"};

  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, nullptr));

  EXPECT_EQ(result.status, JobStatus::kSuccess) << result.reason;
  EXPECT_EQ(testing::ReadFileOrEmpty(options.cargo_home + "/config.toml"),
            testing::ReadFileOrEmpty(options.cargo_config));
  EXPECT_EQ(result.tests.failed, 0);
  EXPECT_GT(result.tests.passed, 0);
}

// The environment a step gets, seen through a stand-in cargo that prints
// its arguments and environment (real cargo runs in the tests above).
TEST_F(PipelineTest, StepsGetTheJobEnvironmentAndNothingOfTheAgents) {
  PipelineOptions options =
      StandInCrate({{"cargo", "echo \"args: $*\"\nenv\n"}});
  std::ofstream(tmp_ + "/src/Cargo.lock") << "";
  setenv("CIAGENT_TEST_AGENT_SECRET", "agent-only", 1);
  options.cargo_home = tmp_ + "/cargo-home";
  options.steps = {"check"};
  options.env = {{"RUST_LOG", "debug"}};
  options.secret_env = {{"CARGO_REGISTRIES_ACME_TOKEN", "s3cret"}};
  RecordingObserver observer;

  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, &observer));
  unsetenv("CIAGENT_TEST_AGENT_SECRET");

  EXPECT_EQ(result.status, JobStatus::kSuccess) << result.reason;
  EXPECT_TRUE(observer.Saw(
      "check|stdout|args: check --workspace --all-targets --locked"));
  for (const std::string& expected : std::vector<std::string>{
           "RUST_LOG=debug", "CARGO_REGISTRIES_ACME_TOKEN=s3cret",
        "CARGO_INCREMENTAL=0", "CARGO_TERM_COLOR=never", "CI=true",
        "CARGO_HOME=" + options.cargo_home,
        "CARGO_TARGET_DIR=" + options.source_dir + "/target"}) {
    EXPECT_TRUE(observer.Saw("check|stdout|" + expected)) << expected;
  }
  EXPECT_FALSE(observer.Saw("agent-only"));
}

// cargo-nextest cannot be installed where these tests run: a stand-in
// plays it, writing the JUnit file where nextest would for our profile and
// exiting as nextest does when tests fail (100).
TEST_F(PipelineTest, NextestWhenInstalledAndItsJunitGivesTheResults) {
  PipelineOptions options = StandInCrate(
      {{"cargo-nextest", "exit 0\n"},
       {"cargo",
        "echo \"args: $*\"\n"
        "[ \"$1\" = nextest ] || exit 0\n"
        "mkdir -p \"$CARGO_TARGET_DIR/nextest/ciagent\"\n"
        "cat > \"$CARGO_TARGET_DIR/nextest/ciagent/junit.xml\" <<'EOF'\n"
        "<testsuites><testsuite name=\"app\" tests=\"3\">"
        "<testcase name=\"adds\" classname=\"app\"/>"
        "<testcase name=\"subtracts\" classname=\"app\">"
        "<failure message=\"boom\"/></testcase>"
        "<testcase name=\"later\" classname=\"app\"><skipped/></testcase>"
        "</testsuite></testsuites>\n"
        "EOF\n"
        "exit 100\n"}});
  options.steps = {"test"};
  RecordingObserver observer;

  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, &observer));

  EXPECT_TRUE(observer.Saw(
      "test|stdout|args: nextest run --workspace --no-fail-fast --retries 0 "
      "--profile ciagent --tool-config-file ciagent:"));
  EXPECT_EQ(result.status, JobStatus::kFailed);
  EXPECT_EQ(result.reason, "test failed: 1 test failed");
  EXPECT_EQ(result.tests.passed, 1);
  EXPECT_EQ(result.tests.failed, 1);
  EXPECT_EQ(result.tests.ignored, 1);
  EXPECT_THAT(result.tests.failing_names, ElementsAre(HasSubstr("subtracts")));
  EXPECT_THAT(testing::ReadFileOrEmpty(tmp_ + "/nextest.toml"),
              HasSubstr("[profile.ciagent.junit]"));
}

// A full disk is the agent's problem, not the push's: the job is requeued
// (kUnavailable) rather than failed.
TEST_F(PipelineTest, StepFailingOnAFullDiskIsAnAgentFailure) {
  PipelineOptions options = StandInCrate(
      {{"cargo",
        "echo 'error: failed to write target/debug/deps/x.rmeta: "
        "No space left on device (os error 28)' >&2\n"
        "exit 101\n"}});

  EXPECT_THAT(RunPipeline(options, nullptr),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("step check: no space left on device")));
}

TEST_F(PipelineTest, RefusesACheckoutWithoutCargoToml) {
  PipelineOptions options;
  options.source_dir = tmp_;
  EXPECT_THAT(RunPipeline(options, nullptr),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("has no Cargo.toml")));
}

TEST_F(PipelineTest, RefusesAnUnknownStep) {
  PipelineOptions options;
  options.source_dir = tmp_;
  options.steps = {"deploy"};
  EXPECT_THAT(RunPipeline(options, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown step \"deploy\"")));
}

// The repository's configuration ([package.metadata.ciagent] appended to
// the copied fixture's Cargo.toml), applied as the agent applies it.
class ConfiguredPipelineTest : public PipelineTest {
 protected:
  void Configure(PipelineOptions* options, const std::string& toml,
                 const Job& job = Job{}) {
    std::ofstream(options->source_dir + "/Cargo.toml", std::ios::app)
        << "\n" << toml;
    ASSERT_OK(ConfigureForJob(job, options));
  }
};

TEST_F(ConfiguredPipelineTest, FeaturesLetTheTestsCompile) {
  CIAGENT_REQUIRE_CARGO(path);
  PipelineOptions bare = OptionsFor("feature_gated", path);
  bare.steps = {"check", "test"};
  ASSERT_OK_AND_ASSIGN(PipelineResult without, RunPipeline(bare, nullptr));
  EXPECT_EQ(without.status, JobStatus::kFailed);
  EXPECT_THAT(without.steps, Contains(Step("check", StepStatus::kFailed)));

  testing::RemoveTree(tmp_);
  ASSERT_OK_AND_ASSIGN(tmp_, testing::MakeTempDir("pipeline"));
  PipelineOptions options = OptionsFor("feature_gated", path);
  Configure(&options,
            "[package.metadata.ciagent]\n"
            "steps = [\"check\", \"test\"]\n"
            "features = [\"extra\"]\n");
  RecordingObserver observer;
  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, &observer));
  EXPECT_EQ(result.status, JobStatus::kSuccess) << result.reason;
  EXPECT_EQ(result.tests.passed, 1);
  EXPECT_TRUE(observer.Saw(
      "test|agent|$ cargo test --workspace --features extra --no-fail-fast "
      "--locked"));
}

TEST_F(ConfiguredPipelineTest, DenyWarningsArgsFailTheJob) {
  CIAGENT_REQUIRE_CARGO(path);
  PipelineOptions options = OptionsFor("clippy_warning", path);
  Configure(&options,
            "[package.metadata.ciagent]\n"
            "steps = [\"check\", \"clippy\"]\n"
            "clippy.args = [\"--\", \"-D\", \"warnings\"]\n");
  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, nullptr));
  EXPECT_EQ(result.status, JobStatus::kFailed);
  EXPECT_THAT(result.reason, HasSubstr("clippy failed: clippy exited with code 101"));
  EXPECT_THAT(result.steps, Contains(Step("clippy", StepStatus::kFailed)));
}

TEST_F(ConfiguredPipelineTest, AllowFailureKeepsTheJobSuccessful) {
  CIAGENT_REQUIRE_CARGO(path);
  PipelineOptions options = OptionsFor("clippy_warning", path);
  Configure(&options,
            "[package.metadata.ciagent]\n"
            "steps = [\"check\", \"clippy\", \"test\"]\n"
            "[package.metadata.ciagent.clippy]\n"
            "args = [\"--\", \"-D\", \"warnings\"]\n"
            "allow-failure = true\n");
  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, nullptr));
  EXPECT_EQ(result.status, JobStatus::kSuccess) << result.reason;
  EXPECT_THAT(result.steps,
              Contains(AllOf(Step("clippy", StepStatus::kFailed),
                             Field(&StepRecord::allow_failure, true))));
  EXPECT_THAT(result.steps,
              Contains(AllOf(Step("test", StepStatus::kOk),
                             Field(&StepRecord::allow_failure, false))));
  EXPECT_TRUE(result.config.clippy.allow_failure);
}

TEST_F(ConfiguredPipelineTest, TestArgumentsReachTheHarness) {
  CIAGENT_REQUIRE_CARGO(path);
  PipelineOptions options = OptionsFor("failing_test", path);
  Configure(&options,
            "[package.metadata.ciagent]\n"
            "steps = [\"check\", \"test\"]\n"
            "test.args = [\"--\", \"--skip\", \"subtracts_wrongly\", "
            "\"--test-threads\", \"1\"]\n");
  RecordingObserver observer;
  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, &observer));
  EXPECT_EQ(result.status, JobStatus::kSuccess) << result.reason;
  EXPECT_EQ(result.tests.passed, kFailingPassed);
  EXPECT_EQ(result.tests.failed, 0);
  EXPECT_TRUE(observer.Saw("--locked -- --skip subtracts_wrongly "
                           "--test-threads 1"));
}

TEST_F(ConfiguredPipelineTest, WorkspaceExcludeAndPackagesChooseTheMembers) {
  CIAGENT_REQUIRE_CARGO(path);
  PipelineOptions excluded = OptionsFor("workspace_members", path);
  Configure(&excluded,
            "[workspace.metadata.ciagent]\n"
            "steps = [\"check\", \"test\"]\n"
            "exclude = [\"wm_broken\"]\n");
  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(excluded, nullptr));
  EXPECT_EQ(result.status, JobStatus::kSuccess) << result.reason;
  EXPECT_EQ(result.tests.passed, 1);
  EXPECT_EQ(result.tests.failed, 0);

  testing::RemoveTree(tmp_);
  ASSERT_OK_AND_ASSIGN(tmp_, testing::MakeTempDir("pipeline"));
  PipelineOptions only = OptionsFor("workspace_members", path);
  Configure(&only,
            "[workspace.metadata.ciagent]\n"
            "steps = [\"check\", \"test\"]\n"
            "packages = [\"wm_broken\"]\n");
  ASSERT_OK_AND_ASSIGN(PipelineResult broken, RunPipeline(only, nullptr));
  EXPECT_EQ(broken.status, JobStatus::kFailed);
  EXPECT_EQ(broken.tests.passed, 0);
  EXPECT_EQ(broken.tests.failed, 1);
}

TEST_F(ConfiguredPipelineTest, JobWinsOverRepositoryOverAgentDefaults) {
  CIAGENT_REQUIRE_CARGO(path);
  PipelineOptions options = OptionsFor("passing", path);
  options.job_timeout = absl::Minutes(30);  // the agent's default
  Job job;
  job.steps = {"check"};
  job.env = {{"FROM_BOTH", "job"}};
  Configure(&options,
            "[package.metadata.ciagent]\n"
            "steps = [\"check\", \"test\"]\n"
            "timeout = \"20m\"\n"
            "env = { FROM_BOTH = \"repository\", FROM_REPO = \"1\" }\n",
            job);
  EXPECT_EQ(options.job_timeout, absl::Minutes(20));
  EXPECT_THAT(options.steps, ElementsAre("check"));
  RecordingObserver observer;
  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, &observer));
  EXPECT_EQ(result.status, JobStatus::kSuccess) << result.reason;
  EXPECT_THAT(result.steps, Contains(Step("test", StepStatus::kSkipped)));
  EXPECT_THAT(result.config.env,
              ElementsAre(std::pair<std::string, std::string>("FROM_REPO", "1"),
                          std::pair<std::string, std::string>("FROM_BOTH",
                                                              "job")));
  // The effective configuration is the run's first line.
  ASSERT_FALSE(observer.lines.empty());
  EXPECT_THAT(observer.lines.front(),
              HasSubstr("config|agent|config (from package.metadata.ciagent): "
                        "{\"source\":\"package.metadata.ciagent\","
                        "\"steps\":[\"check\"]"));
}

TEST_F(ConfiguredPipelineTest, UnknownKeysAreLoggedAsWarnings) {
  CIAGENT_REQUIRE_CARGO(path);
  PipelineOptions options = OptionsFor("passing", path);
  Configure(&options,
            "[package.metadata.ciagent]\n"
            "steps = [\"check\"]\n"
            "featurs = [\"x\"]\n");
  RecordingObserver observer;
  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, &observer));
  EXPECT_EQ(result.status, JobStatus::kSuccess) << result.reason;
  EXPECT_TRUE(observer.Saw(
      "config|agent|config warning: package.metadata.ciagent.featurs: "
      "unknown key, ignored (did you mean \"features\"?)"));
}

TEST_F(ConfiguredPipelineTest, StepTimeoutFromTheRepository) {
  CIAGENT_REQUIRE_CARGO(path);
  PipelineOptions options = OptionsFor("hanging_test", path);
  const std::string marker =
      absl::StrCat("ciagent-marker-", getpid(), "-config-timeout");
  Configure(&options,
            "[package.metadata.ciagent]\n"
            "steps = [\"test\"]\n"
            "test.timeout = \"40s\"\n");
  options.env = {{"CIAGENT_FIXTURE_MARKER", marker}};
  options.grace = absl::Seconds(1);
  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, nullptr));
  EXPECT_EQ(result.status, JobStatus::kTimeout);
  EXPECT_THAT(result.steps, Contains(Step("test", StepStatus::kTimeout)));
  EXPECT_EQ(testing::ProcessesWithMarker(marker), 0);
}

TEST_F(ConfiguredPipelineTest, NextestDemandedButMissingFailsTheTestStep) {
  CIAGENT_REQUIRE_CARGO(path);
  PipelineOptions options = OptionsFor("passing", path);
  Configure(&options,
            "[package.metadata.ciagent]\n"
            "steps = [\"test\"]\n"
            "test.runner = \"nextest\"\n");
  if (!FindExecutable("cargo-nextest", path).empty()) {
    GTEST_SKIP() << "cargo-nextest is installed";
  }
  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, nullptr));
  EXPECT_EQ(result.status, JobStatus::kFailed);
  EXPECT_THAT(result.reason, HasSubstr("cargo-nextest is not installed"));
}

// ---------------------------------------------------------------------------
// Retries, flaky tests and quarantine

using Outcome = TestCase::Outcome;

constexpr char kDocTest[] = "src/lib.rs - add (line 10)";


auto Case(absl::string_view name, Outcome outcome, int attempts) {
  return AllOf(Field(&TestCase::name, std::string(name)),
               Field(&TestCase::outcome, outcome),
               Field(&TestCase::attempts, attempts));
}

int Occurrences(absl::string_view text, absl::string_view needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != absl::string_view::npos;
       at = text.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

// Retries, flaky tests and the quarantine on the `flaky_tests` fixture
// (tests/fixtures/README.md): a test that fails only on attempt 1, one that
// always fails, `foo` failing beside `foo_bar` passing, a quarantined
// failing test, an integration test that passes on a rerun only with
// cargo's environment, and a failing doc-test.
class FlakyTestsTest : public PipelineTest {
 protected:
  // The fixture's configuration (retries = 2, one quarantined test) with
  // `job` over it, running check and test.
  PipelineOptions Options(const std::string& path, const Job& job = Job{}) {
    PipelineOptions options = OptionsFor("flaky_tests", path);
    EXPECT_OK(ConfigureForJob(job, &options));
    options.steps = {"check", "test"};
    return options;
  }

  // The attempts the fixture's test `name` counted, as it saw
  // CI_TEST_ATTEMPT: "1,2,3".
  std::string Runs(const PipelineOptions& options, const std::string& name) {
    std::string runs =
        testing::ReadFileOrEmpty(options.source_dir + "/runs/" + name);
    absl::StrReplaceAll({{"\n", ","}}, &runs);
    if (absl::EndsWith(runs, ",")) runs.pop_back();
    return runs;
  }
};

TEST_F(FlakyTestsTest, RetriesOnlyFailedTestsAndReportsEachOutcome) {
  CIAGENT_REQUIRE_CARGO(path);
  PipelineOptions options = Options(path);
  RecordingObserver observer;

  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, &observer));

  // always_fails, foo and the doc-test fail the job; quarantined_fails
  // fails too but is quarantined.
  EXPECT_EQ(result.status, JobStatus::kFailed);
  EXPECT_EQ(result.reason, "test failed: 3 tests failed");
  EXPECT_EQ(result.config.test_retries, 2);
  const TestResults& tests = result.tests;
  EXPECT_EQ(tests.passed, 3);
  EXPECT_EQ(tests.failed, 4);
  EXPECT_EQ(tests.flaky, 2);
  EXPECT_EQ(tests.reruns, 2 + 2 + 2 + 1 + 1);
  // libtest runs a binary's tests in parallel: their order varies.
  EXPECT_THAT(tests.failing_names,
              UnorderedElementsAre("tests::always_fails", "tests::foo",
                                   "tests::quarantined_fails", kDocTest));
  EXPECT_THAT(tests.flaky_names,
              UnorderedElementsAre("tests::fails_on_first_attempt",
                                   "sees_cargo_env_on_rerun"));
  EXPECT_THAT(tests.quarantined_names, ElementsAre("tests::quarantined_fails"));
  EXPECT_THAT(
      tests.cases,
      UnorderedElementsAre(
          Case("tests::always_fails", Outcome::kFailed, 3),
          Case("tests::fails_on_first_attempt", Outcome::kFlaky, 2),
          Case("tests::foo", Outcome::kFailed, 3),
          Case("tests::foo_bar", Outcome::kPassed, 1),
          Case("tests::fails_when_told", Outcome::kPassed, 1),
          Case("tests::passes", Outcome::kPassed, 1),
          Case("tests::quarantined_fails", Outcome::kFailed, 3),
          Case("sees_cargo_env_on_rerun", Outcome::kFlaky, 2),
          Case(kDocTest, Outcome::kFailed, 1)));

  // Each test saw its attempt; foo_bar ran once, though foo ran three times.
  EXPECT_EQ(Runs(options, "foo"), "1,2,3");
  EXPECT_EQ(Runs(options, "foo_bar"), "1");
  EXPECT_EQ(Runs(options, "always_fails"), "1,2,3");
  EXPECT_EQ(Runs(options, "fails_on_first_attempt"), "1,2");
  EXPECT_EQ(Runs(options, "sees_cargo_env_on_rerun"), "1,2");
  EXPECT_EQ(observer.Count("config|agent|tests: 2 retries, flaky = pass, "
                           "quarantined: tests::quarantined_fails"),
            1);
  EXPECT_EQ(observer.Count("--exact tests::foo"), 2);
  EXPECT_EQ(observer.Count("--exact tests::foo_bar"), 0);
  EXPECT_EQ(observer.Count("retries: src/lib.rs - add (line 10) not retried"),
            1);

  // One testcase per test, the attempts inside it.
  const std::string junit = testing::ReadFileOrEmpty(tmp_ + "/junit.xml");
  EXPECT_EQ(Occurrences(junit, "<testcase name=\"tests::foo\""), 1);
  EXPECT_EQ(Occurrences(junit, "<testcase name=\"tests::foo_bar\""), 1);
  EXPECT_EQ(Occurrences(junit, "<flakyFailure"), 2);
  EXPECT_EQ(Occurrences(junit, "<failure"), 4);
  EXPECT_EQ(Occurrences(junit, "<rerunFailure"), 6);
  ASSERT_OK_AND_ASSIGN(TestResults parsed, ParseNextestJunit(junit));
  EXPECT_EQ(parsed.failed, 4);
  EXPECT_EQ(parsed.flaky, 2);
  EXPECT_EQ(parsed.passed, 3);
}

TEST_F(FlakyTestsTest, QuarantineAndFlakyPassLetTheJobSucceed) {
  CIAGENT_REQUIRE_CARGO(path);
  PipelineOptions options = Options(path);
  // The operators' list adds to the repository's.
  options.quarantine = {"tests::always_fails", "tests::foo", kDocTest};

  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, nullptr));

  EXPECT_EQ(result.status, JobStatus::kSuccess) << result.reason;
  ASSERT_EQ(result.steps.size(), 6u);
  EXPECT_EQ(result.steps[2].status, StepStatus::kOk);
  EXPECT_EQ(result.steps[2].reason,
            "2 flaky tests, 4 quarantined tests failed or flaky");
  EXPECT_EQ(result.tests.failed, 4);
  EXPECT_EQ(result.tests.flaky, 2);
  EXPECT_THAT(result.tests.quarantined_names,
              UnorderedElementsAre("tests::always_fails", "tests::foo",
                                   "tests::quarantined_fails", kDocTest));
}

TEST_F(FlakyTestsTest, FlakyFailPolicyFailsTheJobOnFlakyTests) {
  CIAGENT_REQUIRE_CARGO(path);
  PipelineOptions options = Options(path);
  options.config.flaky = FlakyPolicy::kFail;
  options.quarantine = {"tests::always_fails", "tests::foo", kDocTest};

  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, nullptr));

  EXPECT_EQ(result.status, JobStatus::kFailed);
  EXPECT_EQ(result.reason,
            "test failed: 2 flaky tests (test.flaky = \"fail\")");
  EXPECT_EQ(result.tests.flaky, 2);
}

TEST_F(FlakyTestsTest, JobWithoutRetriesRunsEachTestOnce) {
  CIAGENT_REQUIRE_CARGO(path);
  Job job;
  job.test_retries = 0;
  PipelineOptions options = Options(path, job);
  options.test_retries = 5;  // the agent's default loses to the job's 0
  RecordingObserver observer;

  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, &observer));

  EXPECT_EQ(result.status, JobStatus::kFailed);
  EXPECT_EQ(result.reason, "test failed: 5 tests failed");
  EXPECT_EQ(result.tests.failed, 6);
  EXPECT_EQ(result.tests.flaky, 0);
  EXPECT_EQ(result.tests.reruns, 0);
  EXPECT_THAT(result.tests.flaky_names, IsEmpty());
  EXPECT_EQ(Runs(options, "foo"), "1");
  EXPECT_EQ(Runs(options, "fails_on_first_attempt"), "1");
  EXPECT_EQ(observer.Count("--exact"), 0);
}

// nextest cannot be installed here: a stand-in `cargo` writes the JUnit
// nextest writes for `--retries 2` with one flaky test, and exits 0 as
// nextest does when the only failures were retried into passes.
TEST_F(FlakyTestsTest, NextestRetriesAndItsJunitSayWhichTestsWereFlaky) {
  PipelineOptions options = StandInCrate(
      {{"cargo-nextest", "exit 0\n"},
       {"cargo",
        "echo \"args: $*\"\n"
        "mkdir -p \"$CARGO_TARGET_DIR/nextest/ciagent\"\n"
        "cat > \"$CARGO_TARGET_DIR/nextest/ciagent/junit.xml\" <<'EOF'\n"
        "<testsuites name=\"nextest-run\" tests=\"2\" failures=\"0\" "
        "errors=\"0\"><testsuite name=\"app\" tests=\"2\">"
        "<testcase name=\"steady\" classname=\"app\"/>"
        "<testcase name=\"wobbly\" classname=\"app\">"
        "<flakyFailure message=\"attempt 1\" type=\"test failure\">"
        "<system-out>boom</system-out></flakyFailure></testcase>"
        "</testsuite></testsuites>\n"
        "EOF\n"
        "exit 0\n"}});
  options.steps = {"test"};
  options.test_retries = 2;
  RecordingObserver observer;

  ASSERT_OK_AND_ASSIGN(PipelineResult passing, RunPipeline(options, &observer));
  EXPECT_EQ(observer.Count("args: nextest run --workspace --no-fail-fast "
                           "--retries 2 --profile ciagent"),
            1);
  EXPECT_EQ(passing.status, JobStatus::kSuccess) << passing.reason;
  EXPECT_EQ(passing.tests.passed, 1);
  EXPECT_EQ(passing.tests.flaky, 1);
  EXPECT_THAT(passing.tests.flaky_names, ElementsAre("wobbly"));
  EXPECT_EQ(passing.steps[2].reason, "1 flaky test");

  options.config.flaky = FlakyPolicy::kFail;
  ASSERT_OK_AND_ASSIGN(PipelineResult failing, RunPipeline(options, nullptr));
  EXPECT_EQ(failing.status, JobStatus::kFailed);
  EXPECT_EQ(failing.reason,
            "test failed: 1 flaky test (test.flaky = \"fail\")");
}

}  // namespace
}  // namespace ciagent
