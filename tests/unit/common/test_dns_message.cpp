// Unit tests for common/dns/message: query parsing, answer matching, error answers and
// truncation, on hand-built wire messages.
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "tests/unit/common/wire_test_support.h"
#include "common/dns/message.h"

using namespace hubdns::dns;

namespace {

using hubdns::test::wire_name;

std::vector<uint8_t> make_query(const std::string& name, uint16_t qtype = 1, uint16_t id = 0x1234,
                                int edns_size = -1, bool dnssec_ok = false) {
  std::vector<uint8_t> msg(kHeaderSize, 0);
  write_u16(msg.data(), id);
  write_u16(msg.data() + 2, kFlagRd);
  write_u16(msg.data() + 4, 1);
  auto name_bytes = wire_name(name);
  msg.insert(msg.end(), name_bytes.begin(), name_bytes.end());
  uint8_t tail[4];
  write_u16(tail, qtype);
  write_u16(tail + 2, kClassIn);
  msg.insert(msg.end(), tail, tail + 4);
  if (edns_size >= 0) {
    write_u16(msg.data() + 10, 1);
    uint8_t opt[11] = {0};
    write_u16(opt + 1, kTypeOpt);
    write_u16(opt + 3, static_cast<uint16_t>(edns_size));
    write_u16(opt + 7, dnssec_ok ? 0x8000 : 0);
    msg.insert(msg.end(), opt, opt + 11);
  }
  return msg;
}

}  // namespace

TEST_CASE("a plain query is parsed in place") {
  auto q = make_query("www.Example.com", 28, 0xABCD);
  QueryInfo info;
  REQUIRE(parse_query(q.data(), q.size(), &info) == QueryCheck::ok);
  CHECK(info.id == 0xABCD);
  CHECK(info.qtype == 28);
  CHECK(info.qclass == kClassIn);
  CHECK(info.qname_length == 17);
  CHECK(info.question_end == q.size());
  CHECK_FALSE(info.has_edns);
}

TEST_CASE("EDNS OPT is read: size, DO bit, version") {
  auto q = make_query("example.com", 1, 1, 4096, true);
  QueryInfo info;
  REQUIRE(parse_query(q.data(), q.size(), &info) == QueryCheck::ok);
  CHECK(info.has_edns);
  CHECK(info.edns_udp_size == 4096);
  CHECK(info.edns_do);
  CHECK(client_udp_limit(info, 1232) == 1232);
  auto small = make_query("example.com", 1, 1, 100);
  REQUIRE(parse_query(small.data(), small.size(), &info) == QueryCheck::ok);
  CHECK(client_udp_limit(info, 1232) == 512);  // sizes below 512 read as 512

  q[q.size() - 5] = 1;  // EDNS version 1 (the TTL octet after the extended rcode)
  CHECK(parse_query(q.data(), q.size(), &info) == QueryCheck::badvers);
}

TEST_CASE("malformed queries are told apart: drop, formerr, notimp") {
  QueryInfo info;
  uint8_t tiny[5] = {1, 2, 3, 4, 5};
  CHECK(parse_query(tiny, sizeof tiny, &info) == QueryCheck::drop);

  auto q = make_query("example.com");
  auto response = q;
  response[2] |= 0x80;  // QR: a response sent as a query
  CHECK(parse_query(response.data(), response.size(), &info) == QueryCheck::drop);

  auto cut = q;
  cut.resize(q.size() - 3);
  CHECK(parse_query(cut.data(), cut.size(), &info) == QueryCheck::formerr);
  CHECK(info.id == 0x1234);

  auto two = q;
  two[5] = 2;
  CHECK(parse_query(two.data(), two.size(), &info) == QueryCheck::formerr);

  auto pointer = q;
  pointer[12] = 0xC0;  // compression pointer in the question
  pointer[13] = 0x0C;
  CHECK(parse_query(pointer.data(), pointer.size(), &info) == QueryCheck::formerr);

  auto opcode = q;
  opcode[2] |= 0x10;  // opcode 2 (STATUS)
  CHECK(parse_query(opcode.data(), opcode.size(), &info) == QueryCheck::notimp);

  auto bad_opt = make_query("example.com", 1, 1, 1232);
  bad_opt.push_back(0);  // ARCOUNT says 1, but now trailing garbage is fine; corrupt the OPT length
  write_u16(bad_opt.data() + bad_opt.size() - 3, 200);
  CHECK(parse_query(bad_opt.data(), bad_opt.size(), &info) == QueryCheck::formerr);
}

TEST_CASE("names longer than 255 octets are rejected") {
  std::string name;
  for (int i = 0; i < 5; ++i) name += std::string(60, 'a') + ".";
  auto q = make_query(name);
  QueryInfo info;
  CHECK(parse_query(q.data(), q.size(), &info) == QueryCheck::formerr);
}

TEST_CASE("an answer matches only with the same ID and question (name case-insensitive)") {
  auto q = make_query("Www.Example.COM", 1, 0x1111);
  auto answer = q;
  answer[2] |= 0x80;
  auto lower = wire_name("www.example.com");
  CHECK(response_matches(answer.data(), answer.size(), 0x1111, lower.data(), lower.size(), 1, kClassIn));
  CHECK_FALSE(response_matches(answer.data(), answer.size(), 0x1112, lower.data(), lower.size(), 1, kClassIn));
  CHECK_FALSE(response_matches(answer.data(), answer.size(), 0x1111, lower.data(), lower.size(), 28, kClassIn));
  auto other = wire_name("www.example.org");
  CHECK_FALSE(response_matches(answer.data(), answer.size(), 0x1111, other.data(), other.size(), 1, kClassIn));
  CHECK_FALSE(response_matches(q.data(), q.size(), 0x1111, lower.data(), lower.size(), 1, kClassIn));  // not QR
}

TEST_CASE("error answers echo ID, question and RD, and carry EDE when the client used EDNS") {
  auto q = make_query("example.com", 1, 0x7777, 1232);
  QueryInfo info;
  REQUIRE(parse_query(q.data(), q.size(), &info) == QueryCheck::ok);
  uint8_t out[512];
  size_t n = build_error_response(q.data(), info, kServFail, ExtendedError::no_reachable_authority, 1232,
                                  out, sizeof out);
  REQUIRE(n == info.question_end + 17);
  CHECK(message_id(out) == 0x7777);
  CHECK((message_flags(out) & kFlagQr) != 0);
  CHECK((message_flags(out) & kFlagRd) != 0);
  CHECK(message_rcode(out) == kServFail);
  CHECK(read_u16(out + 10) == 1);  // ARCOUNT: the OPT
  const uint8_t* opt = out + info.question_end;
  CHECK(read_u16(opt + 1) == kTypeOpt);
  CHECK(read_u16(opt + 11) == 15);  // EDE option
  CHECK(read_u16(opt + 15) == 22);  // No Reachable Authority

  auto plain = make_query("example.com");
  REQUIRE(parse_query(plain.data(), plain.size(), &info) == QueryCheck::ok);
  n = build_error_response(plain.data(), info, kRefused, ExtendedError::prohibited, 1232, out, sizeof out);
  CHECK(n == plain.size());
  CHECK(read_u16(out + 10) == 0);
  CHECK(message_rcode(out) == kRefused);
}

TEST_CASE("BADVERS puts the upper rcode bits in OPT") {
  auto q = make_query("example.com", 1, 1, 1232);
  q[q.size() - 5] = 1;
  QueryInfo info;
  REQUIRE(parse_query(q.data(), q.size(), &info) == QueryCheck::badvers);
  uint8_t out[512];
  size_t n = build_error_response(q.data(), info, kBadVers, ExtendedError::none, 1232, out, sizeof out);
  REQUIRE(n > info.question_end);
  CHECK(message_rcode(out) == 0);
  CHECK(out[info.question_end + 5] == 1);
}

TEST_CASE("truncation keeps header and question, sets TC") {
  auto q = make_query("example.com", 1, 5, 1232);
  QueryInfo info;
  REQUIRE(parse_query(q.data(), q.size(), &info) == QueryCheck::ok);
  std::vector<uint8_t> answer(q.begin(), q.begin() + static_cast<long>(info.question_end));
  answer[2] |= 0x80;
  write_u16(answer.data() + 6, 100);
  answer.resize(2000, 0xAB);
  size_t n = truncate_response(answer.data(), answer.size(), info.question_end, true, true, 1232);
  CHECK(n == info.question_end + 11);
  CHECK((message_flags(answer.data()) & kFlagTc) != 0);
  CHECK(read_u16(answer.data() + 6) == 0);
  CHECK(read_u16(answer.data() + 10) == 1);
  CHECK((read_u16(answer.data() + info.question_end + 7) & 0x8000) != 0);  // DO echoed
}

TEST_CASE("the upstream query keeps header bits and question, and rebuilds OPT without options") {
  auto q = make_query("Www.Example.com", 28, 0x4321, 4096, true);
  // Add an EDNS option (cookie-like, code 10, 8 bytes) to the client's OPT.
  uint8_t option[12] = {0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8};
  q.insert(q.end(), option, option + sizeof option);
  write_u16(q.data() + q.size() - sizeof option - 2, sizeof option);  // OPT RDLENGTH
  q[3] |= 0x10;  // CD
  QueryInfo info;
  REQUIRE(parse_query(q.data(), q.size(), &info) == QueryCheck::ok);
  uint8_t out[512];
  size_t n = build_upstream_query(q.data(), info, 1232, out, sizeof out);
  REQUIRE(n == info.question_end + 11);
  CHECK(message_id(out) == 0x4321);
  CHECK((message_flags(out) & (kFlagRd | kFlagCd)) == (kFlagRd | kFlagCd));
  CHECK(read_u16(out + 10) == 1);
  CHECK(std::memcmp(out + kHeaderSize, q.data() + kHeaderSize, info.question_end - kHeaderSize) == 0);
  const uint8_t* opt = out + info.question_end;
  CHECK(read_u16(opt + 3) == 1232);           // our size, not the client's 4096
  CHECK((read_u16(opt + 7) & 0x8000) != 0);    // DO kept
  CHECK(read_u16(opt + 9) == 0);               // no options

  auto plain = make_query("example.com");
  REQUIRE(parse_query(plain.data(), plain.size(), &info) == QueryCheck::ok);
  n = build_upstream_query(plain.data(), info, 1232, out, sizeof out);
  CHECK(n == plain.size());
  CHECK(read_u16(out + 10) == 0);
}

TEST_CASE("a TXT answer of our own: one record, TTL 0, owner compressed to the question") {
  auto q = make_query("_selfcheck.hubdns.invalid", 16, 0x5151, 1232);
  QueryInfo info;
  REQUIRE(parse_query(q.data(), q.size(), &info) == QueryCheck::ok);
  uint8_t out[512];
  size_t n = build_txt_answer(q.data(), info, "worker 3", 1232, out, sizeof out);
  REQUIRE(n == info.question_end + 13 + 8 + 11);
  CHECK(message_id(out) == 0x5151);
  CHECK(message_rcode(out) == kNoError);
  CHECK((message_flags(out) & kFlagAa) != 0);
  CHECK(read_u16(out + 6) == 1);
  CHECK(read_u16(out + 10) == 1);
  const uint8_t* record = out + info.question_end;
  CHECK(read_u16(record) == 0xC00C);
  CHECK(read_u16(record + 2) == 16);
  CHECK(record[12] == 8);
  CHECK(std::memcmp(record + 13, "worker 3", 8) == 0);
}

TEST_CASE("an Extended DNS Error is appended to an answer's OPT, records after it are kept") {
  // An answer: header, question, one A record (owner compressed to the question), then in
  // the additional section the OPT followed by another record, to check the move.
  auto msg = make_query("example.com", 1, 0x4242, 1232);
  QueryInfo info;
  REQUIRE(parse_query(msg.data(), msg.size(), &info) == QueryCheck::ok);
  std::vector<uint8_t> answer(msg.begin(), msg.begin() + static_cast<long>(info.question_end));
  write_u16(answer.data() + 2, kFlagQr | kFlagRd | kFlagRa);
  write_u16(answer.data() + 6, 1);   // ANCOUNT
  write_u16(answer.data() + 10, 2);  // ARCOUNT: OPT + one A glue
  const uint8_t a_record[] = {0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0x0E, 0x10, 0, 4, 192, 0, 2, 1};
  answer.insert(answer.end(), a_record, a_record + sizeof a_record);
  const uint8_t opt[] = {0, 0, 41, 0x04, 0xD0, 0, 0, 0x80, 0, 0, 0};
  answer.insert(answer.end(), opt, opt + sizeof opt);
  size_t opt_start = answer.size() - sizeof opt;
  answer.insert(answer.end(), a_record, a_record + sizeof a_record);
  size_t length = answer.size();
  answer.resize(length + 64);

  size_t grown = add_extended_error(answer.data(), length, answer.size(), ExtendedError::stale_answer);
  REQUIRE(grown == length + 6);
  CHECK(read_u16(answer.data() + opt_start + 9) == 6);    // OPT RDLENGTH
  CHECK(read_u16(answer.data() + opt_start + 11) == 15);  // option code EDE
  CHECK(read_u16(answer.data() + opt_start + 13) == 2);
  CHECK(read_u16(answer.data() + opt_start + 15) == 3);   // Stale Answer
  CHECK(read_u16(answer.data() + opt_start + 7) == 0x8000);  // DO bit untouched
  CHECK(std::memcmp(answer.data() + opt_start + 17, a_record, sizeof a_record) == 0);

  // No OPT (a client without EDNS): nothing to add to. No room: unchanged.
  std::vector<uint8_t> bare(answer.begin(), answer.begin() + static_cast<long>(opt_start));
  write_u16(bare.data() + 10, 0);
  size_t bare_length = bare.size();
  bare.resize(bare_length + 64);
  CHECK(add_extended_error(bare.data(), bare_length, bare.size(), ExtendedError::stale_answer) == bare_length);
  CHECK(add_extended_error(answer.data(), grown, grown + 5, ExtendedError::stale_answer) == grown);
  // Truncated in the middle of a record: left alone.
  CHECK(add_extended_error(answer.data(), opt_start + 4, answer.size(), ExtendedError::stale_answer) == opt_start + 4);
}
