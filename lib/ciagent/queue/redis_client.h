// RedisClient: one synchronous connection to Redis (hiredis), with the
// connection settings parsed from a redis:// URL and secrets read from the
// environment.
//
//   CIAGENT_ASSIGN_OR_RETURN(RedisOptions options,
//                            RedisOptionsFromUrl("redis://redis:6379/0"));
//   CIAGENT_RETURN_IF_ERROR(ApplyRedisPasswordFromEnv(&options));
//   RedisClient redis(options);
//   CIAGENT_ASSIGN_OR_RETURN(RedisReply pong, redis.Command({"PING"}));
//
// The client connects lazily and, after a connection error, reconnects on the
// next command: a caller that gets kUnavailable retries with backoff (see
// base/backoff.h) and the retry opens a fresh connection. Commands are never
// retried implicitly, so a non-idempotent command is sent at most once per
// call.
//
// Errors:
//   kUnavailable       connect/IO error or timeout, and the server replies
//                      LOADING, BUSY, MASTERDOWN, TRYAGAIN, READONLY, OOM:
//                      retry later.
//   kUnauthenticated   AUTH rejected (NOAUTH, WRONGPASS): fix the credentials.
//   kFailedPrecondition NOGROUP and other replies that mean the keyspace is
//                      not set up as expected.
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

struct redisContext;

namespace ciagent {

struct RedisOptions {
  std::string host = "127.0.0.1";
  int port = 6379;
  int db = 0;
  // ACL user; empty means the default user.
  std::string username;
  // Secret. Comes from the URL, REDIS_PASSWORD or REDIS_PASSWORD_FILE.
  std::string password;
  absl::Duration connect_timeout = absl::Seconds(5);
  // Per command; must exceed any BLOCK time a caller uses.
  absl::Duration command_timeout = absl::Seconds(10);
};

// Parses redis://[[user]:password@]host[:port][/db]. The password, if any,
// is registered with the logger for masking. kInvalidArgument on a
// malformed URL (the message never repeats the password).
absl::StatusOr<RedisOptions> RedisOptionsFromUrl(absl::string_view url);

// Fills options->password from REDIS_PASSWORD or REDIS_PASSWORD_FILE when
// set (they win over a password in the URL).
absl::Status ApplyRedisPasswordFromEnv(RedisOptions* options);

// The address without the password, for logs and files:
// "redis://user@host:port/db" (no "user@" for the default user). Valid as a
// URL: a reader supplies the password from the environment again.
std::string RedactedRedisUrl(const RedisOptions& options);

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

  // Connects now (AUTH, SELECT) if not connected.
  absl::Status Connect();
  bool connected() const { return context_ != nullptr; }
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

  const RedisOptions& options() const { return options_; }

 private:
  absl::StatusOr<RedisReply> ReadReply(absl::string_view command_name);
  absl::Status Append(absl::Span<const std::string> argv);
  absl::Status ConnectionError(absl::string_view what);

  RedisOptions options_;
  redisContext* context_ = nullptr;
};

}  // namespace ciagent

#endif  // CIAGENT_QUEUE_REDIS_CLIENT_H_
