// libFuzzer target: arbitrary bytes as an upstream's answer, analysed (common/cache/
// cache_answer) and offered to a PacketCache as the answer to the question they carry,
// with and without EDNS, then looked up as a worker would (another ID and qname case, later,
// stale) and flushed. Checks the cache's promises on every stored answer: the output is as
// long as the input, differs only in ID, qname case and TTL fields, and no TTL is above the
// one received minus the time spent in the cache; stale answers carry stale_answer_ttl.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/cache/cache_answer.h"
#include "common/cache/packet_cache.h"
#include "common/dns/message.h"

namespace {

using namespace hubdns;
using namespace hubdns::dns;

#define FUZZ_CHECK(condition)                                                        \
  do {                                                                               \
    if (!(condition)) {                                                              \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                                  \
    }                                                                                \
  } while (0)

constexpr uint32_t kStaleTtl = 30;
constexpr uint64_t kNow = 1'000'000'000;

uint8_t flip_case(uint8_t c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return static_cast<uint8_t>(c ^ 0x20);
  return c;
}

// The client's query for the answer's question: its RD, CD and AD bits, the name at
// offset 12 (when it is a plain name), and an OPT when `edns`.
bool make_query(const uint8_t* answer, size_t size, bool edns, bool dnssec_ok, std::vector<uint8_t>* query,
                QueryInfo* info) {
  if (size < kHeaderSize) return false;
  size_t pos = kHeaderSize;
  while (pos < size && answer[pos] != 0 && answer[pos] < 64) pos += 1u + answer[pos];
  if (pos >= size || answer[pos] != 0 || pos + 5 > size) return false;
  const size_t question_end = pos + 5;
  query->assign(answer, answer + question_end);
  write_u16(query->data(), 0xABCD);
  write_u16(query->data() + 2, static_cast<uint16_t>(message_flags(answer) & (kFlagRd | kFlagCd | kFlagAd)));
  write_u16(query->data() + 4, 1);
  write_u16(query->data() + 6, 0);
  write_u16(query->data() + 8, 0);
  write_u16(query->data() + 10, 0);
  if (edns) {
    const uint8_t opt[11] = {0, 0, 41, 0x10, 0x00, 0, 0, static_cast<uint8_t>(dnssec_ok ? 0x80 : 0), 0, 0, 0};
    query->insert(query->end(), opt, opt + sizeof opt);
    write_u16(query->data() + 10, 1);
  }
  return parse_query(query->data(), query->size(), info) == QueryCheck::ok;
}

// Checks a hit against the answer stored: same length, same bytes but for the ID, the
// qname's case and the TTL fields; TTLs at most the received ones minus `age` seconds (or
// exactly kStaleTtl when stale).
void check_hit(const uint8_t* answer, size_t size, const std::vector<uint8_t>& query, const QueryInfo& info,
               const TtlField* fields, size_t field_count, const uint8_t* out, size_t out_length,
               uint32_t age, bool stale) {
  FUZZ_CHECK(out_length == size);
  FUZZ_CHECK(message_id(out) == info.id);
  FUZZ_CHECK(std::memcmp(out + kHeaderSize, query.data() + kHeaderSize, info.qname_length) == 0);
  std::vector<bool> is_ttl(size, false);
  for (size_t i = 0; i < field_count; ++i) {
    const size_t offset = fields[i].offset;
    FUZZ_CHECK(offset + 4 <= size);
    for (size_t b = 0; b < 4; ++b) is_ttl[offset + b] = true;
    const uint32_t received = sanitize_ttl(read_u32(answer + offset));
    const uint32_t served = read_u32(out + offset);
    if (stale) {
      FUZZ_CHECK(served == kStaleTtl);
    } else {
      FUZZ_CHECK(served <= (received > age ? received - age : 0));
    }
  }
  for (size_t i = 2; i < size; ++i) {
    if (is_ttl[i] || (i >= kHeaderSize && i < kHeaderSize + info.qname_length)) continue;
    FUZZ_CHECK(out[i] == answer[i]);  // OPT's TTL field (EDNS flags) included
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > kMaxMessageSize) return 0;
  static std::vector<TtlField> fields(kMaxMessageSize / 11 + 1);
  static std::vector<uint8_t> out(kMaxMessageSize);

  AnswerShape shape;
  const CacheRejection analysis = analyze_answer(data, size, &shape, fields.data(), fields.size());
  if (analysis == CacheRejection::none) {
    FUZZ_CHECK(shape.ttl_field_count <= fields.size());
    for (size_t i = 0; i < shape.ttl_field_count; ++i) FUZZ_CHECK(fields[i].offset + 4u <= size);
  }

  CacheConfig config;
  config.max_entries = 4;
  config.min_ttl = Duration{0};
  config.max_ttl = Duration{86400 * 1000};
  config.max_negative_ttl = Duration{300 * 1000};
  config.serve_stale = true;
  config.stale_answer_ttl = Duration{kStaleTtl * 1000};
  config.max_stale = Duration{86400 * 1000};
  PacketCache cache(config, 1);

  const uint32_t age = size > 0 ? data[size - 1] : 0;  // seconds between insert and the later lookup
  for (int variant = 0; variant < 3; ++variant) {
    std::vector<uint8_t> query;
    QueryInfo info;
    if (!make_query(data, size, variant > 0, variant == 2, &query, &info)) break;
    const CacheRejection stored = cache.insert_or_reason(query.data(), info, data, size, kNow);
    if (stored != CacheRejection::none) {
      FUZZ_CHECK(stored != CacheRejection::out_of_memory);
      size_t length = 1;
      FUZZ_CHECK(cache.lookup(query.data(), info, kNow, true, out.data(), out.size(), &length) ==
                 PacketCache::Hit::miss);
      FUZZ_CHECK(length == 0);
      continue;
    }
    FUZZ_CHECK(analysis == CacheRejection::none);
    FUZZ_CHECK(!shape.has_opt || info.has_edns);

    // Another client: another ID, the name in the other case.
    std::vector<uint8_t> other = query;
    write_u16(other.data(), 0x1234);
    for (size_t i = kHeaderSize; i < kHeaderSize + info.qname_length; ++i) other[i] = flip_case(other[i]);
    QueryInfo other_info;
    FUZZ_CHECK(parse_query(other.data(), other.size(), &other_info) == QueryCheck::ok);

    size_t length = 0;
    PacketCache::Hit hit = cache.lookup(other.data(), other_info, kNow, false, out.data(), out.size(), &length);
    FUZZ_CHECK(hit == PacketCache::Hit::fresh);
    check_hit(data, size, other, other_info, fields.data(), shape.ttl_field_count, out.data(), length, 0, false);

    hit = cache.lookup(other.data(), other_info, kNow + uint64_t{age} * 1000 + 999, false, out.data(), out.size(),
                       &length);
    if (hit != PacketCache::Hit::miss) {
      check_hit(data, size, other, other_info, fields.data(), shape.ttl_field_count, out.data(), length, age, false);
    }
    // max_ttl later: expired whatever the TTL (1 s up to max_ttl), and within max_stale
    // (which equals max_ttl here) of every expiry.
    hit = cache.lookup(other.data(), other_info, kNow + 86400ull * 1000, true, out.data(), out.size(), &length);
    FUZZ_CHECK(hit == PacketCache::Hit::stale);
    check_hit(data, size, other, other_info, fields.data(), shape.ttl_field_count, out.data(), length, 0, true);

    // A buffer one byte short: a miss, nothing written past it.
    FUZZ_CHECK(cache.lookup(other.data(), other_info, kNow, false, out.data(), size - 1, &length) ==
               PacketCache::Hit::miss);
  }

  if (size >= kHeaderSize + 1) {
    const size_t name_length = std::min<size_t>(size - kHeaderSize, kMaxNameWireLength);
    cache.flush_name(data + kHeaderSize, name_length);
  }
  cache.flush_all();
  FUZZ_CHECK(cache.stats().entries == 0);
  return 0;
}
