// One connection to a Redis server or a Sentinel: RESP commands written to
// a ClientSocket (net/socket.h, plain or TLS), replies parsed by hiredis's
// reader, which does no I/O of its own. RedisClient (redis_client.h) holds
// one and keeps the policy (auth, reconnects, Sentinel); this class only
// moves bytes.
//
// Errors: the socket's (kUnavailable to retry, kFailedPrecondition for TLS
// configuration), and kInternal for bytes that are not RESP. After any
// error the connection is unusable: drop it.
#ifndef CIAGENT_QUEUE_INTERNAL_REDIS_CONNECTION_H_
#define CIAGENT_QUEUE_INTERNAL_REDIS_CONNECTION_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "ciagent/net/socket.h"
#include "ciagent/queue/redis_client.h"

struct redisReader;

namespace ciagent::internal {

class RedisConnection {
 public:
  static absl::StatusOr<std::unique_ptr<RedisConnection>> Open(
      absl::string_view host, int port, const SocketOptions& options);
  ~RedisConnection();

  // Buffers one command; Flush writes every buffered command at once.
  void Append(absl::Span<const std::string> argv);
  absl::Status Flush();
  // The next reply; an error reply is a reply (type kError), not a status.
  absl::StatusOr<RedisReply> Read();

  // Append + Flush + Read of one command, the error reply included.
  absl::StatusOr<RedisReply> RoundTrip(absl::Span<const std::string> argv);

  const std::string& peer() const { return socket_->peer(); }

 private:
  RedisConnection(std::unique_ptr<ClientSocket> socket, redisReader* reader);

  std::unique_ptr<ClientSocket> socket_;
  redisReader* reader_;
  std::string out_;  // commands not yet written
};

// Appends `argv` as a RESP array of bulk strings.
void AppendRespCommand(absl::Span<const std::string> argv, std::string* out);

}  // namespace ciagent::internal

#endif  // CIAGENT_QUEUE_INTERNAL_REDIS_CONNECTION_H_
