// RedisClient: one synchronous connection to Redis, plain or TLS, to one
// server or to the master a set of Sentinels names, with the connection
// settings parsed from a URL and secrets read from the environment.
//
//   CIAGENT_ASSIGN_OR_RETURN(RedisOptions options,
//                            RedisOptionsFromUrl("rediss://redis:6380/0"));
//   CIAGENT_RETURN_IF_ERROR(ApplyRedisEnvironment(&options));
//   RedisClient redis(options);
//   CIAGENT_ASSIGN_OR_RETURN(RedisReply pong, redis.Command({"PING"}));
//
// URLs:
//   redis://[[user]:password@]host[:port][/db]           plain TCP
//   rediss://...                                          TLS
//   redis+sentinel://[[user]:password@]s1[:port],s2[:port],.../master[/db]
//   rediss+sentinel://...                                 TLS to both
// The user and password are the data server's (the master's); the
// sentinels' own come from REDIS_SENTINEL_USERNAME and
// REDIS_SENTINEL_PASSWORD[_FILE]. Sentinel ports default to 26379.
//
// TLS verifies as git and curl do (net/tls.h): the CA from REDIS_CA_FILE,
// else CI_CA_FILE, else the system store; a client certificate for mutual
// TLS from REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE.
//
// Sentinel (as redis.io's guide for Sentinel clients says): every connect
// asks the sentinels in turn, each with `sentinel_timeout`, for
// `SENTINEL get-master-addr-by-name`, starting with the one that answered
// last; connects to the address; confirms with ROLE that it is a master.
// A READONLY, NOREPLICAS or UNBLOCKED reply (a demoted or cut-off master)
// drops the connection, so the next command resolves the master again.
//
// The client connects lazily and, after a connection error, reconnects on the
// next command: a caller that gets kUnavailable retries with backoff (see
// base/backoff.h) and the retry opens a fresh connection. Commands are never
// retried implicitly, so a non-idempotent command is sent at most once per
// call.
//
// Errors:
//   kUnavailable       connect/IO error or timeout, no sentinel reachable,
//                      a "master" that is a replica, and the server replies
//                      LOADING, BUSY, MASTERDOWN, TRYAGAIN, READONLY, OOM,
//                      NOREPLICAS, UNBLOCKED: retry later.
//   kUnauthenticated   AUTH rejected (NOAUTH, WRONGPASS): fix the credentials.
//   kFailedPrecondition NOGROUP and other replies that mean the keyspace is
//                      not set up as expected; the sentinels do not know the
//                      master's name; TLS verification failed or the server
//                      refused the client certificate.
//   kInternal          any other error reply (a bug, or WRONGTYPE data).
// Messages name the command (first word only: arguments may be secrets or
// large) and the server address, never the password.
//
// Not thread-safe: one client per thread. Movable, not copyable.
#ifndef CIAGENT_QUEUE_REDIS_CLIENT_H_
#define CIAGENT_QUEUE_REDIS_CLIENT_H_

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "ciagent/net/tls.h"

namespace ciagent {

namespace internal {
class RedisConnection;
}

struct RedisEndpoint {
  std::string host;
  int port = 0;
};

struct RedisOptions {
  // The server; unused with sentinels.
  std::string host = "127.0.0.1";
  int port = 6379;
  int db = 0;
  // TLS (rediss://), to the server and to the sentinels, with these files.
  bool tls = false;
  TlsClientOptions tls_files;
  // Sentinel mode when not empty: the master named `master_name` is asked of
  // these.
  std::vector<RedisEndpoint> sentinels;
  std::string master_name;
  // The sentinels' own ACL user and password (secret); empty for none.
  std::string sentinel_username;
  std::string sentinel_password;
  // Connect and each command to one sentinel.
  absl::Duration sentinel_timeout = absl::Milliseconds(500);
  // ACL user; empty means the default user.
  std::string username;
  // Secret. Comes from the URL, REDIS_PASSWORD or REDIS_PASSWORD_FILE.
  std::string password;
  absl::Duration connect_timeout = absl::Seconds(5);
  // Per command; must exceed any BLOCK time a caller uses.
  absl::Duration command_timeout = absl::Seconds(10);
  // Durable writes: after a write its caller must not lose, WAIT for this
  // many replicas to acknowledge it, up to `replica_timeout`
  // (ConfirmReplicated). 0 sends no WAIT.
  int min_replicas = 0;
  absl::Duration replica_timeout = absl::Seconds(1);
};

// Parses the URLs above. The password, if any, is registered with the
// logger for masking. kInvalidArgument on a malformed URL (the message
// never repeats the password).
absl::StatusOr<RedisOptions> RedisOptionsFromUrl(absl::string_view url);

// Applies the environment, which wins over the URL:
//   REDIS_PASSWORD[_FILE]                 options->password
//   REDIS_SENTINEL_USERNAME               options->sentinel_username
//   REDIS_SENTINEL_PASSWORD[_FILE]        options->sentinel_password
//   REDIS_CA_FILE, else CI_CA_FILE        options->tls_files.ca_file
//   REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE  the client certificate
// Secrets are registered for masking. kFailedPrecondition when a *_FILE
// cannot be read; kInvalidArgument when only one of the certificate and
// its key is set.
absl::Status ApplyRedisEnvironment(RedisOptions* options);

// The address without the password, for logs and files:
// "redis://user@host:port/db" (no "user@" for the default user),
// "rediss+sentinel://s1:26379,s2:26379/mymaster/0". Valid as a URL: a reader
// supplies the password from the environment again.
std::string RedactedRedisUrl(const RedisOptions& options);

// How many writes ConfirmReplicated could not confirm, in this process.
int64_t UnconfirmedRedisWrites();

// One reply, owned. Type mirrors RESP2.
struct RedisReply {
  enum class Type { kNil, kStatus, kString, kInteger, kArray, kError };
  Type type = Type::kNil;
  std::string str;        // kStatus, kString, kError
  int64_t integer = 0;    // kInteger
  std::vector<RedisReply> elements;  // kArray

  bool is_nil() const { return type == Type::kNil; }
  bool is_array() const { return type == Type::kArray; }
  bool is_string() const { return type == Type::kString; }
  bool is_integer() const { return type == Type::kInteger; }
};

// A Lua script sent by EVALSHA, loaded on first use or after NOSCRIPT (a
// restarted or flushed server forgets scripts).
class RedisScript {
 public:
  explicit RedisScript(std::string source);
  const std::string& source() const { return source_; }
  const std::string& sha1() const { return sha1_; }

 private:
  std::string source_;
  std::string sha1_;
};

class RedisClient {
 public:
  explicit RedisClient(RedisOptions options);
  ~RedisClient();
  RedisClient(RedisClient&&) noexcept;
  RedisClient& operator=(RedisClient&&) noexcept;

  // Connects now (resolving the master, AUTH, SELECT) if not connected.
  absl::Status Connect();
  bool connected() const { return connection_ != nullptr; }
  // Drops the connection; the next command reconnects.
  void Disconnect();

  // Sends one command and returns its reply; an error reply becomes a
  // status (see the header comment).
  absl::StatusOr<RedisReply> Command(absl::Span<const std::string> argv);
  absl::StatusOr<RedisReply> Command(
      std::initializer_list<absl::string_view> argv);

  // Sends all commands in one round trip; returns their replies in order.
  // The first error reply fails the whole call.
  absl::StatusOr<std::vector<RedisReply>> Pipeline(
      absl::Span<const std::vector<std::string>> commands);

  // EVALSHA with EVAL fallback on NOSCRIPT.
  absl::StatusOr<RedisReply> Eval(const RedisScript& script,
                                  absl::Span<const std::string> keys,
                                  absl::Span<const std::string> args);

  // After a write its caller must not lose (`what`, e.g. "finalize job
  // 17-0"): WAIT for options().min_replicas replicas, up to
  // options().replica_timeout. A shortfall or a failed WAIT is not an
  // error (the write happened; replication is asynchronous): it is one
  // warning line and counts in UnconfirmedRedisWrites(). No-op when
  // min_replicas is 0.
  void ConfirmReplicated(absl::string_view what);

  const RedisOptions& options() const { return options_; }
  // "host:port" of the server connected to, or "" when not connected.
  std::string server() const;

 private:
  absl::Status ConnectToServer(const RedisEndpoint& server);
  absl::StatusOr<RedisEndpoint> ResolveMaster();
  // One sentinel's reply to get-master-addr-by-name (nil: unknown master),
  // or its refusal of AUTH as an error reply.
  absl::StatusOr<RedisReply> AskSentinel(const RedisEndpoint& sentinel) const;
  absl::StatusOr<RedisReply> ReadReply(absl::string_view command_name);
  absl::Status ConnectionError(absl::string_view what, absl::Status error);
  // An error reply as a status; drops the connection when the reply says
  // the server is no longer the master.
  absl::Status ReplyError(absl::string_view command, absl::string_view error);

  RedisOptions options_;
  std::unique_ptr<internal::RedisConnection> connection_;
  // The sentinel to ask first: the one that answered last.
  size_t first_sentinel_ = 0;
};

}  // namespace ciagent

#endif  // CIAGENT_QUEUE_REDIS_CLIENT_H_
