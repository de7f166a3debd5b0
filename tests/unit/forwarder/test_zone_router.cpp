// Unit tests for forwarder/zone_router: longest suffix on label boundaries, case folding.
#include <doctest/doctest.h>

#include <string>

#include "forwarder/zone_router.h"

using hubdns::ForwardRule;
using hubdns::ZoneRouter;
using hubdns::zone_to_wire;

namespace {
size_t route(const ZoneRouter& router, const std::string& name) {
  std::string wire = zone_to_wire(name);
  return router.route(reinterpret_cast<const uint8_t*>(wire.data()), wire.size());
}
}  // namespace

TEST_CASE("longest matching zone wins, on label boundaries") {
  std::vector<ForwardRule> rules(4);
  rules[0].zone = ".";
  rules[1].zone = "contoso.com.";
  rules[2].zone = "corp.contoso.com.";
  rules[3].zone = "az-spoke-1-internal.net.";
  ZoneRouter router(rules);
  CHECK(route(router, "www.example.com") == 0);
  CHECK(route(router, "contoso.com") == 1);
  CHECK(route(router, "www.contoso.com") == 1);
  CHECK(route(router, "a.b.corp.contoso.com") == 2);
  CHECK(route(router, "corp.contoso.com") == 2);
  CHECK(route(router, "notcorp.contoso.com") == 1);
  CHECK(route(router, "vm1.az-spoke-1-internal.net") == 3);
  CHECK(route(router, "xaz-spoke-1-internal.net") == 0);
  CHECK(route(router, ".") == 0);
}

TEST_CASE("matching is case-insensitive because the query name is lower-cased first") {
  std::vector<ForwardRule> rules(1);
  rules[0].zone = "Corp.Contoso.COM.";
  ZoneRouter router(rules);
  CHECK(route(router, "HOST.corp.contoso.com") == 0);
  CHECK(route(router, "example.com") == ZoneRouter::kNoRule);
}
