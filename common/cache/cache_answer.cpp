#include "common/cache/cache_answer.h"

#include "common/dns/message.h"

namespace hubdns::dns {

namespace {

// SOA RDATA: MNAME, RNAME, then SERIAL REFRESH RETRY EXPIRE MINIMUM (20 octets).
bool read_soa_minimum(const uint8_t* msg, size_t rdata, size_t rdata_end, uint32_t* minimum) {
  size_t pos = skip_name(msg, rdata_end, rdata);
  if (pos == 0) return false;
  pos = skip_name(msg, rdata_end, pos);
  if (pos == 0 || pos + 20 != rdata_end) return false;
  *minimum = sanitize_ttl(read_u32(msg + rdata_end - 4));
  return true;
}

}  // namespace

const char* to_string(CacheRejection reason) {
  switch (reason) {
    case CacheRejection::none: return "none";
    case CacheRejection::malformed: return "malformed";
    case CacheRejection::not_a_response: return "not_a_response";
    case CacheRejection::question_mismatch: return "question_mismatch";
    case CacheRejection::truncated: return "truncated";
    case CacheRejection::uncacheable_rcode: return "rcode";
    case CacheRejection::signed_transaction: return "signed";
    case CacheRejection::negative_without_soa: return "negative_without_soa";
    case CacheRejection::zero_ttl: return "zero_ttl";
    case CacheRejection::opt_mismatch: return "opt_mismatch";
    case CacheRejection::disabled: return "disabled";
    case CacheRejection::out_of_memory: return "out_of_memory";
  }
  return "unknown";
}

CacheRejection analyze_answer(const uint8_t* msg, size_t length, AnswerShape* shape,
                              TtlField* fields, size_t fields_capacity) {
  *shape = AnswerShape{};
  if (length < kHeaderSize || length > kMaxMessageSize) return CacheRejection::malformed;
  const uint16_t flags = message_flags(msg);
  if ((flags & kFlagQr) == 0 || ((flags >> 11) & 0x0F) != 0) return CacheRejection::not_a_response;
  if (flags & kFlagTc) return CacheRejection::truncated;
  const uint8_t rcode = message_rcode(msg);
  if (rcode != kNoError && rcode != kNxDomain) return CacheRejection::uncacheable_rcode;
  if (read_u16(msg + 4) != 1) return CacheRejection::question_mismatch;
  const size_t answer_count = read_u16(msg + 6);
  const size_t authority_count = read_u16(msg + 8);
  const size_t total_count = answer_count + authority_count + read_u16(msg + 10);

  size_t pos = skip_name(msg, length, kHeaderSize);
  if (pos == 0 || pos + 4 > length) return CacheRejection::malformed;
  pos += 4;

  for (size_t i = 0; i < total_count; ++i) {
    const Section section = i < answer_count                     ? Section::answer
                            : i < answer_count + authority_count ? Section::authority
                                                                 : Section::additional;
    const size_t owner = pos;
    pos = skip_name(msg, length, pos);
    if (pos == 0 || pos + 10 > length) return CacheRejection::malformed;
    const uint16_t type = read_u16(msg + pos);
    const size_t ttl_offset = pos + 4;
    const size_t rdata = pos + 10;
    const size_t rdata_end = rdata + read_u16(msg + pos + 8);
    if (rdata_end > length) return CacheRejection::malformed;

    if (type == kTypeOpt) {
      // RFC 6891: at most one, in the additional section, owned by the root.
      if (section != Section::additional || shape->has_opt || pos != owner + 1) {
        return CacheRejection::malformed;
      }
      shape->has_opt = true;
      // The upper 8 bits of a 12-bit rcode (BADVERS, BADCOOKIE...): never cached.
      if (msg[ttl_offset] != 0) return CacheRejection::uncacheable_rcode;
    } else {
      if (type == kTypeTsig || (type == kTypeSig && section == Section::additional)) {
        return CacheRejection::signed_transaction;
      }
      const uint32_t ttl = sanitize_ttl(read_u32(msg + ttl_offset));
      if (section != Section::additional && ttl < shape->min_ttl) shape->min_ttl = ttl;
      if (type == kTypeSoa && section == Section::authority && !shape->has_soa) {
        if (!read_soa_minimum(msg, rdata, rdata_end, &shape->soa_minimum)) {
          return CacheRejection::malformed;
        }
        shape->has_soa = true;
        shape->soa_ttl = ttl;
      }
      if (shape->ttl_field_count < fields_capacity) {
        fields[shape->ttl_field_count] = TtlField{static_cast<uint16_t>(ttl_offset), type, section};
      }
      ++shape->ttl_field_count;
    }
    pos = rdata_end;
  }
  if (pos != length) return CacheRejection::malformed;  // trailing bytes: not what we think

  shape->rcode = rcode;
  shape->kind = rcode == kNxDomain  ? AnswerKind::nxdomain
                : answer_count == 0 ? AnswerKind::nodata
                                    : AnswerKind::positive;
  if (shape->kind != AnswerKind::positive && !shape->has_soa) {
    return CacheRejection::negative_without_soa;
  }
  return CacheRejection::none;
}

}  // namespace hubdns::dns
