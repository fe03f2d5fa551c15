// Subprocess: a child process for tests (services, tools under test).
//
// Start() execs `argv[0]` (searched in PATH) with `argv`; the child gets its
// own process group so Kill() also reaches what it spawned. The destructor
// kills and reaps a child still running.
#ifndef CIAGENT_TESTS_TESTING_SUBPROCESS_H_
#define CIAGENT_TESTS_TESTING_SUBPROCESS_H_

#include <sys/types.h>

#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ciagent::testing {

struct SubprocessOptions {
  // Variables set (or overridden) on top of this process's environment.
  std::map<std::string, std::string> env;
  // Variables removed from the child's environment.
  std::vector<std::string> unset_env;
  // When set, the child's stdout and stderr go to these files.
  std::string stdout_path;
  std::string stderr_path;
};

class Subprocess {
 public:
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(
      const std::vector<std::string>& argv,
      const SubprocessOptions& options = {});
  ~Subprocess();

  pid_t pid() const { return pid_; }
  bool running();
  // Sends `signo` to the child's process group.
  void Signal(int signo);
  // SIGKILL to the process group, then reap.
  void Kill();
  // Waits for exit; returns the exit code (128+N for a signal N), or
  // kDeadlineExceeded after `timeout`.
  absl::StatusOr<int> Wait(absl::Duration timeout = absl::Seconds(30));

 private:
  explicit Subprocess(pid_t pid) : pid_(pid) {}
  pid_t pid_;
  std::optional<int> exit_code_;
};

// Path of a file in the build tree given to the test through env variable
// `name` (meson sets these); kNotFound when unset.
absl::StatusOr<std::string> PathFromEnv(const char* name);

// Reads a whole file; "" when it does not exist.
std::string ReadFileOrEmpty(const std::string& path);

// Runs a tool to completion (at most 30 s), its stdout to `log_path` and
// its stderr to `log_path`.err. kNotFound when it is not installed;
// kInternal naming the tool, its exit code and its stderr when it fails.
absl::Status RunTool(const std::vector<std::string>& argv,
                     const std::string& log_path);

// Writes `text` to `path` with exactly `mode` (also when the file exists),
// e.g. 0600 for a credential file.
absl::Status WriteText(const std::string& path, const std::string& text,
                       mode_t mode);

// Writes the `user:password` line a test server reads its credentials from
// (never argv), mode 0600.
absl::Status WriteCredentialFile(const std::string& path,
                                 const std::string& user,
                                 const std::string& password);

// True when running under CI (CI=true): a missing service then fails.
bool RunningUnderCi();

// --- services run from a script of tests/testing -------------------------
//
// The fixtures (GitServer, RegistryServer, FaultProxy, QuirksRegistry) run
// `kTestPython -I <script> ...`; the script prints `ready <port>` on stdout
// once it accepts connections and exits 0 on SIGTERM.

inline constexpr char kTestPython[] = "/usr/bin/python3";

// kNotFound when kTestPython is not installed.
absl::Status CheckTestPython();

// The helper script `name` (e.g. "git_http_server.py"): from the
// environment variable `env`, else next to this source file (its
// compile-time path, relative to the build directory meson runs tests in),
// else in tests/testing/ of a source tree holding the test binary.
// kFailedPrecondition when none is found, saying to set `env`.
absl::StatusOr<std::string> FindTestScript(const char* name, const char* env);

// Waits until `process` has printed `ready <port>` into the file `out`.
// kUnavailable when it exits first (a port taken meanwhile, say), with its
// stderr from the file `err`; kDeadlineExceeded after `timeout`, the
// process killed. On failure `process` is reset. `what` names the service
// in messages: "<what> on port <port> exited: ...".
absl::Status AwaitReadyLine(std::unique_ptr<Subprocess>& process,
                            const std::string& out, const std::string& err,
                            absl::string_view what, int port,
                            absl::Duration timeout);

// SIGTERM, then waits up to 10 s (SIGKILL after that) and resets `process`;
// OK when it was not running. An exit code outside `ok_codes` is kInternal:
// "<what> exited with <code>: <stderr from the file err>".
absl::Status StopProcess(std::unique_ptr<Subprocess>& process,
                         absl::string_view what, const std::string& err,
                         std::initializer_list<int> ok_codes = {0});

}  // namespace ciagent::testing

// Declares `var` (a std::unique_ptr<type>) and starts it with
// type::Start(...): a missing tool (kNotFound) skips the test unless
// CI=true; any other error fails it. For the fixtures' own macros
// (CIAGENT_START_GIT_SERVER, CIAGENT_START_REGISTRY, ...).
#define CIAGENT_TESTING_START_SERVICE_(type, var, ...)                         \
  std::unique_ptr<::ciagent::testing::type> var;                               \
  do {                                                                         \
    auto started_ = ::ciagent::testing::type::Start(__VA_ARGS__);              \
    if (!started_.ok() &&                                                      \
        started_.status().code() == absl::StatusCode::kNotFound &&             \
        !::ciagent::testing::RunningUnderCi()) {                               \
      GTEST_SKIP() << started_.status().message() << " (fails under CI=true)"; \
    }                                                                          \
    ASSERT_TRUE(started_.ok()) << started_.status().ToString();                \
    var = std::move(started_).value();                                         \
  } while (false)

#endif  // CIAGENT_TESTS_TESTING_SUBPROCESS_H_
