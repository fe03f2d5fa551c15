// The socket stream libgit2 uses for git over HTTP(S): connected with
// Nagle's algorithm off, bytes both ways, libgit2's error classes.
#include "ciagent/git/internal/socket_stream.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "testing/tcp_listener.h"

namespace ciagent {
namespace {

// The descriptor of this process's TCP connection to `port`, or -1.
int ConnectionTo(const std::string& port) {
  for (int fd = 3; fd < 1024; ++fd) {
    sockaddr_in peer = {};
    socklen_t length = sizeof(peer);
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &length) == 0 &&
        peer.sin_family == AF_INET &&
        std::to_string(ntohs(peer.sin_port)) == port) {
      return fd;
    }
  }
  return -1;
}

class NoDelaySocketStreamTest : public ::testing::Test {
 protected:
  // libgit2 keeps its error state per thread once initialised.
  void SetUp() override { git_libgit2_init(); }
  void TearDown() override { git_libgit2_shutdown(); }
};

TEST_F(NoDelaySocketStreamTest, ConnectsWithNagleOffAndCarriesBytesBothWays) {
  ::ciagent::testing::TcpListener listener;
  const std::string port = std::to_string(listener.port());
  git_stream* stream = nullptr;
  ASSERT_EQ(NewNoDelaySocketStream(&stream, "127.0.0.1", port.c_str()), 0);
  ASSERT_EQ(stream->connect(stream), 0);
  const int server = listener.Accept();
  ASSERT_GE(server, 0);

  const int client = ConnectionTo(port);
  ASSERT_GE(client, 0);
  int nodelay = 0;
  socklen_t length = sizeof(nodelay);
  ASSERT_EQ(getsockopt(client, IPPROTO_TCP, TCP_NODELAY, &nodelay, &length), 0);
  EXPECT_EQ(nodelay, 1);

  EXPECT_EQ(stream->write(stream, "POST / HTTP/1.1\r\n", 17, 0), 17);
  char buffer[64] = {};
  EXPECT_EQ(read(server, buffer, sizeof(buffer)), 17);
  EXPECT_EQ(write(server, "HTTP/1.1 200 OK\r\n", 17), 17);
  EXPECT_EQ(stream->read(stream, buffer, sizeof(buffer)), 17);
  EXPECT_EQ(std::string(buffer, 17), "HTTP/1.1 200 OK\r\n");

  EXPECT_EQ(stream->close(stream), 0);
  stream->free(stream);
  close(server);
}

TEST_F(NoDelaySocketStreamTest, ReadWithoutDataFailsAfterTheTimeout) {
  ::ciagent::testing::TcpListener listener;
  const std::string port = std::to_string(listener.port());
  SetSocketTimeout(absl::Milliseconds(200));
  git_stream* stream = nullptr;
  ASSERT_EQ(NewNoDelaySocketStream(&stream, "127.0.0.1", port.c_str()), 0);
  ASSERT_EQ(stream->connect(stream), 0);
  const int server = listener.Accept();  // accepts, then never answers
  char buffer[16];
  EXPECT_LT(stream->read(stream, buffer, sizeof(buffer)), 0);
  const git_error* error = git_error_last();
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->klass, GIT_ERROR_NET);
  EXPECT_EQ(std::string(error->message), "no data from 127.0.0.1 for 0.2 s");
  stream->free(stream);
  close(server);
  SetSocketTimeout(absl::ZeroDuration());
}

TEST_F(NoDelaySocketStreamTest, RefusedConnectionIsAnOsErrorNamingTheHost) {
  std::string port;
  {
    ::ciagent::testing::TcpListener
        closed;  // a port nobody listens on once this scope ends
    port = std::to_string(closed.port());
  }
  git_stream* stream = nullptr;
  ASSERT_EQ(NewNoDelaySocketStream(&stream, "127.0.0.1", port.c_str()), 0);
  EXPECT_LT(stream->connect(stream), 0);
  const git_error* error = git_error_last();
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->klass, GIT_ERROR_OS);
  EXPECT_EQ(std::string(error->message), "failed to connect to 127.0.0.1");
  stream->free(stream);
}

TEST_F(NoDelaySocketStreamTest, UnknownHostIsANetErrorNamingIt) {
  git_stream* stream = nullptr;
  ASSERT_EQ(NewNoDelaySocketStream(&stream, "no-such-host.invalid", "80"), 0);
  EXPECT_LT(stream->connect(stream), 0);
  const git_error* error = git_error_last();
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->klass, GIT_ERROR_NET);
  EXPECT_EQ(std::string(error->message)
                .rfind("failed to resolve address for no-such-host.invalid", 0),
            0u);
  stream->free(stream);
}

}  // namespace
}  // namespace ciagent
