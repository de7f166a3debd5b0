// Unit tests for the health checks' DNS messages (probe/probe_query.h).
#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include "common/dns/message.h"
#include "probe/probe_query.h"

using namespace hubdns;

namespace {

// The answer a server would send to `query`: header with QR and the rcode, question echoed,
// plus `extra` (records) and ancount.
std::vector<uint8_t> answer_to(const std::vector<uint8_t>& query, uint8_t rcode, std::vector<uint8_t> extra = {},
                               uint16_t ancount = 0) {
  std::vector<uint8_t> answer = query;
  dns::write_u16(answer.data() + 2, static_cast<uint16_t>(dns::kFlagQr | dns::kFlagRd | dns::kFlagRa | rcode));
  dns::write_u16(answer.data() + 6, ancount);
  answer.insert(answer.end(), extra.begin(), extra.end());
  return answer;
}

}  // namespace

TEST_CASE("names encode to wire form") {
  std::vector<uint8_t> out;
  REQUIRE(encode_dns_name(".", &out));
  CHECK(out == std::vector<uint8_t>{0});
  out.clear();
  REQUIRE(encode_dns_name("corp.contoso.com.", &out));
  const uint8_t expected[] = {4, 'c', 'o', 'r', 'p', 7, 'c', 'o', 'n', 't', 'o', 's', 'o', 3, 'c', 'o', 'm', 0};
  CHECK(out == std::vector<uint8_t>(expected, expected + sizeof expected));
  out.clear();
  CHECK_FALSE(encode_dns_name("relative", &out));
  CHECK_FALSE(encode_dns_name("a..b.", &out));
  CHECK_FALSE(encode_dns_name("", &out));
  CHECK_FALSE(encode_dns_name(std::string(64, 'a') + ".", &out));
  std::string long_name;
  for (int i = 0; i < 5; ++i) long_name += std::string(60, 'a') + ".";  // 305 octets
  CHECK_FALSE(encode_dns_name(long_name, &out));
  CHECK(out.empty());
}

TEST_CASE("a probe query is a plain RD query the relay's own parser accepts") {
  std::vector<uint8_t> query = build_dns_query(0xBEEF, "contoso.com.", 6, true);
  dns::QueryInfo info;
  REQUIRE(dns::parse_query(query.data(), query.size(), &info) == dns::QueryCheck::ok);
  CHECK(info.id == 0xBEEF);
  CHECK(info.qtype == 6);
  CHECK(info.qclass == 1);
  CHECK((info.flags & dns::kFlagRd) != 0);
  CHECK_FALSE(info.has_edns);
  CHECK(build_dns_query(1, "bad", 6, true).empty());
}

TEST_CASE("answers match on ID and question, case-insensitively") {
  std::vector<uint8_t> query = build_dns_query(0x1234, "contoso.com.", 6, true);
  std::vector<uint8_t> answer = answer_to(query, 0);
  CHECK(match_answer(query.data(), query.size(), answer.data(), answer.size()) == AnswerMatch::matches);
  answer[13] = 'C';  // 0x20 case randomisation by the server is fine
  CHECK(match_answer(query.data(), query.size(), answer.data(), answer.size()) == AnswerMatch::matches);

  std::vector<uint8_t> wrong_id = answer_to(query, 0);
  wrong_id[0] ^= 0x55;
  CHECK(match_answer(query.data(), query.size(), wrong_id.data(), wrong_id.size()) == AnswerMatch::mismatched);

  std::vector<uint8_t> other = answer_to(build_dns_query(0x1234, "example.com.", 6, true), 0);
  CHECK(match_answer(query.data(), query.size(), other.data(), other.size()) == AnswerMatch::mismatched);
  std::vector<uint8_t> other_type = answer_to(build_dns_query(0x1234, "contoso.com.", 1, true), 0);
  CHECK(match_answer(query.data(), query.size(), other_type.data(), other_type.size()) == AnswerMatch::mismatched);
}

TEST_CASE("an error without a question matches on the ID alone; NOERROR without one does not") {
  std::vector<uint8_t> query = build_dns_query(0x4242, ".", 6, true);
  std::vector<uint8_t> refused(query.begin(), query.begin() + 12);
  dns::write_u16(refused.data() + 2, dns::kFlagQr | dns::kRefused);
  dns::write_u16(refused.data() + 4, 0);
  CHECK(match_answer(query.data(), query.size(), refused.data(), refused.size()) == AnswerMatch::matches);
  dns::write_u16(refused.data() + 2, dns::kFlagQr);
  CHECK(match_answer(query.data(), query.size(), refused.data(), refused.size()) == AnswerMatch::mismatched);
}

TEST_CASE("garbage is told apart from a mismatch") {
  std::vector<uint8_t> query = build_dns_query(7, ".", 6, true);
  const uint8_t short_packet[] = {0, 7, 0x80};
  CHECK(match_answer(query.data(), query.size(), short_packet, sizeof short_packet) == AnswerMatch::garbled);
  std::vector<uint8_t> not_a_response = query;  // QR clear: our own query reflected
  CHECK(match_answer(query.data(), query.size(), not_a_response.data(), not_a_response.size()) == AnswerMatch::garbled);
  std::vector<uint8_t> broken = answer_to(query, 0);
  broken[0] = 0;
  broken[1] = 8;              // other ID
  broken.resize(13);          // question cut off
  broken[12] = 40;            // a label running past the end
  CHECK(match_answer(query.data(), query.size(), broken.data(), broken.size()) == AnswerMatch::garbled);
}

TEST_CASE("the self-check answer built by the relay names its worker") {
  std::vector<uint8_t> query = build_dns_query(99, kSelfCheckName, kTypeTxt, true);
  dns::QueryInfo info;
  REQUIRE(dns::parse_query(query.data(), query.size(), &info) == dns::QueryCheck::ok);
  uint8_t answer[512];
  size_t length = dns::build_txt_answer(query.data(), info, "worker 3", 1232, answer, sizeof answer);
  REQUIRE(length > 0);
  CHECK(match_answer(query.data(), query.size(), answer, length) == AnswerMatch::matches);
  CHECK(first_txt_string(answer, length) == std::optional<std::string>("worker 3"));
  // Truncated anywhere: never read past the end.
  for (size_t cut = 0; cut < length; ++cut) CHECK(first_txt_string(answer, cut) != std::optional<std::string>("worker 3"));
  std::vector<uint8_t> plain = answer_to(query, 0);
  CHECK_FALSE(first_txt_string(plain.data(), plain.size()).has_value());
}

TEST_CASE("names of rcodes and types") {
  CHECK(rcode_name(0) == "NOERROR");
  CHECK(rcode_name(5) == "REFUSED");
  CHECK(rcode_name(12) == "RCODE12");
  CHECK(dns_type_name(6) == "SOA");
  CHECK(dns_type_name(28) == "AAAA");
  CHECK(dns_type_name(65280) == "TYPE65280");
}

TEST_CASE("random IDs vary") {
  bool differs = false;
  const uint16_t first = random_dns_id();
  for (int i = 0; i < 16 && !differs; ++i) differs = random_dns_id() != first;
  CHECK(differs);
}
