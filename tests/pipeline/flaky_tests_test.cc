// Retries, flaky tests and the quarantine against real cargo, on the
// `flaky_tests` fixture (tests/fixtures/README.md): a test that fails only
// on attempt 1, one that always fails, `foo` failing beside `foo_bar`
// passing, a quarantined failing test, an integration test that passes on
// a rerun only with cargo's environment, and a failing doc-test.
#include <sys/stat.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "ciagent/base/process_runner.h"
#include "ciagent/pipeline/pipeline.h"
#include "ciagent/pipeline/test_results.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/cargo_fixture.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"

namespace ciagent {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

using Outcome = TestCase::Outcome;

constexpr char kDocTest[] = "src/lib.rs - add (line 10)";

class RecordingObserver : public PipelineObserver {
 public:
  void StepOutput(absl::string_view step, absl::string_view stream,
                  absl::string_view line) override {
    lines.push_back(absl::StrCat(step, "|", stream, "|", line));
  }
  int Count(absl::string_view needle) const {
    int n = 0;
    for (const std::string& line : lines) n += absl::StrContains(line, needle);
    return n;
  }
  std::vector<std::string> lines;
};

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

class FlakyTestsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(BecomeChildSubreaper());
    ASSERT_OK_AND_ASSIGN(tmp_, testing::MakeTempDir("flaky-tests"));
  }

  // The fixture's configuration (retries = 2, one quarantined test) with
  // `job` over it, running check and test.
  PipelineOptions Options(const std::string& path, const Job& job = Job{}) {
    absl::StatusOr<std::string> src = testing::CopyFixture("flaky_tests", tmp_);
    EXPECT_OK(src.status());
    PipelineOptions options;
    options.source_dir = src.value_or("");
    options.work_dir = tmp_;
    options.target_dir = tmp_ + "/target";
    options.cargo_home = tmp_ + "/cargo-home";
    options.path = path;
    options.grace = absl::Seconds(2);
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

  std::string tmp_;
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
  ASSERT_EQ(mkdir((tmp_ + "/bin").c_str(), 0755), 0);
  ASSERT_EQ(mkdir((tmp_ + "/src").c_str(), 0755), 0);
  std::ofstream(tmp_ + "/src/Cargo.toml") << "[package]\n";
  const std::vector<std::pair<std::string, std::string>> tools = {
      {"cargo-nextest", "exit 0\n"},
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
       "exit 0\n"}};
  for (const auto& [name, script] : tools) {
    const std::string tool = tmp_ + "/bin/" + name;
    std::ofstream(tool) << "#!/bin/sh\n" << script;
    ASSERT_EQ(chmod(tool.c_str(), 0755), 0);
  }
  PipelineOptions options;
  options.source_dir = tmp_ + "/src";
  options.path = tmp_ + "/bin:/usr/bin:/bin";
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
