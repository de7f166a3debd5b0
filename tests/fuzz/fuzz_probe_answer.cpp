// libFuzzer target: the health checks' reading of upstream and self-check answers
// (probe/probe_query.h) over arbitrary bytes, as an upstream or a spoofer could send them.
#include <cstdint>
#include <vector>

#include "probe/probe_query.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<uint8_t> soa_query = hubdns::build_dns_query(0x1234, "example.com.", 6, true);
  static const std::vector<uint8_t> self_check_query =
      hubdns::build_dns_query(0x4321, "_selfcheck.hubdns.invalid.", 16, false);
  (void)hubdns::match_answer(soa_query.data(), soa_query.size(), data, size);
  (void)hubdns::match_answer(self_check_query.data(), self_check_query.size(), data, size);
  (void)hubdns::first_txt_string(data, size);
  return 0;
}
