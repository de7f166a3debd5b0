// Helpers shared by the probe/ unit tests.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/net/address.h"

namespace hubdns::test {

// A loopback port nothing listens on (UDP and TCP): bound to port 0, read back, closed.
inline SocketAddress closed_loopback_port() {
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin);
  socklen_t length = sizeof sin;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &length);
  ::close(fd);
  return *SocketAddress::parse("127.0.0.1", ntohs(sin.sin_port));
}

}  // namespace hubdns::test
