#include "ciagent/base/process_runner.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ciagent {
namespace {

using ::ciagent::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// Collects what the sink receives.
struct Output {
  std::vector<std::string> out;
  std::vector<std::string> err;
  LineSink Sink() {
    return [this](StreamKind kind, absl::string_view line) {
      (kind == StreamKind::kStdout ? out : err).emplace_back(line);
    };
  }
};

ProcessOptions ShellOptions(const std::string& script) {
  ProcessOptions options;
  options.argv = {"sh", "-c", script};
  options.env = {{"PATH", "/usr/bin:/bin"}};
  return options;
}

bool IsZombie(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(stat, line)) return false;
  const size_t paren = line.rfind(')');
  return paren != std::string::npos && line.substr(paren + 2, 1) == "Z";
}

// True once `pid` no longer exists, waiting up to 2 s. With
// `zombie_counts`, a zombie counts as gone: an orphan not re-parented to
// this process is reaped by someone else, whenever they get to it.
bool GoneSoon(pid_t pid, bool zombie_counts = false) {
  const absl::Time deadline = absl::Now() + absl::Seconds(2);
  while (absl::Now() < deadline) {
    if (::kill(pid, 0) == -1 && errno == ESRCH) return true;
    if (zombie_counts && IsZombie(pid)) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

pid_t ParsePid(const std::vector<std::string>& lines) {
  int pid = 0;
  if (lines.empty() || !absl::SimpleAtoi(lines.back(), &pid)) return 0;
  return pid;
}

TEST(ProcessRunnerTest, DeliversStdoutAndStderrLinesSeparatelyInOrder) {
  Output output;
  ASSERT_OK_AND_ASSIGN(
      ProcessResult result,
      RunProcess(ShellOptions("echo one; echo two >&2; echo three; "
                              "printf 'four\\r\\n' >&2; printf 'last'"),
                 output.Sink()));
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.term_signal, 0);
  EXPECT_FALSE(result.timed_out);
  EXPECT_FALSE(result.stopped);
  EXPECT_THAT(output.out, ElementsAre("one", "three", "last"));
  EXPECT_THAT(output.err, ElementsAre("two", "four"));
}

TEST(ProcessRunnerTest, SplitsLinesLongerThanMaxLineBytes) {
  ProcessOptions options = ShellOptions(
      "i=0; while [ $i -lt 25 ]; do printf 'x'; i=$((i+1)); done; echo; "
      "echo short; printf '1234567890'");
  options.max_line_bytes = 10;
  Output output;
  ASSERT_OK_AND_ASSIGN(ProcessResult result,
                       RunProcess(options, output.Sink()));
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_THAT(output.out, ElementsAre("xxxxxxxxxx", "xxxxxxxxxx", "xxxxx",
                                      "short", "1234567890"));
}

TEST(ProcessRunnerTest, HandlesOutputLargerThanPipeBuffer) {
  Output output;
  ASSERT_OK_AND_ASSIGN(
      ProcessResult result,
      RunProcess(ShellOptions("i=0; while [ $i -lt 5000 ]; do "
                              "echo line$i; echo err$i >&2; i=$((i+1)); done"),
                 output.Sink()));
  EXPECT_EQ(result.exit_code, 0);
  ASSERT_EQ(output.out.size(), 5000u);
  ASSERT_EQ(output.err.size(), 5000u);
  EXPECT_EQ(output.out[4999], "line4999");
  EXPECT_EQ(output.err[1234], "err1234");
}

TEST(ProcessRunnerTest, EnvironmentIsExactlyTheGivenOne) {
  ASSERT_EQ(::setenv("CIAGENT_TEST_INHERITED", "leak", 1), 0);
  ProcessOptions options = ShellOptions("env");
  options.env.emplace_back("GIVEN", "first");
  options.env.emplace_back("GIVEN", "yes");
  Output output;
  ASSERT_OK_AND_ASSIGN(ProcessResult result,
                       RunProcess(options, output.Sink()));
  ::unsetenv("CIAGENT_TEST_INHERITED");
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_THAT(output.out, ::testing::Contains("GIVEN=yes"));
  EXPECT_THAT(output.out, ::testing::Contains("PATH=/usr/bin:/bin"));
  for (const std::string& line : output.out) {
    EXPECT_THAT(line, Not(HasSubstr("CIAGENT_TEST_INHERITED")));
    EXPECT_THAT(line, Not(HasSubstr("first")));
    // Only what was given, and what sh adds itself (PWD, SHLVL, _).
    const std::string name = line.substr(0, line.find('='));
    EXPECT_THAT(
        name, ::testing::AnyOf("GIVEN", "PATH", "PWD", "SHLVL", "_", "OLDPWD"));
  }
}

TEST(ProcessRunnerTest, StdinIsEmpty) {
  Output output;
  ASSERT_OK_AND_ASSIGN(
      ProcessResult result,
      RunProcess(ShellOptions("cat; echo done"), output.Sink()));
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_THAT(output.out, ElementsAre("done"));
}

TEST(ProcessRunnerTest, RunsInWorkingDir) {
  char dir_template[] = "/tmp/process_runner_test.XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  ProcessOptions options = ShellOptions("pwd -P");
  options.working_dir = dir;
  Output output;
  ASSERT_OK_AND_ASSIGN(ProcessResult result,
                       RunProcess(options, output.Sink()));
  ::rmdir(dir.c_str());
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_THAT(output.out, ElementsAre(dir));
}

TEST(ProcessRunnerTest, MissingWorkingDirIsFailedPrecondition) {
  ProcessOptions options = ShellOptions("true");
  options.working_dir = "/nonexistent/process_runner_test";
  EXPECT_THAT(RunProcess(options, nullptr),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("/nonexistent/process_runner_test")));
}

TEST(ProcessRunnerTest, ReportsNonZeroExitCodeAsResultNotError) {
  ASSERT_OK_AND_ASSIGN(ProcessResult result,
                       RunProcess(ShellOptions("exit 3"), nullptr));
  EXPECT_EQ(result.exit_code, 3);
  EXPECT_EQ(result.term_signal, 0);
}

TEST(ProcessRunnerTest, WaitsForChildThatClosedItsOutput) {
  Output output;
  ASSERT_OK_AND_ASSIGN(
      ProcessResult result,
      RunProcess(ShellOptions("echo bye; exec >&- 2>&-; sleep 0.2; exit 4"),
                 output.Sink()));
  EXPECT_EQ(result.exit_code, 4);
  EXPECT_GE(result.duration, absl::Milliseconds(200));
  EXPECT_THAT(output.out, ElementsAre("bye"));
}

TEST(ProcessRunnerTest, TimeoutAppliesAfterChildClosedItsOutput) {
  ProcessOptions options = ShellOptions("exec >&- 2>&-; exec sleep 30");
  options.timeout = absl::Milliseconds(200);
  const absl::Time start = absl::Now();
  ASSERT_OK_AND_ASSIGN(ProcessResult result, RunProcess(options, nullptr));
  EXPECT_TRUE(result.timed_out);
  EXPECT_EQ(result.term_signal, SIGTERM);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST(ProcessRunnerTest, ReportsTerminatingSignal) {
  ASSERT_OK_AND_ASSIGN(ProcessResult result,
                       RunProcess(ShellOptions("kill -KILL $$"), nullptr));
  EXPECT_EQ(result.exit_code, -1);
  EXPECT_EQ(result.term_signal, SIGKILL);
}

TEST(ProcessRunnerTest, MissingProgramIsNotFound) {
  ProcessOptions options;
  options.argv = {"ciagent-no-such-program"};
  options.env = {{"PATH", "/usr/bin:/bin"}};
  EXPECT_THAT(RunProcess(options, nullptr),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("ciagent-no-such-program")));
  options.argv = {"/nonexistent/ciagent-no-such-program"};
  EXPECT_THAT(RunProcess(options, nullptr),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("No such file or directory")));
}

TEST(ProcessRunnerTest, ProgramIsSearchedInPathOfGivenEnvironment) {
  ProcessOptions options;
  options.argv = {"sh", "-c", "exit 0"};
  options.env = {{"PATH", "/nonexistent"}};
  EXPECT_THAT(RunProcess(options, nullptr),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("PATH")));
}

TEST(ProcessRunnerTest, BadOptionsAreInvalidArgument) {
  EXPECT_THAT(RunProcess(ProcessOptions{}, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ProcessOptions zero_line = ShellOptions("true");
  zero_line.max_line_bytes = 0;
  EXPECT_THAT(RunProcess(zero_line, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ProcessOptions bad_name = ShellOptions("true");
  bad_name.env.emplace_back("A=B", "c");
  EXPECT_THAT(RunProcess(bad_name, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("A=B")));
}

TEST(ProcessRunnerTest, ReturnsWhenSomeoneElseReapedTheChild) {
  // With SIGCHLD ignored the kernel reaps the child itself: the status is
  // lost, but RunProcess must not hang.
  struct sigaction ignore = {}, previous = {};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGCHLD, &ignore, &previous), 0);
  Output output;
  absl::StatusOr<ProcessResult> result =
      RunProcess(ShellOptions("echo hi; exit 3"), output.Sink());
  ::sigaction(SIGCHLD, &previous, nullptr);
  ASSERT_OK(result.status());
  EXPECT_EQ(result->exit_code, -1);
  EXPECT_THAT(output.out, ElementsAre("hi"));
}

TEST(ProcessRunnerTest, TimeoutSendsSigtermToCooperativeChild) {
  ProcessOptions options = ShellOptions("echo started; exec sleep 30");
  options.timeout = absl::Milliseconds(300);
  options.grace = absl::Seconds(5);
  Output output;
  const absl::Time start = absl::Now();
  ASSERT_OK_AND_ASSIGN(ProcessResult result,
                       RunProcess(options, output.Sink()));
  const absl::Duration elapsed = absl::Now() - start;
  EXPECT_TRUE(result.timed_out);
  EXPECT_FALSE(result.stopped);
  EXPECT_EQ(result.term_signal, SIGTERM);
  EXPECT_THAT(output.out, ElementsAre("started"));
  EXPECT_GE(elapsed, absl::Milliseconds(300));
  EXPECT_LT(elapsed, absl::Seconds(2));  // well before the grace ends
}

TEST(ProcessRunnerTest, TimeoutKillsChildIgnoringSigtermAfterGrace) {
  // The trap prints on TERM and keeps going: output during the grace
  // period must still be read.
  ProcessOptions options = ShellOptions(
      "trap 'echo got TERM' TERM; echo started; "
      "while true; do sleep 0.05; done");
  options.timeout = absl::Milliseconds(300);
  options.grace = absl::Milliseconds(300);
  Output output;
  const absl::Time start = absl::Now();
  ASSERT_OK_AND_ASSIGN(ProcessResult result,
                       RunProcess(options, output.Sink()));
  const absl::Duration elapsed = absl::Now() - start;
  EXPECT_TRUE(result.timed_out);
  EXPECT_EQ(result.term_signal, SIGKILL);
  EXPECT_THAT(output.out, ElementsAre("started", "got TERM"));
  EXPECT_GE(elapsed, absl::Milliseconds(600));
  EXPECT_LT(elapsed, absl::Milliseconds(2500));
  EXPECT_GE(result.duration, absl::Milliseconds(600));
}

TEST(ProcessRunnerTest, ShouldStopTerminatesLikeTimeout) {
  ProcessOptions options = ShellOptions("exec sleep 30");
  const absl::Time stop_at = absl::Now() + absl::Milliseconds(200);
  options.should_stop = [stop_at] { return absl::Now() >= stop_at; };
  options.grace = absl::Seconds(5);
  const absl::Time start = absl::Now();
  ASSERT_OK_AND_ASSIGN(ProcessResult result, RunProcess(options, nullptr));
  EXPECT_TRUE(result.stopped);
  EXPECT_FALSE(result.timed_out);
  EXPECT_EQ(result.term_signal, SIGTERM);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST(ProcessRunnerTest, BackgroundGrandchildDiesWithStep) {
  Output output;
  const absl::Time start = absl::Now();
  ASSERT_OK_AND_ASSIGN(
      ProcessResult result,
      RunProcess(ShellOptions("sleep 300 & echo $!"), output.Sink()));
  // The grandchild holds stdout open: returning promptly means it was
  // killed rather than waited for.
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_EQ(result.exit_code, 0);
  const pid_t grandchild = ParsePid(output.out);
  ASSERT_GT(grandchild, 0);
  EXPECT_TRUE(GoneSoon(grandchild, /*zombie_counts=*/true));
}

TEST(ProcessRunnerTest, WithSubreaperSetsidGrandchildIsKilledAndReaped) {
  ASSERT_OK(BecomeChildSubreaper());
  // Double fork: the subshell exits at once, leaving a sleep in its own
  // session, re-parented to this process, holding stdout open.
  Output output;
  const absl::Time start = absl::Now();
  ASSERT_OK_AND_ASSIGN(
      ProcessResult result,
      RunProcess(ShellOptions("( setsid sleep 300 & echo $! )"),
                 output.Sink()));
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_EQ(result.exit_code, 0);
  const pid_t grandchild = ParsePid(output.out);
  ASSERT_GT(grandchild, 0);
  // Not a zombie of ours either: kill() fails with ESRCH only once reaped.
  EXPECT_TRUE(GoneSoon(grandchild));
  EXPECT_EQ(::waitpid(grandchild, nullptr, WNOHANG), -1);
}

TEST(ProcessRunnerTest, WithSubreaperLeavesPreexistingChildrenAlone) {
  ASSERT_OK(BecomeChildSubreaper());
  const pid_t bystander = ::fork();
  ASSERT_GE(bystander, 0);
  if (bystander == 0) {
    ::pause();
    ::_exit(0);
  }
  ASSERT_OK_AND_ASSIGN(
      ProcessResult result,
      RunProcess(ShellOptions("( setsid sleep 300 & )"), nullptr));
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(::kill(bystander, 0), 0);
  ::kill(bystander, SIGKILL);
  ::waitpid(bystander, nullptr, 0);
}

}  // namespace
}  // namespace ciagent
