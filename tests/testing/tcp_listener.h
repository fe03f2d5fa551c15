// TcpListener: a listening TCP socket on a free 127.0.0.1 port that never
// answers on its own — for clients facing a silent server, or a socket the
// test drives by hand after Accept().
//
//   TcpListener listener;
//   Connect(listener.port());            // the kernel completes the handshake
//   const int server = listener.Accept();  // then the test reads and writes
#ifndef CIAGENT_TESTS_TESTING_TCP_LISTENER_H_
#define CIAGENT_TESTS_TESTING_TCP_LISTENER_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

namespace ciagent::testing {

class TcpListener {
 public:
  TcpListener() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address = {};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) ==
            0 &&
        listen(fd_, 8) == 0 &&
        getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
      port_ = ntohs(address.sin_port);
    }
  }
  ~TcpListener() { close(fd_); }
  TcpListener(const TcpListener&) = delete;
  TcpListener& operator=(const TcpListener&) = delete;

  // The next connection's descriptor (the caller closes it), or -1.
  int Accept() { return accept(fd_, nullptr, nullptr); }
  // 0 when the socket could not be set up.
  int port() const { return port_; }

 private:
  int fd_;
  int port_ = 0;
};

}  // namespace ciagent::testing

#endif  // CIAGENT_TESTS_TESTING_TCP_LISTENER_H_
