// Socket addresses and CIDR prefixes.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <net/if.h>

#include <cstring>
#include <string>

#include "common/net/address.h"

namespace hubdns {
namespace {

SocketAddress address(std::string_view text, uint16_t default_port = 53) {
  std::string error;
  const std::optional<SocketAddress> a = SocketAddress::parse(text, default_port, &error);
  INFO("text=", std::string(text), " error=", error);
  REQUIRE(a.has_value());
  return *a;
}

std::string address_error(std::string_view text, uint16_t default_port = 53) {
  std::string error;
  const std::optional<SocketAddress> a = SocketAddress::parse(text, default_port, &error);
  INFO("text=", std::string(text));
  CHECK_FALSE(a.has_value());
  CHECK_FALSE(error.empty());
  return error;
}

Cidr cidr(std::string_view text) {
  std::string error;
  const std::optional<Cidr> c = Cidr::parse(text, &error);
  INFO("text=", std::string(text), " error=", error);
  REQUIRE(c.has_value());
  return *c;
}

std::string cidr_error(std::string_view text) {
  std::string error;
  const std::optional<Cidr> c = Cidr::parse(text, &error);
  INFO("text=", std::string(text));
  CHECK_FALSE(c.has_value());
  CHECK_FALSE(error.empty());
  return error;
}

TEST_CASE("SocketAddress::parse: the accepted forms") {
  const SocketAddress v4 = address("192.0.2.1");
  CHECK(v4.is_ipv4());
  CHECK(v4.port() == 53);
  CHECK(v4.to_string() == "192.0.2.1:53");
  CHECK(v4.ip_string() == "192.0.2.1");
  CHECK(v4.sockaddr_len() == sizeof(sockaddr_in));

  CHECK(address("192.0.2.1:5300").port() == 5300);
  CHECK(address("192.0.2.1:0").port() == 0);
  CHECK(address("192.0.2.1:65535").port() == 65535);
  CHECK(address("192.0.2.1", 8053).port() == 8053);

  const SocketAddress v6 = address("[2001:db8::1]:5353");
  CHECK(v6.is_ipv6());
  CHECK(v6.port() == 5353);
  CHECK(v6.to_string() == "[2001:db8::1]:5353");
  CHECK(v6.ip_string() == "2001:db8::1");
  CHECK(v6.sockaddr_len() == sizeof(sockaddr_in6));

  CHECK(address("2001:db8::1").port() == 53);
  CHECK(address("[2001:db8::1]").port() == 53);
  CHECK(address("::").is_unspecified());
  CHECK(address("::1").to_string() == "[::1]:53");
  CHECK(address("::ffff:192.0.2.1").is_ipv6());
  // A bare IPv6 address ending in what looks like a port is still an address.
  CHECK(address("2001:db8::1:53").port() == 53);
}

TEST_CASE("SocketAddress::parse: refusals") {
  CHECK(address_error("").find("empty") != std::string::npos);
  CHECK(address_error("dns.google").find("host names are not resolved") != std::string::npos);
  CHECK(address_error("localhost:53").find("host names are not resolved") != std::string::npos);
  CHECK(address_error("192.0.2.256").find("not an IPv4 or IPv6 address") != std::string::npos);
  CHECK(address_error("192.0.2").find("not an IPv4 or IPv6 address") != std::string::npos);
  CHECK(address_error("192.0.2.1:").find("missing port") != std::string::npos);
  CHECK(address_error("192.0.2.1:65536").find("out of range") != std::string::npos);
  CHECK(address_error("192.0.2.1:99999999999").find("out of range") != std::string::npos);
  CHECK(address_error("192.0.2.1:-1").find("not a number") != std::string::npos);
  CHECK(address_error("192.0.2.1:+53").find("not a number") != std::string::npos);
  CHECK(address_error("192.0.2.1:5 3").find("not a number") != std::string::npos);
  CHECK(address_error("[192.0.2.1]:53").find("only for IPv6") != std::string::npos);
  CHECK(address_error("[2001:db8::1").find("missing ']'") != std::string::npos);
  CHECK(address_error("[2001:db8::1]53").find("expected ':PORT'") != std::string::npos);
  CHECK(address_error("[2001:db8::1]:").find("missing port") != std::string::npos);
  CHECK(address_error("2001:db8::g").find("not an IPv6 address") != std::string::npos);
  CHECK(address_error(" 192.0.2.1").find("not an IPv4") != std::string::npos);
  CHECK(address_error("fe80::1%").find("empty interface") != std::string::npos);
  CHECK(address_error("fe80::1%no-such-interface0").find("unknown network interface") !=
        std::string::npos);
}

TEST_CASE("SocketAddress::parse: IPv6 zones") {
  const SocketAddress numeric = address("[fe80::1%7]:53");
  sockaddr_in6 sin6{};
  std::memcpy(&sin6, numeric.sockaddr_ptr(), sizeof sin6);
  CHECK(sin6.sin6_scope_id == 7);
  CHECK(numeric == address("fe80::1%7"));
  CHECK_FALSE(numeric == address("fe80::1"));

  const unsigned loopback_index = if_nametoindex("lo");
  if (loopback_index != 0) {
    const SocketAddress named = address("fe80::1%lo");
    std::memcpy(&sin6, named.sockaddr_ptr(), sizeof sin6);
    CHECK(sin6.sin6_scope_id == loopback_index);
    CHECK(named.to_string() == "[fe80::1%lo]:53");
  }
}

TEST_CASE("SocketAddress::parse_with_port insists on a port") {
  std::string error;
  CHECK_FALSE(SocketAddress::parse_with_port("127.0.0.1", &error).has_value());
  CHECK(error.find("missing port") != std::string::npos);
  CHECK_FALSE(SocketAddress::parse_with_port("::1", &error).has_value());
  CHECK(error.find("[IPv6]:PORT") != std::string::npos);
  CHECK(SocketAddress::parse_with_port("127.0.0.1:8054")->port() == 8054);
  CHECK(SocketAddress::parse_with_port("[::1]:8054")->port() == 8054);
}

TEST_CASE("SocketAddress: predicates, ports and comparison") {
  CHECK(address("127.0.0.1").is_loopback());
  CHECK(address("127.255.0.9").is_loopback());
  CHECK(address("::1").is_loopback());
  CHECK(address("::ffff:127.0.0.1").is_loopback());
  CHECK_FALSE(address("128.0.0.1").is_loopback());
  CHECK_FALSE(address("::2").is_loopback());
  CHECK(address("0.0.0.0").is_unspecified());
  CHECK_FALSE(address("0.0.0.1").is_unspecified());
  CHECK_FALSE(SocketAddress{}.is_loopback());
  CHECK(SocketAddress{}.port() == 0);
  CHECK(SocketAddress{}.sockaddr_len() == 0);

  SocketAddress a = address("192.0.2.1:53");
  a.set_port(5353);
  CHECK(a.port() == 5353);
  CHECK(a == address("192.0.2.1:5353"));
  CHECK_FALSE(a == address("192.0.2.1:53"));
  CHECK_FALSE(a == address("192.0.2.2:5353"));
  SocketAddress b = address("[2001:db8::1]:53");
  b.set_port(8053);
  CHECK(b == address("[2001:db8::1]:8053"));
  CHECK_FALSE(address("0.0.0.0") == address("::"));

  const SocketAddress copy = SocketAddress::from_sockaddr(b.sockaddr_ptr());
  CHECK(copy == b);
  CHECK(SocketAddress::from_sockaddr(nullptr).family() == AF_UNSPEC);
}

TEST_CASE("Cidr::parse") {
  CHECK(cidr("10.0.0.0/8").to_string() == "10.0.0.0/8");
  CHECK(cidr("fc00::/7").to_string() == "fc00::/7");
  CHECK(cidr("0.0.0.0/0").prefix_len() == 0);
  CHECK(cidr("::/0").family() == AF_INET6);
  CHECK(cidr("192.0.2.7").to_string() == "192.0.2.7/32");
  CHECK(cidr("2001:db8::7").to_string() == "2001:db8::7/128");
  CHECK(cidr("10.0.0.0/8") == cidr("10.0.0.0/8"));
  CHECK_FALSE(cidr("10.0.0.0/8") == cidr("10.0.0.0/9"));

  CHECK(cidr_error("").find("empty") != std::string::npos);
  CHECK(cidr_error("10.0.0.0/").find("missing prefix length") != std::string::npos);
  CHECK(cidr_error("10.0.0.0/33").find("from 0 to 32") != std::string::npos);
  CHECK(cidr_error("2001:db8::/129").find("from 0 to 128") != std::string::npos);
  CHECK(cidr_error("10.0.0.0/-1").find("from 0 to 32") != std::string::npos);
  CHECK(cidr_error("10.0.0.0/8/8").find("from 0 to 32") != std::string::npos);
  CHECK(cidr_error("corp/8").find("not an IP address") != std::string::npos);
  CHECK(cidr_error("10.0.0/8").find("not an IPv4 or IPv6 address") != std::string::npos);
  CHECK(cidr_error("fe80::%eth0/64").find("zone") != std::string::npos);
  const std::string host_bits = cidr_error("10.1.2.3/8");
  CHECK(host_bits.find("bits set beyond the /8 prefix") != std::string::npos);
  CHECK(host_bits.find("did you mean '10.0.0.0/8'") != std::string::npos);
  CHECK(cidr_error("172.16.0.1/12").find("'172.16.0.0/12'") != std::string::npos);
  CHECK(cidr_error("fd00::1/7").find("'fc00::/7'") != std::string::npos);
}

TEST_CASE("Cidr::contains, including IPv4-mapped IPv6 clients") {
  const Cidr ten = cidr("10.0.0.0/8");
  CHECK(ten.contains(address("10.1.2.3")));
  CHECK(ten.contains(address("10.255.255.255")));
  CHECK_FALSE(ten.contains(address("11.0.0.0")));
  CHECK_FALSE(ten.contains(address("9.255.255.255")));
  // A dual-stack socket reports an IPv4 client as ::ffff:a.b.c.d.
  CHECK(ten.contains(address("::ffff:10.1.2.3")));
  CHECK_FALSE(ten.contains(address("::ffff:11.1.2.3")));
  // Not mapped: an ordinary IPv6 address whose last 32 bits look like 10.x.
  CHECK_FALSE(ten.contains(address("::a01:203")));
  CHECK_FALSE(ten.contains(address("2001:db8::a01:203")));

  const Cidr twelve = cidr("172.16.0.0/12");
  CHECK(twelve.contains(address("172.31.255.255")));
  CHECK_FALSE(twelve.contains(address("172.32.0.0")));
  CHECK(twelve.contains(address("::ffff:172.20.0.1")));

  const Cidr ula = cidr("fc00::/7");
  CHECK(ula.contains(address("fd12:3456::1")));
  CHECK(ula.contains(address("fc00::")));
  CHECK_FALSE(ula.contains(address("fe00::")));
  CHECK_FALSE(ula.contains(address("10.0.0.1")));

  // IPv6 prefixes see an IPv4 client in its mapped form, like a dual-stack socket would.
  CHECK(cidr("::ffff:0:0/96").contains(address("192.0.2.1")));
  CHECK(cidr("::/0").contains(address("192.0.2.1")));
  CHECK_FALSE(cidr("2001:db8::/32").contains(address("192.0.2.1")));

  CHECK(cidr("0.0.0.0/0").contains(address("203.0.113.9")));
  CHECK(cidr("0.0.0.0/0").contains(address("::ffff:203.0.113.9")));
  CHECK_FALSE(cidr("0.0.0.0/0").contains(address("2001:db8::1")));

  CHECK(cidr("192.0.2.7").contains(address("192.0.2.7:1234")));
  CHECK_FALSE(cidr("192.0.2.7").contains(address("192.0.2.6")));
  CHECK(cidr("::1/128").contains(address("::1")));
  CHECK_FALSE(cidr("::1/128").contains(address("127.0.0.1")));
  CHECK(cidr("127.0.0.0/8").contains(address("::ffff:127.0.0.1")));

  CHECK_FALSE(ten.contains(static_cast<const sockaddr*>(nullptr)));
  CHECK_FALSE(Cidr{}.contains(address("10.0.0.1")));
  CHECK_FALSE(ten.contains(SocketAddress{}));
}

}  // namespace
}  // namespace hubdns
