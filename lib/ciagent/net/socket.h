// ClientSocket: one TCP connection, plain or TLS (net/tls.h), with bounded
// waits: the byte stream under the Redis client.
//
//   SocketOptions options;
//   options.tls = TlsClientOptions{.ca_file = "/etc/ci/redis-ca.pem"};
//   CIAGENT_ASSIGN_OR_RETURN(std::unique_ptr<ClientSocket> socket,
//                            ClientSocket::Connect("redis", 6380, options));
//   CIAGENT_RETURN_IF_ERROR(socket->WriteAll("PING\r\n"));
//   char buffer[512];
//   CIAGENT_ASSIGN_OR_RETURN(size_t n, socket->ReadSome(buffer, 512));
//
// Connect resolves the host (every address, in the resolver's order, until
// one accepts within `connect_timeout`), sets TCP_NODELAY and keep-alive,
// and for TLS completes the handshake with the certificate verified. Each
// read or write that makes no progress for `io_timeout` fails.
//
// Errors; messages name "host:port" and say why:
//   kUnavailable        resolution, refusal, reset, timeout, a closed
//                       connection: retry, with a new socket.
//   kFailedPrecondition TLS verification failed, the server refused the
//                       client certificate, or a TLS file is unusable: fix
//                       the configuration (`ca_setting` is the setting the
//                       "unknown issuer" message tells the user to set).
//
// Not thread-safe. After any error the socket is unusable: drop it.
#ifndef CIAGENT_NET_SOCKET_H_
#define CIAGENT_NET_SOCKET_H_

#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ciagent/net/tls.h"

namespace ciagent {

struct SocketOptions {
  absl::Duration connect_timeout = absl::Seconds(5);
  // Per read or write that makes no progress; the TLS handshake is bounded
  // by it too.
  absl::Duration io_timeout = absl::Seconds(10);
  // TLS when set.
  std::optional<TlsClientOptions> tls;
  // Named in "unknown issuer" and client certificate messages.
  std::string ca_setting = "CI_CA_FILE";
  std::string client_certificate_setting = "a client certificate";
};

class ClientSocket {
 public:
  static absl::StatusOr<std::unique_ptr<ClientSocket>> Connect(
      absl::string_view host, int port, const SocketOptions& options);
  ~ClientSocket();
  ClientSocket(const ClientSocket&) = delete;
  ClientSocket& operator=(const ClientSocket&) = delete;

  // Writes every byte.
  absl::Status WriteAll(absl::string_view data);
  // Reads what is there, at least one byte, at most `size`: blocks up to
  // the io timeout. The peer closing is kUnavailable.
  absl::StatusOr<size_t> ReadSome(char* data, size_t size);

  // Changes the io timeout of later reads and writes.
  absl::Status SetIoTimeout(absl::Duration timeout);

  // "host:port", as connected to (brackets around an IPv6 address).
  const std::string& peer() const { return peer_; }
  bool tls() const { return ssl_ != nullptr; }

 private:
  ClientSocket(int fd, std::string peer, std::string host,
               const SocketOptions& options);
  absl::Status Handshake(SSL_CTX* context);
  absl::Status IoError(absl::string_view what, int rc);
  absl::Status CertificateRefused();

  int fd_;
  SSL* ssl_ = nullptr;
  std::string peer_;
  std::string host_;
  std::string ca_setting_;
  std::string client_certificate_setting_;
};

}  // namespace ciagent

#endif  // CIAGENT_NET_SOCKET_H_
