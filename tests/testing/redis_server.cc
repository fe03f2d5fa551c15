#include "testing/redis_server.h"

#include <hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ciagent/queue/redis_client.h"

namespace ciagent::testing {
namespace {

// True once the server answers PING over TLS, through the agent's own
// client (hiredis here has no TLS).
bool AnswersTls(int port, const RedisServerOptions& server) {
  RedisOptions options;
  options.port = port;
  options.tls = true;
  options.tls_files.ca_file = server.tls->ca_file;
  if (server.require_client_certificate) {
    // The server's certificate is a client certificate too (clientAuth).
    options.tls_files.cert_file = server.tls->cert_file;
    options.tls_files.key_file = server.tls->key_file;
  }
  options.password = server.password;
  options.connect_timeout = absl::Milliseconds(200);
  RedisClient client(options);
  absl::StatusOr<RedisReply> pong = client.Command({"PING"});
  // A certificate this client refuses (a test's name mismatch) still means
  // the server is up and speaking TLS.
  return (pong.ok() && pong->type == RedisReply::Type::kStatus) ||
         pong.status().code() == absl::StatusCode::kFailedPrecondition;
}

// True once the server answers PING (with AUTH when it has a password).
bool Answers(int port, const std::string& password) {
  struct timeval tv = {0, 200000};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port, tv);
  if (c == nullptr) return false;
  bool ok = c->err == 0;
  if (ok && !password.empty()) {
    auto* r = static_cast<redisReply*>(
        redisCommand(c, "AUTH %b", password.data(), password.size()));
    ok = r != nullptr && r->type != REDIS_REPLY_ERROR;
    if (r) freeReplyObject(r);
  }
  if (ok) {
    auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
    // LOADING (after a restart with persistence) is not ready yet.
    ok = r != nullptr && r->type == REDIS_REPLY_STATUS;
    if (r) freeReplyObject(r);
  }
  redisFree(c);
  return ok;
}

}  // namespace

absl::StatusOr<int> PickFreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError(std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return absl::InternalError(std::strerror(errno));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

absl::StatusOr<int> LaunchOnFreePort(
    const std::function<absl::Status(int port)>& launch) {
  absl::Status status;
  for (int attempt = 0; attempt < 5; ++attempt) {
    absl::StatusOr<int> port = PickFreePort();
    if (!port.ok()) return port.status();
    status = launch(*port);
    if (status.ok()) return *port;
    if (status.code() == absl::StatusCode::kNotFound) break;
  }
  return status;
}

absl::Status LaunchOnFreePort(int& port,
                              const std::function<absl::Status()>& launch) {
  return LaunchOnFreePort([&](int free_port) {
           port = free_port;
           return launch();
         })
      .status();
}

absl::StatusOr<std::string> MakeTempDir(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern =
      absl::StrCat(tmp != nullptr && *tmp ? tmp : "/tmp", "/", prefix, "XXXXXX");
  if (::mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(
        absl::StrCat("mkdtemp ", pattern, ": ", std::strerror(errno)));
  }
  return pattern;
}

void RemoveTree(const std::string& path) {
  std::error_code ignored;
  std::filesystem::remove_all(path, ignored);
}

absl::StatusOr<std::unique_ptr<RedisServer>> RedisServer::Start(
    RedisServerOptions options) {
  std::unique_ptr<RedisServer> server(new RedisServer());
  server->options_ = std::move(options);
  auto dir = MakeTempDir("ciagent-redis-");
  if (!dir.ok()) return dir.status();
  server->dir_ = *dir;
  RedisServer* raw = server.get();
  absl::StatusOr<int> port = LaunchOnFreePort([raw](int port) {
    raw->port_ = port;
    return raw->Launch();
  });
  if (!port.ok()) return port.status();
  return server;
}

RedisServer::~RedisServer() {
  if (process_) process_->Kill();
  RemoveTree(dir_);
}

std::string RedisServer::url() const {
  return absl::StrCat(options_.tls.has_value() ? "rediss" : "redis",
                      "://127.0.0.1:", port_);
}

absl::Status RedisServer::Launch() {
  const std::string conf = absl::StrCat(dir_, "/redis.conf");
  {
    std::ofstream out(conf);
    out << "bind 127.0.0.1\n"
        << "port " << (options_.tls.has_value() ? 0 : port_) << "\n"
        << "dir " << dir_ << "\n"
        << "daemonize no\n"
        << "save \"\"\n"
        << "logfile " << dir_ << "/redis.log\n"
        << "protected-mode no\n";
    if (options_.persistence) {
      out << "appendonly yes\nappendfsync always\n";
    }
    if (!options_.password.empty()) {
      out << "requirepass \"" << options_.password << "\"\n";
    }
    if (options_.tls.has_value()) {
      out << "tls-port " << port_ << "\n"
          << "tls-cert-file " << options_.tls->cert_file << "\n"
          << "tls-key-file " << options_.tls->key_file << "\n"
          << "tls-ca-cert-file " << options_.tls->ca_file << "\n"
          << "tls-auth-clients "
          << (options_.require_client_certificate ? "yes" : "no") << "\n";
    }
    if (options_.replica_of != 0) {
      out << "replicaof 127.0.0.1 " << options_.replica_of << "\n";
      if (!options_.password.empty()) {
        out << "masterauth \"" << options_.password << "\"\n";
      }
    }
    if (options_.sentinel_monitor != 0) {
      const std::string& name = options_.master_name;
      out << "sentinel monitor " << name << " 127.0.0.1 "
          << options_.sentinel_monitor << " 2\n"
          << "sentinel down-after-milliseconds " << name << " 1000\n"
          << "sentinel failover-timeout " << name << " 3000\n"
          << "sentinel parallel-syncs " << name << " 2\n";
      if (!options_.master_password.empty()) {
        out << "sentinel auth-pass " << name << " \""
            << options_.master_password << "\"\n";
      }
      if (!options_.password.empty()) {
        // What a sentinel says to the others, which ask for it too.
        out << "sentinel sentinel-pass \"" << options_.password << "\"\n";
      }
    }
  }
  std::vector<std::string> argv = {"redis-server", conf};
  if (options_.sentinel_monitor != 0) argv.push_back("--sentinel");
  auto process = Subprocess::Start(argv);
  if (!process.ok()) return process.status();
  process_ = std::move(process).value();
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    if (options_.tls.has_value() ? AnswersTls(port_, options_)
                                 : Answers(port_, options_.password)) {
      return absl::OkStatus();
    }
    if (!process_->running()) {
      return absl::UnavailableError(absl::StrCat(
          "redis-server on port ", port_, " exited: ",
          ReadFileOrEmpty(absl::StrCat(dir_, "/redis.log"))));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("redis-server on port ", port_, " did not answer"));
}

absl::Status RedisServer::Stop() {
  if (!process_) return absl::OkStatus();
  process_->Signal(SIGTERM);
  auto code = process_->Wait(absl::Seconds(10));
  process_.reset();
  return code.ok() ? absl::OkStatus() : code.status();
}

void RedisServer::Kill() {
  if (process_) process_->Kill();
  process_.reset();
}

absl::Status RedisServer::StartAgain() { return Launch(); }

void RedisServer::Pause() {
  if (process_) process_->Signal(SIGSTOP);
}

void RedisServer::Resume() {
  if (process_) process_->Signal(SIGCONT);
}

absl::Status RedisServer::Restart() {
  if (absl::Status s = Stop(); !s.ok()) return s;
  return Launch();
}

}  // namespace ciagent::testing
