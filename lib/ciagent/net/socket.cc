#include "ciagent/net/socket.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "ciagent/base/status_macros.h"

namespace ciagent {
namespace {

std::string Peer(absl::string_view host, int port) {
  return IsIpAddress(host) && host.find(':') != absl::string_view::npos
             ? absl::StrCat("[", host, "]:", port)
             : absl::StrCat(host, ":", port);
}

int ToMillis(absl::Duration d) {
  const int64_t ms = absl::ToInt64Milliseconds(d);
  return ms < 1 ? 1 : (ms > INT_MAX ? INT_MAX : static_cast<int>(ms));
}

// Connects `fd` (non-blocking) within `timeout`; returns 0 or an errno.
int ConnectWithin(int fd, const addrinfo& address, absl::Duration timeout) {
  if (connect(fd, address.ai_addr, address.ai_addrlen) == 0) return 0;
  if (errno != EINPROGRESS) return errno;
  pollfd waiting = {.fd = fd, .events = POLLOUT, .revents = 0};
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    const int ready = poll(&waiting, 1, ToMillis(deadline - absl::Now()));
    if (ready > 0) break;
    if (ready == 0) return ETIMEDOUT;
    if (errno != EINTR) return errno;
  }
  int error = 0;
  socklen_t length = sizeof(error);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) return errno;
  return error;
}

void SetOption(int fd, int level, int name, int value) {
  setsockopt(fd, level, name, &value, sizeof(value));
}

// Reads and writes of the TLS session go through send/recv with
// MSG_NOSIGNAL, so a server gone away is an error, not SIGPIPE, whether or
// not the process ignores it.
int BioWrite(BIO* bio, const char* data, int size) {
  const ssize_t n = send(BIO_get_fd(bio, nullptr), data, size, MSG_NOSIGNAL);
  return n < 0 ? -1 : static_cast<int>(n);
}

int BioRead(BIO* bio, char* data, int size) {
  const ssize_t n = recv(BIO_get_fd(bio, nullptr), data, size, 0);
  return n < 0 ? -1 : static_cast<int>(n);
}

BIO_METHOD* NoSignalSocketMethod() {
  static BIO_METHOD* method = [] {
    const BIO_METHOD* socket = BIO_s_socket();
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK |
                                     BIO_TYPE_DESCRIPTOR,
                                 "socket without SIGPIPE");
    BIO_meth_set_write(m, BioWrite);
    BIO_meth_set_read(m, BioRead);
    BIO_meth_set_ctrl(m, BIO_meth_get_ctrl(socket));
    BIO_meth_set_create(m, BIO_meth_get_create(socket));
    BIO_meth_set_destroy(m, BIO_meth_get_destroy(socket));
    return m;
  }();
  return method;
}

}  // namespace

ClientSocket::ClientSocket(int fd, std::string peer, std::string host,
                           const SocketOptions& options)
    : fd_(fd),
      peer_(std::move(peer)),
      host_(std::move(host)),
      ca_setting_(options.ca_setting),
      client_certificate_setting_(options.client_certificate_setting) {}

ClientSocket::~ClientSocket() {
  if (ssl_ != nullptr) SSL_free(ssl_);
  close(fd_);
}

absl::StatusOr<std::unique_ptr<ClientSocket>> ClientSocket::Connect(
    absl::string_view host, int port, const SocketOptions& options) {
  const std::string peer = Peer(host, port);
  SSL_CTX* context = nullptr;
  if (options.tls.has_value()) {
    CIAGENT_ASSIGN_OR_RETURN(context, TlsClientContext(*options.tls));
  }
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* addresses = nullptr;
  const std::string name(host);
  if (int rc = getaddrinfo(name.c_str(), absl::StrCat(port).c_str(), &hints,
                           &addresses);
      rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("connect to ", peer, ": ", gai_strerror(rc)));
  }
  int fd = -1;
  int error = 0;
  for (addrinfo* a = addresses; a != nullptr && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                a->ai_protocol);
    if (fd < 0) {
      error = errno;
      continue;
    }
    error = ConnectWithin(fd, *a, options.connect_timeout);
    if (error != 0) {
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(addresses);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("connect to ", peer, ": ",
                     error == ETIMEDOUT ? "timed out" : std::strerror(error)));
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  SetOption(fd, IPPROTO_TCP, TCP_NODELAY, 1);
  SetOption(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
  SetOption(fd, IPPROTO_TCP, TCP_KEEPIDLE, 15);
  SetOption(fd, IPPROTO_TCP, TCP_KEEPINTVL, 5);
  SetOption(fd, IPPROTO_TCP, TCP_KEEPCNT, 3);
  std::unique_ptr<ClientSocket> socket(
      new ClientSocket(fd, peer, name, options));
  CIAGENT_RETURN_IF_ERROR(socket->SetIoTimeout(options.io_timeout));
  if (context != nullptr) CIAGENT_RETURN_IF_ERROR(socket->Handshake(context));
  return socket;
}

absl::Status ClientSocket::SetIoTimeout(absl::Duration timeout) {
  const timeval tv = absl::ToTimeval(timeout);
  if (setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
      setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0) {
    return absl::InternalError(
        absl::StrCat("socket to ", peer_, ": set timeout: ",
                     std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status ClientSocket::Handshake(SSL_CTX* context) {
  CIAGENT_ASSIGN_OR_RETURN(ssl_, NewTlsSession(context, host_));
  BIO* bio = BIO_new(NoSignalSocketMethod());
  if (bio == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("TLS to ", peer_, ": ", TakeOpenSslError()));
  }
  BIO_set_fd(bio, fd_, BIO_NOCLOSE);
  SSL_set_bio(ssl_, bio, bio);
  // One recv for a record's header and body (and whatever follows), not
  // two per record: a reply is usually one record.
  SSL_set_read_ahead(ssl_, 1);
  errno = 0;
  const int rc = SSL_connect(ssl_);
  if (rc == 1) return absl::OkStatus();
  const long verified = SSL_get_verify_result(ssl_);
  if (verified != X509_V_OK) {
    ERR_clear_error();
    return absl::FailedPreconditionError(
        TlsVerifyFailure(host_, verified, ca_setting_));
  }
  return IoError("TLS handshake with", rc);
}

absl::Status ClientSocket::IoError(absl::string_view what, int rc) {
  const int saved_errno = errno;
  std::string why;
  if (ssl_ != nullptr && SSL_get_error(ssl_, rc) == SSL_ERROR_SYSCALL &&
      (saved_errno == ECONNRESET || saved_errno == EPIPE)) {
    // A TLS 1.3 server that wants a client certificate says so in an alert
    // after the handshake, then closes; a write racing with that close
    // fails with a reset. The alert may still be waiting to be read.
    char byte;
    ERR_clear_error();
    if (SSL_read(ssl_, &byte, 1) <= 0 &&
        OpenSslErrorIsClientCertificateRefused()) {
      return CertificateRefused();
    }
  }
  if (ssl_ != nullptr) {
    const int error = SSL_get_error(ssl_, rc);
    if (error == SSL_ERROR_SSL) {
      if (OpenSslErrorIsClientCertificateRefused()) return CertificateRefused();
      return absl::UnavailableError(
          absl::StrCat(what, " ", peer_, ": ", TakeOpenSslError()));
    }
    ERR_clear_error();
    if (error == SSL_ERROR_ZERO_RETURN || (error == SSL_ERROR_SYSCALL &&
                                           saved_errno == 0)) {
      return absl::UnavailableError(
          absl::StrCat(what, " ", peer_, ": connection closed"));
    }
  } else if (rc == 0) {
    return absl::UnavailableError(
        absl::StrCat(what, " ", peer_, ": connection closed"));
  }
  why = saved_errno == EAGAIN || saved_errno == EWOULDBLOCK
            ? "timed out"
            : std::strerror(saved_errno);
  return absl::UnavailableError(absl::StrCat(what, " ", peer_, ": ", why));
}

absl::Status ClientSocket::CertificateRefused() {
  const std::string detail = TakeOpenSslError();
  return absl::FailedPreconditionError(absl::StrCat(
      "TLS to ", peer_, ": the server refused the client certificate (",
      client_certificate_setting_, "): ", detail));
}

absl::Status ClientSocket::WriteAll(absl::string_view data) {
  while (!data.empty()) {
    const int chunk = static_cast<int>(std::min<size_t>(data.size(), INT_MAX));
    errno = 0;
    ssize_t n;
    if (ssl_ != nullptr) {
      ERR_clear_error();
      n = SSL_write(ssl_, data.data(), chunk);
    } else {
      n = send(fd_, data.data(), chunk, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
    }
    if (n <= 0) return IoError("write to", static_cast<int>(n));
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> ClientSocket::ReadSome(char* data, size_t size) {
  const int chunk = static_cast<int>(std::min<size_t>(size, INT_MAX));
  for (;;) {
    errno = 0;
    ssize_t n;
    if (ssl_ != nullptr) {
      ERR_clear_error();
      n = SSL_read(ssl_, data, chunk);
    } else {
      n = recv(fd_, data, chunk, 0);
      if (n < 0 && errno == EINTR) continue;
    }
    if (n > 0) return static_cast<size_t>(n);
    return IoError("read from", static_cast<int>(n));
  }
}

}  // namespace ciagent
