// RedisServer: a real redis-server for integration tests, on a free
// 127.0.0.1 port with its own temporary directory, stopped and removed when
// the object dies.
//
//   CIAGENT_START_REDIS(server);              // in a TEST body or SetUp()
//   RedisOptions options = server->options();
//
// The same binary serves TLS (tls-port only, certificates made by openssl),
// replicates (replicaof) and runs as a Sentinel (--sentinel): the fixtures
// of the TLS and failover tests.
//
// When redis-server is not installed the macro skips the test, except under
// CI=true, where a missing service is a failure.
#ifndef CIAGENT_TESTS_TESTING_REDIS_SERVER_H_
#define CIAGENT_TESTS_TESTING_REDIS_SERVER_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "testing/subprocess.h"
#include "testing/test_certs.h"

namespace ciagent::testing {

struct RedisServerOptions {
  // requirepass; empty for none. Written to the config file, not argv.
  std::string password;
  // appendonly yes, fsync always: data survives Restart() and Kill().
  bool persistence = false;
  // Serve TLS only (tls-port, no plain port) with these certificates;
  // demand a client certificate signed by their CA when
  // `require_client_certificate`.
  std::optional<ServerCertificates> tls;
  bool require_client_certificate = false;
  // replicaof 127.0.0.1 <replica_of> (0: a master). `password` is then
  // also the master's (masterauth).
  int replica_of = 0;
  // Sentinel mode: monitors 127.0.0.1:<sentinel_monitor> as
  // `master_name`, quorum 2, down after 1 s, failover timeout 3 s. The
  // master's password is `master_password`; `password` is the sentinel's.
  int sentinel_monitor = 0;
  std::string master_name = "mymaster";
  std::string master_password;
};

class RedisServer {
 public:
  // kNotFound when redis-server is not installed.
  static absl::StatusOr<std::unique_ptr<RedisServer>> Start(
      RedisServerOptions options = {});
  ~RedisServer();

  int port() const { return port_; }
  const std::string& dir() const { return dir_; }
  // redis://127.0.0.1:<port> (rediss:// for TLS) — without the password.
  std::string url() const;

  // Graceful stop (SHUTDOWN semantics via SIGTERM), then start again on the
  // same port and directory.
  absl::Status Restart();
  absl::Status Stop();
  // SIGKILL, as a crashed server.
  void Kill();
  absl::Status StartAgain();
  // SIGSTOP / SIGCONT: a server cut off for a while, then back with its old
  // view of the world.
  void Pause();
  void Resume();

 private:
  RedisServer() = default;
  absl::Status Launch();

  RedisServerOptions options_;
  std::string dir_;
  int port_ = 0;
  std::unique_ptr<Subprocess> process_;
};

// Picks a currently free TCP port on 127.0.0.1.
absl::StatusOr<int> PickFreePort();

// Calls `launch` with free ports until it succeeds (or fails with
// kNotFound, a missing binary): a port free when picked can be taken before
// the server binds it, and a few attempts make that race harmless. Returns
// the port the server got.
absl::StatusOr<int> LaunchOnFreePort(
    const std::function<absl::Status(int port)>& launch);
// The same for a fixture that keeps its port in `port`: sets it before each
// attempt, then calls `launch()`.
absl::Status LaunchOnFreePort(int& port,
                              const std::function<absl::Status()>& launch);

// A new empty temporary directory (mkdtemp under TMPDIR or /tmp).
absl::StatusOr<std::string> MakeTempDir(const std::string& prefix);
void RemoveTree(const std::string& path);

}  // namespace ciagent::testing

#define CIAGENT_START_REDIS_WITH(var, opts)                                  \
  std::unique_ptr<::ciagent::testing::RedisServer> var;                     \
  do {                                                                      \
    auto started_ = ::ciagent::testing::RedisServer::Start(opts);           \
    if (!started_.ok() && started_.status().code() ==                       \
                              absl::StatusCode::kNotFound &&                \
        !::ciagent::testing::RunningUnderCi()) {                            \
      GTEST_SKIP() << "redis-server not installed (a failure under CI=true)"; \
    }                                                                       \
    ASSERT_TRUE(started_.ok()) << started_.status().ToString();             \
    var = std::move(started_).value();                                      \
  } while (false)

#define CIAGENT_START_REDIS(var) \
  CIAGENT_START_REDIS_WITH(var, ::ciagent::testing::RedisServerOptions{})

#endif  // CIAGENT_TESTS_TESTING_REDIS_SERVER_H_
