// Subprocess: a child process for tests (services, tools under test).
//
// Start() execs `argv[0]` (searched in PATH) with `argv`; the child gets its
// own process group so Kill() also reaches what it spawned. The destructor
// kills and reaps a child still running.
#ifndef CIAGENT_TESTS_TESTING_SUBPROCESS_H_
#define CIAGENT_TESTS_TESTING_SUBPROCESS_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
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

// True when running under CI (CI=true): a missing service then fails.
bool RunningUnderCi();

}  // namespace ciagent::testing

#endif  // CIAGENT_TESTS_TESTING_SUBPROCESS_H_
