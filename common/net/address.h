// Socket addresses and CIDR prefixes: parsing ("IP", "IP:PORT", "[IPv6]:PORT", "IP/LEN"),
// formatting and matching. Plain values, no I/O; safe to use from any thread.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace hubdns {

// An IPv4 or IPv6 address with a port, stored the way the socket API wants it.
class SocketAddress {
 public:
  SocketAddress() = default;
  static SocketAddress from_sockaddr(const sockaddr* sa);

  // Accepts "IP", "IP:PORT", "[IPv6]:PORT" and a bare IPv6 address. default_port is used
  // when no port is given. Returns nullopt and sets *error to a human reason otherwise.
  // An IPv6 address may carry a zone ("fe80::1%eth0", "[fe80::1%2]:53"); an unknown
  // interface name is an error. Host names are never resolved.
  static std::optional<SocketAddress> parse(std::string_view text, uint16_t default_port,
                                            std::string* error = nullptr);
  // Like parse(), but the port must be written ("IP:PORT" or "[IPv6]:PORT"), for places
  // that have no sensible default port.
  static std::optional<SocketAddress> parse_with_port(std::string_view text,
                                                      std::string* error = nullptr);

  int family() const { return storage_.ss_family; }
  bool is_ipv4() const { return family() == AF_INET; }
  bool is_ipv6() const { return family() == AF_INET6; }
  uint16_t port() const;
  void set_port(uint16_t port);
  bool is_loopback() const;     // 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104
  bool is_unspecified() const;  // 0.0.0.0 or :: (a wildcard listen address)

  const sockaddr* sockaddr_ptr() const { return reinterpret_cast<const sockaddr*>(&storage_); }
  sockaddr* sockaddr_ptr() { return reinterpret_cast<sockaddr*>(&storage_); }
  socklen_t sockaddr_len() const;

  // "192.0.2.1:53" or "[2001:db8::1]:53" (with "%zone" inside the brackets when set).
  std::string to_string() const;
  // The address alone, without the port.
  std::string ip_string() const;

  // Same family, address, port (and IPv6 zone).
  friend bool operator==(const SocketAddress& a, const SocketAddress& b);

 private:
  sockaddr_storage storage_{};
};

// An address prefix such as 10.0.0.0/8 or fc00::/7. An IPv4-mapped IPv6 client address
// (::ffff:10.1.2.3) matches IPv4 prefixes, since dual-stack sockets report clients that way;
// and for the same reason an IPv4 client is matched against IPv6 prefixes in its mapped form,
// so a rule means the same whatever socket the client came through (::/0 matches everyone).
class Cidr {
 public:
  // "IP/LEN", or a bare IP meaning a single host (/32 or /128). Bits set beyond the prefix
  // length ("10.1.2.3/8") are an error rather than silently cleared: the author probably
  // meant something else.
  static std::optional<Cidr> parse(std::string_view text, std::string* error = nullptr);
  int family() const { return family_; }
  unsigned prefix_len() const { return prefix_len_; }
  bool contains(const sockaddr* sa) const;
  bool contains(const SocketAddress& addr) const { return contains(addr.sockaddr_ptr()); }
  std::string to_string() const;

  friend bool operator==(const Cidr& a, const Cidr& b);

 private:
  int family_ = AF_UNSPEC;
  uint8_t bytes_[16]{};
  unsigned prefix_len_ = 0;
};

}  // namespace hubdns
