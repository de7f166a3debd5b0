// Helpers shared by the probe/ unit tests.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <random>

#include "common/net/address.h"

namespace hubdns::test {

// A loopback port with nothing bound to it, for "connection refused" cases. Drawn below the
// kernel's ephemeral range (ip_local_port_range), so that no socket bound to port 0 — the
// DNS workers' upstream sockets, other tests' servers, running in parallel — can land on
// it while the test expects it closed.
inline SocketAddress closed_loopback_port() {
  unsigned low = 32768;
  if (FILE* range = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
    if (std::fscanf(range, "%u", &low) != 1) low = 32768;
    std::fclose(range);
  }
  const unsigned span = low > 12000 ? 10000 : low / 2;
  std::random_device random;
  for (int attempt = 0; attempt < 100; ++attempt) {
    const auto port = static_cast<uint16_t>(low - 1 - random() % span);
    bool free = true;
    for (int type : {SOCK_DGRAM, SOCK_STREAM}) {
      int fd = ::socket(AF_INET, type, 0);
      sockaddr_in sin{};
      sin.sin_family = AF_INET;
      sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      sin.sin_port = htons(port);
      free = free && ::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0;
      ::close(fd);
    }
    if (free) return *SocketAddress::parse("127.0.0.1", port);
  }
  return *SocketAddress::parse("127.0.0.1", 9);  // discard: nothing listens there in a test box
}

}  // namespace hubdns::test
