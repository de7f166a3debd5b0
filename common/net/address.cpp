#include "common/net/address.h"

#include <arpa/inet.h>
#include <net/if.h>

#include <cstddef>
#include <cstring>

namespace hubdns {
namespace {

bool fail(std::string* error, std::string message) {
  if (error != nullptr) *error = std::move(message);
  return false;
}

std::string quoted(std::string_view text) { return "'" + std::string(text) + "'"; }

bool all_digits(std::string_view text) {
  if (text.empty()) return false;
  for (const char c : text) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// A decimal number of at most `max` with no sign, as written in a port or prefix length.
bool parse_small_number(std::string_view text, uint32_t max, uint32_t* out) {
  if (!all_digits(text) || text.size() > 10) return false;
  uint64_t value = 0;
  for (const char c : text) value = value * 10 + static_cast<uint64_t>(c - '0');
  if (value > max) return false;
  *out = static_cast<uint32_t>(value);
  return true;
}

bool parse_port(std::string_view text, uint16_t* port, std::string* error) {
  if (text.empty()) return fail(error, "missing port after ':'");
  uint32_t value = 0;
  if (!all_digits(text)) return fail(error, "port " + quoted(text) + " is not a number");
  if (!parse_small_number(text, 65535, &value)) {
    return fail(error, "port " + quoted(text) + " is out of range (0-65535)");
  }
  *port = static_cast<uint16_t>(value);
  return true;
}

bool parse_ipv4(std::string_view text, in_addr* out) {
  if (text.empty() || text.size() >= INET_ADDRSTRLEN) return false;
  const std::string copy(text);  // inet_pton wants a terminated string
  return inet_pton(AF_INET, copy.c_str(), out) == 1;
}

bool parse_ipv6(std::string_view text, in6_addr* out) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return false;
  const std::string copy(text);
  return inet_pton(AF_INET6, copy.c_str(), out) == 1;
}

// "fe80::1%eth0" or "fe80::1%2": the zone is an interface name or index.
bool parse_ipv6_with_zone(std::string_view text, sockaddr_in6* out, std::string* error) {
  std::string_view address = text;
  std::string_view zone;
  const size_t percent = text.find('%');
  if (percent != std::string_view::npos) {
    address = text.substr(0, percent);
    zone = text.substr(percent + 1);
    if (zone.empty()) return fail(error, "empty interface after '%' in " + quoted(text));
  }
  if (!parse_ipv6(address, &out->sin6_addr)) {
    return fail(error, quoted(address) + " is not an IPv6 address");
  }
  if (!zone.empty()) {
    uint32_t index = 0;
    if (all_digits(zone)) {
      if (!parse_small_number(zone, UINT32_MAX, &index) || index == 0) {
        return fail(error, "bad interface index " + quoted(zone));
      }
    } else {
      index = if_nametoindex(std::string(zone).c_str());
      if (index == 0) return fail(error, "unknown network interface " + quoted(zone));
    }
    out->sin6_scope_id = index;
  }
  return true;
}

bool looks_like_host_name(std::string_view text) {
  for (const char c : text) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  }
  return false;
}

std::string not_an_address(std::string_view text) {
  if (looks_like_host_name(text) && text.find(':') == std::string_view::npos) {
    return quoted(text) + " is not an IP address (host names are not resolved)";
  }
  return quoted(text) + " is not an IPv4 or IPv6 address";
}

// The 16 bytes of ::ffff:a.b.c.d for an IPv4 address.
void mapped_ipv6(const in_addr& v4, uint8_t out[16]) {
  std::memset(out, 0, 16);
  out[10] = 0xff;
  out[11] = 0xff;
  std::memcpy(out + 12, &v4, 4);
}

bool is_v4_mapped(const uint8_t bytes[16]) {
  static constexpr uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(bytes, kPrefix, sizeof kPrefix) == 0;
}

// Do the first prefix_len bits of a and b agree?
bool prefix_matches(const uint8_t* a, const uint8_t* b, unsigned prefix_len) {
  const unsigned full_bytes = prefix_len / 8;
  if (std::memcmp(a, b, full_bytes) != 0) return false;
  const unsigned rest = prefix_len % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<uint8_t>(0xffu << (8 - rest));
  return (a[full_bytes] & mask) == (b[full_bytes] & mask);
}

std::string format_ip(int family, const void* address) {
  char buffer[INET6_ADDRSTRLEN] = {};
  if (inet_ntop(family, address, buffer, sizeof buffer) == nullptr) return "?";
  return buffer;
}

// The common part of parse() and parse_with_port(); *port_given says whether a port was
// written.
std::optional<SocketAddress> parse_address(std::string_view text, uint16_t default_port,
                                           bool* port_given, std::string* error) {
  *port_given = false;
  if (text.empty()) {
    fail(error, "empty address");
    return std::nullopt;
  }
  std::string_view host = text;
  std::string_view port_text;
  bool bracketed = false;
  if (text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) {
      fail(error, "missing ']' in " + quoted(text));
      return std::nullopt;
    }
    host = text.substr(1, close - 1);
    bracketed = true;
    const std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        fail(error, "expected ':PORT' after ']' in " + quoted(text));
        return std::nullopt;
      }
      port_text = rest.substr(1);
      *port_given = true;
    }
  } else {
    const size_t first_colon = text.find(':');
    if (first_colon != std::string_view::npos && text.find(':', first_colon + 1) == std::string_view::npos) {
      // Exactly one colon: IPv4:PORT (an IPv6 address always has at least two).
      host = text.substr(0, first_colon);
      port_text = text.substr(first_colon + 1);
      *port_given = true;
    }
  }

  uint16_t port = default_port;
  if (*port_given && !parse_port(port_text, &port, error)) return std::nullopt;

  in_addr v4{};
  if (parse_ipv4(host, &v4)) {
    if (bracketed) {
      fail(error, "brackets are only for IPv6 addresses: " + quoted(text));
      return std::nullopt;
    }
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr = v4;
    sin.sin_port = htons(port);
    return SocketAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&sin));
  }
  const bool could_be_ipv6 = bracketed || host.find(':') != std::string_view::npos;
  if (!could_be_ipv6) {
    fail(error, not_an_address(host));
    return std::nullopt;
  }
  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(port);
  if (!parse_ipv6_with_zone(host, &sin6, error)) return std::nullopt;
  return SocketAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&sin6));
}

}  // namespace

SocketAddress SocketAddress::from_sockaddr(const sockaddr* sa) {
  SocketAddress result;
  if (sa == nullptr) return result;
  if (sa->sa_family == AF_INET) {
    std::memcpy(&result.storage_, sa, sizeof(sockaddr_in));
  } else if (sa->sa_family == AF_INET6) {
    std::memcpy(&result.storage_, sa, sizeof(sockaddr_in6));
  }
  return result;
}

std::optional<SocketAddress> SocketAddress::parse(std::string_view text, uint16_t default_port,
                                                  std::string* error) {
  bool port_given = false;
  return parse_address(text, default_port, &port_given, error);
}

std::optional<SocketAddress> SocketAddress::parse_with_port(std::string_view text,
                                                            std::string* error) {
  bool port_given = false;
  std::optional<SocketAddress> result = parse_address(text, 0, &port_given, error);
  if (result && !port_given) {
    fail(error, "missing port in " + quoted(text) +
                    (result->is_ipv6() ? " (write [IPv6]:PORT)" : " (write IP:PORT)"));
    return std::nullopt;
  }
  return result;
}

uint16_t SocketAddress::port() const {
  if (is_ipv4()) {
    sockaddr_in sin{};
    std::memcpy(&sin, &storage_, sizeof sin);
    return ntohs(sin.sin_port);
  }
  if (is_ipv6()) {
    sockaddr_in6 sin6{};
    std::memcpy(&sin6, &storage_, sizeof sin6);
    return ntohs(sin6.sin6_port);
  }
  return 0;
}

void SocketAddress::set_port(uint16_t port) {
  const uint16_t network_order = htons(port);
  // sin_port and sin6_port sit at the same offset, right after the family.
  if (is_ipv4()) {
    std::memcpy(reinterpret_cast<char*>(&storage_) + offsetof(sockaddr_in, sin_port),
                &network_order, sizeof network_order);
  } else if (is_ipv6()) {
    std::memcpy(reinterpret_cast<char*>(&storage_) + offsetof(sockaddr_in6, sin6_port),
                &network_order, sizeof network_order);
  }
}

bool SocketAddress::is_loopback() const {
  if (is_ipv4()) {
    sockaddr_in sin{};
    std::memcpy(&sin, &storage_, sizeof sin);
    return (ntohl(sin.sin_addr.s_addr) >> 24) == 127;
  }
  if (is_ipv6()) {
    sockaddr_in6 sin6{};
    std::memcpy(&sin6, &storage_, sizeof sin6);
    const uint8_t* bytes = sin6.sin6_addr.s6_addr;
    if (is_v4_mapped(bytes)) return bytes[12] == 127;
    static constexpr uint8_t kLoopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return std::memcmp(bytes, kLoopback, 16) == 0;
  }
  return false;
}

bool SocketAddress::is_unspecified() const {
  if (is_ipv4()) {
    sockaddr_in sin{};
    std::memcpy(&sin, &storage_, sizeof sin);
    return sin.sin_addr.s_addr == 0;
  }
  if (is_ipv6()) {
    sockaddr_in6 sin6{};
    std::memcpy(&sin6, &storage_, sizeof sin6);
    static constexpr uint8_t kAny[16] = {};
    return std::memcmp(sin6.sin6_addr.s6_addr, kAny, 16) == 0;
  }
  return false;
}

socklen_t SocketAddress::sockaddr_len() const {
  if (is_ipv4()) return sizeof(sockaddr_in);
  if (is_ipv6()) return sizeof(sockaddr_in6);
  return 0;
}

std::string SocketAddress::ip_string() const {
  if (is_ipv4()) {
    sockaddr_in sin{};
    std::memcpy(&sin, &storage_, sizeof sin);
    return format_ip(AF_INET, &sin.sin_addr);
  }
  if (is_ipv6()) {
    sockaddr_in6 sin6{};
    std::memcpy(&sin6, &storage_, sizeof sin6);
    std::string text = format_ip(AF_INET6, &sin6.sin6_addr);
    if (sin6.sin6_scope_id != 0) {
      char name[IF_NAMESIZE] = {};
      text += '%';
      text += if_indextoname(sin6.sin6_scope_id, name) != nullptr
                  ? std::string(name)
                  : std::to_string(sin6.sin6_scope_id);
    }
    return text;
  }
  return "(none)";
}

std::string SocketAddress::to_string() const {
  if (is_ipv4()) return ip_string() + ":" + std::to_string(port());
  if (is_ipv6()) return "[" + ip_string() + "]:" + std::to_string(port());
  return "(none)";
}

bool operator==(const SocketAddress& a, const SocketAddress& b) {
  if (a.family() != b.family()) return false;
  if (a.is_ipv4()) {
    sockaddr_in x{};
    sockaddr_in y{};
    std::memcpy(&x, &a.storage_, sizeof x);
    std::memcpy(&y, &b.storage_, sizeof y);
    return x.sin_addr.s_addr == y.sin_addr.s_addr && x.sin_port == y.sin_port;
  }
  if (a.is_ipv6()) {
    sockaddr_in6 x{};
    sockaddr_in6 y{};
    std::memcpy(&x, &a.storage_, sizeof x);
    std::memcpy(&y, &b.storage_, sizeof y);
    return std::memcmp(&x.sin6_addr, &y.sin6_addr, sizeof x.sin6_addr) == 0 &&
           x.sin6_port == y.sin6_port && x.sin6_scope_id == y.sin6_scope_id;
  }
  return true;  // two empty addresses
}

std::optional<Cidr> Cidr::parse(std::string_view text, std::string* error) {
  if (text.empty()) {
    fail(error, "empty address prefix");
    return std::nullopt;
  }
  std::string_view address = text;
  std::string_view length_text;
  const size_t slash = text.find('/');
  if (slash != std::string_view::npos) {
    address = text.substr(0, slash);
    length_text = text.substr(slash + 1);
    if (length_text.empty()) {
      fail(error, "missing prefix length after '/' in " + quoted(text));
      return std::nullopt;
    }
  }

  Cidr cidr;
  unsigned max_len = 0;
  in_addr v4{};
  in6_addr v6{};
  if (parse_ipv4(address, &v4)) {
    cidr.family_ = AF_INET;
    std::memcpy(cidr.bytes_, &v4, 4);
    max_len = 32;
  } else if (parse_ipv6(address, &v6)) {
    cidr.family_ = AF_INET6;
    std::memcpy(cidr.bytes_, &v6, 16);
    max_len = 128;
  } else {
    if (address.find('%') != std::string_view::npos) {
      fail(error, "an address prefix cannot have an interface zone: " + quoted(text));
    } else {
      fail(error, not_an_address(address) + (slash == std::string_view::npos ? "" : " in " + quoted(text)));
    }
    return std::nullopt;
  }

  cidr.prefix_len_ = max_len;
  if (!length_text.empty()) {
    uint32_t length = 0;
    if (!parse_small_number(length_text, max_len, &length)) {
      fail(error, "prefix length " + quoted(length_text) + " in " + quoted(text) +
                      " must be a number from 0 to " + std::to_string(max_len));
      return std::nullopt;
    }
    cidr.prefix_len_ = length;
  }

  // Refuse bits beyond the prefix instead of clearing them: "10.1.2.3/8" may be a typo for
  // "10.1.2.3/32" just as well as for "10.0.0.0/8".
  Cidr masked = cidr;
  const unsigned address_bytes = max_len / 8;
  for (unsigned i = 0; i < address_bytes; ++i) {
    const unsigned bit_begin = i * 8;
    if (bit_begin >= cidr.prefix_len_) {
      masked.bytes_[i] = 0;
    } else if (cidr.prefix_len_ - bit_begin < 8) {
      const unsigned keep = cidr.prefix_len_ - bit_begin;
      masked.bytes_[i] = static_cast<uint8_t>(masked.bytes_[i] & (0xffu << (8 - keep)));
    }
  }
  if (std::memcmp(masked.bytes_, cidr.bytes_, sizeof cidr.bytes_) != 0) {
    fail(error, quoted(text) + " has bits set beyond the /" + std::to_string(cidr.prefix_len_) +
                    " prefix; did you mean " + quoted(masked.to_string()) + "?");
    return std::nullopt;
  }
  return cidr;
}

bool Cidr::contains(const sockaddr* sa) const {
  if (sa == nullptr) return false;
  uint8_t client[16] = {};
  if (sa->sa_family == AF_INET) {
    sockaddr_in sin{};
    std::memcpy(&sin, sa, sizeof sin);
    if (family_ == AF_INET) {
      std::memcpy(client, &sin.sin_addr, 4);
      return prefix_matches(client, bytes_, prefix_len_);
    }
    if (family_ == AF_INET6) {
      mapped_ipv6(sin.sin_addr, client);
      return prefix_matches(client, bytes_, prefix_len_);
    }
    return false;
  }
  if (sa->sa_family == AF_INET6) {
    sockaddr_in6 sin6{};
    std::memcpy(&sin6, sa, sizeof sin6);
    std::memcpy(client, &sin6.sin6_addr, 16);
    if (family_ == AF_INET6) return prefix_matches(client, bytes_, prefix_len_);
    if (family_ == AF_INET && is_v4_mapped(client)) {
      return prefix_matches(client + 12, bytes_, prefix_len_);
    }
    return false;
  }
  return false;
}

std::string Cidr::to_string() const {
  if (family_ != AF_INET && family_ != AF_INET6) return "(none)";
  return format_ip(family_, bytes_) + "/" + std::to_string(prefix_len_);
}

bool operator==(const Cidr& a, const Cidr& b) {
  return a.family_ == b.family_ && a.prefix_len_ == b.prefix_len_ &&
         std::memcmp(a.bytes_, b.bytes_, sizeof a.bytes_) == 0;
}

}  // namespace hubdns
