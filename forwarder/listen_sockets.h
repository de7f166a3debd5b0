// Opens the DNS listening sockets before the workers start, so a bind failure stops the
// process at start-up (exit 2) with a clear message. Each worker gets its own UDP and TCP
// socket per listen address, all bound with SO_REUSEPORT so the kernel spreads clients
// over the workers and no socket is shared between threads. Runs on the main thread; the
// file descriptors are handed over to the workers, which own them from then on.
#pragma once

#include <string>
#include <vector>

#include "common/net/address.h"

namespace hubdns {

struct ListenSocket {
  SocketAddress address;  // as bound (a port 0 in the configuration is resolved here)
  int udp_fd = -1;
  int tcp_fd = -1;  // bound, not yet listening
};

// One vector per worker, each with one ListenSocket per listen address. On failure, closes
// whatever it opened, fills *error ("cannot bind UDP 127.0.0.1:53: Permission denied")
// and returns an empty result.
std::vector<std::vector<ListenSocket>> open_listen_sockets(
    const std::vector<SocketAddress>& addresses, unsigned worker_count, std::string* error);

void close_listen_sockets(std::vector<std::vector<ListenSocket>>& sockets);

}  // namespace hubdns
