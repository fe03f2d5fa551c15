#include "ciagent/git/internal/socket_stream.h"

#include <fcntl.h>
#include <git2.h>
#include <git2/sys/stream.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace ciagent {
namespace {

struct SocketStream {
  git_stream parent;  // first: libgit2 sees a git_stream*
  std::string* host;
  std::string* port;
  int fd;
};

SocketStream* Self(git_stream* stream) {
  return reinterpret_cast<SocketStream*>(stream);
}

// Set by SetSocketTimeout; 0: none.
std::atomic<int64_t> timeout_ms{0};

// connect(2), given up after `ms` milliseconds (when > 0) with ETIMEDOUT.
bool ConnectWithin(int fd, const addrinfo& address, int64_t ms) {
  if (ms <= 0) return connect(fd, address.ai_addr, address.ai_addrlen) == 0;
  const int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  bool connected = connect(fd, address.ai_addr, address.ai_addrlen) == 0;
  if (!connected && errno == EINPROGRESS) {
    pollfd wait = {.fd = fd, .events = POLLOUT, .revents = 0};
    const int ready = poll(&wait, 1, static_cast<int>(ms));
    int error = 0;
    socklen_t length = sizeof(error);
    if (ready == 0) {
      errno = ETIMEDOUT;
    } else if (ready > 0 &&
               getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0) {
      connected = error == 0;
      errno = error;
    }
  }
  fcntl(fd, F_SETFL, flags);
  return connected;
}

void SetNetError(const char* what) {
  git_error_set_str(GIT_ERROR_NET,
                    absl::StrCat(what, ": ", std::strerror(errno)).c_str());
}

void SetTimeoutError(const SocketStream* self, const char* what) {
  git_error_set_str(GIT_ERROR_NET,
                    absl::StrCat(what, " ", *self->host, " for ",
                                 timeout_ms.load() / 1000.0, " s")
                        .c_str());
}

int Connect(git_stream* stream) {
  SocketStream* self = Self(stream);
  addrinfo hints = {};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_family = AF_UNSPEC;
  addrinfo* addresses = nullptr;
  if (int rc = getaddrinfo(self->host->c_str(), self->port->c_str(), &hints,
                           &addresses);
      rc != 0) {
    git_error_set_str(GIT_ERROR_NET,
                      absl::StrCat("failed to resolve address for ",
                                   *self->host, ": ", gai_strerror(rc))
                          .c_str());
    return -1;
  }
  const int64_t ms = timeout_ms.load();
  int fd = -1;
  for (addrinfo* address = addresses; address != nullptr;
       address = address->ai_next) {
    fd = socket(address->ai_family, address->ai_socktype | SOCK_CLOEXEC,
                address->ai_protocol);
    if (fd < 0) continue;
    if (ConnectWithin(fd, *address, ms)) break;
    close(fd);  // the next address, as libgit2 does
    fd = -1;
  }
  freeaddrinfo(addresses);
  if (fd < 0) {
    git_error_set_str(
        GIT_ERROR_OS,
        absl::StrCat("failed to connect to ", *self->host).c_str());
    return -1;
  }
  const int on = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
  if (ms > 0) {
    // A read or write that makes no progress for this long fails.
    const timeval limit = {
        .tv_sec = static_cast<time_t>(ms / 1000),
        .tv_usec = static_cast<suseconds_t>(ms % 1000 * 1000)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof(limit));
  }
  self->fd = fd;
  return 0;
}

ssize_t Write(git_stream* stream, const char* data, size_t size, int flags) {
  errno = 0;
  // MSG_NOSIGNAL: a server gone away is an error to report, not SIGPIPE.
  const ssize_t written =
      send(Self(stream)->fd, data, size, flags | MSG_NOSIGNAL);
  if (written < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      SetTimeoutError(Self(stream), "could not send to");
    } else {
      SetNetError("error sending data");
    }
  }
  return written;
}

ssize_t Read(git_stream* stream, void* data, size_t size) {
  const ssize_t got = recv(Self(stream)->fd, data, size, 0);
  if (got < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      SetTimeoutError(Self(stream), "no data from");
    } else {
      SetNetError("error receiving socket data");
    }
  }
  return got;
}

int Close(git_stream* stream) {
  SocketStream* self = Self(stream);
  const int rc = self->fd >= 0 ? close(self->fd) : 0;
  self->fd = -1;
  return rc;
}

void Free(git_stream* stream) {
  SocketStream* self = Self(stream);
  if (self->fd >= 0) close(self->fd);
  delete self->host;
  delete self->port;
  delete self;
}

}  // namespace

int NewNoDelaySocketStream(git_stream** out, const char* host,
                           const char* port) {
  auto* self = new SocketStream{};
  self->parent.version = GIT_STREAM_VERSION;
  self->parent.connect = Connect;
  self->parent.write = Write;
  self->parent.read = Read;
  self->parent.close = Close;
  self->parent.free = Free;
  self->host = new std::string(host);
  self->port = new std::string(port != nullptr ? port : "");
  self->fd = -1;
  *out = &self->parent;
  return 0;
}

void SetSocketTimeout(absl::Duration timeout) {
  timeout_ms.store(
      timeout > absl::ZeroDuration() ? absl::ToInt64Milliseconds(timeout) : 0);
}

absl::Status RegisterNoDelaySocketStream() {
  git_stream_registration registration = {};
  registration.version = GIT_STREAM_VERSION;
  registration.init = NewNoDelaySocketStream;
  if (git_stream_register(GIT_STREAM_STANDARD, &registration) != 0) {
    const git_error* e = git_error_last();
    return absl::InternalError(absl::StrCat("register the socket stream: ",
                                            e != nullptr ? e->message : "?"));
  }
  return absl::OkStatus();
}

}  // namespace ciagent
