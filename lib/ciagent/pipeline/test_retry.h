// Retries of failed tests and what the test results do to the test step:
// which executable reruns a failed `cargo test` test, with which arguments
// and environment, how a rerun changes the test's outcome, and the verdict
// under the flaky policy and the quarantine. Pure logic: values in, values
// out; the pipeline (pipeline.h) runs the processes.
//
// How a failed libtest test is rerun. `cargo test --no-run
// --message-format=json` (same selection, features and cargo arguments as
// the step) names every test executable (CargoMessageParser::
// test_executables). The executable whose file name is the test's
// TestCase::binary runs as
//   <executable> <harness args> --exact <name>
// `--exact` matters: `foo` alone is a filter that also runs `foo_bar`. It
// runs in the package root with the environment `cargo test` gives it
// (CargoTestEnv) plus CI_TEST_ATTEMPT=<attempt>; the first `cargo test`
// run is attempt 1. Doc-tests have no executable to rerun: they are not
// retried, and a failing doc-test fails after its one attempt.
//
// Example:
//   const CargoTestExecutable* exe =
//       FindTestExecutable(cargo.test_executables(), test.binary);
//   argv = RerunArgv(*exe, harness_args, test.name);
//   ... run it, parse its output with a fresh LibtestParser ...
//   RecordRerun(rerun.Finish(), exit_code, index, &results);
//   TestVerdict verdict = JudgeTests(policy, &results);
//
// Thread-safe: no state.
#ifndef CIAGENT_PIPELINE_TEST_RETRY_H_
#define CIAGENT_PIPELINE_TEST_RETRY_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "ciagent/pipeline/cargo_messages.h"
#include "ciagent/pipeline/pipeline_config.h"
#include "ciagent/pipeline/pipeline_result.h"
#include "ciagent/pipeline/test_results.h"

namespace ciagent {

// What the configuration says about failed tests.
struct TestPolicy {
  // More attempts of each failed test (0..kMaxTestRetries).
  int retries = 0;
  FlakyPolicy flaky = FlakyPolicy::kPass;
  // Test names (TestCase::name, exactly) whose failures do not count.
  std::vector<std::string> quarantine;
};

// What the test results do to the test step.
struct TestVerdict {
  // Failed tests that are not quarantined.
  int64_t failed = 0;
  // Flaky tests that are not quarantined, under flaky = "fail"; else 0.
  int64_t flaky = 0;
  // Quarantined tests that failed or were flaky.
  int64_t quarantined = 0;
  // Every failed or flaky test of the counts is a named case and every
  // test executable reported: the runner's failing exit status is fully
  // explained by the tests (not a crash or a build error), so the step may
  // pass when nothing above fails it.
  bool failures_named = false;

  bool FailsStep() const { return failed > 0 || flaky > 0; }
  // "2 tests failed", "1 flaky test (test.flaky = \"fail\")", both joined
  // by ", "; empty when nothing fails the step.
  std::string Reason() const;
};

// What the test step's reason says when its tests did not fail it: "2
// flaky tests, 1 quarantined test failed or flaky"; empty when none.
std::string TestStepNote(const TestResults& results,
                         const TestVerdict& verdict);

// Applies what the test history says to a finished run: keeps `history`
// (each failed or flaky test's, on `branch`); each failed test named in
// `flaky_on_commit` (it passed on this commit before, or failed here after
// passing) becomes flaky whatever its retries said, and the test step's
// and the job's status are judged again under result->config.flaky and
// the quarantine marks of the cases.
void ApplyTestHistory(std::string branch, std::vector<TestHistory> history,
                      absl::Span<const std::string> flaky_on_commit,
                      PipelineResult* result);

// Marks the quarantined failed and flaky cases (TestCase::quarantined),
// sets results->quarantined_names and says what the results do to the step.
TestVerdict JudgeTests(const TestPolicy& policy, TestResults* results);

// The test executable whose file name is `binary` (TestCase::binary); null
// when none is (a doc-test, an executable the build did not report).
const CargoTestExecutable* FindTestExecutable(
    absl::Span<const CargoTestExecutable> executables,
    absl::string_view binary);

// The test names of `<executable> --list --format terse` output lines
// ("tests::foo: test"; benchmarks and other lines are left out).
std::vector<std::string> ParseTestList(absl::Span<const std::string> lines);

// A test harness and the tests it lists.
struct TestListing {
  const CargoTestExecutable* executable = nullptr;
  std::vector<std::string> tests;
};

// The harness that reruns test `name`, which the first run attributed to
// `binary` (TestCase::binary, maybe empty): that one when it lists the
// test, else the only harness that lists it; null when none does or the
// name is ambiguous (then the test is not retried).
const CargoTestExecutable* ChooseTestExecutable(
    absl::Span<const TestListing> listings, absl::string_view binary,
    absl::string_view name);

// <executable> <harness_args...> --exact <name>.
std::vector<std::string> RerunArgv(const CargoTestExecutable& executable,
                                   absl::Span<const std::string> harness_args,
                                   absl::string_view name);

struct PackageIdParts {
  std::string name;
  std::string version;
};

// The package name and version of a package id, in cargo's current forms
// (`path+file:///src/app#0.1.0`, `path+file:///src/x#app@0.1.0`) or the
// older one (`app 0.1.0 (path+file:///src/app)`); nullopt otherwise.
std::optional<PackageIdParts> ParsePackageId(absl::string_view package_id);

// The variables `cargo test` gives test executable `test` at run time:
// CARGO (`cargo`, its path), CARGO_MANIFEST_DIR, CARGO_MANIFEST_PATH,
// CARGO_PKG_NAME, CARGO_PKG_VERSION and its _MAJOR, _MINOR, _PATCH, _PRE
// parts, CARGO_PKG_AUTHORS (joined by ':'), _DESCRIPTION, _HOMEPAGE,
// _LICENSE, _LICENSE_FILE, _README, _REPOSITORY, _RUST_VERSION (from
// `manifest_toml`, the package's Cargo.toml, following `x.workspace =
// true` into `workspace_toml`'s [workspace.package]; empty when unset or
// unreadable), CARGO_BIN_EXE_<bin> for each bin target of the same
// package in `all`, and LD_LIBRARY_PATH with the executable's directory
// and its parent (target/debug/deps, target/debug).
std::vector<std::pair<std::string, std::string>> CargoTestEnv(
    const CargoTestExecutable& test,
    absl::Span<const CargoTestExecutable> all, absl::string_view cargo,
    absl::string_view manifest_toml, absl::string_view workspace_toml);

// The package root of `test`: the directory of its manifest.
std::string PackageRoot(const CargoTestExecutable& test);

// Records one more attempt of results->cases[index] (a kFailed case) from
// the rerun's output, parsed (`rerun`) and its exit code: the case whose
// name matches passed → the test is kFlaky (failed and flaky counts and
// names move); else its failure output (or, when the rerun printed no
// result for it, the exit code) joins TestCase::rerun_messages.
void RecordRerun(const TestResults& rerun, int exit_code, size_t index,
                 TestResults* results);

}  // namespace ciagent

#endif  // CIAGENT_PIPELINE_TEST_RETRY_H_
