#include "testing/subprocess.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

extern char** environ;

namespace ciagent::testing {

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Start(
    const std::vector<std::string>& argv, const SubprocessOptions& options) {
  if (argv.empty()) return absl::InvalidArgumentError("empty argv");
  std::vector<std::string> env_strings;
  std::set<std::string> replaced;
  for (const auto& [key, value] : options.env) replaced.insert(key);
  for (const auto& key : options.unset_env) replaced.insert(key);
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry(*e);
    std::string key = entry.substr(0, entry.find('='));
    if (!replaced.count(key)) env_strings.push_back(entry);
  }
  for (const auto& [key, value] : options.env) {
    env_strings.push_back(absl::StrCat(key, "=", value));
  }
  std::vector<char*> argv_ptrs, env_ptrs;
  for (const auto& a : argv) argv_ptrs.push_back(const_cast<char*>(a.c_str()));
  argv_ptrs.push_back(nullptr);
  for (auto& e : env_strings) env_ptrs.push_back(e.data());
  env_ptrs.push_back(nullptr);

  // Emptied here as well as by the child's file actions: glibc's posix_spawn
  // returns once the child has exec'd, but under qemu-user it is a plain
  // fork that returns at once, and AwaitReadyLine would then read the
  // `ready` line a previous run of the same server left in the file.
  for (const std::string* path : {&options.stdout_path, &options.stderr_path}) {
    if (!path->empty()) std::ofstream(*path, std::ios::trunc);
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null",
                                   O_RDONLY, 0);
  if (!options.stdout_path.empty()) {
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO,
                                     options.stdout_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
  }
  if (!options.stderr_path.empty()) {
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO,
                                     options.stderr_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
  }
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t empty;
  sigemptyset(&empty);
  posix_spawnattr_setsigmask(&attr, &empty);
  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0].c_str(), &actions, &attr,
                        argv_ptrs.data(), env_ptrs.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return absl::NotFoundError(
        absl::StrCat("spawn ", argv[0], ": ", std::strerror(rc)));
  }
  return std::unique_ptr<Subprocess>(new Subprocess(pid));
}

Subprocess::~Subprocess() {
  if (!exit_code_.has_value()) Kill();
}

bool Subprocess::running() {
  if (exit_code_.has_value()) return false;
  int wstatus;
  pid_t r = ::waitpid(pid_, &wstatus, WNOHANG);
  if (r == pid_) {
    exit_code_ = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus)
                                    : 128 + WTERMSIG(wstatus);
    return false;
  }
  return true;
}

void Subprocess::Signal(int signo) {
  if (running()) ::kill(-pid_, signo);
}

void Subprocess::Kill() {
  if (exit_code_.has_value()) return;
  ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
  (void)Wait(absl::Seconds(10));
}

absl::StatusOr<int> Subprocess::Wait(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (running()) {
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("process ", pid_, " still running"));
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  return *exit_code_;
}

absl::StatusOr<std::string> PathFromEnv(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') {
    return absl::NotFoundError(absl::StrCat(name, " is not set"));
  }
  return std::string(value);
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

absl::Status WriteCredentialFile(const std::string& path,
                                 const std::string& user,
                                 const std::string& password) {
  return WriteText(path, absl::StrCat(user, ":", password, "\n"), 0600);
}

bool RunningUnderCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

absl::Status RunTool(const std::vector<std::string>& argv,
                     const std::string& log_path) {
  SubprocessOptions options;
  options.stdout_path = log_path;
  options.stderr_path = absl::StrCat(log_path, ".err");
  auto process = Subprocess::Start(argv, options);
  if (!process.ok()) return process.status();
  auto code = (*process)->Wait(absl::Seconds(30));
  if (!code.ok()) return code.status();
  if (*code != 0) {
    return absl::InternalError(absl::StrCat(
        argv[0], " ", argv.size() > 1 ? argv[1] : "", ": exit ", *code, ": ",
        absl::StripAsciiWhitespace(ReadFileOrEmpty(options.stderr_path))));
  }
  return absl::OkStatus();
}

absl::Status WriteText(const std::string& path, const std::string& text,
                       mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) {
    return absl::InternalError(
        absl::StrCat("create ", path, ": ", std::strerror(errno)));
  }
  // The mode of an existing file is not changed by open(); force it.
  bool ok = ::fchmod(fd, mode) == 0;
  size_t written = 0;
  while (ok && written < text.size()) {
    ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) written += static_cast<size_t>(n);
  }
  ok = (::close(fd) == 0) && ok;
  if (!ok) {
    return absl::InternalError(
        absl::StrCat("write ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status CheckTestPython() {
  if (::access(kTestPython, X_OK) != 0) {
    return absl::NotFoundError(absl::StrCat(kTestPython, " not installed"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> FindTestScript(const char* name, const char* env) {
  auto is_file = [](const std::filesystem::path& path) {
    std::error_code ec;
    return std::filesystem::is_regular_file(path, ec);
  };
  if (auto from_env = PathFromEnv(env); from_env.ok()) {
    if (is_file(*from_env)) return *from_env;
    return absl::FailedPreconditionError(
        absl::StrCat(env, "=", *from_env, ": no such file"));
  }
  std::error_code ec;
  const std::filesystem::path beside =
      std::filesystem::path(__FILE__).parent_path() / name;
  if (is_file(beside)) return std::filesystem::absolute(beside, ec).string();
  std::filesystem::path dir =
      std::filesystem::read_symlink("/proc/self/exe", ec).parent_path();
  for (; !ec && !dir.empty() && dir != dir.root_path();
       dir = dir.parent_path()) {
    const auto candidate = dir / "tests" / "testing" / name;
    if (is_file(candidate)) return candidate.string();
  }
  return absl::FailedPreconditionError(
      absl::StrCat(name, " not found; set ", env, " to its path"));
}

absl::Status AwaitReadyLine(std::unique_ptr<Subprocess>& process,
                            const std::string& out, const std::string& err,
                            absl::string_view what, int port,
                            absl::Duration timeout) {
  const std::string ready = absl::StrCat("ready ", port, "\n");
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (ReadFileOrEmpty(out) == ready) return absl::OkStatus();
    if (!process->running()) {
      process.reset();
      return absl::UnavailableError(
          absl::StrCat(what, " on port ", port, " exited: ",
                       absl::StripAsciiWhitespace(ReadFileOrEmpty(err))));
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  process->Kill();
  process.reset();
  return absl::DeadlineExceededError(
      absl::StrCat(what, " on port ", port, " not ready after ",
                   absl::FormatDuration(timeout)));
}

absl::Status StopProcess(std::unique_ptr<Subprocess>& process,
                         absl::string_view what, const std::string& err,
                         std::initializer_list<int> ok_codes) {
  if (!process) return absl::OkStatus();
  process->Signal(SIGTERM);
  auto code = process->Wait(absl::Seconds(10));
  if (!code.ok()) process->Kill();
  process.reset();
  if (!code.ok()) return code.status();
  for (int ok : ok_codes) {
    if (*code == ok) return absl::OkStatus();
  }
  return absl::InternalError(
      absl::StrCat(what, " exited with ", *code, ": ",
                   absl::StripAsciiWhitespace(ReadFileOrEmpty(err))));
}

}  // namespace ciagent::testing
