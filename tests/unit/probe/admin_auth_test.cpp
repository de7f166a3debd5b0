// Unit tests for who may call the admin endpoints (probe/admin_auth.h).
#include <doctest/doctest.h>

#include <string>

#include "probe/admin_auth.h"

using namespace hubdns;

namespace {

SocketAddress address(const char* text) {
  std::optional<SocketAddress> parsed = SocketAddress::parse(text, 40000);
  REQUIRE(parsed.has_value());
  return *parsed;
}

}  // namespace

TEST_CASE("constant-time compare is a plain equality") {
  CHECK(constant_time_equal("", ""));
  CHECK(constant_time_equal("abc", "abc"));
  CHECK_FALSE(constant_time_equal("abc", "abd"));
  CHECK_FALSE(constant_time_equal("abc", "ab"));
  CHECK_FALSE(constant_time_equal("abc", "xbc"));
}

TEST_CASE("loopback peers are allowed without a token, whatever the token") {
  for (const char* peer : {"127.0.0.1", "127.0.0.2", "127.255.255.254", "::1", "::ffff:127.0.0.1"}) {
    CAPTURE(peer);
    CHECK(admin_request_allowed(address(peer), nullptr, ""));
    CHECK(admin_request_allowed(address(peer), nullptr, "token"));
    std::string wrong = "Bearer nope";
    CHECK(admin_request_allowed(address(peer), &wrong, "token"));
  }
}

TEST_CASE("other peers need the bearer token") {
  const std::string token = "s3cret-token";
  for (const char* peer : {"10.0.0.4", "192.0.2.1", "128.0.0.1", "::2", "2001:db8::1", "::ffff:10.0.0.1", "0.0.0.0"}) {
    CAPTURE(peer);
    const SocketAddress from = address(peer);
    CHECK_FALSE(admin_request_allowed(from, nullptr, token));
    std::string good = "Bearer s3cret-token";
    CHECK(admin_request_allowed(from, &good, token));
    std::string lower = "bearer s3cret-token";
    CHECK(admin_request_allowed(from, &lower, token));
    for (std::string bad : {"Bearer s3cret-toke", "Bearer s3cret-token2", "Basic czNjcmV0LXRva2Vu", "Bearer",
                            "Bearer ", "s3cret-token", "Bearers3cret-token", "Token s3cret-token"}) {
      CAPTURE(bad);
      CHECK_FALSE(admin_request_allowed(from, &bad, token));
    }
  }
}

TEST_CASE("no token configured: loopback only, an empty bearer proves nothing") {
  const SocketAddress from = address("10.0.0.4");
  std::string empty = "Bearer ";
  CHECK_FALSE(admin_request_allowed(from, &empty, ""));
  std::string anything = "Bearer x";
  CHECK_FALSE(admin_request_allowed(from, &anything, ""));
  CHECK_FALSE(admin_request_allowed(from, nullptr, ""));
}
