#include "forwarder/listen_sockets.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace hubdns {

namespace {

int open_bound_socket(const SocketAddress& address, int type, std::string* error) {
  int fd = ::socket(address.family(), type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = std::string("cannot create socket for ") + address.to_string() + ": " + std::strerror(errno);
    return -1;
  }
  int one = 1;
  // SO_REUSEPORT: one socket per worker on the same address, balanced by the kernel.
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (type == SOCK_DGRAM) {
    // Room for bursts: a full receive buffer drops queries in the kernel, unseen. The
    // kernel caps this at net.core.rmem_max/wmem_max (raise those on a busy server).
    int bytes = 4 << 20;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
  }
  if (address.is_ipv6()) {
    // [::]:53 must not also claim IPv4, so "0.0.0.0:53" and "[::]:53" can both be listed.
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  }
  if (::bind(fd, address.sockaddr_ptr(), address.sockaddr_len()) != 0) {
    *error = std::string("cannot bind ") + (type == SOCK_DGRAM ? "UDP " : "TCP ") +
             address.to_string() + ": " + std::strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

// SO_REUSEPORT would let a second hubdns (same user) bind the same address silently and
// take half the traffic. A plain bind of a throw-away socket first fails with EADDRINUSE
// if anything holds the address, so that case stops at start like any bind failure.
bool address_is_free(const SocketAddress& address, int type, std::string* error) {
  int fd = ::socket(address.family(), type | SOCK_CLOEXEC, 0);
  if (fd < 0) return true;  // the real bind reports the problem
  if (type == SOCK_STREAM) {
    int one = 1;  // connections of an earlier run in TIME_WAIT do not hold the address
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  }
  if (address.is_ipv6()) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  }
  bool free = ::bind(fd, address.sockaddr_ptr(), address.sockaddr_len()) == 0 || errno != EADDRINUSE;
  if (!free) {
    *error = std::string("cannot bind ") + (type == SOCK_DGRAM ? "UDP " : "TCP ") +
             address.to_string() + ": " + std::strerror(EADDRINUSE) + " (another process listens there)";
  }
  ::close(fd);
  return free;
}

SocketAddress bound_address(int fd) {
  sockaddr_storage storage{};
  socklen_t length = sizeof storage;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length);
  return SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&storage));
}

}  // namespace

std::vector<std::vector<ListenSocket>> open_listen_sockets(
    const std::vector<SocketAddress>& addresses, unsigned worker_count, std::string* error) {
  std::vector<std::vector<ListenSocket>> per_worker(worker_count);
  for (const SocketAddress& configured : addresses) {
    SocketAddress address = configured;
    if (address.port() != 0 && (!address_is_free(address, SOCK_DGRAM, error) ||
                                !address_is_free(address, SOCK_STREAM, error))) {
      close_listen_sockets(per_worker);
      return {};
    }
    for (unsigned worker = 0; worker < worker_count; ++worker) {
      ListenSocket socket;
      socket.udp_fd = open_bound_socket(address, SOCK_DGRAM, error);
      // Port 0: the first UDP bind picks the port and every other socket joins it. The
      // kernel picked it free for UDP only; a TCP socket (a client's connection, say) may
      // hold the same number: then pick again, a few times.
      for (int attempt = 0; socket.udp_fd >= 0 && address.port() == 0; ++attempt) {
        SocketAddress picked = bound_address(socket.udp_fd);
        socket.tcp_fd = open_bound_socket(picked, SOCK_STREAM, error);
        if (socket.tcp_fd >= 0 || attempt == 20) {
          address = picked;
          break;
        }
        ::close(socket.udp_fd);
        socket.udp_fd = open_bound_socket(address, SOCK_DGRAM, error);
      }
      if (socket.udp_fd >= 0 && socket.tcp_fd < 0) socket.tcp_fd = open_bound_socket(address, SOCK_STREAM, error);
      socket.address = address;
      per_worker[worker].push_back(socket);
      if (socket.udp_fd < 0 || socket.tcp_fd < 0) {
        close_listen_sockets(per_worker);
        return {};
      }
    }
  }
  return per_worker;
}

void close_listen_sockets(std::vector<std::vector<ListenSocket>>& sockets) {
  for (auto& worker : sockets) {
    for (ListenSocket& socket : worker) {
      if (socket.udp_fd >= 0) ::close(socket.udp_fd);
      if (socket.tcp_fd >= 0) ::close(socket.tcp_fd);
      socket.udp_fd = socket.tcp_fd = -1;
    }
  }
}

}  // namespace hubdns
