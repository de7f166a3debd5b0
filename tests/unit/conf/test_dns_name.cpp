// Zone and probe names as written in configuration (common/dns/name.h, used by conf/).
#include <doctest/doctest.h>

#include <string>

#include "common/dns/name.h"

namespace hubdns {
namespace {

std::string normalized(std::string_view in) {
  std::string out;
  std::string error;
  INFO("in=", std::string(in));
  REQUIRE(normalize_dns_name(in, &out, &error));
  CHECK(error.empty());
  return out;
}

std::string refused(std::string_view in) {
  std::string out = "untouched";
  std::string error;
  INFO("in=", std::string(in));
  CHECK_FALSE(normalize_dns_name(in, &out, &error));
  CHECK(out == "untouched");
  CHECK_FALSE(error.empty());
  return error;
}

TEST_CASE("normalize_dns_name: lower case, absolute") {
  CHECK(normalized(".") == ".");
  CHECK(normalized("com") == "com.");
  CHECK(normalized("Corp.Contoso.COM") == "corp.contoso.com.");
  CHECK(normalized("corp.contoso.com.") == "corp.contoso.com.");
  CHECK(normalized("az-spoke-1-internal.net") == "az-spoke-1-internal.net.");
  CHECK(normalized("_msdcs.corp.contoso.com") == "_msdcs.corp.contoso.com.");
  CHECK(normalized("1.10.in-addr.arpa") == "1.10.in-addr.arpa.");
}

TEST_CASE("normalize_dns_name: label and name lengths") {
  const std::string label63(63, 'a');
  CHECK(normalized(label63 + ".com") == label63 + ".com.");
  CHECK(refused(std::string(64, 'a') + ".com").find("longer than 63") != std::string::npos);

  // Four 63-octet labels and one of 61: 4*64 + 62 + 1 = 319 octets: too long. Three of 63
  // and one of 61: 3*64 + 62 + 1 = 255 octets: the longest allowed.
  const std::string label61(61, 'b');
  const std::string longest = label63 + "." + label63 + "." + label63 + "." + label61;
  CHECK(normalized(longest) == longest + ".");
  CHECK(refused(longest + "x").find("longer than 255") != std::string::npos);
  CHECK(refused("a." + longest).find("longer than 255") != std::string::npos);
}

TEST_CASE("normalize_dns_name: refusals") {
  CHECK(refused("").find("empty domain name") != std::string::npos);
  CHECK(refused("..").find("empty label") != std::string::npos);
  CHECK(refused(".com").find("empty label") != std::string::npos);
  CHECK(refused("a..com").find("empty label") != std::string::npos);
  CHECK(refused("corp.contoso.com..").find("empty label") != std::string::npos);
  CHECK(refused("corp contoso").find("character '\\032' is not allowed") != std::string::npos);
  CHECK(refused("*.contoso.com").find("'*'") != std::string::npos);
  CHECK(refused("contoso.com/").find("'/'") != std::string::npos);
  CHECK(refused("caf\xc3\xa9.fr").find("not allowed") != std::string::npos);
  CHECK(refused("a\\.b").find("'\\'") != std::string::npos);
}

TEST_CASE("normalize_dns_name: null outputs are allowed") {
  CHECK(normalize_dns_name("example.com", nullptr, nullptr));
  CHECK_FALSE(normalize_dns_name("", nullptr, nullptr));
}

}  // namespace
}  // namespace hubdns
