#include "ciagent/queue/internal/redis_connection.h"

#include <hiredis.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "ciagent/base/status_macros.h"

namespace ciagent::internal {
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

}  // namespace

void AppendRespCommand(absl::Span<const std::string> argv, std::string* out) {
  absl::StrAppend(out, "*", argv.size(), "\r\n");
  for (const std::string& arg : argv) {
    absl::StrAppend(out, "$", arg.size(), "\r\n", arg, "\r\n");
  }
}

absl::StatusOr<std::unique_ptr<RedisConnection>> RedisConnection::Open(
    absl::string_view host, int port, const SocketOptions& options) {
  CIAGENT_ASSIGN_OR_RETURN(std::unique_ptr<ClientSocket> socket,
                           ClientSocket::Connect(host, port, options));
  redisReader* reader = redisReaderCreate();
  if (reader == nullptr) {
    return absl::ResourceExhaustedError("redis reader: out of memory");
  }
  return std::unique_ptr<RedisConnection>(
      new RedisConnection(std::move(socket), reader));
}

RedisConnection::RedisConnection(std::unique_ptr<ClientSocket> socket,
                                 redisReader* reader)
    : socket_(std::move(socket)), reader_(reader) {}

RedisConnection::~RedisConnection() { redisReaderFree(reader_); }

void RedisConnection::Append(absl::Span<const std::string> argv) {
  AppendRespCommand(argv, &out_);
}

absl::Status RedisConnection::Flush() {
  absl::Status written = socket_->WriteAll(out_);
  out_.clear();
  return written;
}

absl::StatusOr<RedisReply> RedisConnection::Read() {
  for (;;) {
    void* raw = nullptr;
    if (redisReaderGetReply(reader_, &raw) != REDIS_OK) {
      return absl::InternalError(absl::StrCat(
          "redis ", peer(), ": protocol error: ", reader_->errstr));
    }
    if (raw != nullptr) {
      RedisReply reply = Convert(static_cast<redisReply*>(raw));
      freeReplyObject(raw);
      return reply;
    }
    char buffer[16 * 1024];
    CIAGENT_ASSIGN_OR_RETURN(size_t n,
                             socket_->ReadSome(buffer, sizeof(buffer)));
    if (redisReaderFeed(reader_, buffer, n) != REDIS_OK) {
      return absl::ResourceExhaustedError(
          absl::StrCat("redis ", peer(), ": ", reader_->errstr));
    }
  }
}

absl::StatusOr<RedisReply> RedisConnection::RoundTrip(
    absl::Span<const std::string> argv) {
  Append(argv);
  CIAGENT_RETURN_IF_ERROR(Flush());
  return Read();
}

}  // namespace ciagent::internal
