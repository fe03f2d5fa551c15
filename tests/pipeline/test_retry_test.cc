// Specification of the retry logic: which executable reruns a failed test,
// with which argv and environment, how a rerun changes the results, and
// what the results do to the test step under the flaky policy and the
// quarantine.
#include "ciagent/pipeline/test_retry.h"

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ciagent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

using Outcome = TestCase::Outcome;

TestResults ParseLibtest(absl::string_view output) {
  LibtestParser parser;
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    parser.AddLine(line);
  }
  return parser.Finish();
}

std::map<std::string, std::string> AsMap(
    const std::vector<std::pair<std::string, std::string>>& env) {
  return {env.begin(), env.end()};
}

const std::vector<CargoTestExecutable> kExecutables = {
    {.path = "/t/debug/deps/app-1111111111111111",
     .package_id = "path+file:///src/app#0.1.0",
     .manifest_path = "/src/app/Cargo.toml",
     .target_name = "app",
     .harness = true},
    {.path = "/t/debug/app",
     .package_id = "path+file:///src/app#0.1.0",
     .manifest_path = "/src/app/Cargo.toml",
     .target_name = "app",
     .harness = false},
    {.path = "/t/debug/helper",
     .package_id = "path+file:///src/app#0.1.0",
     .manifest_path = "/src/app/Cargo.toml",
     .target_name = "helper",
     .harness = false},
    {.path = "/t/debug/other",
     .package_id = "path+file:///src/x#other-tool@2.0.0-rc.1+build.5",
     .manifest_path = "/src/x/Cargo.toml",
     .target_name = "other",
     .harness = false},
    {.path = "/t/debug/deps/other_it-2222222222222222",
     .package_id = "path+file:///src/x#other-tool@2.0.0-rc.1+build.5",
     .manifest_path = "/src/x/Cargo.toml",
     .target_name = "other_it",
     .harness = true},
};

TEST(FindTestExecutableTest, MatchesTheHarnessByFileName) {
  EXPECT_EQ(FindTestExecutable(kExecutables, "app-1111111111111111"),
            &kExecutables[0]);
  EXPECT_EQ(FindTestExecutable(kExecutables, "other_it-2222222222222222"),
            &kExecutables[4]);
  // A bin of the same name is no test harness; doc-tests have no binary.
  EXPECT_EQ(FindTestExecutable(kExecutables, "app"), nullptr);
  EXPECT_EQ(FindTestExecutable(kExecutables, ""), nullptr);
  EXPECT_EQ(FindTestExecutable(kExecutables, "app-1111"), nullptr);
}

TEST(ParseTestListTest, KeepsTestsOfTerseListing) {
  EXPECT_THAT(ParseTestList({"tests::foo: test", "tests::foo_bar: test\r",
                             "benches::fast: bench", "", "2 tests, 1 benchmark"}),
              ElementsAre("tests::foo", "tests::foo_bar"));
}

TEST(ChooseTestExecutableTest, PrefersTheAttributedHarnessThenTheOnlyHolder) {
  const std::vector<TestListing> listings = {
      {&kExecutables[0], {"tests::foo", "shared"}},
      {&kExecutables[4], {"it_only", "shared"}},
  };
  EXPECT_EQ(ChooseTestExecutable(listings, "app-1111111111111111", "tests::foo"),
            &kExecutables[0]);
  // Attributed to the wrong binary (its `Running` line read late): the
  // listing finds the one that has it.
  EXPECT_EQ(ChooseTestExecutable(listings, "app-1111111111111111", "it_only"),
            &kExecutables[4]);
  EXPECT_EQ(ChooseTestExecutable(listings, "", "it_only"), &kExecutables[4]);
  EXPECT_EQ(ChooseTestExecutable(listings, "other_it-2222222222222222", "shared"),
            &kExecutables[4]);
  EXPECT_EQ(ChooseTestExecutable(listings, "", "shared"), nullptr);  // ambiguous
  EXPECT_EQ(ChooseTestExecutable(listings, "", "src/lib.rs - add (line 3)"),
            nullptr);
}

TEST(RerunArgvTest, RunsExactlyTheNamedTestAfterTheHarnessArgs) {
  EXPECT_THAT(RerunArgv(kExecutables[0], {"--test-threads=1"}, "tests::foo"),
              ElementsAre("/t/debug/deps/app-1111111111111111",
                          "--test-threads=1", "--exact", "tests::foo"));
}

TEST(ParsePackageIdTest, ReadsEveryFormCargoWrites) {
  const auto parts = [](absl::string_view id) {
    std::optional<PackageIdParts> p = ParsePackageId(id);
    return p ? p->name + " " + p->version : std::string("none");
  };
  EXPECT_EQ(parts("path+file:///src/app#0.1.0"), "app 0.1.0");
  EXPECT_EQ(parts("path+file:///src/x#other-tool@2.0.0"), "other-tool 2.0.0");
  EXPECT_EQ(parts("app 0.1.0 (path+file:///src/app)"), "app 0.1.0");
  EXPECT_EQ(parts("registry+https://github.com/rust-lang/crates.io-index#itoa@1.0.1"),
            "itoa 1.0.1");
  EXPECT_EQ(parts("garbage"), "none");
  EXPECT_EQ(parts(""), "none");
}

TEST(CargoTestEnvTest, GivesWhatCargoTestGives) {
  const auto env = AsMap(CargoTestEnv(
      kExecutables[0], kExecutables, "/usr/bin/cargo",
      "[package]\nname = \"app\"\nversion = \"0.1.0\"\n"
      "authors = [\"A <a@x>\", \"B\"]\ndescription = \"An app\"\n"
      "license.workspace = true\n",
      "[workspace.package]\nlicense = \"MIT\"\n"));
  EXPECT_EQ(env.at("CARGO"), "/usr/bin/cargo");
  EXPECT_EQ(env.at("CARGO_MANIFEST_DIR"), "/src/app");
  EXPECT_EQ(env.at("CARGO_MANIFEST_PATH"), "/src/app/Cargo.toml");
  EXPECT_EQ(env.at("CARGO_PKG_NAME"), "app");
  EXPECT_EQ(env.at("CARGO_PKG_VERSION"), "0.1.0");
  EXPECT_EQ(env.at("CARGO_PKG_VERSION_MAJOR"), "0");
  EXPECT_EQ(env.at("CARGO_PKG_VERSION_MINOR"), "1");
  EXPECT_EQ(env.at("CARGO_PKG_VERSION_PATCH"), "0");
  EXPECT_EQ(env.at("CARGO_PKG_VERSION_PRE"), "");
  EXPECT_EQ(env.at("CARGO_PKG_AUTHORS"), "A <a@x>:B");
  EXPECT_EQ(env.at("CARGO_PKG_DESCRIPTION"), "An app");
  EXPECT_EQ(env.at("CARGO_PKG_LICENSE"), "MIT");
  EXPECT_EQ(env.at("CARGO_PKG_HOMEPAGE"), "");
  EXPECT_EQ(env.at("CARGO_PKG_RUST_VERSION"), "");
  // The package's own bins, not another package's.
  EXPECT_EQ(env.at("CARGO_BIN_EXE_app"), "/t/debug/app");
  EXPECT_EQ(env.at("CARGO_BIN_EXE_helper"), "/t/debug/helper");
  EXPECT_EQ(env.count("CARGO_BIN_EXE_other"), 0u);
  EXPECT_EQ(env.at("LD_LIBRARY_PATH"), "/t/debug:/t/debug/deps");
  EXPECT_EQ(PackageRoot(kExecutables[0]), "/src/app");
}

TEST(CargoTestEnvTest, SplitsPreReleaseVersionsAndSurvivesBadManifests) {
  const auto env = AsMap(
      CargoTestEnv(kExecutables[4], kExecutables, "cargo", "not [toml", ""));
  EXPECT_EQ(env.at("CARGO_PKG_NAME"), "other-tool");
  EXPECT_EQ(env.at("CARGO_PKG_VERSION"), "2.0.0-rc.1+build.5");
  EXPECT_EQ(env.at("CARGO_PKG_VERSION_MAJOR"), "2");
  EXPECT_EQ(env.at("CARGO_PKG_VERSION_PATCH"), "0");
  EXPECT_EQ(env.at("CARGO_PKG_VERSION_PRE"), "rc.1");
  EXPECT_EQ(env.at("CARGO_PKG_DESCRIPTION"), "");
  EXPECT_EQ(env.at("CARGO_BIN_EXE_other"), "/t/debug/other");
  EXPECT_EQ(env.count("CARGO_BIN_EXE_app"), 0u);
}

constexpr char kFirstRun[] =
    R"(     Running unittests src/lib.rs (target/debug/deps/app-1111111111111111)
running 4 tests
test tests::foo ... FAILED
test tests::foo_bar ... ok
test tests::once ... FAILED
test tests::always ... FAILED
failures:
---- tests::foo stdout ----
foo failed
---- tests::once stdout ----
once failed
---- tests::always stdout ----
always failed
failures:
    tests::foo
    tests::once
    tests::always
test result: FAILED. 1 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out
   Doc-tests app
running 1 test
test src/lib.rs - add (line 3) ... FAILED
test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out
)";

TestResults RerunOutput(absl::string_view name, bool passed) {
  return ParseLibtest(absl::StrCat(
      "running 1 test\ntest ", name, " ... ", passed ? "ok" : "FAILED", "\n",
      passed ? "" : absl::StrCat("failures:\n---- ", name, " stdout ----\n",
                                 "failed again\nfailures:\n"),
      "test result: ", passed ? "ok. 1 passed; 0 failed" : "FAILED. 0 passed; 1 failed",
      "; 0 ignored; 0 measured; 5 filtered out\n"));
}

TEST(RecordRerunTest, LibtestCasesNameTheirExecutable) {
  const TestResults results = ParseLibtest(kFirstRun);
  ASSERT_EQ(results.cases.size(), 5u);
  EXPECT_EQ(results.cases[0].binary, "app-1111111111111111");
  EXPECT_EQ(results.cases[4].binary, "");  // a doc-test
  EXPECT_EQ(results.unfinished_binaries, 0);
}

TEST(RecordRerunTest, PassOnRerunMakesTheTestFlaky) {
  TestResults results = ParseLibtest(kFirstRun);
  RecordRerun(RerunOutput("tests::once", false), 101, 2, &results);
  RecordRerun(RerunOutput("tests::once", true), 0, 2, &results);
  const TestCase& once = results.cases[2];
  EXPECT_EQ(once.outcome, Outcome::kFlaky);
  EXPECT_EQ(once.attempts, 3);
  EXPECT_EQ(once.message, "once failed");
  EXPECT_THAT(once.rerun_messages, ElementsAre("failed again"));
  EXPECT_EQ(results.failed, 3);
  EXPECT_EQ(results.flaky, 1);
  EXPECT_EQ(results.passed, 1);
  EXPECT_EQ(results.reruns, 2);
  EXPECT_THAT(results.failing_names,
              ElementsAre("tests::foo", "tests::always",
                          "src/lib.rs - add (line 3)"));
  EXPECT_THAT(results.flaky_names, ElementsAre("tests::once"));
}

TEST(RecordRerunTest, FailedRerunsKeepEachMessageAndTheExitCodeWhenSilent) {
  TestResults results = ParseLibtest(kFirstRun);
  RecordRerun(RerunOutput("tests::always", false), 101, 3, &results);
  RecordRerun(ParseLibtest("Segmentation fault\n"), -1, 3, &results);
  const TestCase& always = results.cases[3];
  EXPECT_EQ(always.outcome, Outcome::kFailed);
  EXPECT_EQ(always.attempts, 3);
  ASSERT_EQ(always.rerun_messages.size(), 2u);
  EXPECT_EQ(always.rerun_messages[0], "failed again");
  EXPECT_THAT(always.rerun_messages[1], HasSubstr("exit code -1"));
  EXPECT_EQ(results.failed, 4);
  EXPECT_EQ(results.flaky, 0);
}

TEST(RecordRerunTest, ARerunOfAnotherNameDoesNotCount) {
  // `foo` without --exact would also run `foo_bar`, which passes.
  TestResults results = ParseLibtest(kFirstRun);
  RecordRerun(RerunOutput("tests::foo_bar", true), 0, 0, &results);
  EXPECT_EQ(results.cases[0].outcome, Outcome::kFailed);
  EXPECT_EQ(results.flaky, 0);
}

TEST(JudgeTestsTest, FailedTestsFailTheStepUnlessQuarantined) {
  TestResults results = ParseLibtest(kFirstRun);
  TestVerdict verdict = JudgeTests({}, &results);
  EXPECT_EQ(verdict.failed, 4);
  EXPECT_TRUE(verdict.FailsStep());
  EXPECT_TRUE(verdict.failures_named);
  EXPECT_EQ(verdict.Reason(), "4 tests failed");

  verdict = JudgeTests({.quarantine = {"tests::foo", "tests::always",
                                       "src/lib.rs - add (line 3)",
                                       "tests::foo_bar"}},
                       &results);
  EXPECT_EQ(verdict.failed, 1);
  EXPECT_EQ(verdict.quarantined, 3);
  EXPECT_THAT(results.quarantined_names,
              ElementsAre("tests::foo", "tests::always",
                          "src/lib.rs - add (line 3)"));
  EXPECT_TRUE(results.cases[0].quarantined);
  EXPECT_FALSE(results.cases[1].quarantined);  // passed: nothing to excuse
  EXPECT_EQ(verdict.Reason(), "1 test failed");
}

TEST(JudgeTestsTest, FlakyTestsFailTheStepOnlyUnderFlakyFail) {
  TestResults results = ParseLibtest(kFirstRun);
  RecordRerun(RerunOutput("tests::once", true), 0, 2, &results);
  const std::vector<std::string> rest = {"tests::foo", "tests::always",
                                         "src/lib.rs - add (line 3)"};
  TestVerdict verdict = JudgeTests({.quarantine = rest}, &results);
  EXPECT_FALSE(verdict.FailsStep());
  EXPECT_EQ(verdict.flaky, 0);

  verdict = JudgeTests({.flaky = FlakyPolicy::kFail, .quarantine = rest},
                       &results);
  EXPECT_TRUE(verdict.FailsStep());
  EXPECT_EQ(verdict.flaky, 1);
  EXPECT_EQ(verdict.Reason(), "1 flaky test (test.flaky = \"fail\")");

  std::vector<std::string> all = rest;
  all.push_back("tests::once");
  verdict = JudgeTests({.flaky = FlakyPolicy::kFail, .quarantine = all},
                       &results);
  EXPECT_FALSE(verdict.FailsStep());
  EXPECT_EQ(verdict.quarantined, 4);
}

TEST(JudgeTestsTest, ACrashedBinaryLeavesFailuresUnexplained) {
  TestResults results = ParseLibtest(
      "     Running unittests src/lib.rs (target/debug/deps/app-1111111111111111)\n"
      "running 3 tests\ntest a ... FAILED\ntest b ... ok\n");
  EXPECT_EQ(results.unfinished_binaries, 1);
  const TestVerdict verdict = JudgeTests({.quarantine = {"a"}}, &results);
  EXPECT_FALSE(verdict.FailsStep());
  EXPECT_FALSE(verdict.failures_named);
}

TEST(JudgeTestsTest, UnnamedFailuresAreNotExplained) {
  TestResults results;
  results.complete = true;
  results.failed = 2;
  results.cases = {{.name = "a", .outcome = Outcome::kFailed}};
  EXPECT_FALSE(JudgeTests({}, &results).failures_named);
  EXPECT_EQ(JudgeTests({.quarantine = {"a"}}, &results).failed, 1);
  EXPECT_THAT(JudgeTests({}, &results).Reason(), HasSubstr("2 tests failed"));
  TestResults none;
  none.complete = true;
  EXPECT_FALSE(JudgeTests({}, &none).failures_named);
  EXPECT_THAT(JudgeTests({}, &none).Reason(), IsEmpty());
}

PipelineResult FailedRun(const char* quarantined = "") {
  PipelineResult result;
  result.tests = ParseLibtest(kFirstRun);
  result.steps = {{.name = "check", .status = StepStatus::kOk},
                  {.name = "test", .status = StepStatus::kFailed}};
  const TestVerdict verdict =
      JudgeTests({.quarantine = {"tests::foo", "tests::always", quarantined,
                                 "src/lib.rs - add (line 3)"}},
                 &result.tests);
  result.steps[1].reason = verdict.Reason();
  result.status = JobStatus::kFailed;
  result.reason = "test failed: " + verdict.Reason();
  return result;
}

TEST(ApplyTestHistoryTest, AFailedTestThatPassedOnTheCommitIsFlaky) {
  PipelineResult result = FailedRun();
  ASSERT_EQ(result.reason, "test failed: 1 test failed");
  ApplyTestHistory("main",
                   {{.name = "tests::once", .runs = 4, .failed = 2,
                     .failing_since = "abc"}},
                   {"tests::once"}, &result);
  EXPECT_EQ(result.status, JobStatus::kSuccess) << result.reason;
  EXPECT_EQ(result.steps[1].status, StepStatus::kOk);
  EXPECT_EQ(result.steps[1].reason,
            "1 flaky test, 3 quarantined tests failed or flaky");
  EXPECT_EQ(result.tests.flaky, 1);
  EXPECT_EQ(result.tests.failed, 3);
  EXPECT_THAT(result.tests.flaky_names, ElementsAre("tests::once"));
  EXPECT_EQ(result.test_history_branch, "main");
  ASSERT_EQ(result.test_history.size(), 1u);
  EXPECT_EQ(result.test_history[0].failing_since, "abc");
}

TEST(ApplyTestHistoryTest, FlakyFailPolicyStillFailsAndOtherFailuresStay) {
  PipelineResult result = FailedRun();
  result.config.flaky = FlakyPolicy::kFail;
  ApplyTestHistory("main", {}, {"tests::once"}, &result);
  EXPECT_EQ(result.status, JobStatus::kFailed);
  EXPECT_EQ(result.reason,
            "test failed: 1 flaky test (test.flaky = \"fail\")");

  PipelineResult clippy_too = FailedRun();
  clippy_too.steps.push_back({.name = "clippy",
                              .status = StepStatus::kFailed,
                              .reason = "2 clippy warnings"});
  ApplyTestHistory("main", {}, {"tests::once"}, &clippy_too);
  EXPECT_EQ(clippy_too.steps[1].status, StepStatus::kOk);
  EXPECT_EQ(clippy_too.status, JobStatus::kFailed);
  EXPECT_EQ(clippy_too.reason, "clippy failed: 2 clippy warnings");
}

TEST(ApplyTestHistoryTest, NothingChangesWithoutSuchATest) {
  PipelineResult result = FailedRun();
  ApplyTestHistory("main", {}, {"tests::unknown", "tests::foo_bar"}, &result);
  EXPECT_EQ(result.status, JobStatus::kFailed);
  EXPECT_EQ(result.tests.flaky, 0);
  EXPECT_EQ(result.steps[1].status, StepStatus::kFailed);
}

}  // namespace
}  // namespace ciagent
