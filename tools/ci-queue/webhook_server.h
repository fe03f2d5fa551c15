// The HTTP side of `ci-queue webhook`: a libmicrohttpd server that hands
// each push delivery to a PushReceiver (ciagent/webhook/push_receiver.h).
//
// libmicrohttpd, not cpp-httplib: a C library maintained for fifteen years
// with a strict HTTP/1.1 parser, and the limits a receiver on a cluster's
// edge needs built in (per-connection timeout and memory, total and
// per-address connection caps) rather than left to the application.
//
// Routes, and nothing else:
//   POST <path>    the delivery; 413 past max_body_bytes (told by
//                  Content-Length up front, or counted while reading), 415
//                  when not JSON; else what PushReceiver::Receive answers
//   GET /healthz   200 "ok"
//   GET /metrics   Prometheus text: deliveries by outcome
//   anything else  404, or 405 for another method on a known path
#ifndef CIAGENT_TOOLS_CI_QUEUE_WEBHOOK_SERVER_H_
#define CIAGENT_TOOLS_CI_QUEUE_WEBHOOK_SERVER_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ciagent/webhook/push_receiver.h"

namespace ciagent {

struct WebhookServerOptions {
  // "host:port" or "[v6]:port"; port 0 picks a free one.
  std::string listen = "127.0.0.1:8080";
  std::string path = "/webhook";
  size_t max_body_bytes = size_t{4} << 20;
  // A connection idle (no bytes either way) this long is closed.
  absl::Duration request_timeout = absl::Seconds(10);
  unsigned max_connections = 64;
  unsigned max_connections_per_address = 16;
  unsigned threads = 4;
};

class WebhookServer {
 public:
  // Starts serving on its own threads. kInvalidArgument for a bad listen
  // address; kUnavailable when it cannot be bound.
  static absl::StatusOr<std::unique_ptr<WebhookServer>> Start(
      const WebhookServerOptions& options, PushReceiver* receiver);
  ~WebhookServer();  // stops serving

  WebhookServer(const WebhookServer&) = delete;
  WebhookServer& operator=(const WebhookServer&) = delete;

  // The port it listens on (the one picked, for port 0).
  int port() const { return port_; }

 private:
  struct Daemon;
  WebhookServer() = default;

  std::unique_ptr<Daemon> daemon_;
  int port_ = 0;
};

}  // namespace ciagent

#endif  // CIAGENT_TOOLS_CI_QUEUE_WEBHOOK_SERVER_H_
