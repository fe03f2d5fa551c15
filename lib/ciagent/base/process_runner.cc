#include "ciagent/base/process_runner.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "ciagent/base/status_macros.h"

namespace ciagent {
namespace {

constexpr char kDefaultPath[] = "/usr/local/bin:/usr/bin:/bin";
constexpr absl::Duration kStopPollInterval = absl::Milliseconds(100);
// Without a pidfd, how often the child's exit is checked.
constexpr absl::Duration kExitPollInterval = absl::Milliseconds(10);
// How long output is still read after the child exited and its group was
// killed; only matters when an escaped grandchild holds a pipe open.
constexpr absl::Duration kDrainAfterExit = absl::Seconds(1);
constexpr size_t kReadChunk = 64 * 1024;

// What the child reports through the exec pipe when it cannot exec.
enum ChildStage : int32_t { kStageSetup = 1, kStageChdir = 2, kStageExec = 3 };
struct ChildFailure {
  int32_t stage;
  int32_t error;
};

bool IsResourceShortage(int error) {
  return error == EAGAIN || error == EMFILE || error == ENFILE ||
         error == ENOMEM;
}

absl::Status SyscallError(absl::string_view what, int error) {
  std::string message = absl::StrCat(what, ": ", std::strerror(error));
  return IsResourceShortage(error) ? absl::UnavailableError(message)
                                   : absl::InternalError(message);
}

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Close(); }
  int get() const { return fd_; }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  void Reset(int fd) {
    Close();
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

absl::Status MakePipe(Fd& read_end, Fd& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return SyscallError("pipe", errno);
  read_end.Reset(fds[0]);
  write_end.Reset(fds[1]);
  return absl::OkStatus();
}

bool IsExecutableFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
         ::access(path.c_str(), X_OK) == 0;
}

// The path execve() gets for `program`, searched in `path_var` when it has
// no '/'.
absl::StatusOr<std::string> ResolveProgram(const std::string& program,
                                           const std::string& path_var) {
  if (program.find('/') != std::string::npos) return program;
  std::string found = FindExecutable(program, path_var);
  if (!found.empty()) return found;
  return absl::NotFoundError(
      absl::StrCat("run ", program, ": not found in PATH \"", path_var, "\""));
}

// The entry of one process in /proc that matters here.
struct ProcEntry {
  pid_t ppid = 0;
  uint64_t start_time = 0;  // distinguishes a reused pid
};

std::optional<ProcEntry> ReadProcStat(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[1024];
  const ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
  ::close(fd);
  if (n <= 0) return std::nullopt;
  absl::string_view stat(buf, static_cast<size_t>(n));
  // "pid (comm) state ppid pgrp ..."; comm may contain spaces and ')'.
  const size_t paren = stat.rfind(')');
  if (paren == absl::string_view::npos) return std::nullopt;
  std::vector<absl::string_view> fields =
      absl::StrSplit(stat.substr(paren + 1), ' ', absl::SkipEmpty());
  // fields[0] is the state (field 3); starttime is field 22.
  if (fields.size() < 20) return std::nullopt;
  ProcEntry entry;
  int ppid = 0;
  if (!absl::SimpleAtoi(fields[1], &ppid) ||
      !absl::SimpleAtoi(fields[19], &entry.start_time)) {
    return std::nullopt;
  }
  entry.ppid = ppid;
  return entry;
}

// Children of this process: pid -> start time.
std::map<pid_t, uint64_t> ListOwnChildren() {
  std::map<pid_t, uint64_t> children;
  DIR* dir = ::opendir("/proc");
  if (dir == nullptr) return children;
  const pid_t self = ::getpid();
  while (const dirent* entry = ::readdir(dir)) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid) || pid <= 0) continue;
    std::optional<ProcEntry> stat = ReadProcStat(pid);
    if (stat && stat->ppid == self) children[pid] = stat->start_time;
  }
  ::closedir(dir);
  return children;
}

bool IsChildSubreaper() {
  int value = 0;
  return ::prctl(PR_GET_CHILD_SUBREAPER, &value) == 0 && value != 0;
}

// Kills and reaps every child of ours that is not in `before` and is not
// `exclude`. Repeats, because killing one re-parents its own children to us.
void KillEscapedChildren(const std::map<pid_t, uint64_t>& before,
                         pid_t exclude) {
  for (int round = 0; round < 100; ++round) {
    std::vector<pid_t> found;
    for (const auto& [pid, start_time] : ListOwnChildren()) {
      if (pid == exclude) continue;
      auto it = before.find(pid);
      if (it != before.end() && it->second == start_time) continue;
      found.push_back(pid);
    }
    if (found.empty()) return;
    for (pid_t pid : found) ::kill(pid, SIGKILL);
    for (pid_t pid : found) {
      while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
  }
}

// Splits one stream into lines for the sink.
class LineSplitter {
 public:
  LineSplitter(StreamKind kind, size_t max_line_bytes, const LineSink& sink)
      : kind_(kind), max_(max_line_bytes), sink_(sink) {}

  void Feed(const char* data, size_t size) {
    pending_.append(data, size);
    size_t start = 0;
    while (true) {
      const size_t newline = pending_.find('\n', start);
      if (newline == std::string::npos) break;
      EmitLine(absl::string_view(pending_).substr(start, newline - start));
      start = newline + 1;
    }
    // A line longer than the limit is delivered in pieces as it arrives,
    // so memory stays bounded.
    while (pending_.size() - start > max_) {
      Emit(absl::string_view(pending_).substr(start, max_));
      start += max_;
    }
    pending_.erase(0, start);
  }

  void Finish() {
    if (!pending_.empty()) EmitLine(pending_);
    pending_.clear();
  }

 private:
  void EmitLine(absl::string_view line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    while (line.size() > max_) {
      Emit(line.substr(0, max_));
      line.remove_prefix(max_);
    }
    Emit(line);
  }
  void Emit(absl::string_view line) {
    if (sink_) sink_(kind_, line);
  }

  const StreamKind kind_;
  const size_t max_;
  const LineSink& sink_;
  std::string pending_;
};

// Sends `signo` to the child's process group, and to the child itself
// when it moved to another group (once only: a trap would run twice).
void SignalStep(pid_t pid, int signo) {
  ::kill(-pid, signo);
  if (::getpgid(pid) != pid) ::kill(pid, signo);
}

int MillisUntil(absl::Time deadline, absl::Time now) {
  if (deadline == absl::InfiniteFuture()) return -1;
  const absl::Duration left = deadline - now;
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(std::min<int64_t>(
      absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))),
      60 * 1000));
}

}  // namespace

absl::Status BecomeChildSubreaper() {
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    return absl::InternalError(
        absl::StrCat("prctl PR_SET_CHILD_SUBREAPER: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

std::string FindExecutable(absl::string_view name, absl::string_view path) {
  for (absl::string_view dir : absl::StrSplit(path, ':')) {
    if (dir.empty()) continue;
    std::string candidate = absl::StrCat(dir, "/", name);
    if (IsExecutableFile(candidate)) return candidate;
  }
  return "";
}

absl::StatusOr<ProcessResult> RunProcess(const ProcessOptions& options,
                                         const LineSink& sink) {
  if (options.argv.empty() || options.argv[0].empty()) {
    return absl::InvalidArgumentError("run process: empty argv");
  }
  const std::string& program = options.argv[0];
  if (options.max_line_bytes == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("run ", program, ": max_line_bytes must be > 0"));
  }

  // Everything the child needs is built before fork(): after it, the child
  // of a multi-threaded parent may only make async-signal-safe calls.
  std::vector<std::pair<std::string, std::string>> env;
  for (const auto& variable : options.env) {
    const std::string& name = variable.first;
    const std::string& value = variable.second;
    if (name.empty() || name.find('=') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "run ", program, ": bad environment variable name \"", name, "\""));
    }
    auto it = std::find_if(env.begin(), env.end(),
                           [&name](const auto& e) { return e.first == name; });
    if (it != env.end()) {
      it->second = value;
    } else {
      env.emplace_back(name, value);
    }
  }
  std::string path_var = kDefaultPath;
  std::vector<std::string> env_strings;
  for (const auto& [name, value] : env) {
    if (name == "PATH") path_var = value;
    env_strings.push_back(absl::StrCat(name, "=", value));
  }
  CIAGENT_ASSIGN_OR_RETURN(const std::string exec_path,
                           ResolveProgram(program, path_var));

  std::vector<char*> argv_ptrs;
  for (const std::string& arg : options.argv) {
    argv_ptrs.push_back(const_cast<char*>(arg.c_str()));
  }
  argv_ptrs.push_back(nullptr);
  std::vector<char*> env_ptrs;
  for (std::string& entry : env_strings) env_ptrs.push_back(entry.data());
  env_ptrs.push_back(nullptr);
  const char* working_dir =
      options.working_dir.empty() ? nullptr : options.working_dir.c_str();

  Fd dev_null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (dev_null.get() < 0) return SyscallError("open /dev/null", errno);
  Fd out_read, out_write, err_read, err_write, exec_read, exec_write;
  CIAGENT_RETURN_IF_ERROR(MakePipe(out_read, out_write));
  CIAGENT_RETURN_IF_ERROR(MakePipe(err_read, err_write));
  CIAGENT_RETURN_IF_ERROR(MakePipe(exec_read, exec_write));

  const bool subreaper = IsChildSubreaper();
  std::map<pid_t, uint64_t> children_before;
  if (subreaper) children_before = ListOwnChildren();

  const absl::Time start = absl::Now();
  const pid_t pid = ::fork();
  if (pid < 0) return SyscallError(absl::StrCat("fork for ", program), errno);
  if (pid == 0) {
    // Child: async-signal-safe calls only.
    ChildFailure failure{kStageSetup, 0};
    ::setpgid(0, 0);
    // Handlers and masks of the agent must not leak into the step (an
    // ignored SIGPIPE would change how pipelines in scripts end).
    struct sigaction dfl;
    std::memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int signo = 1; signo < NSIG; ++signo)
      ::sigaction(signo, &dfl, nullptr);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    // Descriptors of the agent (sockets, locks) that lack O_CLOEXEC must
    // not reach the step either. Best effort: needs Linux 5.11.
    ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    if (::dup2(dev_null.get(), STDIN_FILENO) < 0 ||
        ::dup2(out_write.get(), STDOUT_FILENO) < 0 ||
        ::dup2(err_write.get(), STDERR_FILENO) < 0) {
      failure.error = errno;
    } else if (working_dir != nullptr && ::chdir(working_dir) != 0) {
      failure = {kStageChdir, errno};
    } else {
      ::execve(exec_path.c_str(), argv_ptrs.data(), env_ptrs.data());
      failure = {kStageExec, errno};
    }
    ssize_t ignored = ::write(exec_write.get(), &failure, sizeof(failure));
    (void)ignored;
    ::_exit(127);
  }

  // Parent. Also set the group here, so that a kill(-pid) right away
  // reaches the child; EACCES once the child has exec'd is harmless.
  ::setpgid(pid, pid);
  dev_null.Close();
  out_write.Close();
  err_write.Close();
  exec_write.Close();

  ProcessResult result;
  bool reaped = false;
  auto reap = [&](int flags) {
    if (reaped) return true;
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(pid, &status, flags);
    } while (r < 0 && errno == EINTR);
    // ECHILD: someone else reaped it (SIGCHLD ignored, a stray
    // waitpid(-1)); the status is lost but the child is gone.
    if (r != pid && !(r < 0 && errno == ECHILD)) return false;
    reaped = true;
    result.duration = absl::Now() - start;
    if (r == pid && WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
    if (r == pid && WIFSIGNALED(status)) result.term_signal = WTERMSIG(status);
    return true;
  };
  // Kills and reaps everything the step left behind.
  auto clean_up = [&] {
    SignalStep(pid, SIGKILL);
    reap(0);
    if (subreaper) KillEscapedChildren(children_before, pid);
  };

  // The exec pipe closes on a successful exec, or carries the reason it
  // failed.
  ChildFailure failure{0, 0};
  ssize_t n;
  do {
    n = ::read(exec_read.get(), &failure, sizeof(failure));
  } while (n < 0 && errno == EINTR);
  exec_read.Close();
  if (n == static_cast<ssize_t>(sizeof(failure))) {
    clean_up();
    const std::string what = absl::StrCat("run ", program);
    switch (failure.stage) {
      case kStageExec: {
        std::string message = absl::StrCat(what, ": exec ", exec_path, ": ",
                                           std::strerror(failure.error));
        if (failure.error == E2BIG) return absl::InvalidArgumentError(message);
        if (IsResourceShortage(failure.error)) {
          return absl::UnavailableError(message);
        }
        return absl::NotFoundError(message);
      }
      case kStageChdir:
        return absl::FailedPreconditionError(
            absl::StrCat(what, ": chdir ", options.working_dir, ": ",
                         std::strerror(failure.error)));
      default:
        return SyscallError(absl::StrCat(what, ": set up child"),
                            failure.error);
    }
  }

  for (Fd* fd : {&out_read, &err_read}) {
    ::fcntl(fd->get(), F_SETFL, ::fcntl(fd->get(), F_GETFL) | O_NONBLOCK);
  }
  Fd pid_fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));

  LineSplitter out_lines(StreamKind::kStdout, options.max_line_bytes, sink);
  LineSplitter err_lines(StreamKind::kStderr, options.max_line_bytes, sink);
  std::vector<char> buffer(kReadChunk);

  const absl::Time timeout_at = options.timeout == absl::InfiniteDuration()
                                    ? absl::InfiniteFuture()
                                    : start + options.timeout;
  absl::Time kill_at = absl::InfiniteFuture();  // set once SIGTERM is sent
  absl::Time next_stop_check = start;
  absl::Time drain_until = absl::InfiniteFuture();  // set once reaped
  bool terminating = false;
  bool killed = false;

  // Timeout or stop: SIGTERM, then SIGKILL after the grace period.
  auto enforce_limits = [&](absl::Time now) {
    if (!terminating) {
      if (now >= timeout_at) {
        result.timed_out = true;
      } else if (options.should_stop && now >= next_stop_check) {
        next_stop_check = now + kStopPollInterval;
        result.stopped = options.should_stop();
      }
      if (result.timed_out || result.stopped) {
        terminating = true;
        SignalStep(pid, SIGTERM);
        kill_at = now + options.grace;
      }
    } else if (!killed && now >= kill_at) {
      killed = true;
      SignalStep(pid, SIGKILL);
    }
  };

  while (out_read.get() >= 0 || err_read.get() >= 0) {
    absl::Time now = absl::Now();
    if (!reaped && reap(WNOHANG)) {
      pid_fd.Close();
      // The main child is gone: nothing else of the step may run on.
      clean_up();
      now = absl::Now();
      drain_until = now + kDrainAfterExit;
    }
    if (reaped && now >= drain_until) break;
    if (!reaped) enforce_limits(now);

    absl::Time wake = drain_until;
    if (!reaped) {
      if (!terminating) {
        wake = std::min(wake, timeout_at);
        if (options.should_stop) wake = std::min(wake, next_stop_check);
      } else if (!killed) {
        wake = std::min(wake, kill_at);
      }
      if (pid_fd.get() < 0) wake = std::min(wake, now + kExitPollInterval);
    }
    pollfd fds[3];
    nfds_t count = 0;
    for (Fd* fd : {&out_read, &err_read, &pid_fd}) {
      if (fd->get() >= 0) fds[count++] = {fd->get(), POLLIN, 0};
    }
    const int ready = ::poll(fds, count, MillisUntil(wake, now));
    if (ready < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      clean_up();
      return SyscallError(absl::StrCat("run ", program, ": poll"), error);
    }
    for (nfds_t i = 0; i < count; ++i) {
      if (fds[i].revents == 0 || fds[i].fd == pid_fd.get()) continue;
      const bool is_out = fds[i].fd == out_read.get();
      Fd& fd = is_out ? out_read : err_read;
      LineSplitter& lines = is_out ? out_lines : err_lines;
      const ssize_t got = ::read(fd.get(), buffer.data(), buffer.size());
      if (got > 0) {
        lines.Feed(buffer.data(), static_cast<size_t>(got));
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        lines.Finish();
        fd.Close();
      }
    }
  }
  out_lines.Finish();
  err_lines.Finish();
  out_read.Close();
  err_read.Close();
  if (!reaped) {
    // Both streams closed before the child exited (it closed them itself).
    // Wait for it, still honouring the timeout and should_stop.
    while (!reap(WNOHANG)) {
      enforce_limits(absl::Now());
      if (pid_fd.get() >= 0) {
        pollfd exit_fd = {pid_fd.get(), POLLIN, 0};
        ::poll(&exit_fd, 1,
               static_cast<int>(absl::ToInt64Milliseconds(kStopPollInterval)));
      } else {
        absl::SleepFor(kExitPollInterval);
      }
    }
    clean_up();
  }
  return result;
}

}  // namespace ciagent
