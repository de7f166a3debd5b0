// The DNS messages of the health checks: building the questions hubdns asks its upstreams
// (the rules' `probe`) and its own listeners (the data-path self-check), and reading the
// answers: does a response belong to the question, what does it say. Pure functions over
// byte buffers, any thread; answers are untrusted bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hubdns {

// The self-check question: answered by every DNS worker itself (TXT "worker N", TTL 0)
// when it comes from a loopback address, never forwarded. `.invalid` (RFC 6761) can never
// be a real name, so a forwarded self-check could not be mistaken for one either.
inline constexpr std::string_view kSelfCheckName = "_selfcheck.hubdns.invalid.";
inline constexpr uint16_t kTypeTxt = 16;

// Appends the wire form of an absolute presentation name ("contoso.com.", ".") to out.
// Labels are 1..63 octets, the whole name at most 255; no escapes (configuration names
// are validated by conf/ already). Returns false, appending nothing, otherwise.
bool encode_dns_name(std::string_view name, std::vector<uint8_t>* out);

// A query: header with `id`, RD as given, one question (name, qtype, class IN), no EDNS
// (the probe answers are small, and an upstream that mishandles EDNS should not look
// down because of the probe alone). Empty if the name cannot be encoded.
std::vector<uint8_t> build_dns_query(uint16_t id, std::string_view name, uint16_t qtype,
                                     bool recursion_desired);

enum class AnswerMatch {
  matches,     // a response with the query's ID and question (or the ID, no question and an error rcode)
  mismatched,  // a DNS response, but another ID or question
  garbled,     // not a DNS response at all (too short, QR clear, no readable question)
};

// Whether `answer` answers `query` (a query built by build_dns_query).
AnswerMatch match_answer(const uint8_t* query, size_t query_length, const uint8_t* answer,
                         size_t answer_length);

// The first character-string of the first TXT record in the answer section, if any
// ("worker 3"). Untrusted input: any malformation gives nullopt.
std::optional<std::string> first_txt_string(const uint8_t* msg, size_t length);

// "NOERROR", "SERVFAIL", ... or "RCODE12".
std::string rcode_name(uint8_t rcode);

// "SOA", "A", ... or "TYPE65280" (RFC 3597), as the configuration spells types.
std::string dns_type_name(uint16_t qtype);

// A 16-bit ID from the operating system's CSPRNG (uv_random), so probe answers cannot be
// guessed by an off-path spoofer.
uint16_t random_dns_id();
// 64 bits from the same source (the forwarding-loop probes' tokens).
uint64_t random_u64();

}  // namespace hubdns
