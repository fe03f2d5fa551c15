// RunProcess: runs one build command to completion, so that nothing it
// started survives it.
//
// The command runs in a new process group with stdin from /dev/null and
// exactly the environment given in ProcessOptions::env (nothing is inherited
// from the agent: secrets in the agent's own environment never leak into a
// step). Its stdout and stderr are read through two pipes with poll() on the
// calling thread -- no helper threads -- and handed to a LineSink one line at
// a time. The agent's other descriptors (even without O_CLOEXEC), signal
// handlers and signal mask do not reach the command.
//
// Termination. On timeout, or when `should_stop` returns true, the process
// group gets SIGTERM, output keeps being read for `grace`, then the group
// gets SIGKILL. Whenever the main child exits (on its own or not), whatever
// is left in its process group is killed with SIGKILL: a background job
// (`sleep 300 &`) dies with the step.
//
// A grandchild that calls setsid() (or setpgid()) leaves the process group,
// and the group kill no longer reaches it. Tools therefore call
// BecomeChildSubreaper() once at start: such orphans are then re-parented to
// the agent instead of init, and after the main child exits RunProcess kills
// and reaps every child of this process that appeared during the step
// (found through /proc: PPid == getpid(), not alive before the step). Such
// escapees get no SIGTERM and no grace period, only the final SIGKILL.
//
// Example:
//   CIAGENT_RETURN_IF_ERROR(BecomeChildSubreaper());  // once, in main()
//   ProcessOptions options;
//   options.argv = {"cargo", "build", "--release"};
//   options.working_dir = checkout;
//   options.env = {{"PATH", "/usr/local/cargo/bin:/usr/bin:/bin"},
//                  {"HOME", home}};
//   options.timeout = absl::Minutes(30);
//   options.should_stop = [] { return StopRequested(); };
//   CIAGENT_ASSIGN_OR_RETURN(
//       ProcessResult result,
//       RunProcess(options, [&](StreamKind kind, absl::string_view line) {
//         step_log.Append(kind, line);
//       }));
//   if (result.timed_out) ... else if (result.exit_code != 0) ...
//
// Errors: a command that runs and fails is NOT an error -- its exit code or
// signal is in the ProcessResult. RunProcess returns
//   kInvalidArgument    empty argv, an empty or '='-containing variable
//                       name, max_line_bytes == 0, arguments plus
//                       environment too large for exec (E2BIG): never retry.
//   kNotFound           argv[0] is not in the PATH of `env`, or exists but
//                       cannot be executed (errno in the message): final.
//   kFailedPrecondition working_dir cannot be entered: fix the workspace.
//   kUnavailable        fork/pipe failed for lack of resources (EAGAIN,
//                       EMFILE, ENOMEM...): retry later.
//   kInternal           any other system call failure.
//
// Thread-safety: RunProcess may be called from any thread; the sink and
// `should_stop` are called only on the calling thread. Limits:
//   - Under a subreaper, run one step at a time per process and do not
//     start other children concurrently: any child of this process that
//     appears during a step is attributed to that step and killed.
//   - Without a subreaper, a grandchild that left the process group
//     survives the step, and if it keeps stdout/stderr open, output is read
//     for at most one second after the main child exits.
//   - The caller must not set SIGCHLD to SIG_IGN, nor reap with
//     waitpid(-1, ...) elsewhere while a step runs: the exit status would
//     be lost (the result then says exit_code -1, term_signal 0).
#ifndef CIAGENT_BASE_PROCESS_RUNNER_H_
#define CIAGENT_BASE_PROCESS_RUNNER_H_

#include <cstddef>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ciagent {

struct ProcessOptions {
  // The command. argv[0] without a '/' is searched in the PATH of `env`
  // (default "/usr/local/bin:/usr/bin:/bin" when `env` has no PATH).
  // Required: non-empty.
  std::vector<std::string> argv;
  // Directory the command runs in; empty: the caller's current directory.
  std::string working_dir;
  // The COMPLETE environment of the command, in order; nothing is inherited.
  // When a name appears twice, the later value wins.
  std::vector<std::pair<std::string, std::string>> env;
  // Wall time from start after which the command is terminated.
  absl::Duration timeout = absl::InfiniteDuration();
  // Time between SIGTERM and SIGKILL when terminating.
  absl::Duration grace = absl::Seconds(10);
  // Polled about every 100 ms when set; true terminates the command like a
  // timeout (a cancelled job, an agent shutting down).
  std::function<bool()> should_stop;
  // Lines longer than this are delivered in pieces of this many bytes.
  // Required: > 0.
  size_t max_line_bytes = 64 * 1024;
};

enum class StreamKind { kStdout, kStderr };

// Receives every line of output, without its '\n' (and without a '\r'
// before it). A final line without a newline is delivered at end of stream.
// Lines of one stream arrive in order; stdout and stderr are independent.
using LineSink = std::function<void(StreamKind kind, absl::string_view line)>;

struct ProcessResult {
  // The exit status when the command exited normally, else -1.
  int exit_code = -1;
  // The signal that killed the command, else 0.
  int term_signal = 0;
  // True when the command was terminated because `timeout` passed.
  bool timed_out = false;
  // True when the command was terminated because `should_stop` said so.
  bool stopped = false;
  // Wall time from start until the command exited.
  absl::Duration duration = absl::ZeroDuration();
};

// Runs `options.argv` to completion, delivering its output to `sink` (may be
// empty: output is discarded). See the top of this file.
absl::StatusOr<ProcessResult> RunProcess(const ProcessOptions& options,
                                         const LineSink& sink);

// `name` found in the colon-separated `path` as an executable regular file
// (what RunProcess runs for an argv[0] without '/'); "" when absent.
std::string FindExecutable(absl::string_view name, absl::string_view path);

// Makes this process a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so
// orphaned descendants of a step are re-parented here and RunProcess can
// kill and reap them. Call once at start of a tool. kInternal on failure.
absl::Status BecomeChildSubreaper();

}  // namespace ciagent

#endif  // CIAGENT_BASE_PROCESS_RUNNER_H_
