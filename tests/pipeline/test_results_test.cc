// Specification of test-result parsing: libtest output (streamed line by
// line), nextest's JUnit XML, and the JUnit file written from libtest results.
#include "ciagent/pipeline/test_results.h"

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ciagent {

void PrintTo(const TestCase& test, std::ostream* os) {
  *os << "{suite: \"" << test.suite << "\", name: \"" << test.name
      << "\", outcome: " << static_cast<int>(test.outcome) << ", message: \""
      << test.message << "\"}";
}

namespace {

using ::ciagent::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;
using ::testing::StartsWith;

using Outcome = TestCase::Outcome;
constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

TestResults ParseLibtest(absl::string_view output) {
  LibtestParser parser;
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    parser.AddLine(line);
  }
  return parser.Finish();
}

// Output of `cargo test --no-fail-fast` (stdout and stderr merged) in a
// two-crate workspace where one integration test does not compile and one
// test binary dies of a signal after two tests.
constexpr char kWorkspaceOutput[] =
    R"out(   Compiling core-lib v0.3.1 (/build/src/core-lib)
   Compiling app v0.3.1 (/build/src/app)
error[E0425]: cannot find value `limit` in this scope
  --> app/tests/integration.rs:14:20
   |
14 |     assert_eq!(x, limit);
   |                   ^^^^^ not found in this scope

For more information about this error, try `rustc --explain E0425`.
error: could not compile `app` (test "integration") due to 1 previous error
    Finished `test` profile [unoptimized + debuginfo] target(s) in 12.41s
     Running unittests src/lib.rs (target/debug/deps/core_lib-5f1a9c3e2b7d4a60)

running 4 tests
test parse::tests::empty_input ... ok
test parse::tests::rejects_tabs ... FAILED
test parse::tests::unicode ... ok
test net::tests::live_fetch ... ignored, requires network

failures:

---- parse::tests::rejects_tabs stdout ----
parsing "a\tb"

thread 'parse::tests::rejects_tabs' panicked at core-lib/src/parse.rs:88:9:
assertion failed: result.is_err()
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace


failures:
    parse::tests::rejects_tabs

test result: FAILED. 2 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.02s

error: test failed, to rerun pass `-p core-lib --lib`
     Running unittests src/main.rs (target/debug/deps/app-0b9e33c1d2a4f5e6)

running 2 tests
test cli::tests::parses_flags ... ok
test cli::tests::help_exits - should panic ... ok

test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

     Running tests/ffi.rs (target/debug/deps/ffi-77aa01c3e9d2b8f4)

running 3 tests
test calls_into_c ... ok
test frees_buffer ... FAILED
error: test failed, to rerun pass `-p app --test ffi`

Caused by:
  process didn't exit successfully: `/build/src/target/debug/deps/ffi-77aa01c3e9d2b8f4` (signal: 11, SIGSEGV: invalid memory reference)
   Doc-tests core_lib

running 3 tests
test core-lib/src/lib.rs - parse (line 12) ... ok
test core-lib/src/lib.rs - Config::load (line 40) ... ignored
test core-lib/src/lib.rs - Config (line 30) - should panic ... ok

test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.31s

error: 2 targets failed:
    `-p core-lib --lib`
    `-p app --test ffi`
)out";

// A JUnit file as nextest writes it (`cargo nextest run --profile ci`).
constexpr char kNextestJunit[] =
    R"xml(<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="7" failures="1" errors="1" uuid="5d6f0d1c-3b0e-4c4f-9a57-0f3c2b8e7a11" timestamp="2026-11-27T07:10:02.114+00:00" time="1.832">
    <testsuite name="core-lib" tests="4" disabled="1" errors="0" failures="1">
        <testcase name="parse::tests::empty_input" classname="core-lib" timestamp="2026-11-27T07:10:02.120+00:00" time="0.004">
        </testcase>
        <testcase name="parse::tests::rejects_tabs" classname="core-lib" timestamp="2026-11-27T07:10:02.121+00:00" time="0.006">
            <failure type="test failure">thread &apos;parse::tests::rejects_tabs&apos; panicked at core-lib/src/parse.rs:88:9:
assertion failed: result.is_err() &amp;&amp; x &lt; 3</failure>
            <system-out>parsing "a\tb"
</system-out>
            <system-err><![CDATA[note: run with `RUST_BACKTRACE=1` <env>
]]></system-err>
        </testcase>
        <testcase name="parse::tests::unicode" classname="core-lib" timestamp="2026-11-27T07:10:02.121+00:00" time="0.002"/>
        <testcase name="net::tests::live_fetch" classname="core-lib" timestamp="2026-11-27T07:10:02.122+00:00" time="0.000">
            <skipped/>
        </testcase>
    </testsuite>
    <!-- binaries run in parallel; order is completion order -->
    <testsuite name="app::bin/app" tests="2" disabled="0" errors="0" failures="0">
        <testcase name="cli::tests::parses_flags" classname="app::bin/app" timestamp="2026-11-27T07:10:02.130+00:00" time="0.001">
        </testcase>
        <testcase name="cli::tests::help_exits" classname="app::bin/app" timestamp="2026-11-27T07:10:02.131+00:00" time="0.001">
        </testcase>
    </testsuite>
    <testsuite name="app::ffi" tests="1" disabled="0" errors="1" failures="0">
        <testcase name="frees_buffer" classname="app::ffi" timestamp="2026-11-27T07:10:02.140+00:00" time="0.013">
            <error message="test aborted with signal 11 (SIGSEGV)" type="test abort"/>
        </testcase>
    </testsuite>
</testsuites>
)xml";

std::string ReadTestdata(absl::string_view name) {
  const char* dir = std::getenv("CIAGENT_PIPELINE_TESTDATA");
  EXPECT_NE(dir, nullptr) << "CIAGENT_PIPELINE_TESTDATA is not set";
  if (dir == nullptr) return "";
  std::ifstream in(absl::StrCat(dir, "/", name), std::ios::binary);
  EXPECT_TRUE(in) << "cannot open " << name;
  return std::string(std::istreambuf_iterator<char>(in),
                     std::istreambuf_iterator<char>());
}

auto IsCase(absl::string_view suite, absl::string_view name, Outcome outcome) {
  return AllOf(Field(&TestCase::suite, std::string(suite)),
               Field(&TestCase::name, std::string(name)),
               Field(&TestCase::outcome, outcome));
}

// ---------------------------------------------------------------------------
// libtest: whole outputs.

// Recorded from a real `cargo test --no-fail-fast` (rustc 1.95) of a crate
// with passing, failing, ignored, should_panic and doc tests.
TEST(LibtestParserTest, ParsesRecordedCargoTestOutput) {
  const TestResults results =
      ParseLibtest(ReadTestdata("cargo_test_output.txt"));
  EXPECT_TRUE(results.complete);
  EXPECT_EQ(results.passed, 6);
  EXPECT_EQ(results.failed, 3);
  EXPECT_EQ(results.ignored, 3);
  EXPECT_THAT(results.failing_names, ElementsAre("tests::nested::deep_failure",
                                                 "tests::subtracts_wrongly",
                                                 "src/lib.rs - div (line 16)"));
  constexpr char kLib[] = "unittests src/lib.rs (calc)";
  EXPECT_THAT(
      results.cases,
      ElementsAre(IsCase(kLib, "tests::div_by_zero_panics", Outcome::kPassed),
                  IsCase(kLib, "tests::fetches", Outcome::kIgnored),
                  IsCase(kLib, "tests::nested::deep_failure", Outcome::kFailed),
                  IsCase(kLib, "tests::slow", Outcome::kIgnored),
                  IsCase(kLib, "tests::subtracts_wrongly", Outcome::kFailed),
                  IsCase(kLib, "tests::adds", Outcome::kPassed),
                  IsCase("tests/api.rs (api)", "public_div", Outcome::kPassed),
                  IsCase("tests/api.rs (api)", "public_add", Outcome::kPassed),
                  IsCase("Doc-tests calc", "src/lib.rs - add (line 3)",
                         Outcome::kPassed),
                  IsCase("Doc-tests calc", "src/lib.rs - div (line 12)",
                         Outcome::kPassed),
                  IsCase("Doc-tests calc", "src/lib.rs - noop (line 26)",
                         Outcome::kIgnored),
                  IsCase("Doc-tests calc", "src/lib.rs - div (line 16)",
                         Outcome::kFailed)));
  EXPECT_EQ(results.cases[1].message, "needs network");
  EXPECT_EQ(results.cases[3].message, "");
  EXPECT_THAT(results.cases[2].message,
              AllOf(StartsWith("thread 'tests::nested::deep_failure'"),
                    HasSubstr("index out of bounds: the len is 0 but the "
                              "index is 3")));
  EXPECT_THAT(results.cases[4].message,
              AllOf(StartsWith("thread 'tests::subtracts_wrongly'"),
                    HasSubstr("math is broken <&>\n  left: 4\n right: 5"),
                    Not(HasSubstr("failures:")), Not(HasSubstr("----"))));
  EXPECT_THAT(results.cases[11].message,
              AllOf(StartsWith("Test executable failed (exit status: 101)."),
                    HasSubstr("left: 3\n right: 4")));
  EXPECT_THAT(results.cases[0].message, IsEmpty());
}

TEST(LibtestParserTest, ParsesWorkspaceWithCompileFailureAndCrashedBinary) {
  const TestResults results = ParseLibtest(kWorkspaceOutput);
  EXPECT_TRUE(results.complete);
  // 2+2+2 reported, plus the crashed ffi binary's one pass (its own lines).
  EXPECT_EQ(results.passed, 7);
  EXPECT_EQ(results.failed, 2);
  EXPECT_EQ(results.ignored, 2);
  EXPECT_THAT(results.failing_names,
              ElementsAre("parse::tests::rejects_tabs", "frees_buffer"));
  ASSERT_THAT(results.cases, SizeIs(11));
  EXPECT_THAT(results.cases[1],
              IsCase("unittests src/lib.rs (core_lib)",
                     "parse::tests::rejects_tabs", Outcome::kFailed));
  EXPECT_EQ(results.cases[1].message,
            "parsing \"a\\tb\"\n\nthread 'parse::tests::rejects_tabs' panicked "
            "at core-lib/src/parse.rs:88:9:\nassertion failed: "
            "result.is_err()\nnote: run with `RUST_BACKTRACE=1` environment "
            "variable to display a backtrace");
  EXPECT_EQ(results.cases[3].message, "requires network");
  EXPECT_THAT(results.cases[5],
              IsCase("unittests src/main.rs (app)", "cli::tests::help_exits",
                     Outcome::kPassed));
  EXPECT_THAT(results.cases[7],
              IsCase("tests/ffi.rs (ffi)", "frees_buffer", Outcome::kFailed));
  EXPECT_THAT(
      results.cases[10],
      IsCase("Doc-tests core_lib", "core-lib/src/lib.rs - Config (line 30)",
             Outcome::kPassed));
}

TEST(LibtestParserTest, IsIncompleteWhenNoBinaryReported) {
  const TestResults results = ParseLibtest(
      "   Compiling app v0.1.0 (/build/src)\n"
      "error[E0308]: mismatched types\n"
      "error: could not compile `app` (lib test) due to 1 previous error\n");
  EXPECT_FALSE(results.complete);
  EXPECT_EQ(results, TestResults{});
}

TEST(LibtestParserTest, TotalsComeFromResultLines) {
  // Test lines can be lost among captured-output noise; totals cannot.
  const TestResults results = ParseLibtest(
      "running 5 tests\n"
      "test a ... ok\n"
      "test b ... FAILED\n"
      "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 "
      "filtered out; finished in 0.00s\n");
  EXPECT_EQ(results.passed, 3);
  EXPECT_EQ(results.failed, 2);
  EXPECT_EQ(results.ignored, 0);
  EXPECT_THAT(results.failing_names, ElementsAre("b"));
  EXPECT_THAT(results.cases, SizeIs(2));
}

TEST(LibtestParserTest, SumsResultLinesOverBinaries) {
  LibtestParser parser;
  for (int i = 0; i < 3; ++i) {
    parser.AddLine(absl::StrCat("     Running tests/t", i,
                                ".rs (target/debug/deps/t", i,
                                "-0123456789abcdef)"));
    parser.AddLine("running 12 tests");
    parser.AddLine(
        "test result: ok. 10 passed; 0 failed; 2 ignored; 0 measured; 5 "
        "filtered out; finished in 0.01s");
  }
  const TestResults results = parser.Finish();
  EXPECT_EQ(results.passed, 30);
  EXPECT_EQ(results.ignored, 6);
  EXPECT_TRUE(results.complete);
}

TEST(LibtestParserTest, FinishCanBeCalledWhileLinesKeepArriving) {
  LibtestParser parser;
  parser.AddLine("running 2 tests\n");
  parser.AddLine("test a ... ok\r\n");
  TestResults partial = parser.Finish();
  EXPECT_FALSE(partial.complete);
  EXPECT_EQ(partial.passed, 1);  // the open binary's lines so far
  parser.AddLine("test b ... ok\n");
  parser.AddLine(
      "test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 "
      "filtered out; finished in 0.00s\r\n");
  const TestResults results = parser.Finish();
  EXPECT_TRUE(results.complete);
  EXPECT_EQ(results.passed, 2);
  EXPECT_EQ(parser.Finish(), results);
}

TEST(LibtestParserTest, CountsOnlyTheOpenBinarysOwnLinesWhenItDies) {
  const TestResults results = ParseLibtest(
      "test stray ... ok\n"
      "running 2 tests\n"
      "test a ... ok\n"
      "running 1 test\n"  // no `Running` line: a test printed this
      "test b ... FAILED\n");
  EXPECT_EQ(results.passed, 1);
  EXPECT_EQ(results.failed, 1);
  EXPECT_FALSE(results.complete);
}

TEST(LibtestParserTest, AttachesMessageOfBlockStillOpenAtFinish) {
  const TestResults results = ParseLibtest(
      "running 1 test\n"
      "test t ... FAILED\n"
      "failures:\n"
      "---- t stdout ----\n"
      "boom\n");
  ASSERT_THAT(results.cases, SizeIs(1));
  EXPECT_EQ(results.cases[0].message, "boom");
  EXPECT_EQ(results.failed, 1);
  EXPECT_FALSE(results.complete);
}

TEST(LibtestParserTest, RunningLineReadAfterItsBinaryStartedStillNamesIt) {
  const TestResults results = ParseLibtest(
      "running 1 test\n"
      "     Running unittests src/lib.rs (target/debug/deps/app-0123456789abcdef)\n"
      "test a ... FAILED\n"
      "test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured\n");
  EXPECT_EQ(results.unfinished_binaries, 0);
  ASSERT_THAT(results.cases, SizeIs(1));
  EXPECT_EQ(results.cases[0].suite, "unittests src/lib.rs (app)");
  EXPECT_EQ(results.cases[0].binary, "app-0123456789abcdef");
}

TEST(LibtestParserTest, StatusLinesFromStderrNameBinariesButNeverCount) {
  LibtestParser parser;
  // stderr's line read after the binary's first test lines, and the next
  // binary's line read before this one's result.
  parser.AddLine("running 2 tests");
  parser.AddLine("test a ... FAILED");
  parser.AddStatusLine(
      "     Running unittests src/lib.rs (target/debug/deps/app-0123456789abcdef)");
  parser.AddLine("test b ... FAILED");
  parser.AddStatusLine("   Doc-tests app");
  parser.AddLine("test result: FAILED. 0 passed; 2 failed; 0 ignored");
  parser.AddStatusLine("error: 1 target failed:");
  const TestResults results = parser.Finish();
  EXPECT_EQ(results.failed, 2);
  EXPECT_EQ(results.unfinished_binaries, 0);
  ASSERT_THAT(results.cases, SizeIs(2));
  EXPECT_EQ(results.cases[0].binary, "");
  EXPECT_EQ(results.cases[1].binary, "app-0123456789abcdef");
}

TEST(LibtestParserTest, CountsABinaryThatDiedBeforeItsFirstTestAsUnfinished) {
  const TestResults results = ParseLibtest(
      "     Running unittests src/lib.rs (target/debug/deps/app-0123456789abcdef)\n"
      "running 3 tests\n"
      "     Running tests/api.rs (target/debug/deps/api-0123456789abcdef)\n"
      "running 1 test\n"
      "test b ... ok\n"
      "test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured\n");
  EXPECT_EQ(results.unfinished_binaries, 1);
  EXPECT_EQ(results.passed, 1);
  ASSERT_THAT(results.cases, SizeIs(1));
  EXPECT_EQ(results.cases[0].binary, "api-0123456789abcdef");
}

TEST(LibtestParserTest, IgnoresMalformedResultLines) {
  const TestResults results = ParseLibtest(
      "test result: ok. many passed; 0 failed\n"
      "test result: ok.\n"
      "test result: ok. -1 passed; 0 failed; 0 ignored\n"
      "test result: ok. 99999999999999999999 passed; 0 failed\n");
  EXPECT_FALSE(results.complete);
  EXPECT_EQ(results.passed, 0);
}

TEST(LibtestParserTest, SaturatesHugeTotals) {
  const TestResults results = ParseLibtest(
      "test result: ok. 9223372036854775807 passed; 0 failed; 0 ignored\n"
      "test result: ok. 9223372036854775807 passed; 0 failed; 0 ignored\n");
  EXPECT_EQ(results.passed, 9223372036854775807);
}

// ---------------------------------------------------------------------------
// libtest: one test line each.

struct TestLine {
  std::string name;  // of the case
  std::string line;
  std::string test_name;
  Outcome outcome;
  std::string message;
};

class LibtestLineTest : public ::testing::TestWithParam<TestLine> {};

TEST_P(LibtestLineTest, ParsesTestLine) {
  const TestLine& param = GetParam();
  const TestResults results = ParseLibtest(param.line);
  ASSERT_THAT(results.cases, SizeIs(1));
  EXPECT_EQ(results.cases[0].name, param.test_name);
  EXPECT_EQ(results.cases[0].outcome, param.outcome);
  EXPECT_EQ(results.cases[0].message, param.message);
  EXPECT_EQ(results.cases[0].suite, "");
}

INSTANTIATE_TEST_SUITE_P(
    Forms, LibtestLineTest,
    ::testing::ValuesIn(std::vector<TestLine>{
        {"Ok", "test a::b ... ok", "a::b", Outcome::kPassed, ""},
        {"Failed", "test a::b ... FAILED", "a::b", Outcome::kFailed, ""},
        {"Ignored", "test a::b ... ignored", "a::b", Outcome::kIgnored, ""},
        {"IgnoredWithReason", "test a::b ... ignored, slow: takes 5 min",
         "a::b", Outcome::kIgnored, "slow: takes 5 min"},
        {"ShouldPanic", "test a::b - should panic ... ok", "a::b",
         Outcome::kPassed, ""},
        {"DocTest", "test src/lib.rs - add (line 5) ... ok",
         "src/lib.rs - add (line 5)", Outcome::kPassed, ""},
        {"DocTestOfMethod", "test src/x.rs - S<T>::f (line 9) ... FAILED",
         "src/x.rs - S<T>::f (line 9)", Outcome::kFailed, ""},
        {"ReportTime", "test a ... ok <0.012s>", "a", Outcome::kPassed, ""},
        {"CrLf", "test a ... FAILED\r", "a", Outcome::kFailed, ""},
        {"NameWithDots", "test a ... b ... ok", "a ... b", Outcome::kPassed,
         ""},
    }),
    [](const ::testing::TestParamInfo<TestLine>& info) {
      return info.param.name;
    });

TEST(LibtestParserTest, IgnoresLinesThatAreNotTestLines) {
  const TestResults results = ParseLibtest(
      "test a ... bench:         1,234 ns/iter (+/- 56)\n"
      "test  ... ok\n"
      "test b has been running for over 60 seconds\n"
      "testing ... ok\n"
      "Running tests/x.rs (target/debug/deps/x-00)\n");
  EXPECT_THAT(results.cases, IsEmpty());
}

TEST(LibtestParserTest, NamesSuiteFromOldStyleRunningLine) {
  const TestResults results = ParseLibtest(
      "     Running target/debug/deps/app-1a2b3c4d5e6f7a8b\n"
      "test a ... ok\n"
      "     Running C:\\w\\target\\debug\\deps\\win-0011223344556677.exe\n"
      "test b ... ok\n");
  ASSERT_THAT(results.cases, SizeIs(2));
  EXPECT_EQ(results.cases[0].suite, "app");
  EXPECT_EQ(results.cases[1].suite, "win");
}

// ---------------------------------------------------------------------------
// libtest: bounds.

TEST(LibtestParserTest, KeepsFirstFailingNamesAndCapsCases) {
  LibtestParser parser;
  parser.AddLine("running 30000 tests");
  for (int i = 0; i < 20000; ++i) {
    parser.AddLine(absl::StrCat("test p", i, " ... ok"));
  }
  for (int i = 0; i < 10000; ++i) {
    parser.AddLine(absl::StrCat("test f", i, " ... FAILED"));
  }
  parser.AddLine(
      "test result: FAILED. 20000 passed; 10000 failed; 0 ignored; 0 "
      "measured; 0 filtered out; finished in 9.00s");
  const TestResults results = parser.Finish();
  EXPECT_EQ(results.passed, 20000);
  EXPECT_EQ(results.failed, 10000);
  ASSERT_THAT(results.failing_names, SizeIs(kMaxFailingNames));
  EXPECT_EQ(results.failing_names.front(), "f0");
  EXPECT_EQ(results.failing_names.back(), "f99");
  // Every kept failing name has its case, even past the cap on cases.
  EXPECT_THAT(results.cases, SizeIs(kMaxTestCases + kMaxFailingNames));
  EXPECT_THAT(results.cases.back(), IsCase("", "f99", Outcome::kFailed));
}

TEST(LibtestParserTest, CapsMessagesAndNames) {
  LibtestParser parser;
  const std::string long_name(5000, 'n');
  parser.AddLine(absl::StrCat("test ", long_name, " ... FAILED"));
  parser.AddLine("failures:");
  parser.AddLine(absl::StrCat("---- ", long_name, " stdout ----"));
  // "é" is two bytes: the cut must not split one.
  for (int i = 0; i < 2000; ++i) parser.AddLine("\xC3\xA9");
  parser.AddLine("failures:");
  const TestResults results = parser.Finish();
  ASSERT_THAT(results.cases, SizeIs(1));
  EXPECT_EQ(results.cases[0].name, std::string(kMaxTestNameBytes, 'n'));
  EXPECT_LE(results.cases[0].message.size(), kMaxTestMessageBytes);
  EXPECT_GT(results.cases[0].message.size(), kMaxTestMessageBytes - 4);
  EXPECT_THAT(results.cases[0].message, StartsWith("\xC3\xA9\n\xC3\xA9\n"));
  EXPECT_NE(results.cases[0].message.back(), '\xC3');
}

TEST(LibtestParserTest, SurvivesArbitraryBytes) {
  constexpr char kBytes[] =
      "test \xFF\xFE ... FAILED\n\0\0\n---- \xFF\xFE stdout ----\n\x80\n"
      "test result: FAILED. 0 passed; 1 failed; 0 ignored\n";
  const TestResults results =
      ParseLibtest(absl::string_view(kBytes, sizeof(kBytes) - 1));
  EXPECT_TRUE(results.complete);
  EXPECT_EQ(results.failed, 1);
  EXPECT_THAT(results.failing_names, ElementsAre("\xFF\xFE"));
  ASSERT_THAT(results.cases, SizeIs(1));
  EXPECT_EQ(results.cases[0].message, "\x80");
}

// ---------------------------------------------------------------------------
// JUnit: reading.

TEST(ParseNextestJunitTest, ParsesNextestOutput) {
  ASSERT_OK_AND_ASSIGN(TestResults results, ParseNextestJunit(kNextestJunit));
  EXPECT_TRUE(results.complete);
  EXPECT_EQ(results.passed, 4);
  EXPECT_EQ(results.failed, 2);  // one <failure>, one <error>
  EXPECT_EQ(results.ignored, 1);
  EXPECT_THAT(results.failing_names,
              ElementsAre("parse::tests::rejects_tabs", "frees_buffer"));
  ASSERT_THAT(results.cases, SizeIs(7));
  EXPECT_THAT(results.cases[1], IsCase("core-lib", "parse::tests::rejects_tabs",
                                       Outcome::kFailed));
  EXPECT_EQ(results.cases[1].message,
            "thread 'parse::tests::rejects_tabs' panicked at "
            "core-lib/src/parse.rs:88:9:\nassertion failed: result.is_err() "
            "&& x < 3");
  EXPECT_THAT(results.cases[2],
              IsCase("core-lib", "parse::tests::unicode", Outcome::kPassed));
  EXPECT_THAT(results.cases[3],
              IsCase("core-lib", "net::tests::live_fetch", Outcome::kIgnored));
  EXPECT_THAT(results.cases[5], IsCase("app::bin/app", "cli::tests::help_exits",
                                       Outcome::kPassed));
  EXPECT_THAT(results.cases[6],
              IsCase("app::ffi", "frees_buffer", Outcome::kFailed));
  // A failure without text keeps its message attribute.
  EXPECT_EQ(results.cases[6].message, "test aborted with signal 11 (SIGSEGV)");
}

struct JunitText {
  std::string name;
  std::string xml_name;  // the name attribute, as written
  std::string parsed;    // as read
};

class JunitReferenceTest : public ::testing::TestWithParam<JunitText> {};

TEST_P(JunitReferenceTest, ResolvesReferences) {
  const std::string xml =
      absl::StrCat("<testsuites><testsuite name=\"s\"><testcase name=\"",
                   GetParam().xml_name, "\"/></testsuite></testsuites>");
  ASSERT_OK_AND_ASSIGN(TestResults results, ParseNextestJunit(xml));
  ASSERT_THAT(results.cases, SizeIs(1));
  EXPECT_EQ(results.cases[0].name, GetParam().parsed);
}

INSTANTIATE_TEST_SUITE_P(
    Forms, JunitReferenceTest,
    ::testing::ValuesIn(std::vector<JunitText>{
        {"Predefined", "&lt;&gt;&amp;&quot;&apos;", "<>&\"'"},
        {"Decimal", "a&#65;&#233;", "aA\xC3\xA9"},
        {"Hex", "&#x1F980;&#x41;",
         "\xF0\x9F\xA6\x80"
         "A"},
        {"HexLowercase", "&#xe9;", "\xC3\xA9"},
        {"NewlineReference", "a&#10;b", "a\nb"},
        {"LiteralWhitespaceNormalized", "a\tb\nc\r\nd", "a b c d"},
        {"Utf8", "\xE2\x9C\x93 ok", "\xE2\x9C\x93 ok"},
    }),
    [](const ::testing::TestParamInfo<JunitText>& info) {
      return info.param.name;
    });

struct Malformed {
  std::string name;
  std::string xml;
  std::string problem;
};

class JunitRejectsTest : public ::testing::TestWithParam<Malformed> {};

TEST_P(JunitRejectsTest, RejectsMalformedDocument) {
  EXPECT_THAT(ParseNextestJunit(GetParam().xml),
              StatusIs(kInvalid, AllOf(StartsWith("parse nextest JUnit: "),
                                       HasSubstr(GetParam().problem))));
}

constexpr char kCase[] = "<testcase name=\"t\"/>";

INSTANTIATE_TEST_SUITE_P(
    EachProblem, JunitRejectsTest,
    ::testing::ValuesIn(std::vector<Malformed>{
        {"Empty", "", "expected the root element at line 1"},
        {"OnlyDeclaration", "<?xml version=\"1.0\"?>\n",
         "expected the root element at line 2"},
        {"NotXml", "test result: ok.", "expected the root element"},
        {"WrongRoot", "<html></html>", "root element is <html>"},
        {"EndTagFirst", "</testsuites>", "expected the root element"},
        {"Truncated",
         absl::StrCat("<testsuites>\n<testsuite name=\"s\">\n", kCase),
         "unexpected end inside <testsuite> at line 3"},
        {"MismatchedEndTag", "<testsuites><testsuite></testcase></testsuites>",
         "end tag </testcase> does not match <testsuite>"},
        {"TwoRoots", "<testsuites/><testsuites/>",
         "content after the root element"},
        {"TextAfterRoot", "<testsuites/>x", "content after the root element"},
        {"UnknownEntity", "<testsuites>&nbsp;</testsuites>",
         "unknown reference &nbsp;"},
        {"BareAmpersand", "<testsuites>a & b</testsuites>",
         "'&' not starting a character reference"},
        {"NulReference", "<testsuites>&#0;</testsuites>",
         "unknown reference &#0;"},
        {"SurrogateReference", "<testsuites>&#xD800;</testsuites>",
         "unknown reference"},
        {"HugeReference", "<testsuites>&#99999999;</testsuites>",
         "unknown reference"},
        {"InvalidUtf8", "<testsuites>\xC3(</testsuites>", "invalid UTF-8"},
        {"OverlongUtf8", "<testsuites>\xC0\xAF</testsuites>", "invalid UTF-8"},
        {"ControlCharacter", "<testsuites>\x01</testsuites>",
         "control character"},
        {"Doctype", "<!DOCTYPE x [<!ENTITY a \"b\">]><testsuites/>",
         "DOCTYPE is not supported"},
        {"UnquotedAttribute", "<testsuites tests=3/>",
         "expected a quoted attribute value"},
        {"DuplicateAttribute", "<testsuites a=\"1\" a=\"2\"/>",
         "duplicate attribute a"},
        {"AttributesWithoutSpace", "<testsuites a=\"1\"b=\"2\"/>",
         "expected whitespace between attributes"},
        {"LessThanInAttribute", "<testsuites a=\"<\"/>",
         "'<' in attribute value"},
        {"UnterminatedAttribute", "<testsuites a=\"1/>", "unterminated"},
        {"UnterminatedComment", "<testsuites><!-- x</testsuites>",
         "unterminated comment"},
        {"UnterminatedCdata", "<testsuites><![CDATA[x</testsuites>",
         "unterminated CDATA"},
        {"TestcaseWithoutName",
         "<testsuites><testsuite><testcase/></testsuite></testsuites>",
         "<testcase> without a name"},
        {"NameStartingWithDigit", "<1testsuites/>", "expected a name"},
    }),
    [](const ::testing::TestParamInfo<Malformed>& info) {
      return info.param.name;
    });

TEST(ParseNextestJunitTest, AcceptsBomCommentsAndProcessingInstructions) {
  ASSERT_OK_AND_ASSIGN(
      TestResults results,
      ParseNextestJunit("\xEF\xBB\xBF<?xml version='1.0'?>\r\n<!-- a -->"
                        "<testsuite name='x'><?pi?><testcase name='t'>"
                        "<failure><![CDATA[a <b>]]> &amp; c</failure>"
                        "</testcase></testsuite>\n<!-- b -->\n"));
  ASSERT_THAT(results.cases, SizeIs(1));
  EXPECT_EQ(results.cases[0].suite, "x");
  EXPECT_EQ(results.cases[0].message, "a <b> & c");
  EXPECT_EQ(results.failed, 1);
}

TEST(ParseNextestJunitTest, UsesClassnameWhenSuiteHasNoName) {
  ASSERT_OK_AND_ASSIGN(
      TestResults results,
      ParseNextestJunit("<testsuites><testsuite><testcase name=\"t\" "
                        "classname=\"app::api\"><skipped message=\"slow\"/>"
                        "</testcase></testsuite></testsuites>"));
  ASSERT_THAT(results.cases, SizeIs(1));
  EXPECT_THAT(results.cases[0], IsCase("app::api", "t", Outcome::kIgnored));
  EXPECT_EQ(results.cases[0].message, "slow");
}

TEST(ParseNextestJunitTest, RefusesDeepNesting) {
  std::string xml = "<testsuites>";
  for (int i = 0; i < 300; ++i) xml += "<a>";
  EXPECT_THAT(ParseNextestJunit(xml),
              StatusIs(kInvalid, HasSubstr("nested deeper than 256")));
}

TEST(ParseNextestJunitTest, StatedTotalsWinOnlyWhenTheyCoverTheCases) {
  const std::string cases =
      "<testsuite name=\"s\"><testcase name=\"a\"/><testcase name=\"b\">"
      "<failure/></testcase></testsuite></testsuites>";
  ASSERT_OK_AND_ASSIGN(
      TestResults stated,
      ParseNextestJunit(absl::StrCat("<testsuites tests=\"50\" failures=\"3\" "
                                     "errors=\"1\" skipped=\"6\">",
                                     cases)));
  EXPECT_EQ(stated.passed, 40);
  EXPECT_EQ(stated.failed, 4);
  EXPECT_EQ(stated.ignored, 6);
  for (const char* root : {
           // nextest's own root: no skipped total, so the cases count
           "<testsuites tests=\"50\" failures=\"3\" errors=\"1\">",
           // fewer failures than the cases show
           "<testsuites tests=\"50\" failures=\"0\" errors=\"0\" "
           "skipped=\"0\">",
           // inconsistent
           "<testsuites tests=\"5\" failures=\"3\" errors=\"3\" skipped=\"0\">",
           "<testsuites tests=\"-5\" failures=\"0\" errors=\"0\" "
           "skipped=\"0\">",
       }) {
    ASSERT_OK_AND_ASSIGN(TestResults counted,
                         ParseNextestJunit(absl::StrCat(root, cases)));
    EXPECT_EQ(counted.passed, 1) << root;
    EXPECT_EQ(counted.failed, 1) << root;
    EXPECT_EQ(counted.ignored, 0) << root;
  }
}

// ---------------------------------------------------------------------------
// JUnit: writing.

TEST(ToJunitXmlTest, WritesNextestForm) {
  TestResults results;
  results.passed = 1;
  results.failed = 1;
  results.ignored = 1;
  results.failing_names = {"b"};
  results.cases = {
      {"s", "a", Outcome::kPassed, ""},
      {"s", "b", Outcome::kFailed, "\nfirst \"line\"\nsecond <line> & more"},
      {"t", "c", Outcome::kIgnored, "why"},
  };
  EXPECT_EQ(ToJunitXml(results),
            R"(<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="cargo-test" tests="3" failures="1" errors="0" skipped="1">
  <testsuite name="s" tests="2" failures="1" errors="0" skipped="0">
    <testcase name="a" classname="s"/>
    <testcase name="b" classname="s">
      <failure message="first &quot;line&quot;" type="test failure">
first "line"
second &lt;line&gt; &amp; more</failure>
    </testcase>
  </testsuite>
  <testsuite name="t" tests="1" failures="0" errors="0" skipped="1">
    <testcase name="c" classname="t"><skipped message="why"/></testcase>
  </testsuite>
</testsuites>
)");
}

// nextest's JUnit with `--retries 2`, in the shape Maven Surefire defined
// and nextest (quick-junit) writes: a flaky test passes with one
// <flakyFailure> per failed attempt; a test that failed every attempt has
// its <failure> and one <rerunFailure> per rerun, each with the attempt's
// output in children. Written by hand: nextest cannot be installed here.
constexpr char kNextestRetriesJunit[] = R"(<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="4" failures="1" errors="0" uuid="45c50d4b-2c5c-4ec4-9b62-1c9d3d8a6a1e" timestamp="2026-12-08T01:00:00.000+00:00" time="0.120">
    <testsuite name="flaky_tests" tests="4" disabled="0" errors="0" failures="1">
        <testcase name="tests::passes" classname="flaky_tests" timestamp="2026-12-08T01:00:00.001+00:00" time="0.001">
        </testcase>
        <testcase name="tests::fails_on_first_attempt" classname="flaky_tests" timestamp="2026-12-08T01:00:00.002+00:00" time="0.002">
            <flakyFailure timestamp="2026-12-08T01:00:00.002+00:00" time="0.001" message="thread &apos;tests::fails_on_first_attempt&apos; panicked at src/lib.rs:49:9" type="test failure">
                <stackTrace>thread &apos;tests::fails_on_first_attempt&apos; panicked at src/lib.rs:49:9:
fails on attempt 1</stackTrace>
                <system-out>running 1 test
test tests::fails_on_first_attempt ... FAILED</system-out>
                <system-err>fails on attempt 1</system-err>
            </flakyFailure>
            <system-out>running 1 test
test tests::fails_on_first_attempt ... ok</system-out>
        </testcase>
        <testcase name="tests::always_fails" classname="flaky_tests" timestamp="2026-12-08T01:00:00.003+00:00" time="0.003">
            <failure message="thread &apos;tests::always_fails&apos; panicked at src/lib.rs:55:9" type="test failure">thread &apos;tests::always_fails&apos; panicked at src/lib.rs:55:9:
always fails (attempt 1)</failure>
            <rerunFailure timestamp="2026-12-08T01:00:00.004+00:00" time="0.001" message="attempt 2 failed" type="test failure">
                <system-err>always fails (attempt 2)</system-err>
            </rerunFailure>
            <rerunFailure timestamp="2026-12-08T01:00:00.005+00:00" time="0.001" message="attempt 3 failed" type="test failure">
                <system-err>always fails (attempt 3)</system-err>
            </rerunFailure>
            <system-err>always fails (attempt 1)</system-err>
        </testcase>
        <testcase name="tests::foo_bar" classname="flaky_tests" timestamp="2026-12-08T01:00:00.006+00:00" time="0.001">
        </testcase>
    </testsuite>
</testsuites>
)";

TEST(ParseNextestJunitTest, ReadsFlakyAndRerunFailuresOfRetries) {
  ASSERT_OK_AND_ASSIGN(TestResults results,
                       ParseNextestJunit(kNextestRetriesJunit));
  EXPECT_EQ(results.passed, 2);
  EXPECT_EQ(results.flaky, 1);
  EXPECT_EQ(results.failed, 1);
  EXPECT_EQ(results.reruns, 3);
  EXPECT_THAT(results.failing_names, ElementsAre("tests::always_fails"));
  EXPECT_THAT(results.flaky_names, ElementsAre("tests::fails_on_first_attempt"));
  ASSERT_THAT(results.cases, SizeIs(4));  // one per test, not per attempt
  const TestCase& flaky = results.cases[1];
  EXPECT_EQ(flaky.outcome, Outcome::kFlaky);
  EXPECT_EQ(flaky.attempts, 2);
  EXPECT_EQ(flaky.message,
            "thread 'tests::fails_on_first_attempt' panicked at src/lib.rs:49:9");
  const TestCase& failed = results.cases[2];
  EXPECT_EQ(failed.outcome, Outcome::kFailed);
  EXPECT_EQ(failed.attempts, 3);
  EXPECT_THAT(failed.message, HasSubstr("always fails (attempt 1)"));
  EXPECT_THAT(failed.rerun_messages,
              ElementsAre("attempt 2 failed", "attempt 3 failed"));
}

TEST(ToJunitXmlTest, WritesOneTestcasePerTestWithItsAttempts) {
  TestResults results;
  results.passed = 1;
  results.failed = 1;
  results.flaky = 1;
  results.failing_names = {"b"};
  results.flaky_names = {"c"};
  TestCase failed{.suite = "s", .name = "b", .outcome = Outcome::kFailed,
                  .message = "first"};
  failed.attempts = 3;
  failed.rerun_messages = {"second", "third"};
  TestCase flaky{.suite = "s", .name = "c", .outcome = Outcome::kFlaky,
                 .message = "once"};
  flaky.attempts = 2;
  results.cases = {{.suite = "s", .name = "a"}, failed, flaky};
  const std::string xml = ToJunitXml(results);
  EXPECT_EQ(xml,
            R"(<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="cargo-test" tests="3" failures="1" errors="0" skipped="0">
  <testsuite name="s" tests="3" failures="1" errors="0" skipped="0">
    <testcase name="a" classname="s"/>
    <testcase name="b" classname="s">
      <failure message="first" type="test failure">first</failure>
      <rerunFailure message="second" type="test failure">second</rerunFailure>
      <rerunFailure message="third" type="test failure">third</rerunFailure>
    </testcase>
    <testcase name="c" classname="s">
      <flakyFailure message="once" type="test failure">once</flakyFailure>
    </testcase>
  </testsuite>
</testsuites>
)");
  ASSERT_OK_AND_ASSIGN(TestResults parsed, ParseNextestJunit(xml));
  EXPECT_EQ(parsed.passed, 1);
  EXPECT_EQ(parsed.failed, 1);
  EXPECT_EQ(parsed.flaky, 1);
  EXPECT_EQ(parsed.reruns, 3);
  EXPECT_EQ(parsed.cases[1].attempts, 3);
  EXPECT_THAT(parsed.cases[1].rerun_messages, ElementsAre("second", "third"));
  EXPECT_EQ(parsed.cases[2].attempts, 2);
  EXPECT_EQ(parsed.cases[2].message, "once");
}

TEST(ToJunitXmlTest, ReplacesWhatXmlCannotCarry) {
  TestResults results;
  results.failed = 1;
  results.cases = {
      {"s\x01", "bad \xFF name", Outcome::kFailed, "nul \0 here\r\n"}};
  results.cases[0].message.assign("nul \0 here\r\n", 12);
  ASSERT_OK_AND_ASSIGN(TestResults parsed,
                       ParseNextestJunit(ToJunitXml(results)));
  ASSERT_THAT(parsed.cases, SizeIs(1));
  EXPECT_EQ(parsed.cases[0].suite, "s\xEF\xBF\xBD");
  EXPECT_EQ(parsed.cases[0].name, "bad \xEF\xBF\xBD name");
  EXPECT_EQ(parsed.cases[0].message, "nul \xEF\xBF\xBD here\r\n");
}

TEST(ToJunitXmlTest, WritesEmptyResults) {
  ASSERT_OK_AND_ASSIGN(TestResults parsed,
                       ParseNextestJunit(ToJunitXml(TestResults{})));
  EXPECT_EQ(parsed.passed + parsed.failed + parsed.ignored, 0);
  EXPECT_THAT(parsed.cases, IsEmpty());
}

// ---------------------------------------------------------------------------
// Round trips.

void ExpectSameCountsAndNames(const TestResults& parsed,
                              const TestResults& original) {
  EXPECT_EQ(parsed.passed, original.passed);
  EXPECT_EQ(parsed.failed, original.failed);
  EXPECT_EQ(parsed.ignored, original.ignored);
  EXPECT_EQ(parsed.failing_names, original.failing_names);
  ASSERT_EQ(parsed.cases.size(), original.cases.size());
  for (size_t i = 0; i < parsed.cases.size(); ++i) {
    EXPECT_EQ(parsed.cases[i].suite, original.cases[i].suite);
    EXPECT_EQ(parsed.cases[i].name, original.cases[i].name);
    EXPECT_EQ(parsed.cases[i].outcome, original.cases[i].outcome);
  }
}

TEST(RoundTripTest, RecordedCargoOutputSurvivesJunit) {
  const TestResults results =
      ParseLibtest(ReadTestdata("cargo_test_output.txt"));
  ASSERT_OK_AND_ASSIGN(TestResults parsed,
                       ParseNextestJunit(ToJunitXml(results)));
  ExpectSameCountsAndNames(parsed, results);
  // Messages are written as text, so they come back too.
  EXPECT_EQ(parsed.cases[4].message, results.cases[4].message);
  EXPECT_EQ(parsed.cases[1].message, "needs network");
}

TEST(RoundTripTest, WorkspaceOutputSurvivesJunit) {
  const TestResults results = ParseLibtest(kWorkspaceOutput);
  ASSERT_OK_AND_ASSIGN(TestResults parsed,
                       ParseNextestJunit(ToJunitXml(results)));
  ExpectSameCountsAndNames(parsed, results);
}

TEST(RoundTripTest, TotalsBeyondTheCasesSurviveJunit) {
  // Totals from result lines with no test lines at all (terse format).
  const TestResults results = ParseLibtest(
      "test result: FAILED. 812 passed; 3 failed; 9 ignored; 0 measured\n");
  ASSERT_OK_AND_ASSIGN(TestResults parsed,
                       ParseNextestJunit(ToJunitXml(results)));
  ExpectSameCountsAndNames(parsed, results);
}

TEST(RoundTripTest, CappedResultsSurviveJunit) {
  LibtestParser parser;
  for (int i = 0; i < 12000; ++i) {
    parser.AddLine(
        absl::StrCat("test t", i, (i % 7 ? " ... ok" : " ... FAILED")));
  }
  parser.AddLine("test result: FAILED. 10285 passed; 1715 failed; 0 ignored");
  const TestResults results = parser.Finish();
  ASSERT_OK_AND_ASSIGN(TestResults parsed,
                       ParseNextestJunit(ToJunitXml(results)));
  ExpectSameCountsAndNames(parsed, results);
}

TEST(RoundTripTest, NextestJunitSurvivesRewriting) {
  ASSERT_OK_AND_ASSIGN(TestResults results, ParseNextestJunit(kNextestJunit));
  ASSERT_OK_AND_ASSIGN(TestResults parsed,
                       ParseNextestJunit(ToJunitXml(results)));
  EXPECT_EQ(parsed, results);
}

}  // namespace
}  // namespace ciagent
