#include "ciagent/cache/sccache.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include <simdjson.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ciagent/base/process_runner.h"
#include "ciagent/base/status_macros.h"

namespace ciagent {
namespace {

// A port free on 127.0.0.1 now (the server binds it a moment later).
absl::StatusOr<int> FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError(std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  const bool ok =
      ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  if (!ok) return absl::UnavailableError(std::strerror(errno));
  return ntohs(addr.sin_port);
}

bool Accepting(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok =
      ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

// Sum of stats.<field>.counts.* (per-language counters).
int64_t SumCounts(simdjson::dom::element stats, const char* field) {
  simdjson::dom::object counts;
  if (stats[field]["counts"].get_object().get(counts) != simdjson::SUCCESS) {
    return 0;
  }
  int64_t sum = 0;
  for (auto [language, value] : counts) {
    int64_t n = 0;
    if (value.get_int64().get(n) == simdjson::SUCCESS) sum += n;
  }
  return sum;
}

}  // namespace

absl::StatusOr<SccacheStats> ParseSccacheStats(absl::string_view json) {
  simdjson::dom::parser parser;
  simdjson::dom::element stats;
  if (parser.parse(json.data(), json.size())["stats"].get(stats) !=
          simdjson::SUCCESS ||
      !stats.is_object()) {
    return absl::InvalidArgumentError(
        "sccache statistics: not a JSON document with \"stats\"");
  }
  SccacheStats result;
  if (stats["compile_requests"].get_int64().get(result.compile_requests) !=
      simdjson::SUCCESS) {
    result.compile_requests = 0;
  }
  result.hits = SumCounts(stats, "cache_hits");
  result.misses = SumCounts(stats, "cache_misses");
  return result;
}

absl::StatusOr<std::unique_ptr<SccacheServer>> SccacheServer::Start(
    const SccacheOptions& options) {
  const std::string sccache = FindExecutable("sccache", options.path);
  if (sccache.empty()) {
    return absl::FailedPreconditionError("sccache is not in PATH");
  }
  CIAGENT_ASSIGN_OR_RETURN(int port, FreePort());
  std::vector<std::pair<std::string, std::string>> env = {
      {"RUSTC_WRAPPER", sccache},
      {"SCCACHE_DIR", options.dir},
      {"SCCACHE_SERVER_PORT", absl::StrCat(port)}};
  // The server's environment: exactly these, plus foreground mode.
  std::vector<std::string> entries = {
      "PATH=" + options.path, "SCCACHE_START_SERVER=1", "SCCACHE_NO_DAEMON=1",
      "SCCACHE_DIR=" + options.dir, absl::StrCat("SCCACHE_SERVER_PORT=", port)};
  std::vector<char*> envp;
  for (std::string& entry : entries) envp.push_back(entry.data());
  envp.push_back(nullptr);
  char* argv[] = {const_cast<char*>(sccache.c_str()), nullptr};

  const pid_t pid = ::fork();
  if (pid < 0) {
    return absl::UnavailableError(
        absl::StrCat("start sccache: fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    // Own process group: a step's group kill never reaches the server.
    ::setpgid(0, 0);
    int null = ::open("/dev/null", O_RDWR);
    if (null >= 0) {
      ::dup2(null, 0);
      ::dup2(null, 1);
      ::dup2(null, 2);
    }
    ::execve(argv[0], argv, envp.data());
    ::_exit(127);
  }
  std::unique_ptr<SccacheServer> server(
      new SccacheServer(options, pid, std::move(env)));
  const absl::Time deadline = absl::Now() + options.start_timeout;
  while (!Accepting(port)) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      server->pid_ = -1;
      return absl::FailedPreconditionError(
          "start sccache: the server exited at start");
    }
    if (absl::Now() >= deadline) {
      return absl::FailedPreconditionError(
          absl::StrCat("start sccache: not listening on 127.0.0.1:", port,
                       " after ", absl::FormatDuration(options.start_timeout)));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return server;
}

absl::StatusOr<SccacheStats> SccacheServer::Stats() const {
  ProcessOptions process;
  process.argv = {env_[0].second, "--show-stats", "--stats-format=json"};
  process.env = env_;
  process.env.emplace_back("PATH", options_.path);
  process.timeout = absl::Seconds(30);
  std::string json;
  CIAGENT_ASSIGN_OR_RETURN(
      ProcessResult run,
      RunProcess(process, [&](StreamKind kind, absl::string_view line) {
        if (kind == StreamKind::kStdout) absl::StrAppend(&json, line, "\n");
      }));
  if (run.exit_code != 0) {
    return absl::UnavailableError(absl::StrCat(
        "sccache --show-stats exited with code ", run.exit_code));
  }
  return ParseSccacheStats(json);
}

SccacheServer::~SccacheServer() {
  if (pid_ <= 0) return;
  ProcessOptions process;
  process.argv = {env_[0].second, "--stop-server"};
  process.env = env_;
  process.env.emplace_back("PATH", options_.path);
  process.timeout = absl::Seconds(10);
  (void)RunProcess(process, nullptr);
  // Whatever the stop said, the server does not outlive the run.
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
}

}  // namespace ciagent
