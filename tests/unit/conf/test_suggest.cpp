// "Did you mean ...?" suggestions for misspelt keys and values.
#include <doctest/doctest.h>

#include <string_view>

#include "conf/suggest.h"

namespace hubdns {
namespace {

constexpr std::string_view kServerKeys[] = {"listen", "workers", "allow", "query_timeout",
                                            "edns_udp_size", "max_inflight"};

TEST_CASE("edit_distance counts insertions, deletions, substitutions and swaps") {
  CHECK(edit_distance("", "") == 0);
  CHECK(edit_distance("abc", "") == 3);
  CHECK(edit_distance("", "abc") == 3);
  CHECK(edit_distance("listn", "listen") == 1);
  CHECK(edit_distance("listen", "listn") == 1);
  CHECK(edit_distance("tpye", "type") == 1);
  CHECK(edit_distance("Listen", "listen") == 0);
  CHECK(edit_distance("kitten", "sitting") == 3);
  CHECK(edit_distance("round-robin", "round_robin") == 1);
}

TEST_CASE("nearest_name suggests only plausible typos") {
  CHECK(nearest_name("listn", kServerKeys) == "listen");
  CHECK(nearest_name("worker", kServerKeys) == "workers");
  CHECK(nearest_name("alow", kServerKeys) == "allow");
  CHECK(nearest_name("query_timout", kServerKeys) == "query_timeout");
  CHECK(nearest_name("edns_size", kServerKeys) == "");  // 4 edits
  CHECK(nearest_name("port", kServerKeys) == "");
  CHECK(nearest_name("", kServerKeys) == "");
  CHECK(nearest_name("x", std::span<const std::string_view>{}) == "");
}

}  // namespace
}  // namespace hubdns
