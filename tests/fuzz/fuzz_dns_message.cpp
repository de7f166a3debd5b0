// libFuzzer target: every function of common/dns/message over arbitrary bytes, as a DNS
// worker would call them on a client's query and on an upstream's answer.
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/dns/message.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hubdns::dns;
  if (size > kMaxMessageSize) return 0;
  QueryInfo info;
  QueryCheck check = parse_query(data, size, &info);
  uint8_t out[kHeaderSize + kMaxNameWireLength + 4 + 64];
  if (check != QueryCheck::drop) {
    if (check != QueryCheck::ok) info.question_end = 0;
    build_error_response(data, info, kServFail, ExtendedError::no_reachable_authority, 1232, out, sizeof out);
  }
  {
    // The bytes as an answer that gets an Extended DNS Error added (stale cache answers).
    std::vector<uint8_t> answer(data, data + size);
    answer.resize(size + 16);
    size_t grown = add_extended_error(answer.data(), size, answer.size(), ExtendedError::stale_answer);
    if (grown != size && grown != size + 6) __builtin_trap();
  }
  if (check == QueryCheck::ok) {
    uint8_t lower[kMaxNameWireLength];
    lowercase_wire_name(data + info.qname_offset, info.qname_length, lower);
    // The same bytes as an answer to themselves, then truncated.
    response_matches(data, size, info.id, lower, info.qname_length, info.qtype, info.qclass);
    std::vector<uint8_t> copy(data, data + size);
    copy.resize(size + 32);
    truncate_response(copy.data(), copy.size(), info.question_end, info.has_edns, info.edns_do, 1232);
    uint8_t upstream[kHeaderSize + kMaxNameWireLength + 4 + 64];
    build_upstream_query(data, info, 1232, upstream, sizeof upstream);
    build_txt_answer(data, info, "worker 0", 1232, upstream, sizeof upstream);
  }
  return 0;
}
