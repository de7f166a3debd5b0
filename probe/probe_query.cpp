#include "probe/probe_query.h"

#include <uv.h>

#include <random>

#include "common/dns/message.h"

namespace hubdns {
namespace {

// Length of the (possibly compressed) name at msg[pos], as it sits in the message, or 0 if
// it runs past the end or is malformed.
size_t skip_name(const uint8_t* msg, size_t length, size_t pos) {
  const size_t start = pos;
  while (pos < length) {
    uint8_t label = msg[pos];
    if (label == 0) return pos + 1 - start;
    if ((label & 0xC0) == 0xC0) return pos + 2 <= length ? pos + 2 - start : 0;
    if ((label & 0xC0) != 0) return 0;  // 0x40 / 0x80: extended label types, not used
    pos += 1 + label;
  }
  return 0;
}

}  // namespace

bool encode_dns_name(std::string_view name, std::vector<uint8_t>* out) {
  if (name.empty() || name.back() != '.') return false;
  std::vector<uint8_t> wire;
  if (name != ".") {
    std::string_view rest = name.substr(0, name.size() - 1);
    while (true) {
      size_t dot = rest.find('.');
      std::string_view label = rest.substr(0, dot);
      if (label.empty() || label.size() > 63) return false;
      wire.push_back(static_cast<uint8_t>(label.size()));
      wire.insert(wire.end(), label.begin(), label.end());
      if (dot == std::string_view::npos) break;
      rest.remove_prefix(dot + 1);
    }
  }
  wire.push_back(0);
  if (wire.size() > dns::kMaxNameWireLength) return false;
  out->insert(out->end(), wire.begin(), wire.end());
  return true;
}

std::vector<uint8_t> build_dns_query(uint16_t id, std::string_view name, uint16_t qtype,
                                     bool recursion_desired) {
  std::vector<uint8_t> query(dns::kHeaderSize, 0);
  dns::write_u16(query.data(), id);
  dns::write_u16(query.data() + 2, recursion_desired ? dns::kFlagRd : 0);
  dns::write_u16(query.data() + 4, 1);  // QDCOUNT
  if (!encode_dns_name(name, &query)) return {};
  const size_t pos = query.size();
  query.resize(pos + 4);
  dns::write_u16(query.data() + pos, qtype);
  dns::write_u16(query.data() + pos + 2, dns::kClassIn);
  return query;
}

AnswerMatch match_answer(const uint8_t* query, size_t query_length, const uint8_t* answer,
                         size_t answer_length) {
  if (query_length < dns::kHeaderSize + 5) return AnswerMatch::garbled;  // cannot happen for our own
  if (answer_length < dns::kHeaderSize || (dns::message_flags(answer) & dns::kFlagQr) == 0) {
    return AnswerMatch::garbled;
  }
  const size_t qname_length = query_length - dns::kHeaderSize - 4;
  const uint8_t* qname = query + dns::kHeaderSize;
  const uint16_t qtype = dns::read_u16(query + query_length - 4);
  const uint16_t qclass = dns::read_u16(query + query_length - 2);
  if (dns::response_matches(answer, answer_length, dns::message_id(query), qname, qname_length, qtype, qclass)) {
    return AnswerMatch::matches;
  }
  if (dns::read_u16(answer + 4) == 0) {
    // FORMERR and REFUSED may come without the question (RFC 1035 does not require it);
    // the random ID on a connected socket still ties such an error to our query.
    const bool our_id = dns::message_id(answer) == dns::message_id(query);
    return our_id && dns::message_rcode(answer) != dns::kNoError ? AnswerMatch::matches
                                                                 : AnswerMatch::mismatched;
  }
  // A response whose question we cannot even read is garbage; one with a readable
  // question is a well-formed answer to something else.
  size_t name = skip_name(answer, answer_length, dns::kHeaderSize);
  if (name == 0 || dns::kHeaderSize + name + 4 > answer_length) return AnswerMatch::garbled;
  return AnswerMatch::mismatched;
}

std::optional<std::string> first_txt_string(const uint8_t* msg, size_t length) {
  if (length < dns::kHeaderSize) return std::nullopt;
  const unsigned qdcount = dns::read_u16(msg + 4);
  const unsigned ancount = dns::read_u16(msg + 6);
  size_t pos = dns::kHeaderSize;
  for (unsigned i = 0; i < qdcount; ++i) {
    size_t name = skip_name(msg, length, pos);
    if (name == 0 || pos + name + 4 > length) return std::nullopt;
    pos += name + 4;
  }
  for (unsigned i = 0; i < ancount; ++i) {
    size_t name = skip_name(msg, length, pos);
    if (name == 0 || pos + name + 10 > length) return std::nullopt;
    pos += name;
    const uint16_t type = dns::read_u16(msg + pos);
    const size_t rdlength = dns::read_u16(msg + pos + 8);
    pos += 10;
    if (pos + rdlength > length) return std::nullopt;
    if (type == kTypeTxt && rdlength >= 1) {
      const size_t text_length = msg[pos];
      if (1 + text_length > rdlength) return std::nullopt;
      return std::string(reinterpret_cast<const char*>(msg + pos + 1), text_length);
    }
    pos += rdlength;
  }
  return std::nullopt;
}

std::string rcode_name(uint8_t rcode) {
  static constexpr const char* kNames[] = {"NOERROR", "FORMERR",  "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
                                           "YXDOMAIN", "YXRRSET", "NXRRSET",  "NOTAUTH",  "NOTZONE"};
  if (rcode < sizeof kNames / sizeof kNames[0]) return kNames[rcode];
  return "RCODE" + std::to_string(rcode);
}

std::string dns_type_name(uint16_t qtype) {
  switch (qtype) {
    case 1: return "A";
    case 2: return "NS";
    case 5: return "CNAME";
    case 6: return "SOA";
    case 12: return "PTR";
    case 15: return "MX";
    case 16: return "TXT";
    case 28: return "AAAA";
    case 33: return "SRV";
    default: return "TYPE" + std::to_string(qtype);
  }
}

namespace {

template <typename T>
T random_value() {
  T value = 0;
  // Synchronous form (no loop, no callback): reads getrandom(2) / /dev/urandom.
  if (uv_random(nullptr, nullptr, &value, sizeof value, 0, nullptr) != 0) {
    // Only without any entropy source at all; the value is then merely unpredictable
    // enough for a health probe, which proves reachability, not authenticity.
    static std::random_device device;
    value = static_cast<T>((static_cast<uint64_t>(device()) << 32) | device());
  }
  return value;
}

}  // namespace

uint16_t random_dns_id() { return random_value<uint16_t>(); }

uint64_t random_u64() { return random_value<uint64_t>(); }

}  // namespace hubdns
