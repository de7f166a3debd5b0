// DNS wire format, the parts the relay needs: reading a query's header, question and EDNS
// OPT record in place, checking that an upstream answer belongs to a query, building
// error answers (SERVFAIL, REFUSED, FORMERR, NOTIMP, with an RFC 8914 Extended DNS Error
// when the client sent EDNS), rewriting IDs and truncating to what a UDP client can take.
// Pure functions over byte buffers: no allocation, no I/O, any thread. Every function
// treats its input as untrusted bytes (fuzzed by tests/fuzz/fuzz_dns_message.cpp).
#pragma once

#include <cstddef>
#include <cstdint>

namespace hubdns::dns {

constexpr size_t kHeaderSize = 12;
constexpr size_t kMaxNameWireLength = 255;
constexpr size_t kMaxUdpPayloadWithoutEdns = 512;
constexpr size_t kMaxMessageSize = 65535;

// Header flag bits (second 16-bit word of the header).
constexpr uint16_t kFlagQr = 0x8000;
constexpr uint16_t kFlagAa = 0x0400;
constexpr uint16_t kFlagTc = 0x0200;
constexpr uint16_t kFlagRd = 0x0100;
constexpr uint16_t kFlagRa = 0x0080;
constexpr uint16_t kFlagAd = 0x0020;
constexpr uint16_t kFlagCd = 0x0010;

enum Rcode : uint8_t {
  kNoError = 0,
  kFormErr = 1,
  kServFail = 2,
  kNxDomain = 3,
  kNotImp = 4,
  kRefused = 5,
  kBadVers = 16,  // extended rcode: needs an OPT record
};

constexpr uint16_t kTypeOpt = 41;
constexpr uint16_t kClassIn = 1;

// RFC 8914 Extended DNS Error codes that hubdns sends.
enum class ExtendedError : uint16_t {
  none = 0xFFFF,
  other = 0,
  stale_answer = 3,
  prohibited = 18,
  not_ready = 14,
  no_reachable_authority = 22,
  network_error = 23,
};

inline uint16_t read_u16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline void write_u16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v & 0xFF);
}

inline uint32_t read_u32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
         (static_cast<uint32_t>(p[2]) << 8) | p[3];
}
inline void write_u32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

// Skips a possibly compressed name (a record's owner, or a name inside RDATA) that must
// end before `length`; returns the offset after it, or 0 if malformed. A pointer ends the
// name and is not followed (skipping only needs the length), and must point backwards
// (RFC 1035 4.1.4), which is what rules out loops.
size_t skip_name(const uint8_t* msg, size_t length, size_t offset);

inline uint16_t message_id(const uint8_t* msg) { return read_u16(msg); }
inline void set_message_id(uint8_t* msg, uint16_t id) { write_u16(msg, id); }
inline uint16_t message_flags(const uint8_t* msg) { return read_u16(msg + 2); }
inline uint8_t message_rcode(const uint8_t* msg) { return static_cast<uint8_t>(msg[3] & 0x0F); }

// What a client's query holds, as offsets into its buffer.
struct QueryInfo {
  uint16_t id = 0;
  uint16_t flags = 0;
  size_t qname_offset = kHeaderSize;
  size_t qname_length = 0;   // wire length including the final zero octet
  uint16_t qtype = 0;
  uint16_t qclass = 0;
  size_t question_end = 0;   // first byte after the question
  bool has_edns = false;
  uint16_t edns_udp_size = 0;  // as sent by the client (values below 512 read as 512)
  bool edns_do = false;
  uint8_t edns_version = 0;
};

enum class QueryCheck {
  ok,
  drop,     // not even a header, or a response: never answered (no reflection)
  formerr,  // header readable, the rest is not a well-formed single-question query
  notimp,   // an opcode other than QUERY
  badvers,  // EDNS version other than 0 (RFC 6891: answer BADVERS)
};

// Reads a client's query. On formerr/notimp/badvers, info->id and info->flags are set so an
// error answer can be built.
QueryCheck parse_query(const uint8_t* msg, size_t length, QueryInfo* info);

// Copies a wire-format name (no compression) to dst with ASCII letters lower-cased.
void lowercase_wire_name(const uint8_t* name, size_t length, uint8_t* dst);

// True if `msg` is a response whose ID is `id` and whose single question equals the given
// one (name compared case-insensitively, type and class exactly).
bool response_matches(const uint8_t* msg, size_t length, uint16_t id, const uint8_t* qname,
                      size_t qname_length, uint16_t qtype, uint16_t qclass);

// Builds an error answer to `query` into out (capacity out_capacity): header with the
// query's ID, RD and CD, QR and RA set, the question echoed, and when the client sent
// EDNS an OPT record (our UDP size) carrying the Extended DNS Error if one is given.
// Returns the length written, or 0 if it does not fit.
size_t build_error_response(const uint8_t* query, const QueryInfo& info, uint8_t rcode,
                            ExtendedError ede, uint16_t our_udp_size, uint8_t* out,
                            size_t out_capacity);

// Builds the query hubdns sends upstream for a client's query: the client's header (ID,
// opcode, RD, CD, AD), its question, and, when the client sent EDNS, a fresh OPT record
// with our UDP size and the client's DO bit and no options: options hubdns does not
// understand are not forwarded blindly, and every client asking the same question sends
// the same bytes upstream (which is what lets identical questions share one upstream
// query). Other records of the client's query are dropped. Returns the length or 0.
size_t build_upstream_query(const uint8_t* query, const QueryInfo& info, uint16_t our_udp_size,
                            uint8_t* out, size_t out_capacity);

// Builds a NOERROR answer to `query` with one TXT record (TTL 0, owner = the question's
// name) holding `text` (at most 255 bytes), plus our OPT when the client sent EDNS.
// Used for answers hubdns gives itself (the health self-check). Returns the length or 0.
size_t build_txt_answer(const uint8_t* query, const QueryInfo& info, const char* text,
                        uint16_t our_udp_size, uint8_t* out, size_t out_capacity);

// Cuts an answer that is larger than a UDP client can take down to header + question
// with TC set (the client retries over TCP). When the client used EDNS, an OPT record with
// our_udp_size and the client's DO bit is appended (RFC 3225: DO is echoed). Returns the new
// length.
size_t truncate_response(uint8_t* msg, size_t length, size_t question_end, bool client_edns,
                         bool client_do, uint16_t our_udp_size);

// Appends an Extended DNS Error option (RFC 8914, info-code only) to the OPT record of the
// answer in msg (length bytes, capacity bytes of room), moving any records after the OPT.
// Used for answers that come from elsewhere than a fresh upstream reply (a stale cache
// entry): only answers to EDNS clients carry an OPT, so an answer without one is left as
// it is. Returns the new length; `length` unchanged when there is no OPT, the message is
// malformed or the option does not fit.
size_t add_extended_error(uint8_t* msg, size_t length, size_t capacity, ExtendedError ede);

// The largest UDP answer the client can take: 512 without EDNS, otherwise its advertised
// size capped by ours.
inline size_t client_udp_limit(const QueryInfo& info, uint16_t our_udp_size) {
  if (!info.has_edns) return kMaxUdpPayloadWithoutEdns;
  size_t limit = info.edns_udp_size < our_udp_size ? info.edns_udp_size : our_udp_size;
  return limit < kMaxUdpPayloadWithoutEdns ? kMaxUdpPayloadWithoutEdns : limit;
}

}  // namespace hubdns::dns
