#include "ciagent/queue/redis_client.h"

#include <openssl/sha.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "ciagent/base/log.h"
#include "ciagent/base/secret.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/queue/internal/redis_connection.h"

namespace ciagent {
namespace {

// A reply of a server that is no longer (or not) the master: a write on a
// replica, from a command or inside a script ("... -READONLY ..."), a
// blocked command released by the server's role change, or a master that
// lost its replicas (min-replicas-to-write: the usual guard against writes
// to a master cut off by a failover).
bool IsDemotedMasterError(absl::string_view error) {
  return absl::StrContains(error, "READONLY") ||
         absl::StrContains(error, "NOREPLICAS") ||
         absl::StartsWith(error, "UNBLOCKED");
}

// Maps an error reply to a status whose code says what to do about it.
absl::Status ErrorReplyStatus(absl::string_view command,
                              absl::string_view error) {
  const std::string message = absl::StrCat("redis ", command, ": ", error);
  const absl::string_view prefix = error.substr(0, error.find(' '));
  if (prefix == "LOADING" || prefix == "BUSY" || prefix == "MASTERDOWN" ||
      prefix == "TRYAGAIN" || prefix == "OOM" || prefix == "CLUSTERDOWN" ||
      IsDemotedMasterError(error)) {
    return absl::UnavailableError(message);
  }
  if (prefix == "NOAUTH" || prefix == "WRONGPASS" ||
      absl::StartsWith(error, "ERR invalid password") ||
      absl::StartsWith(error, "ERR AUTH")) {
    return absl::UnauthenticatedError(message);
  }
  if (prefix == "NOPERM") return absl::PermissionDeniedError(message);
  if (prefix == "NOGROUP") return absl::FailedPreconditionError(message);
  return absl::InternalError(message);
}

std::string Sha1Hex(absl::string_view data) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(data.data()), data.size(),
       digest);
  std::string hex;
  hex.reserve(2 * SHA_DIGEST_LENGTH);
  for (unsigned char byte : digest) {
    absl::StrAppend(&hex, absl::Hex(byte, absl::kZeroPad2));
  }
  return hex;
}

std::string PercentDecode(absl::string_view in) {
  const auto hex_value = [](char c) {
    return absl::ascii_isdigit(c) ? c - '0' : absl::ascii_tolower(c) - 'a' + 10;
  };
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size() && absl::ascii_isxdigit(in[i + 1]) &&
        absl::ascii_isxdigit(in[i + 2])) {
      out.push_back(static_cast<char>(hex_value(in[i + 1]) * 16 +
                                      hex_value(in[i + 2])));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

constexpr int kRedisPort = 6379;
constexpr int kSentinelPort = 26379;

std::atomic<int64_t> unconfirmed_writes{0};

// host, host:port, [v6], [v6]:port.
absl::StatusOr<RedisEndpoint> ParseHostPort(absl::string_view text,
                                            int default_port) {
  RedisEndpoint endpoint;
  endpoint.port = default_port;
  const size_t colon = text.rfind(':');
  const size_t bracket = text.rfind(']');
  if (colon != absl::string_view::npos &&
      (bracket == absl::string_view::npos || colon > bracket)) {
    absl::string_view port = text.substr(colon + 1);
    if (!absl::SimpleAtoi(port, &endpoint.port) || endpoint.port <= 0 ||
        endpoint.port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat(
          "redis url: port must be 1-65535 (got \"", port, "\")"));
    }
    text = text.substr(0, colon);
  }
  if (absl::StartsWith(text, "[") && absl::EndsWith(text, "]")) {
    text = text.substr(1, text.size() - 2);
  }
  if (text.empty()) return absl::InvalidArgumentError("redis url: host is missing");
  endpoint.host = std::string(text);
  return endpoint;
}

SocketOptions RedisSocketOptions(const RedisOptions& options,
                                 absl::Duration timeout) {
  SocketOptions socket;
  socket.connect_timeout = std::min(options.connect_timeout, timeout);
  socket.io_timeout = timeout;
  if (options.tls) socket.tls = options.tls_files;
  socket.ca_setting = "REDIS_CA_FILE";
  socket.client_certificate_setting = "REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE";
  return socket;
}

std::string HostPort(const RedisEndpoint& endpoint) {
  const bool ipv6 = endpoint.host.find(':') != std::string::npos;
  return absl::StrCat(ipv6 ? "[" : "", endpoint.host, ipv6 ? "]" : "", ":",
                      endpoint.port);
}

}  // namespace

absl::StatusOr<RedisOptions> RedisOptionsFromUrl(absl::string_view url) {
  const size_t scheme_end = url.find("://");
  const absl::string_view scheme =
      scheme_end == absl::string_view::npos ? "" : url.substr(0, scheme_end);
  if (scheme != "redis" && scheme != "rediss" && scheme != "redis+sentinel" &&
      scheme != "rediss+sentinel") {
    return absl::InvalidArgumentError(
        "redis url: must start with redis://, rediss://, redis+sentinel:// "
        "or rediss+sentinel://");
  }
  RedisOptions options;
  options.tls = absl::StartsWith(scheme, "rediss");
  const bool sentinel = absl::EndsWith(scheme, "+sentinel");
  absl::string_view rest = url.substr(scheme_end + 3);
  // Userinfo ends at the last '@' so a password may contain '@'.
  if (size_t at = rest.rfind('@'); at != absl::string_view::npos) {
    absl::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    size_t colon = userinfo.find(':');
    if (colon == absl::string_view::npos) {
      options.username = PercentDecode(userinfo);  // as in any URL
    } else {
      options.username = PercentDecode(userinfo.substr(0, colon));
      options.password = PercentDecode(userinfo.substr(colon + 1));
    }
    RegisterSecret(options.password);
  }
  absl::string_view hosts = rest;
  absl::string_view path;
  if (size_t slash = rest.find('/'); slash != absl::string_view::npos) {
    hosts = rest.substr(0, slash);
    path = rest.substr(slash + 1);
  }
  if (sentinel) {
    for (absl::string_view one : absl::StrSplit(hosts, ',')) {
      CIAGENT_ASSIGN_OR_RETURN(RedisEndpoint endpoint,
                               ParseHostPort(one, kSentinelPort));
      options.sentinels.push_back(std::move(endpoint));
    }
    const size_t slash = path.find('/');
    options.master_name = std::string(path.substr(0, slash));
    path = slash == absl::string_view::npos ? "" : path.substr(slash + 1);
    if (options.master_name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "redis url: name the master: ", scheme,
          "://host1:26379,host2:26379/<master-name>[/db]"));
    }
  } else {
    CIAGENT_ASSIGN_OR_RETURN(RedisEndpoint server,
                             ParseHostPort(hosts, kRedisPort));
    options.host = std::move(server.host);
    options.port = server.port;
  }
  if (!path.empty() &&
      (!absl::SimpleAtoi(path, &options.db) || options.db < 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "redis url: database must be a non-negative number (got \"", path,
        "\")"));
  }
  return options;
}

absl::Status ApplyRedisEnvironment(RedisOptions* options) {
  CIAGENT_ASSIGN_OR_RETURN(std::optional<std::string> password,
                           ReadSecretFromEnv("REDIS_PASSWORD"));
  if (password.has_value()) options->password = *std::move(password);
  CIAGENT_ASSIGN_OR_RETURN(std::optional<std::string> sentinel_password,
                           ReadSecretFromEnv("REDIS_SENTINEL_PASSWORD"));
  if (sentinel_password.has_value()) {
    options->sentinel_password = *std::move(sentinel_password);
  }
  const auto env = [](const char* name) -> std::string {
    const char* value = std::getenv(name);
    return value != nullptr ? value : "";
  };
  if (std::string user = env("REDIS_SENTINEL_USERNAME"); !user.empty()) {
    options->sentinel_username = std::move(user);
  }
  std::string ca_file = env("REDIS_CA_FILE");
  if (ca_file.empty()) ca_file = env("CI_CA_FILE");
  if (!ca_file.empty()) options->tls_files.ca_file = std::move(ca_file);
  std::string cert_file = env("REDIS_TLS_CERT_FILE");
  std::string key_file = env("REDIS_TLS_KEY_FILE");
  if (cert_file.empty() != key_file.empty()) {
    return absl::InvalidArgumentError(
        "redis TLS: set both REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE, or "
        "neither");
  }
  if (!cert_file.empty()) {
    options->tls_files.cert_file = std::move(cert_file);
    options->tls_files.key_file = std::move(key_file);
  }
  return absl::OkStatus();
}

std::string RedactedRedisUrl(const RedisOptions& options) {
  std::string url = absl::StrCat(
      options.tls ? "rediss" : "redis",
      options.sentinels.empty() ? "" : "+sentinel", "://",
      options.username.empty() ? "" : options.username + "@");
  if (options.sentinels.empty()) {
    absl::StrAppend(&url, HostPort({options.host, options.port}));
  } else {
    absl::StrAppend(&url, absl::StrJoin(options.sentinels, ",",
                                        [](std::string* out,
                                           const RedisEndpoint& sentinel) {
                                          out->append(HostPort(sentinel));
                                        }),
                    "/", options.master_name);
  }
  absl::StrAppend(&url, "/", options.db);
  return url;
}

int64_t UnconfirmedRedisWrites() { return unconfirmed_writes.load(); }

RedisScript::RedisScript(std::string source)
    : source_(std::move(source)), sha1_(Sha1Hex(source_)) {}

RedisClient::RedisClient(RedisOptions options) : options_(std::move(options)) {}

RedisClient::~RedisClient() = default;
RedisClient::RedisClient(RedisClient&& other) noexcept = default;
RedisClient& RedisClient::operator=(RedisClient&& other) noexcept = default;

void RedisClient::Disconnect() { connection_.reset(); }

std::string RedisClient::server() const {
  return connection_ != nullptr ? connection_->peer() : "";
}

absl::Status RedisClient::ConnectionError(absl::string_view what,
                                          absl::Status error) {
  Disconnect();
  return absl::Status(error.code(),
                      absl::StrCat("redis ", what, " ",
                                   RedactedRedisUrl(options_), ": ",
                                   error.message()));
}

absl::Status RedisClient::ReplyError(absl::string_view command,
                                     absl::string_view error) {
  if (IsDemotedMasterError(error)) Disconnect();
  return ErrorReplyStatus(command, error);
}

absl::StatusOr<RedisReply> RedisClient::AskSentinel(
    const RedisEndpoint& sentinel) const {
  CIAGENT_ASSIGN_OR_RETURN(
      std::unique_ptr<internal::RedisConnection> connection,
      internal::RedisConnection::Open(
          sentinel.host, sentinel.port,
          RedisSocketOptions(options_, options_.sentinel_timeout)));
  if (!options_.sentinel_password.empty()) {
    std::vector<std::string> auth = {"AUTH"};
    if (!options_.sentinel_username.empty()) {
      auth.push_back(options_.sentinel_username);
    }
    auth.push_back(options_.sentinel_password);
    CIAGENT_ASSIGN_OR_RETURN(RedisReply accepted, connection->RoundTrip(auth));
    if (accepted.type == RedisReply::Type::kError) return accepted;
  }
  return connection->RoundTrip(
      {"SENTINEL", "get-master-addr-by-name", options_.master_name});
}

absl::StatusOr<RedisEndpoint> RedisClient::ResolveMaster() {
  const size_t count = options_.sentinels.size();
  std::vector<std::string> unreachable, unknown, refused;
  // TLS or credentials: wrong for every sentinel alike.
  absl::Status configuration;
  for (size_t k = 0; k < count; ++k) {
    const size_t i = (first_sentinel_ + k) % count;
    const std::string name = HostPort(options_.sentinels[i]);
    absl::StatusOr<RedisReply> reply = AskSentinel(options_.sentinels[i]);
    if (!reply.ok()) {
      if (reply.status().code() == absl::StatusCode::kFailedPrecondition) {
        configuration = reply.status();
      }
      unreachable.push_back(std::string(reply.status().message()));
      continue;
    }
    if (reply->is_nil()) {
      unknown.push_back(name);
      continue;
    }
    int port = 0;
    if (reply->is_array() && reply->elements.size() == 2 &&
        absl::SimpleAtoi(reply->elements[1].str, &port)) {
      first_sentinel_ = i;
      return RedisEndpoint{reply->elements[0].str, port};
    }
    if (reply->type == RedisReply::Type::kError) {
      const absl::Status error = ErrorReplyStatus("SENTINEL", reply->str);
      if (error.code() == absl::StatusCode::kUnauthenticated ||
          error.code() == absl::StatusCode::kPermissionDenied) {
        configuration = error;
      }
    }
    refused.push_back(absl::StrCat(
        name, ": ", reply->type == RedisReply::Type::kError ? reply->str
                                                            : "unexpected reply"));
  }
  const std::string master = absl::StrCat("master \"", options_.master_name, "\"");
  if (unknown.size() == count) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the sentinels (", absl::StrJoin(unknown, ", "), ") do not know a ",
        master, ": check the master name"));
  }
  if (!configuration.ok() && unknown.empty()) {
    return absl::Status(configuration.code(),
                        absl::StrCat("no sentinel gave the address of ", master,
                                     ": ", configuration.message()));
  }
  if (unknown.empty() && refused.empty()) {
    return absl::UnavailableError(
        absl::StrCat("no sentinel reachable for ", master, " (",
                     absl::StrJoin(unreachable, "; "), ")"));
  }
  std::vector<std::string> all = unreachable;
  for (const std::string& name : unknown) {
    all.push_back(absl::StrCat(name, ": does not know the master"));
  }
  all.insert(all.end(), refused.begin(), refused.end());
  return absl::UnavailableError(absl::StrCat(
      "no sentinel gave the address of ", master, " (",
      absl::StrJoin(all, "; "), ")"));
}

absl::Status RedisClient::Connect() {
  if (connection_ != nullptr) return absl::OkStatus();
  RedisEndpoint server{options_.host, options_.port};
  const bool sentinel = !options_.sentinels.empty();
  if (sentinel) {
    absl::StatusOr<RedisEndpoint> master = ResolveMaster();
    if (!master.ok()) return ConnectionError("connect", master.status());
    server = *std::move(master);
  }
  SocketOptions socket = RedisSocketOptions(options_, options_.command_timeout);
  // A master the sentinels still name after it died may not even refuse the
  // connection (its address gone): do not wait long, ask them again.
  if (sentinel) {
    socket.connect_timeout = std::min(socket.connect_timeout, absl::Seconds(1));
  }
  absl::StatusOr<std::unique_ptr<internal::RedisConnection>> connection =
      internal::RedisConnection::Open(server.host, server.port, socket);
  if (!connection.ok()) return ConnectionError("connect", connection.status());
  connection_ = *std::move(connection);
  // Every command of the handshake in one round trip.
  std::vector<std::vector<std::string>> hello;
  if (!options_.password.empty()) {
    std::vector<std::string> auth = {"AUTH"};
    if (!options_.username.empty()) auth.push_back(options_.username);
    auth.push_back(options_.password);
    hello.push_back(std::move(auth));
  }
  if (sentinel) hello.push_back({"ROLE"});
  if (options_.db != 0) hello.push_back({"SELECT", absl::StrCat(options_.db)});
  // Over TLS, a server refusing the client certificate says so at the first
  // read: make it happen here, not in the caller's first command.
  if (hello.empty() && options_.tls) hello.push_back({"PING"});
  if (hello.empty()) return absl::OkStatus();
  absl::StatusOr<std::vector<RedisReply>> replies =
      Pipeline(absl::MakeConstSpan(hello));
  if (!replies.ok()) {
    Disconnect();
    return replies.status();
  }
  if (sentinel) {
    const RedisReply& role = (*replies)[options_.password.empty() ? 0 : 1];
    const std::string name =
        role.is_array() && !role.elements.empty() ? role.elements[0].str : "?";
    if (name != "master") {
      Disconnect();
      // Ask another sentinel next time: this one's view is stale.
      first_sentinel_ = (first_sentinel_ + 1) % options_.sentinels.size();
      return absl::UnavailableError(absl::StrCat(
          "redis connect ", RedactedRedisUrl(options_), ": ", HostPort(server),
          ", named master by the sentinels, is a ", name,
          " (a failover is under way)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<RedisReply> RedisClient::ReadReply(
    absl::string_view command_name) {
  absl::StatusOr<RedisReply> reply = connection_->Read();
  if (!reply.ok()) return ConnectionError(command_name, reply.status());
  return reply;
}

absl::StatusOr<RedisReply> RedisClient::Command(
    absl::Span<const std::string> argv) {
  CIAGENT_RETURN_IF_ERROR(Connect());
  connection_->Append(argv);
  if (absl::Status sent = connection_->Flush(); !sent.ok()) {
    return ConnectionError(argv[0], sent);
  }
  CIAGENT_ASSIGN_OR_RETURN(RedisReply reply, ReadReply(argv[0]));
  if (reply.type == RedisReply::Type::kError) {
    return ReplyError(argv[0], reply.str);
  }
  return reply;
}

absl::StatusOr<RedisReply> RedisClient::Command(
    std::initializer_list<absl::string_view> argv) {
  std::vector<std::string> args;
  args.reserve(argv.size());
  for (absl::string_view a : argv) args.emplace_back(a);
  return Command(absl::MakeConstSpan(args));
}

absl::StatusOr<std::vector<RedisReply>> RedisClient::Pipeline(
    absl::Span<const std::vector<std::string>> commands) {
  CIAGENT_RETURN_IF_ERROR(Connect());
  for (const auto& argv : commands) connection_->Append(argv);
  if (absl::Status sent = connection_->Flush(); !sent.ok()) {
    return ConnectionError(commands.empty() ? "pipeline" : commands[0][0],
                           sent);
  }
  std::vector<RedisReply> replies;
  replies.reserve(commands.size());
  std::optional<size_t> first_error;
  for (const auto& argv : commands) {
    // Read every reply, even after an error, to keep the connection in sync.
    CIAGENT_ASSIGN_OR_RETURN(RedisReply reply, ReadReply(argv[0]));
    if (reply.type == RedisReply::Type::kError && !first_error.has_value()) {
      first_error = replies.size();
    }
    replies.push_back(std::move(reply));
  }
  if (first_error.has_value()) {
    return ReplyError(commands[*first_error][0], replies[*first_error].str);
  }
  return replies;
}

void RedisClient::ConfirmReplicated(absl::string_view what) {
  if (options_.min_replicas <= 0) return;
  absl::StatusOr<RedisReply> acknowledged =
      Command({"WAIT", absl::StrCat(options_.min_replicas),
               absl::StrCat(absl::ToInt64Milliseconds(options_.replica_timeout))});
  if (acknowledged.ok() && acknowledged->integer >= options_.min_replicas) {
    return;
  }
  unconfirmed_writes.fetch_add(1);
  LogWarning("redis write not confirmed by replicas",
             {{"write", what},
              {"wanted", options_.min_replicas},
              {"confirmed", acknowledged.ok() ? acknowledged->integer : 0},
              {"error", acknowledged.ok() ? "" : acknowledged.status().ToString()}});
}

absl::StatusOr<RedisReply> RedisClient::Eval(
    const RedisScript& script, absl::Span<const std::string> keys,
    absl::Span<const std::string> args) {
  std::vector<std::string> argv;
  argv.reserve(3 + keys.size() + args.size());
  argv.push_back("EVALSHA");
  argv.push_back(script.sha1());
  argv.push_back(absl::StrCat(keys.size()));
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<RedisReply> reply = Command(absl::MakeConstSpan(argv));
  if (reply.ok() || !absl::StrContains(reply.status().message(), "NOSCRIPT")) {
    return reply;
  }
  argv[0] = "EVAL";
  argv[1] = script.source();
  return Command(absl::MakeConstSpan(argv));
}

}  // namespace ciagent
