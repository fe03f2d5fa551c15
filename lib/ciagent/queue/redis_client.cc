#include "ciagent/queue/redis_client.h"

#include <hiredis.h>
#include <openssl/sha.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "ciagent/base/log.h"
#include "ciagent/base/secret.h"
#include "ciagent/base/status_macros.h"

namespace ciagent {
namespace {

RedisReply Convert(const redisReply* r) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = RedisReply::Type::kString;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = RedisReply::Type::kStatus;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = RedisReply::Type::kError;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::kInteger;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::kArray;
      out.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) {
        out.elements.push_back(Convert(r->element[i]));
      }
      break;
    default:
      out.type = RedisReply::Type::kNil;
  }
  return out;
}

// Maps an error reply to a status whose code says what to do about it.
absl::Status ErrorReplyStatus(absl::string_view command,
                              absl::string_view error) {
  const std::string message = absl::StrCat("redis ", command, ": ", error);
  const absl::string_view prefix = error.substr(0, error.find(' '));
  if (prefix == "LOADING" || prefix == "BUSY" || prefix == "MASTERDOWN" ||
      prefix == "TRYAGAIN" || prefix == "READONLY" || prefix == "OOM" ||
      prefix == "CLUSTERDOWN") {
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

}  // namespace

absl::StatusOr<RedisOptions> RedisOptionsFromUrl(absl::string_view url) {
  constexpr absl::string_view kScheme = "redis://";
  if (!absl::StartsWith(url, kScheme)) {
    return absl::InvalidArgumentError(
        "redis url: must start with redis:// (rediss:// is not supported)");
  }
  absl::string_view rest = url.substr(kScheme.size());
  RedisOptions options;
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
  absl::string_view hostport = rest;
  if (size_t slash = rest.find('/'); slash != absl::string_view::npos) {
    hostport = rest.substr(0, slash);
    absl::string_view db = rest.substr(slash + 1);
    if (!db.empty() && (!absl::SimpleAtoi(db, &options.db) || options.db < 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "redis url: database must be a non-negative number (got \"", db,
          "\")"));
    }
  }
  const size_t colon = hostport.rfind(':');
  const size_t bracket = hostport.rfind(']');
  if (colon != absl::string_view::npos &&
      (bracket == absl::string_view::npos || colon > bracket)) {
    absl::string_view port = hostport.substr(colon + 1);
    if (!absl::SimpleAtoi(port, &options.port) || options.port <= 0 ||
        options.port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat(
          "redis url: port must be 1-65535 (got \"", port, "\")"));
    }
    hostport = hostport.substr(0, colon);
  }
  if (absl::StartsWith(hostport, "[") && absl::EndsWith(hostport, "]")) {
    hostport = hostport.substr(1, hostport.size() - 2);
  }
  if (hostport.empty()) {
    return absl::InvalidArgumentError("redis url: host is missing");
  }
  options.host = std::string(hostport);
  return options;
}

absl::Status ApplyRedisPasswordFromEnv(RedisOptions* options) {
  CIAGENT_ASSIGN_OR_RETURN(std::optional<std::string> password,
                           ReadSecretFromEnv("REDIS_PASSWORD"));
  if (password.has_value()) options->password = *std::move(password);
  return absl::OkStatus();
}

std::string RedactedRedisUrl(const RedisOptions& options) {
  const bool ipv6 = options.host.find(':') != std::string::npos;
  return absl::StrCat("redis://",
                      options.username.empty() ? "" : options.username + "@",
                      ipv6 ? "[" : "", options.host, ipv6 ? "]" : "", ":",
                      options.port, "/", options.db);
}

RedisScript::RedisScript(std::string source)
    : source_(std::move(source)), sha1_(Sha1Hex(source_)) {}

RedisClient::RedisClient(RedisOptions options) : options_(std::move(options)) {}

RedisClient::~RedisClient() { Disconnect(); }

RedisClient::RedisClient(RedisClient&& other) noexcept
    : options_(std::move(other.options_)),
      context_(std::exchange(other.context_, nullptr)) {}

RedisClient& RedisClient::operator=(RedisClient&& other) noexcept {
  if (this != &other) {
    Disconnect();
    options_ = std::move(other.options_);
    context_ = std::exchange(other.context_, nullptr);
  }
  return *this;
}

void RedisClient::Disconnect() {
  if (context_ != nullptr) {
    redisFree(context_);
    context_ = nullptr;
  }
}

absl::Status RedisClient::ConnectionError(absl::string_view what) {
  std::string detail = context_ != nullptr && context_->err != 0
                           ? std::string(context_->errstr)
                           : "connection lost";
  Disconnect();
  return absl::UnavailableError(
      absl::StrCat("redis ", what, " ", RedactedRedisUrl(options_), ": ",
                   detail));
}

absl::Status RedisClient::Connect() {
  if (context_ != nullptr) return absl::OkStatus();
  context_ = redisConnectWithTimeout(options_.host.c_str(), options_.port,
                                     absl::ToTimeval(options_.connect_timeout));
  if (context_ == nullptr) {
    return absl::ResourceExhaustedError("redis connect: out of memory");
  }
  if (context_->err != 0) return ConnectionError("connect");
  if (redisSetTimeout(context_, absl::ToTimeval(options_.command_timeout)) !=
          REDIS_OK ||
      redisEnableKeepAlive(context_) != REDIS_OK) {
    return ConnectionError("connect");
  }
  if (!options_.password.empty()) {
    std::vector<std::string> auth = {"AUTH"};
    if (!options_.username.empty()) auth.push_back(options_.username);
    auth.push_back(options_.password);
    absl::StatusOr<RedisReply> reply = Command(absl::MakeConstSpan(auth));
    if (!reply.ok()) {
      Disconnect();
      return reply.status();
    }
  }
  if (options_.db != 0) {
    absl::StatusOr<RedisReply> reply =
        Command({"SELECT", absl::StrCat(options_.db)});
    if (!reply.ok()) {
      Disconnect();
      return reply.status();
    }
  }
  return absl::OkStatus();
}

absl::Status RedisClient::Append(absl::Span<const std::string> argv) {
  std::vector<const char*> args;
  std::vector<size_t> lens;
  args.reserve(argv.size());
  lens.reserve(argv.size());
  for (const std::string& a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  if (redisAppendCommandArgv(context_, static_cast<int>(args.size()),
                             args.data(), lens.data()) != REDIS_OK) {
    return ConnectionError(argv.empty() ? "command" : argv[0]);
  }
  return absl::OkStatus();
}

absl::StatusOr<RedisReply> RedisClient::ReadReply(
    absl::string_view command_name) {
  void* raw = nullptr;
  if (redisGetReply(context_, &raw) != REDIS_OK || raw == nullptr) {
    return ConnectionError(command_name);
  }
  RedisReply reply = Convert(static_cast<redisReply*>(raw));
  freeReplyObject(raw);
  return reply;
}

absl::StatusOr<RedisReply> RedisClient::Command(
    absl::Span<const std::string> argv) {
  CIAGENT_RETURN_IF_ERROR(Connect());
  CIAGENT_RETURN_IF_ERROR(Append(argv));
  CIAGENT_ASSIGN_OR_RETURN(RedisReply reply, ReadReply(argv[0]));
  if (reply.type == RedisReply::Type::kError) {
    return ErrorReplyStatus(argv[0], reply.str);
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
  for (const auto& argv : commands) CIAGENT_RETURN_IF_ERROR(Append(argv));
  std::vector<RedisReply> replies;
  replies.reserve(commands.size());
  absl::Status first_error;
  for (const auto& argv : commands) {
    // Read every reply, even after an error, to keep the connection in sync.
    CIAGENT_ASSIGN_OR_RETURN(RedisReply reply, ReadReply(argv[0]));
    if (reply.type == RedisReply::Type::kError && first_error.ok()) {
      first_error = ErrorReplyStatus(argv[0], reply.str);
    }
    replies.push_back(std::move(reply));
  }
  if (!first_error.ok()) return first_error;
  return replies;
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
