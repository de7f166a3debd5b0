// Wire-format analysis of an upstream answer for the packet cache: whether it may be cached
// at all (RFC 2308 negative answers need an SOA; SERVFAIL, TC, TSIG never), the TTLs that
// decide how long (answer and authority records, the SOA's TTL and MINIMUM), and where each
// record's TTL field sits so that a cache hit can age them with a few 32-bit writes.
// Pure functions over untrusted bytes: no allocation, no I/O, any thread. Compression
// pointers are skipped, never followed. Fuzzed by tests/fuzz/fuzz_cache_answer.cpp.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/dns/message.h"

namespace hubdns::dns {

constexpr uint16_t kTypeSoa = 6;
constexpr uint16_t kTypeSig = 24;
constexpr uint16_t kTypeTsig = 250;

// RFC 2181 section 8: a TTL with the top bit set is read as zero.
constexpr uint32_t kMaxTtlSeconds = 0x7FFFFFFF;
inline uint32_t sanitize_ttl(uint32_t ttl) { return ttl > kMaxTtlSeconds ? 0 : ttl; }


// Why an answer was not cached (also the label of the not-cacheable counter).
enum class CacheRejection : uint8_t {
  none = 0,
  malformed,             // does not parse record by record to exactly its last byte
  not_a_response,        // QR clear, or an opcode other than QUERY
  question_mismatch,     // not exactly one question, or not the question asked
  truncated,             // TC set: the full answer comes over TCP
  uncacheable_rcode,     // anything but NOERROR and NXDOMAIN (incl. extended rcodes in OPT)
  signed_transaction,    // TSIG or SIG(0): bound to one transaction
  negative_without_soa,  // NXDOMAIN or NODATA without an SOA to time it (RFC 2308 section 5)
  zero_ttl,              // TTL 0: the owner asked for it not to be cached (RFC 1035 3.2.1)
  opt_mismatch,          // an OPT record in the answer to a client that sent no EDNS
  disabled,              // the cache is off (not counted)
  out_of_memory,
};
constexpr size_t kCacheRejectionCount = static_cast<size_t>(CacheRejection::out_of_memory) + 1;
const char* to_string(CacheRejection reason);

enum class Section : uint8_t { answer, authority, additional };
enum class AnswerKind : uint8_t { positive, nxdomain, nodata };

// A record whose TTL ages in the cache: every record but OPT, whose "TTL" holds EDNS flags.
struct TtlField {
  uint16_t offset = 0;  // of the 32-bit TTL field in the message
  uint16_t type = 0;
  Section section = Section::answer;
};

struct AnswerShape {
  AnswerKind kind = AnswerKind::positive;
  uint8_t rcode = 0;
  uint32_t min_ttl = kMaxTtlSeconds;  // over the answer and authority records (sanitized)
  bool has_soa = false;               // the first SOA of the authority section:
  uint32_t soa_ttl = 0;               //   its TTL
  uint32_t soa_minimum = 0;           //   and its MINIMUM field (sanitized like a TTL)
  bool has_opt = false;
  size_t ttl_field_count = 0;  // records with an aging TTL; may exceed the capacity passed
};

// Walks an answer once. Returns CacheRejection::none when it is a well-formed NOERROR or
// NXDOMAIN response to one question whose shape can be cached (negative answers carry an
// SOA), filling *shape and the first fields_capacity TTL fields in message order (fields
// may be null when fields_capacity is 0). Does not look at TTL values beyond reporting them
// and does not compare the question with anything: see PacketCache::insert.
CacheRejection analyze_answer(const uint8_t* msg, size_t length, AnswerShape* shape,
                              TtlField* fields, size_t fields_capacity);

}  // namespace hubdns::dns
