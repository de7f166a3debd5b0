#include "common/dns/message.h"

#include <cstring>

namespace hubdns::dns {

namespace {

// Reads an uncompressed name starting at `offset`; returns its wire length or 0 if it is
// malformed, compressed, longer than 255 octets or runs past the end.
size_t uncompressed_name_length(const uint8_t* msg, size_t length, size_t offset) {
  size_t pos = offset;
  while (true) {
    if (pos >= length) return 0;
    uint8_t label_length = msg[pos];
    if (label_length == 0) {
      size_t total = pos + 1 - offset;
      return total <= kMaxNameWireLength ? total : 0;
    }
    if ((label_length & 0xC0) != 0) return 0;  // compression or reserved label types
    pos += 1u + label_length;
    if (pos - offset > kMaxNameWireLength) return 0;
  }
}

uint8_t ascii_lower(uint8_t c) { return (c >= 'A' && c <= 'Z') ? static_cast<uint8_t>(c + 32) : c; }

size_t write_opt_record(uint8_t* out, size_t capacity, uint16_t udp_size, bool dnssec_ok,
                        ExtendedError ede, uint8_t extended_rcode = 0) {
  size_t needed = 11 + (ede != ExtendedError::none ? 6 : 0);
  if (capacity < needed) return 0;
  out[0] = 0;  // root name
  write_u16(out + 1, kTypeOpt);
  write_u16(out + 3, udp_size);
  out[5] = extended_rcode;  // upper 8 bits of a 12-bit rcode (BADVERS = 16)
  out[6] = 0;  // version
  write_u16(out + 7, dnssec_ok ? 0x8000 : 0);
  if (ede == ExtendedError::none) {
    write_u16(out + 9, 0);
    return 11;
  }
  write_u16(out + 9, 6);
  write_u16(out + 11, 15);  // option code: Extended DNS Error
  write_u16(out + 13, 2);   // option length: info-code only, no extra text
  write_u16(out + 15, static_cast<uint16_t>(ede));
  return 17;
}

}  // namespace

size_t skip_name(const uint8_t* msg, size_t length, size_t offset) {
  size_t pos = offset;
  while (true) {
    if (pos >= length) return 0;
    uint8_t label_length = msg[pos];
    if (label_length == 0) return pos + 1;
    if ((label_length & 0xC0) == 0xC0) {
      if (pos + 2 > length) return 0;
      size_t target = static_cast<size_t>(read_u16(msg + pos) & 0x3FFF);
      if (target >= pos) return 0;  // pointers must point backwards
      return pos + 2;
    }
    if ((label_length & 0xC0) != 0) return 0;
    pos += 1u + label_length;
    if (pos - offset > kMaxNameWireLength) return 0;
  }
}

QueryCheck parse_query(const uint8_t* msg, size_t length, QueryInfo* info) {
  *info = QueryInfo{};
  if (length < kHeaderSize) return QueryCheck::drop;
  info->id = read_u16(msg);
  info->flags = read_u16(msg + 2);
  if (info->flags & kFlagQr) return QueryCheck::drop;
  uint16_t opcode = static_cast<uint16_t>((info->flags >> 11) & 0x0F);
  uint16_t qdcount = read_u16(msg + 4);
  uint16_t ancount = read_u16(msg + 6);
  uint16_t nscount = read_u16(msg + 8);
  uint16_t arcount = read_u16(msg + 10);
  if (opcode != 0) return QueryCheck::notimp;
  if (qdcount != 1) return QueryCheck::formerr;

  size_t name_length = uncompressed_name_length(msg, length, kHeaderSize);
  if (name_length == 0) return QueryCheck::formerr;
  size_t pos = kHeaderSize + name_length;
  if (pos + 4 > length) return QueryCheck::formerr;
  info->qname_offset = kHeaderSize;
  info->qname_length = name_length;
  info->qtype = read_u16(msg + pos);
  info->qclass = read_u16(msg + pos + 2);
  pos += 4;
  info->question_end = pos;

  // Answer and authority records are unusual in a query but legal; skip them to reach OPT.
  unsigned records_before_additional = static_cast<unsigned>(ancount) + nscount;
  for (unsigned i = 0; i < records_before_additional + arcount; ++i) {
    size_t record_start = pos;
    pos = skip_name(msg, length, pos);
    if (pos == 0 || pos + 10 > length) return QueryCheck::formerr;
    uint16_t type = read_u16(msg + pos);
    uint16_t rdlength = read_u16(msg + pos + 8);
    size_t rdata = pos + 10;
    if (rdata + rdlength > length) return QueryCheck::formerr;
    if (type == kTypeOpt) {
      // RFC 6891: one OPT, in the additional section, owned by the root name.
      if (i < records_before_additional || info->has_edns) return QueryCheck::formerr;
      if (pos != record_start + 1 || msg[record_start] != 0) return QueryCheck::formerr;
      info->has_edns = true;
      uint16_t udp_size = read_u16(msg + pos + 2);
      info->edns_udp_size = udp_size < kMaxUdpPayloadWithoutEdns
                                ? static_cast<uint16_t>(kMaxUdpPayloadWithoutEdns)
                                : udp_size;
      info->edns_version = msg[pos + 5];
      info->edns_do = (read_u16(msg + pos + 6) & 0x8000) != 0;
    }
    pos = rdata + rdlength;
  }
  if (info->has_edns && info->edns_version != 0) return QueryCheck::badvers;
  return QueryCheck::ok;
}

void lowercase_wire_name(const uint8_t* name, size_t length, uint8_t* dst) {
  // Label length octets are below 64, so lower-casing them is a no-op.
  for (size_t i = 0; i < length; ++i) dst[i] = ascii_lower(name[i]);
}

bool response_matches(const uint8_t* msg, size_t length, uint16_t id, const uint8_t* qname,
                      size_t qname_length, uint16_t qtype, uint16_t qclass) {
  if (length < kHeaderSize) return false;
  if (read_u16(msg) != id) return false;
  if ((read_u16(msg + 2) & kFlagQr) == 0) return false;
  if (read_u16(msg + 4) != 1) return false;
  size_t name_length = uncompressed_name_length(msg, length, kHeaderSize);
  if (name_length != qname_length) return false;
  size_t pos = kHeaderSize + name_length;
  if (pos + 4 > length) return false;
  for (size_t i = 0; i < name_length; ++i) {
    if (ascii_lower(msg[kHeaderSize + i]) != ascii_lower(qname[i])) return false;
  }
  return read_u16(msg + pos) == qtype && read_u16(msg + pos + 2) == qclass;
}

size_t build_error_response(const uint8_t* query, const QueryInfo& info, uint8_t rcode,
                            ExtendedError ede, uint16_t our_udp_size, uint8_t* out,
                            size_t out_capacity) {
  if (out_capacity < kHeaderSize) return 0;
  bool echo_question = info.question_end > 0;
  size_t question_length = echo_question ? info.question_end - kHeaderSize : 0;
  if (kHeaderSize + question_length > out_capacity) return 0;

  // Rcodes above 15 (BADVERS) keep their low 4 bits in the header, the rest in OPT.
  uint16_t flags = static_cast<uint16_t>(kFlagQr | kFlagRa | (info.flags & (kFlagRd | kFlagCd)) |
                                         (info.flags & 0x7800) | (rcode & 0x0F));
  write_u16(out, info.id);
  write_u16(out + 2, flags);
  write_u16(out + 4, echo_question ? 1 : 0);
  write_u16(out + 6, 0);
  write_u16(out + 8, 0);
  write_u16(out + 10, 0);
  size_t pos = kHeaderSize;
  if (echo_question) {
    std::memcpy(out + pos, query + kHeaderSize, question_length);
    pos += question_length;
  }
  if (info.has_edns) {
    size_t opt = write_opt_record(out + pos, out_capacity - pos, our_udp_size, info.edns_do, ede,
                                  static_cast<uint8_t>(rcode >> 4));
    if (opt == 0) return 0;
    pos += opt;
    write_u16(out + 10, 1);
  }
  return pos;
}

size_t build_upstream_query(const uint8_t* query, const QueryInfo& info, uint16_t our_udp_size,
                            uint8_t* out, size_t out_capacity) {
  size_t question_end = info.question_end;
  if (question_end < kHeaderSize || question_end > out_capacity) return 0;
  std::memcpy(out, query, question_end);
  write_u16(out + 2, static_cast<uint16_t>(info.flags & (kFlagRd | kFlagCd | kFlagAd)));
  write_u16(out + 4, 1);
  write_u16(out + 6, 0);
  write_u16(out + 8, 0);
  write_u16(out + 10, 0);
  size_t pos = question_end;
  if (info.has_edns) {
    size_t opt = write_opt_record(out + pos, out_capacity - pos, our_udp_size, info.edns_do,
                                  ExtendedError::none);
    if (opt == 0) return 0;
    pos += opt;
    write_u16(out + 10, 1);
  }
  return pos;
}

size_t build_txt_answer(const uint8_t* query, const QueryInfo& info, const char* text,
                        uint16_t our_udp_size, uint8_t* out, size_t out_capacity) {
  size_t text_length = std::strlen(text);
  if (text_length > 255 || info.question_end < kHeaderSize) return 0;
  QueryInfo without_edns = info;
  without_edns.has_edns = false;
  size_t pos = build_error_response(query, without_edns, kNoError, ExtendedError::none, our_udp_size,
                                    out, out_capacity);
  size_t record_length = 2 + 10 + 1 + text_length;
  if (pos == 0 || pos + record_length > out_capacity) return 0;
  write_u16(out + pos, 0xC000 | kHeaderSize);  // owner: pointer to the question's name
  write_u16(out + pos + 2, 16);                // TXT
  write_u16(out + pos + 4, kClassIn);
  write_u16(out + pos + 6, 0);                 // TTL 0: never cached
  write_u16(out + pos + 8, 0);
  write_u16(out + pos + 10, static_cast<uint16_t>(1 + text_length));
  out[pos + 12] = static_cast<uint8_t>(text_length);
  std::memcpy(out + pos + 13, text, text_length);
  pos += record_length;
  write_u16(out + 2, static_cast<uint16_t>(message_flags(out) | kFlagAa));
  write_u16(out + 6, 1);
  if (info.has_edns) {
    size_t opt = write_opt_record(out + pos, out_capacity - pos, our_udp_size, info.edns_do, ExtendedError::none);
    if (opt == 0) return 0;
    pos += opt;
    write_u16(out + 10, 1);
  }
  return pos;
}

size_t truncate_response(uint8_t* msg, size_t length, size_t question_end, bool client_edns,
                         bool client_do, uint16_t our_udp_size) {
  if (length < kHeaderSize) return length;
  if (question_end > length || question_end < kHeaderSize) question_end = kHeaderSize;
  uint16_t flags = static_cast<uint16_t>(read_u16(msg + 2) | kFlagTc);
  write_u16(msg + 2, flags);
  write_u16(msg + 4, question_end > kHeaderSize ? 1 : 0);
  write_u16(msg + 6, 0);
  write_u16(msg + 8, 0);
  write_u16(msg + 10, 0);
  size_t pos = question_end;
  if (client_edns) {
    size_t opt = write_opt_record(msg + pos, length - pos, our_udp_size, client_do, ExtendedError::none);
    if (opt != 0) {
      pos += opt;
      write_u16(msg + 10, 1);
    }
  }
  return pos;
}

size_t add_extended_error(uint8_t* msg, size_t length, size_t capacity, ExtendedError ede) {
  if (ede == ExtendedError::none || length < kHeaderSize) return length;
  unsigned question_count = read_u16(msg + 4);
  unsigned records_before_additional = static_cast<unsigned>(read_u16(msg + 6)) + read_u16(msg + 8);
  unsigned additional = read_u16(msg + 10);
  size_t pos = kHeaderSize;
  for (unsigned i = 0; i < question_count; ++i) {
    pos = skip_name(msg, length, pos);
    if (pos == 0 || pos + 4 > length) return length;
    pos += 4;
  }
  for (unsigned i = 0; i < records_before_additional + additional; ++i) {
    size_t record_start = pos;
    pos = skip_name(msg, length, pos);
    if (pos == 0 || pos + 10 > length) return length;
    uint16_t type = read_u16(msg + pos);
    uint16_t rdlength = read_u16(msg + pos + 8);
    size_t rdata_end = pos + 10 + rdlength;
    if (rdata_end > length) return length;
    bool is_opt = type == kTypeOpt && i >= records_before_additional && pos == record_start + 1;
    if (is_opt) {
      constexpr size_t kOptionSize = 6;  // code, length, info-code
      if (length + kOptionSize > capacity || rdlength + kOptionSize > 0xFFFF) return length;
      std::memmove(msg + rdata_end + kOptionSize, msg + rdata_end, length - rdata_end);
      write_u16(msg + rdata_end, 15);  // option code: Extended DNS Error
      write_u16(msg + rdata_end + 2, 2);
      write_u16(msg + rdata_end + 4, static_cast<uint16_t>(ede));
      write_u16(msg + pos + 8, static_cast<uint16_t>(rdlength + kOptionSize));
      return length + kOptionSize;
    }
    pos = rdata_end;
  }
  return length;
}

}  // namespace hubdns::dns
