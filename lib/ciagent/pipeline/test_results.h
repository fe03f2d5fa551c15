// Test results of the `test` step: what `cargo test` (libtest) or
// `cargo nextest` reports, reduced to counts, the names of failing tests and
// one record per test. Pure logic: bytes in, values out, no I/O.
//
// libtest output is parsed line by line as the pipeline streams it
// (stdout and stderr of `cargo test --no-fail-fast` merged, so that cargo's
// `Running ...` lines name the test binary of each case):
//
//        Running unittests src/lib.rs (target/debug/deps/app-1a2b3c4d)
//   running 3 tests
//   test math::adds ... ok
//   test math::divides - should panic ... ok
//   test net::fetches ... ignored, needs network
//   test math::subtracts ... FAILED
//   failures:
//   ---- math::subtracts stdout ----
//   thread 'math::subtracts' panicked at src/lib.rs:9:5: ...
//   failures:
//       math::subtracts
//   test result: FAILED. 2 passed; 1 failed; 1 ignored; 0 measured; ...
//
// nextest's machine-readable output is JUnit XML; ParseNextestJunit reads
// it, and ToJunitXml writes the same form from libtest results, so the work
// directory holds a JUnit file whichever runner ran. The two formats share
// only the result types and their limits: LibtestParser is in
// libtest_parser.cc, the JUnit functions in junit.cc over a small XML
// reader (internal/xml.h).
//
// Example:
//   LibtestParser parser;
//   for (absl::string_view line : lines) parser.AddLine(line);
//   TestResults results = parser.Finish();
//   status["tests_failed"] = results.failed;
//   WriteFile(workdir / "junit.xml", ToJunitXml(results));
//
// Retries (test_retry.h) rerun failed tests: a test that then passes is
// kFlaky, one that failed every attempt stays kFailed with its attempts.
// The JUnit form of both is Maven Surefire's and nextest's: a flaky
// <testcase> holds one <flakyFailure> per failed attempt, a failed one its
// <failure> and one <rerunFailure> per failed rerun; one <testcase> per
// test, never one per attempt.
//
// Memory stays bounded whatever the input: cases, failing names, names and
// messages are capped (see the constants below; a few tens of MB at worst).
// Counts are exact, saturating at INT64_MAX.
//
// Thread-safety: a LibtestParser is not thread-safe (one per test run); the
// free functions are.
#ifndef CIAGENT_PIPELINE_TEST_RESULTS_H_
#define CIAGENT_PIPELINE_TEST_RESULTS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ciagent {

// At most this many failing test names are kept (the status hash shows them).
inline constexpr size_t kMaxFailingNames = 100;
// At most this many TestCases are kept, plus the failing ones among the
// first kMaxFailingNames failures, so every kept failing name has its case.
inline constexpr size_t kMaxTestCases = 10000;
// Longer test and suite names are cut (on a UTF-8 character boundary).
inline constexpr size_t kMaxTestNameBytes = 1024;
// Longer failure messages are cut (on a UTF-8 character boundary).
inline constexpr size_t kMaxTestMessageBytes = 4096;
// At most this many failed attempts' messages are kept per test, besides
// the first failure's.
inline constexpr size_t kMaxRerunMessages = 10;

struct TestCase {
  // kFlaky: failed, then passed on a rerun (or nextest said so).
  enum class Outcome { kPassed, kFailed, kIgnored, kFlaky };

  // The test binary: for libtest the `Running` line's target and binary,
  // e.g. "unittests src/lib.rs (app)", "tests/api.rs (api)" or
  // "Doc-tests app"; for JUnit the <testsuite> name. May be empty.
  std::string suite;
  // e.g. "math::adds" or "src/lib.rs - add (line 5)". Never empty.
  std::string name;
  Outcome outcome = Outcome::kPassed;
  // Failed: the captured output or failure text, at most
  // kMaxTestMessageBytes. Ignored: the reason, if one was given, at most
  // kMaxTestNameBytes. Flaky: the first failed attempt's output.
  std::string message;
  // libtest: the file name of the test executable as cargo's `Running`
  // line gives it ("app-1a2b3c4d5e6f7a8b"), which a rerun runs; empty for
  // doc-tests and JUnit.
  std::string binary;
  // How many times the test ran: 1, or more when it was retried.
  int attempts = 1;
  // The failure output of each failed attempt after the first (at most
  // kMaxRerunMessages, each cut to kMaxTestMessageBytes).
  std::vector<std::string> rerun_messages;
  // Listed in the quarantine: a failure or flakiness does not fail the job.
  bool quarantined = false;

  friend bool operator==(const TestCase&, const TestCase&) = default;
};

struct TestResults {
  int64_t passed = 0;  // on the first attempt
  int64_t failed = 0;  // including binaries that could not run (JUnit <error>)
  int64_t ignored = 0;
  int64_t flaky = 0;   // failed, then passed on a rerun
  // Names of the first kMaxFailingNames failing tests, in output order.
  std::vector<std::string> failing_names;
  // Names of the first kMaxFailingNames flaky tests, in output order.
  std::vector<std::string> flaky_names;
  // Names of the failed and flaky tests that are quarantined (at most
  // kMaxFailingNames).
  std::vector<std::string> quarantined_names;
  // Tests run again (the sum over tests of attempts - 1).
  int64_t reruns = 0;
  // libtest: test executables that started and never printed their
  // `test result:` line (a crash): tests may have gone unreported, so a
  // rerun cannot clear the step.
  int64_t unfinished_binaries = 0;
  // The tests seen, in output order, capped (see kMaxTestCases).
  std::vector<TestCase> cases;
  // libtest: at least one `test result:` line was seen. JUnit: always true.
  bool complete = false;

  friend bool operator==(const TestResults&, const TestResults&) = default;
};

// Incremental parser of libtest output.
//
// Counts come from the `test result:` line of each binary, summed (they are
// authoritative: a test's own line can be lost among its output); the
// per-test lines give names and cases. A binary that started ("running N
// tests") but never printed its `test result:` line (its process died)
// contributes the outcomes of the test lines it did print. A binary that
// failed to compile prints nothing and contributes nothing; `complete`
// stays false if no binary reported at all.
//
// cargo prints its `Running` and `Doc-tests` lines on stderr, the binaries
// print on stdout: with both streams fed, a `Running` line may be read just
// after its binary's `running N tests`, and still names that binary.
//
// Lines may arrive with or without their "\n" / "\r\n" and may hold any
// bytes; no input makes the parser fail.
class LibtestParser {
 public:
  LibtestParser() = default;
  LibtestParser(const LibtestParser&) = default;
  LibtestParser& operator=(const LibtestParser&) = default;

  void AddLine(absl::string_view line);

  // A line of cargo's stderr, read apart from the binaries' stdout: a
  // `Running` or `Doc-tests` line names the binary of the test lines that
  // follow; other lines are ignored. Counts never depend on it, so a line
  // read early or late (the two streams are not ordered) can only put a
  // few test lines under the neighbouring binary's name.
  void AddStatusLine(absl::string_view line);

  // The results so far. The parser stays usable; more lines may follow.
  TestResults Finish() const;

 private:
  // Adds the open binary's test-line outcomes to the totals: it ended
  // without a `test result:` line.
  void FoldOpenBinary();
  void StartBinary(std::string suite, std::string binary);
  void EndFailureBlock();
  void AddTestLine(absl::string_view name, absl::string_view outcome);
  bool AddResultLine(absl::string_view line);

  TestResults results_;
  std::string suite_;
  std::string binary_;  // TestCase::binary of the current binary's cases
  // The current binary: started and not yet reported, with the outcomes of
  // its test lines so far.
  bool binary_open_ = false;
  int64_t binary_passed_ = 0;
  int64_t binary_failed_ = 0;
  int64_t binary_ignored_ = 0;
  // Failed cases of the current binary: name -> index into results_.cases.
  std::map<std::string, size_t, std::less<>> failed_cases_;
  // Inside a `---- name stdout ----` block: the test and its output so far.
  bool in_failure_block_ = false;
  std::string block_name_;
  std::string block_text_;
};

// Parses the JUnit XML that nextest writes (<testsuites>, <testsuite>,
// <testcase> with <failure>, <error> or <skipped>). <error> (the test
// binary could not run) counts as failed. With retries: a <testcase> with
// <flakyFailure> elements and no <failure> is flaky, one attempt per
// element plus the passing one; <rerunFailure> (or <rerunError>) elements
// after a <failure> are its failed reruns. Counts are those of the
// <testcase> elements, unless the root <testsuites> states all of `tests`,
// `failures`, `errors` and `skipped` (as ToJunitXml does, for results with
// more tests than kept cases) and those cover the cases in every outcome.
//
// kInvalidArgument, naming the problem and its line, if the document is not
// well-formed XML (including invalid UTF-8 and a DOCTYPE, which is not
// supported), its root is not <testsuites> or <testsuite>, or a <testcase>
// has no name.
absl::StatusOr<TestResults> ParseNextestJunit(absl::string_view xml);

// `results` as a JUnit XML document in nextest's form: one <testsuite> per
// run of consecutive cases of the same suite, and totals on <testsuites>
// (a flaky test counts among `tests`, not among `failures`); flaky and
// retried tests as the overview above says.
// Always well-formed: bytes that are not valid UTF-8 or not allowed in XML
// become U+FFFD. ParseNextestJunit of it gives the same counts and failing
// names whenever the cases do not outnumber the counts.
std::string ToJunitXml(const TestResults& results);

}  // namespace ciagent

#endif  // CIAGENT_PIPELINE_TEST_RESULTS_H_
