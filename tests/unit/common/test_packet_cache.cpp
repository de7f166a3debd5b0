// Unit tests for common/cache: the answer analysis (TTL fields, negative TTL from the SOA,
// what is not cacheable) and the shared PacketCache (keying, aging, clamping, negative
// caching, eviction, serve-stale, prefetch, flushing, threads, memory per entry), on
// hand-built wire-format answers and with time passed in rather than slept.
#include <doctest/doctest.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/common/wire_test_support.h"
#include "common/cache/cache_answer.h"
#include "common/cache/packet_cache.h"
#include "common/dns/message.h"

using namespace hubdns;
using namespace hubdns::dns;
using namespace std::chrono_literals;

namespace {

using Bytes = std::vector<uint8_t>;

constexpr uint16_t kTypeA = 1;
constexpr uint16_t kTypeNs = 2;
constexpr uint16_t kTypeCname = 5;
constexpr uint16_t kTypeAaaa = 28;
constexpr uint64_t kStart = 1'000'000;  // an arbitrary monotonic "now" in ms

uint64_t at(double seconds) { return kStart + static_cast<uint64_t>(seconds * 1000); }

using hubdns::test::wire_name;

const Bytes kPointerToQuestion = {0xC0, 0x0C};

struct Record {
  Bytes owner;
  uint16_t type = kTypeA;
  uint16_t rclass = kClassIn;
  uint32_t ttl = 300;
  Bytes rdata;
};

Record a_record(Bytes owner, uint32_t ttl, uint8_t last_octet = 1) {
  return Record{std::move(owner), kTypeA, kClassIn, ttl, Bytes{192, 0, 2, last_octet}};
}

Bytes soa_rdata(uint32_t minimum) {
  Bytes rdata = wire_name("ns1.example.com");
  Bytes rname = wire_name("hostmaster.example.com");
  rdata.insert(rdata.end(), rname.begin(), rname.end());
  uint8_t numbers[20];
  write_u32(numbers, 2024010101);  // serial
  write_u32(numbers + 4, 7200);     // refresh
  write_u32(numbers + 8, 900);      // retry
  write_u32(numbers + 12, 1209600); // expire
  write_u32(numbers + 16, minimum);
  rdata.insert(rdata.end(), numbers, numbers + 20);
  return rdata;
}

Record soa_record(uint32_t ttl, uint32_t minimum, const std::string& zone = "example.com") {
  return Record{wire_name(zone), kTypeSoa, kClassIn, ttl, soa_rdata(minimum)};
}

// OPT: class = UDP size, TTL = extended rcode, version, flags (DO is the top flag bit).
Record opt_record(bool dnssec_ok = false, uint16_t udp_size = 1232) {
  return Record{Bytes{0}, kTypeOpt, udp_size, dnssec_ok ? 0x00008000u : 0u, {}};
}

struct AnswerBuilder {
  uint16_t id = 0x4242;
  uint16_t flags = kFlagQr | kFlagRd | kFlagRa;
  uint8_t rcode = kNoError;
  std::string qname = "www.example.com";
  uint16_t qtype = kTypeA;
  uint16_t qclass = kClassIn;
  std::vector<Record> answer, authority, additional;

  Bytes build() const {
    Bytes msg(kHeaderSize, 0);
    write_u16(msg.data(), id);
    write_u16(msg.data() + 2, static_cast<uint16_t>(flags | rcode));
    write_u16(msg.data() + 4, 1);
    write_u16(msg.data() + 6, static_cast<uint16_t>(answer.size()));
    write_u16(msg.data() + 8, static_cast<uint16_t>(authority.size()));
    write_u16(msg.data() + 10, static_cast<uint16_t>(additional.size()));
    Bytes name = wire_name(qname);
    msg.insert(msg.end(), name.begin(), name.end());
    uint8_t tail[4];
    write_u16(tail, qtype);
    write_u16(tail + 2, qclass);
    msg.insert(msg.end(), tail, tail + 4);
    for (const auto* section : {&answer, &authority, &additional}) {
      for (const Record& rr : *section) {
        msg.insert(msg.end(), rr.owner.begin(), rr.owner.end());
        uint8_t fixed[10];
        write_u16(fixed, rr.type);
        write_u16(fixed + 2, rr.rclass);
        write_u32(fixed + 4, rr.ttl);
        write_u16(fixed + 8, static_cast<uint16_t>(rr.rdata.size()));
        msg.insert(msg.end(), fixed, fixed + 10);
        msg.insert(msg.end(), rr.rdata.begin(), rr.rdata.end());
      }
    }
    return msg;
  }
};

// The typical positive answer: one A record owned by a pointer to the question, and OPT.
AnswerBuilder typical_a(const std::string& qname = "www.example.com", uint32_t ttl = 300) {
  AnswerBuilder b;
  b.qname = qname;
  b.answer = {a_record(kPointerToQuestion, ttl)};
  b.additional = {opt_record()};
  return b;
}

struct Query {
  Bytes bytes;
  QueryInfo info;
};

struct QueryOptions {
  uint16_t qtype = kTypeA;
  uint16_t qclass = kClassIn;
  uint16_t id = 0x1111;
  uint16_t flags = kFlagRd;
  bool edns = true;
  bool dnssec_ok = false;
};

Query make_query(const std::string& name, QueryOptions o = {}) {
  Query q;
  q.bytes.assign(kHeaderSize, 0);
  write_u16(q.bytes.data(), o.id);
  write_u16(q.bytes.data() + 2, o.flags);
  write_u16(q.bytes.data() + 4, 1);
  Bytes n = wire_name(name);
  q.bytes.insert(q.bytes.end(), n.begin(), n.end());
  uint8_t tail[4];
  write_u16(tail, o.qtype);
  write_u16(tail + 2, o.qclass);
  q.bytes.insert(q.bytes.end(), tail, tail + 4);
  if (o.edns) {
    write_u16(q.bytes.data() + 10, 1);
    uint8_t opt[11] = {0};
    write_u16(opt + 1, kTypeOpt);
    write_u16(opt + 3, 4096);
    write_u16(opt + 7, o.dnssec_ok ? 0x8000 : 0);
    q.bytes.insert(q.bytes.end(), opt, opt + 11);
  }
  REQUIRE(parse_query(q.bytes.data(), q.bytes.size(), &q.info) == QueryCheck::ok);
  return q;
}

CacheConfig test_config() {
  CacheConfig config;
  config.max_entries = 1000;
  config.min_ttl = 0s;
  config.max_ttl = 86400s;
  config.max_negative_ttl = 300s;
  config.serve_stale = true;
  config.stale_answer_ttl = 30s;
  config.max_stale = 3600s;
  return config;
}

struct LookupResult {
  PacketCache::Hit hit = PacketCache::Hit::miss;
  Bytes answer;
};

LookupResult lookup(PacketCache& cache, const Query& q, uint64_t now, bool allow_stale = false) {
  LookupResult result;
  result.answer.resize(kMaxMessageSize);
  size_t length = 0;
  result.hit = cache.lookup(q.bytes.data(), q.info, now, allow_stale, result.answer.data(),
                            result.answer.size(), &length);
  result.answer.resize(length);
  return result;
}

bool insert(PacketCache& cache, const Query& q, const Bytes& answer, uint64_t now = kStart) {
  return cache.insert(q.bytes.data(), q.info, answer.data(), answer.size(), now);
}

CacheRejection insert_reason(PacketCache& cache, const Query& q, const Bytes& answer, uint64_t now = kStart) {
  return cache.insert_or_reason(q.bytes.data(), q.info, answer.data(), answer.size(), now);
}

// Every aging TTL of a message, in message order (OPT excluded).
std::vector<uint32_t> ttls_of(const Bytes& msg) {
  AnswerShape shape;
  std::vector<TtlField> fields(64);
  analyze_answer(msg.data(), msg.size(), &shape, fields.data(), fields.size());
  std::vector<uint32_t> ttls;
  for (size_t i = 0; i < shape.ttl_field_count && i < fields.size(); ++i) {
    ttls.push_back(read_u32(msg.data() + fields[i].offset));
  }
  return ttls;
}

}  // namespace

// ---- answer analysis -------------------------------------------------------------------

TEST_CASE("cache answer analysis: TTL fields, minimum TTL, SOA, OPT") {
  AnswerBuilder b = typical_a();
  b.answer.push_back(a_record(kPointerToQuestion, 120, 2));
  b.authority = {Record{wire_name("example.com"), kTypeNs, kClassIn, 90, wire_name("ns1.example.com")}};
  b.additional.insert(b.additional.begin(), a_record(wire_name("ns1.example.com"), 10));
  Bytes msg = b.build();
  AnswerShape shape;
  TtlField fields[8];
  REQUIRE(analyze_answer(msg.data(), msg.size(), &shape, fields, 8) == CacheRejection::none);
  CHECK(shape.kind == AnswerKind::positive);
  CHECK(shape.min_ttl == 90);  // the additional record's 10 does not count
  CHECK(shape.has_opt);
  CHECK_FALSE(shape.has_soa);
  REQUIRE(shape.ttl_field_count == 4);  // OPT's TTL field holds EDNS flags: not aged
  CHECK(read_u32(msg.data() + fields[0].offset) == 300);
  CHECK(read_u32(msg.data() + fields[1].offset) == 120);
  CHECK(fields[2].section == Section::authority);
  CHECK(fields[3].section == Section::additional);
  CHECK(read_u32(msg.data() + fields[3].offset) == 10);

  // A capacity too small still counts every field.
  REQUIRE(analyze_answer(msg.data(), msg.size(), &shape, fields, 1) == CacheRejection::none);
  CHECK(shape.ttl_field_count == 4);
}

TEST_CASE("cache answer analysis: negative answers and their SOA") {
  AnswerBuilder b;
  b.rcode = kNxDomain;
  b.authority = {soa_record(3600, 300)};
  Bytes msg = b.build();
  AnswerShape shape;
  REQUIRE(analyze_answer(msg.data(), msg.size(), &shape, nullptr, 0) == CacheRejection::none);
  CHECK(shape.kind == AnswerKind::nxdomain);
  CHECK(shape.has_soa);
  CHECK(shape.soa_ttl == 3600);
  CHECK(shape.soa_minimum == 300);

  b.rcode = kNoError;
  msg = b.build();
  REQUIRE(analyze_answer(msg.data(), msg.size(), &shape, nullptr, 0) == CacheRejection::none);
  CHECK(shape.kind == AnswerKind::nodata);

  b.authority = {};
  msg = b.build();
  CHECK(analyze_answer(msg.data(), msg.size(), &shape, nullptr, 0) == CacheRejection::negative_without_soa);
  b.authority = {Record{wire_name("example.com"), kTypeNs, kClassIn, 90, wire_name("ns1.example.com")}};
  msg = b.build();  // a referral is not NODATA
  CHECK(analyze_answer(msg.data(), msg.size(), &shape, nullptr, 0) == CacheRejection::negative_without_soa);

  // An SOA whose RDATA is not two names and 20 octets is malformed.
  b.authority = {soa_record(3600, 300)};
  b.authority[0].rdata.pop_back();
  msg = b.build();
  CHECK(analyze_answer(msg.data(), msg.size(), &shape, nullptr, 0) == CacheRejection::malformed);
}

TEST_CASE("cache answer analysis: malformed and uncacheable shapes") {
  AnswerShape shape;
  auto check = [&](const Bytes& msg) { return analyze_answer(msg.data(), msg.size(), &shape, nullptr, 0); };
  AnswerBuilder good = typical_a();
  Bytes msg = good.build();
  REQUIRE(check(msg) == CacheRejection::none);

  Bytes trailing = msg;
  trailing.push_back(0);
  CHECK(check(trailing) == CacheRejection::malformed);
  Bytes cut(msg.begin(), msg.end() - 1);
  CHECK(check(cut) == CacheRejection::malformed);

  AnswerBuilder forward_pointer = good;
  forward_pointer.answer[0].owner = {0xC0, 0xFF};  // points forward
  CHECK(check(forward_pointer.build()) == CacheRejection::malformed);

  AnswerBuilder two_opts = good;
  two_opts.additional.push_back(opt_record());
  CHECK(check(two_opts.build()) == CacheRejection::malformed);
  AnswerBuilder opt_in_answer = good;
  opt_in_answer.answer.push_back(opt_record());
  CHECK(check(opt_in_answer.build()) == CacheRejection::malformed);

  AnswerBuilder badvers = good;
  badvers.additional[0].ttl = 0x01000000;  // extended rcode 1 -> 16 (BADVERS)
  CHECK(check(badvers.build()) == CacheRejection::uncacheable_rcode);

  AnswerBuilder tsig = good;
  tsig.additional.push_back(Record{wire_name("key.example"), kTypeTsig, 255, 0, Bytes(10, 0)});
  CHECK(check(tsig.build()) == CacheRejection::signed_transaction);

  AnswerBuilder query = good;
  query.flags = kFlagRd;
  CHECK(check(query.build()) == CacheRejection::not_a_response);
  AnswerBuilder tc = good;
  tc.flags |= kFlagTc;
  CHECK(check(tc.build()) == CacheRejection::truncated);
  for (uint8_t rcode : {kServFail, kRefused, kFormErr, kNotImp}) {
    AnswerBuilder failed = good;
    failed.rcode = rcode;
    CHECK(check(failed.build()) == CacheRejection::uncacheable_rcode);
  }
  CHECK(check(Bytes(5, 0)) == CacheRejection::malformed);
}

// ---- the cache -------------------------------------------------------------------------

TEST_CASE("packet cache: a hit has the client's ID and qname case and TTLs aged in whole seconds") {
  PacketCache cache(test_config());
  Query first = make_query("www.example.com", {.id = 0x1111});
  Bytes answer = typical_a("www.example.com", 300).build();
  REQUIRE(insert(cache, first, answer));

  Query second = make_query("WwW.eXaMpLe.CoM", {.id = 0xBEEF});
  LookupResult r = lookup(cache, second, at(2.999));
  REQUIRE(r.hit == PacketCache::Hit::fresh);
  REQUIRE(r.answer.size() == answer.size());
  CHECK(message_id(r.answer.data()) == 0xBEEF);
  CHECK(std::memcmp(r.answer.data() + kHeaderSize, second.bytes.data() + kHeaderSize, second.info.qname_length) == 0);
  CHECK(ttls_of(r.answer) == std::vector<uint32_t>{298});
  // Everything else is the upstream's answer as received.
  Bytes expected = answer;
  std::memcpy(expected.data(), r.answer.data(), 2);
  std::memcpy(expected.data() + kHeaderSize, second.bytes.data() + kHeaderSize, second.info.qname_length);
  write_u32(expected.data() + expected.size() - 11 - 6 - 4, 298);  // the A record's TTL
  CHECK(r.answer == expected);

  CHECK(ttls_of(lookup(cache, second, at(299.9)).answer) == std::vector<uint32_t>{1});
  CHECK(lookup(cache, second, at(300)).hit == PacketCache::Hit::miss);

  PacketCache::Stats stats = cache.stats();
  CHECK(stats.hits == 2);
  CHECK(stats.misses == 1);
  CHECK(stats.insertions == 1);
  CHECK(stats.entries == 1);
}

TEST_CASE("packet cache: the key is the question plus RD, CD, AD, EDNS and DO") {
  PacketCache cache(test_config());
  Query base = make_query("www.example.com");  // RD, EDNS, no DO
  REQUIRE(insert(cache, base, typical_a().build()));
  CHECK(lookup(cache, base, kStart).hit == PacketCache::Hit::fresh);
  CHECK(lookup(cache, make_query("www.example.com", {.id = 7}), kStart).hit == PacketCache::Hit::fresh);

  CHECK(lookup(cache, make_query("www.example.com", {.qtype = kTypeAaaa}), kStart).hit == PacketCache::Hit::miss);
  CHECK(lookup(cache, make_query("www.example.com", {.qclass = 3}), kStart).hit == PacketCache::Hit::miss);
  CHECK(lookup(cache, make_query("www.example.com", {.dnssec_ok = true}), kStart).hit == PacketCache::Hit::miss);
  CHECK(lookup(cache, make_query("www.example.com", {.flags = kFlagRd | kFlagCd}), kStart).hit == PacketCache::Hit::miss);
  CHECK(lookup(cache, make_query("www.example.com", {.flags = kFlagRd | kFlagAd}), kStart).hit == PacketCache::Hit::miss);
  CHECK(lookup(cache, make_query("www.example.com", {.flags = 0}), kStart).hit == PacketCache::Hit::miss);
  CHECK(lookup(cache, make_query("www.example.com", {.edns = false}), kStart).hit == PacketCache::Hit::miss);
  CHECK(lookup(cache, make_query("www.example.org"), kStart).hit == PacketCache::Hit::miss);
  CHECK(lookup(cache, make_query("ww.example.com"), kStart).hit == PacketCache::Hit::miss);
}

TEST_CASE("packet cache: names are compared case-insensitively") {
  PacketCache cache(test_config());
  Query upper = make_query("WWW.EXAMPLE.COM");
  AnswerBuilder b = typical_a("WWW.EXAMPLE.COM");
  REQUIRE(insert(cache, upper, b.build()));
  LookupResult r = lookup(cache, make_query("www.example.com", {.id = 9}), kStart);
  REQUIRE(r.hit == PacketCache::Hit::fresh);
  CHECK(r.answer[kHeaderSize + 1] == 'w');  // the asking client's spelling

  // The upstream may echo the question in another case (0x20): still its answer.
  b.qname = "wWw.ExAmPlE.cOm";
  REQUIRE(insert(cache, upper, b.build()));
  CHECK(cache.stats().entries == 1);
}

TEST_CASE("packet cache: min_ttl raises and max_ttl cuts, stored TTLs follow") {
  CacheConfig config = test_config();
  config.min_ttl = 60s;
  config.max_ttl = 3600s;
  PacketCache cache(config);

  Query low = make_query("low.example.com");
  AnswerBuilder b = typical_a("low.example.com", 5);
  b.answer.push_back(a_record(kPointerToQuestion, 100, 2));
  REQUIRE(insert(cache, low, b.build()));
  CHECK(ttls_of(lookup(cache, low, kStart).answer) == std::vector<uint32_t>{60, 100});
  CHECK(ttls_of(lookup(cache, low, at(59.5)).answer) == std::vector<uint32_t>{1, 41});
  CHECK(lookup(cache, low, at(60)).hit == PacketCache::Hit::miss);

  Query high = make_query("high.example.com");
  REQUIRE(insert(cache, high, typical_a("high.example.com", 7 * 86400).build()));
  CHECK(ttls_of(lookup(cache, high, kStart).answer) == std::vector<uint32_t>{3600});
  CHECK(ttls_of(lookup(cache, high, at(3599)).answer) == std::vector<uint32_t>{1});
  CHECK(lookup(cache, high, at(3600)).hit == PacketCache::Hit::miss);

  // RFC 2181: a TTL with the top bit set is 0.
  Query huge = make_query("huge.example.com");
  CHECK(insert_reason(cache, huge, typical_a("huge.example.com", 0x80000001).build()) == CacheRejection::zero_ttl);
}

TEST_CASE("packet cache: answers with TTL 0 are not cached, even with min_ttl") {
  CacheConfig config = test_config();
  PacketCache cache(config);
  Query q = make_query("zero.example.com");
  AnswerBuilder b = typical_a("zero.example.com", 0);
  CHECK(insert_reason(cache, q, b.build()) == CacheRejection::zero_ttl);
  b.answer.push_back(a_record(kPointerToQuestion, 300, 2));  // one record at 0 is enough
  CHECK(insert_reason(cache, q, b.build()) == CacheRejection::zero_ttl);

  config.min_ttl = 30s;
  PacketCache raising(config);
  CHECK(insert_reason(raising, q, typical_a("zero.example.com", 0).build()) == CacheRejection::zero_ttl);
  CHECK(raising.stats().not_cacheable_by_reason[static_cast<size_t>(CacheRejection::zero_ttl)] == 1);
  CHECK(lookup(raising, q, kStart).hit == PacketCache::Hit::miss);
}

TEST_CASE("packet cache: NXDOMAIN and NODATA live min(SOA TTL, MINIMUM), capped by max_negative_ttl") {
  CacheConfig config = test_config();
  config.max_negative_ttl = 300s;
  PacketCache cache(config);

  Query nx = make_query("nope.example.com");
  AnswerBuilder nxdomain;
  nxdomain.qname = "nope.example.com";
  nxdomain.rcode = kNxDomain;
  nxdomain.flags |= kFlagAa;
  nxdomain.authority = {soa_record(3600, 120)};
  nxdomain.additional = {opt_record()};
  REQUIRE(insert(cache, nx, nxdomain.build()));
  LookupResult r = lookup(cache, nx, at(20));
  REQUIRE(r.hit == PacketCache::Hit::fresh);
  CHECK(message_rcode(r.answer.data()) == kNxDomain);
  CHECK(ttls_of(r.answer) == std::vector<uint32_t>{100});  // the SOA carries the negative TTL
  CHECK(lookup(cache, nx, at(119.9)).hit == PacketCache::Hit::fresh_prefetch);  // hit twice, nearly out
  CHECK(lookup(cache, nx, at(120)).hit == PacketCache::Hit::miss);

  Query nodata = make_query("www.example.com", {.qtype = kTypeAaaa});
  AnswerBuilder empty;
  empty.qtype = kTypeAaaa;
  empty.authority = {soa_record(60, 900)};  // SOA TTL below MINIMUM
  empty.additional = {opt_record()};
  REQUIRE(insert(cache, nodata, empty.build()));
  CHECK(ttls_of(lookup(cache, nodata, kStart).answer) == std::vector<uint32_t>{60});
  CHECK(lookup(cache, nodata, at(60)).hit == PacketCache::Hit::miss);

  Query capped = make_query("gone.example.com");
  nxdomain.qname = "gone.example.com";
  nxdomain.authority = {soa_record(86400, 86400)};
  REQUIRE(insert(cache, capped, nxdomain.build()));
  CHECK(ttls_of(lookup(cache, capped, kStart).answer) == std::vector<uint32_t>{300});
  CHECK(lookup(cache, capped, at(299)).hit == PacketCache::Hit::fresh_prefetch);
  CHECK(lookup(cache, capped, at(300)).hit == PacketCache::Hit::miss);

  // An NXDOMAIN reached through a CNAME: the CNAME keeps its own (longer) TTL.
  Query chained = make_query("alias.example.com");
  AnswerBuilder chain;
  chain.qname = "alias.example.com";
  chain.rcode = kNxDomain;
  chain.answer = {Record{kPointerToQuestion, kTypeCname, kClassIn, 600, wire_name("missing.example.com")}};
  chain.authority = {soa_record(3600, 60)};
  REQUIRE(insert(cache, chained, chain.build()));
  CHECK(ttls_of(lookup(cache, chained, at(10)).answer) == std::vector<uint32_t>{590, 50});
  CHECK(lookup(cache, chained, at(60)).hit == PacketCache::Hit::miss);

  // MINIMUM 0: not cached.
  Query zero = make_query("zero.example.com");
  nxdomain.qname = "zero.example.com";
  nxdomain.authority = {soa_record(3600, 0)};
  CHECK(insert_reason(cache, zero, nxdomain.build()) == CacheRejection::zero_ttl);
}

TEST_CASE("packet cache: negative answers without an SOA are not cached") {
  PacketCache cache(test_config());
  Query q = make_query("nope.example.com");
  AnswerBuilder b;
  b.qname = "nope.example.com";
  b.rcode = kNxDomain;
  CHECK(insert_reason(cache, q, b.build()) == CacheRejection::negative_without_soa);
  b.rcode = kNoError;
  CHECK(insert_reason(cache, q, b.build()) == CacheRejection::negative_without_soa);
  CHECK(cache.stats().entries == 0);
  CHECK(cache.stats().not_cacheable == 2);
}

TEST_CASE("packet cache: SERVFAIL, REFUSED, TC, non-answers and mismatches are not cached") {
  PacketCache cache(test_config());
  Query q = make_query("www.example.com");
  AnswerBuilder good = typical_a();

  for (uint8_t rcode : {kServFail, kRefused, kFormErr, kNotImp}) {
    AnswerBuilder b = good;
    b.rcode = rcode;
    b.answer = {};
    CHECK(insert_reason(cache, q, b.build()) == CacheRejection::uncacheable_rcode);
  }
  AnswerBuilder tc = good;
  tc.flags |= kFlagTc;
  CHECK(insert_reason(cache, q, tc.build()) == CacheRejection::truncated);
  AnswerBuilder not_response = good;
  not_response.flags = kFlagRd;
  CHECK(insert_reason(cache, q, not_response.build()) == CacheRejection::not_a_response);
  AnswerBuilder other_name = typical_a("www.example.org");
  CHECK(insert_reason(cache, q, other_name.build()) == CacheRejection::question_mismatch);
  AnswerBuilder other_type = good;
  other_type.qtype = kTypeAaaa;
  CHECK(insert_reason(cache, q, other_type.build()) == CacheRejection::question_mismatch);
  Bytes garbage = good.build();
  garbage.push_back(0xFF);
  CHECK(insert_reason(cache, q, garbage) == CacheRejection::malformed);
  CHECK(insert_reason(cache, q, Bytes(3, 0)) == CacheRejection::malformed);

  // An answer with OPT is never stored for a client that sent no EDNS.
  Query plain = make_query("www.example.com", {.edns = false});
  CHECK(insert_reason(cache, plain, good.build()) == CacheRejection::opt_mismatch);
  AnswerBuilder without_opt = good;
  without_opt.additional = {};
  CHECK(insert(cache, plain, without_opt.build()));

  PacketCache::Stats stats = cache.stats();
  CHECK(stats.entries == 1);
  CHECK(stats.not_cacheable == 11);
  CHECK(stats.not_cacheable_by_reason[static_cast<size_t>(CacheRejection::uncacheable_rcode)] == 4);
  CHECK(stats.not_cacheable_by_reason[static_cast<size_t>(CacheRejection::question_mismatch)] == 2);
}

TEST_CASE("packet cache: a refresh replaces the entry in place") {
  PacketCache cache(test_config());
  Query q = make_query("www.example.com");
  REQUIRE(insert(cache, q, typical_a("www.example.com", 100).build()));
  REQUIRE(insert(cache, q, typical_a("www.example.com", 500).build(), at(50)));
  CHECK(ttls_of(lookup(cache, q, at(60)).answer) == std::vector<uint32_t>{490});
  PacketCache::Stats stats = cache.stats();
  CHECK(stats.entries == 1);
  CHECK(stats.insertions == 2);
  CHECK(stats.replacements == 1);
}

TEST_CASE("packet cache: eviction keeps hot entries while a flood of one-time names passes") {
  CacheConfig config = test_config();
  config.max_entries = 100;
  PacketCache cache(config, 1);
  Query hot = make_query("hot.example.com");
  REQUIRE(insert(cache, hot, typical_a("hot.example.com").build()));
  CHECK(lookup(cache, hot, kStart).hit == PacketCache::Hit::fresh);
  CHECK(lookup(cache, hot, kStart).hit == PacketCache::Hit::fresh);

  // Ten times the capacity of random-subdomain NXDOMAINs, and the hot name never asked
  // again meanwhile: LRU would have dropped it.
  for (int i = 0; i < 1000; ++i) {
    std::string name = "r" + std::to_string(i) + ".example.com";
    AnswerBuilder nx;
    nx.qname = name;
    nx.rcode = kNxDomain;
    nx.authority = {soa_record(300, 300)};
    REQUIRE(insert(cache, make_query(name), nx.build()));
  }
  CHECK(lookup(cache, hot, kStart).hit == PacketCache::Hit::fresh);
  PacketCache::Stats stats = cache.stats();
  CHECK(stats.entries == 100);
  CHECK(stats.evictions == 901);
  CHECK(lookup(cache, make_query("r0.example.com"), kStart).hit == PacketCache::Hit::miss);
  CHECK(lookup(cache, make_query("r999.example.com"), kStart).hit == PacketCache::Hit::fresh);

  // A name evicted and asked again soon goes straight to the main queue (the ghost table
  // remembers recent evictions: r900 was the last), and survives the next flood.
  Query returning = make_query("r900.example.com");
  CHECK(lookup(cache, returning, kStart).hit == PacketCache::Hit::miss);
  AnswerBuilder again;
  again.qname = "r900.example.com";
  again.rcode = kNxDomain;
  again.authority = {soa_record(300, 300)};
  REQUIRE(insert(cache, returning, again.build()));
  for (int i = 1000; i < 1300; ++i) {
    std::string name = "r" + std::to_string(i) + ".example.com";
    AnswerBuilder nx = again;
    nx.qname = name;
    REQUIRE(insert(cache, make_query(name), nx.build()));
  }
  CHECK(lookup(cache, returning, kStart).hit == PacketCache::Hit::fresh);
  CHECK(lookup(cache, hot, kStart).hit == PacketCache::Hit::fresh);
}

TEST_CASE("packet cache: entries are bounded across shards") {
  CacheConfig config = test_config();
  config.max_entries = 1000;
  PacketCache cache(config, 8);
  CHECK(cache.shard_count() == 8);
  for (int i = 0; i < 5000; ++i) {
    std::string name = "host" + std::to_string(i) + ".example.com";
    REQUIRE(insert(cache, make_query(name), typical_a(name).build()));
  }
  PacketCache::Stats stats = cache.stats();
  CHECK(stats.entries <= 1000);
  CHECK(stats.entries >= 990);  // every shard is full; the split is max_entries / shards
  CHECK(stats.evictions == 5000 - stats.entries);

  config.max_entries = 3;
  PacketCache tiny(config, 64);
  CHECK(tiny.shard_count() == 2);  // never more shards than entries
}

TEST_CASE("packet cache: expired entries are served stale only on request and within max_stale") {
  CacheConfig config = test_config();
  config.stale_answer_ttl = 30s;
  config.max_stale = 3600s;
  PacketCache cache(config);
  Query q = make_query("www.example.com");
  AnswerBuilder b = typical_a("www.example.com", 60);
  b.additional.insert(b.additional.begin(), a_record(wire_name("ns1.example.com"), 600));
  REQUIRE(insert(cache, q, b.build()));

  CHECK(lookup(cache, q, at(30), true).hit == PacketCache::Hit::fresh);  // fresh stays fresh
  CHECK(lookup(cache, q, at(61)).hit == PacketCache::Hit::miss);
  LookupResult stale = lookup(cache, q, at(61), true);
  REQUIRE(stale.hit == PacketCache::Hit::stale);
  CHECK(ttls_of(stale.answer) == std::vector<uint32_t>{30, 30});
  CHECK(message_id(stale.answer.data()) == q.info.id);
  CHECK(lookup(cache, q, at(60 + 3599), true).hit == PacketCache::Hit::stale);
  CHECK(lookup(cache, q, at(60 + 3600), true).hit == PacketCache::Hit::miss);
  CHECK(lookup(cache, q, at(60 + 3600), true).hit == PacketCache::Hit::miss);

  PacketCache::Stats stats = cache.stats();
  CHECK(stats.stale_hits == 2);
  CHECK(stats.stale_misses == 2);
  CHECK(stats.misses == 1);
  CHECK(stats.expired_removed == 1);  // dropped by the lookup that found it dead
  CHECK(stats.entries == 0);
}

TEST_CASE("packet cache: serve_stale off means no stale answers, and expiry drops the entry") {
  CacheConfig config = test_config();
  config.serve_stale = false;
  PacketCache cache(config);
  Query q = make_query("www.example.com");
  REQUIRE(insert(cache, q, typical_a("www.example.com", 60).build()));
  CHECK(lookup(cache, q, at(61), true).hit == PacketCache::Hit::miss);
  CHECK(cache.stats().entries == 0);
}

TEST_CASE("packet cache: remove_expired drops entries past their stale window only") {
  CacheConfig config = test_config();
  config.max_stale = 100s;
  PacketCache cache(config);
  Query shortlived = make_query("a.example.com");
  Query longlived = make_query("b.example.com");
  REQUIRE(insert(cache, shortlived, typical_a("a.example.com", 10).build()));
  REQUIRE(insert(cache, longlived, typical_a("b.example.com", 1000).build()));
  CHECK(cache.remove_expired(at(50)) == 0);  // a is stale, still servable
  CHECK(cache.remove_expired(at(110)) == 1);
  CHECK(cache.stats().entries == 1);
  CHECK(cache.stats().expired_removed == 1);
  CHECK(lookup(cache, longlived, at(110)).hit == PacketCache::Hit::fresh);
}

TEST_CASE("packet cache: prefetch is wanted once near expiry for a popular entry") {
  PacketCache cache(test_config());
  Query popular = make_query("popular.example.com");
  Query cold = make_query("cold.example.com");
  Query brief = make_query("brief.example.com");
  REQUIRE(insert(cache, popular, typical_a("popular.example.com", 1000).build()));
  REQUIRE(insert(cache, cold, typical_a("cold.example.com", 1000).build()));
  REQUIRE(insert(cache, brief, typical_a("brief.example.com", 5).build()));

  CHECK(lookup(cache, popular, at(1)).hit == PacketCache::Hit::fresh);
  CHECK(lookup(cache, popular, at(899)).hit == PacketCache::Hit::fresh);  // 101 s left: not yet
  CHECK(lookup(cache, popular, at(950)).hit == PacketCache::Hit::fresh_prefetch);
  CHECK(lookup(cache, popular, at(951)).hit == PacketCache::Hit::fresh);  // asked already
  CHECK(lookup(cache, popular, at(959)).hit == PacketCache::Hit::fresh);
  // No refresh came within kPrefetchRetryMs: ask again, once.
  CHECK(lookup(cache, popular, at(960)).hit == PacketCache::Hit::fresh_prefetch);
  CHECK(lookup(cache, popular, at(961)).hit == PacketCache::Hit::fresh);
  // The refresh replaces the entry: fresh again, no prefetch until it is near expiry again.
  REQUIRE(insert(cache, popular, typical_a("popular.example.com", 1000).build(), at(962)));
  CHECK(lookup(cache, popular, at(963)).hit == PacketCache::Hit::fresh);
  CHECK(lookup(cache, popular, at(964)).hit == PacketCache::Hit::fresh);
  CHECK(ttls_of(lookup(cache, popular, at(970)).answer) == std::vector<uint32_t>{992});

  CHECK(lookup(cache, cold, at(950)).hit == PacketCache::Hit::fresh);  // first hit: not popular

  CHECK(lookup(cache, brief, at(1)).hit == PacketCache::Hit::fresh);
  CHECK(lookup(cache, brief, at(2)).hit == PacketCache::Hit::fresh);
  CHECK(lookup(cache, brief, at(4.9)).hit == PacketCache::Hit::fresh);  // TTL too short to bother

  CHECK(cache.stats().prefetches_wanted == 2);
}

TEST_CASE("packet cache: flush_all and flush_name on label boundaries") {
  PacketCache cache(test_config(), 4);
  const char* names[] = {"example.com", "www.example.com", "a.b.example.com", "notexample.com",
                         "example.org", "www.example.com.evil.net"};
  for (const char* name : names) {
    REQUIRE(insert(cache, make_query(name), typical_a(name).build()));
  }
  REQUIRE(insert(cache, make_query("www.example.com", {.qtype = kTypeAaaa}),
                 [] { AnswerBuilder b; b.qtype = kTypeAaaa; b.authority = {soa_record(60, 60)}; return b.build(); }()));
  CHECK(cache.stats().entries == 7);

  Bytes zone = wire_name("Example.COM");
  CHECK(cache.flush_name(zone.data(), zone.size()) == 4);
  CHECK(lookup(cache, make_query("www.example.com"), kStart).hit == PacketCache::Hit::miss);
  CHECK(lookup(cache, make_query("example.com"), kStart).hit == PacketCache::Hit::miss);
  CHECK(lookup(cache, make_query("notexample.com"), kStart).hit == PacketCache::Hit::fresh);
  CHECK(lookup(cache, make_query("example.org"), kStart).hit == PacketCache::Hit::fresh);
  CHECK(lookup(cache, make_query("www.example.com.evil.net"), kStart).hit == PacketCache::Hit::fresh);

  Bytes one = wire_name("example.org");
  CHECK(cache.flush_name(one.data(), one.size()) == 1);
  const uint8_t malformed[] = {3, 'c', 'o', 'm'};  // no root label
  CHECK(cache.flush_name(malformed, sizeof malformed) == 0);
  const uint8_t pointer[] = {0xC0, 0x0C};
  CHECK(cache.flush_name(pointer, sizeof pointer) == 0);

  CHECK(cache.flush_all() == 2);
  CHECK(cache.stats().entries == 0);
  CHECK(cache.stats().flushed == 7);

  REQUIRE(insert(cache, make_query("x.example.net"), typical_a("x.example.net").build()));
  const uint8_t root[] = {0};
  CHECK(cache.flush_name(root, 1) == 1);
}

TEST_CASE("packet cache: the OPT record's TTL field (EDNS flags, DO) is never aged") {
  PacketCache cache(test_config());
  Query q = make_query("www.example.com", {.dnssec_ok = true});
  AnswerBuilder b = typical_a("www.example.com", 60);
  b.flags |= kFlagAd;
  b.additional = {opt_record(true, 1232)};
  Bytes answer = b.build();
  REQUIRE(insert(cache, q, answer));
  const Bytes opt(answer.end() - 11, answer.end());
  for (auto [now, stale] : {std::pair{at(59), false}, std::pair{at(600), true}}) {
    LookupResult r = lookup(cache, q, now, stale);
    REQUIRE(r.hit != PacketCache::Hit::miss);
    CHECK(Bytes(r.answer.end() - 11, r.answer.end()) == opt);
    CHECK((message_flags(r.answer.data()) & kFlagAd) != 0);
  }
}

TEST_CASE("packet cache: compressed names in a CNAME chain and in the SOA") {
  PacketCache cache(test_config());
  Query q = make_query("www.example.com");
  AnswerBuilder b;
  // www.example.com CNAME cdn.example.net, cdn.example.net A: the second owner is a pointer
  // into the first record's RDATA.
  const size_t question_end = kHeaderSize + wire_name("www.example.com").size() + 4;
  const size_t cname_rdata = question_end + 2 + 10;
  b.answer = {Record{kPointerToQuestion, kTypeCname, kClassIn, 600, wire_name("cdn.example.net")},
              a_record(Bytes{0xC0, static_cast<uint8_t>(cname_rdata)}, 120)};
  // The authority's owner points into the question ("example.com").
  b.authority = {Record{Bytes{0xC0, 0x10}, kTypeNs, kClassIn, 3600, Bytes{2, 'n', 's', 0xC0, 0x10}}};
  b.additional = {opt_record()};
  Bytes answer = b.build();
  REQUIRE(insert(cache, q, answer));
  LookupResult r = lookup(cache, make_query("WWW.example.com"), at(20));
  REQUIRE(r.hit == PacketCache::Hit::fresh);
  CHECK(ttls_of(r.answer) == std::vector<uint32_t>{580, 100, 3580});
  CHECK(std::memcmp(r.answer.data() + cname_rdata, answer.data() + cname_rdata, 17) == 0);
  CHECK(lookup(cache, q, at(120)).hit == PacketCache::Hit::miss);  // the A record's TTL rules

  // NODATA whose SOA names are compressed against the question.
  Query nodata_q = make_query("www.example.com", {.qtype = kTypeAaaa});
  AnswerBuilder nodata;
  nodata.qtype = kTypeAaaa;
  Bytes rdata = {2, 'n', 's', 0xC0, 0x10, 0xC0, 0x10};  // ns.example.com, example.com
  Bytes numbers(20, 0);
  write_u32(numbers.data() + 16, 45);
  rdata.insert(rdata.end(), numbers.begin(), numbers.end());
  nodata.authority = {Record{Bytes{0xC0, 0x10}, kTypeSoa, kClassIn, 3600, rdata}};
  REQUIRE(insert(cache, nodata_q, nodata.build()));
  CHECK(ttls_of(lookup(cache, nodata_q, kStart).answer) == std::vector<uint32_t>{45});
}

TEST_CASE("packet cache: an answer larger than the caller's buffer reads as a miss") {
  PacketCache cache(test_config());
  Query q = make_query("www.example.com");
  Bytes answer = typical_a().build();
  REQUIRE(insert(cache, q, answer));
  Bytes out(answer.size() - 1);
  size_t length = 99;
  CHECK(cache.lookup(q.bytes.data(), q.info, kStart, false, out.data(), out.size(), &length) ==
        PacketCache::Hit::miss);
  CHECK(length == 0);
}

TEST_CASE("packet cache: a disabled cache stores nothing") {
  CacheConfig config = test_config();
  config.enabled = false;
  PacketCache cache(config);
  CHECK_FALSE(cache.enabled());
  Query q = make_query("www.example.com");
  CHECK(insert_reason(cache, q, typical_a().build()) == CacheRejection::disabled);
  CHECK(lookup(cache, q, kStart).hit == PacketCache::Hit::miss);
  CHECK(cache.flush_all() == 0);
}

TEST_CASE("packet cache: workers and the control loop use it at once") {
  CacheConfig config = test_config();
  config.max_entries = 64;
  PacketCache cache(config, 4);
  constexpr int kNames = 200;
  std::vector<Query> queries;
  std::vector<Bytes> answers;
  for (int i = 0; i < kNames; ++i) {
    std::string name = "n" + std::to_string(i) + ".example.com";
    queries.push_back(make_query(name, {.id = static_cast<uint16_t>(i)}));
    answers.push_back(typical_a(name, static_cast<uint32_t>(1 + i % 20)).build());
  }
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bad{0};
  auto worker = [&](unsigned seed) {
    Bytes out(kMaxMessageSize);
    uint64_t now = kStart;
    unsigned state = seed;
    for (int round = 0; round < 20000 && !stop.load(); ++round) {
      state = state * 1103515245u + 12345u;
      const size_t i = (state >> 8) % kNames;
      now += (state >> 4) % 50;
      size_t length = 0;
      PacketCache::Hit hit = cache.lookup(queries[i].bytes.data(), queries[i].info, now, (state & 1) != 0,
                                          out.data(), out.size(), &length);
      if (hit == PacketCache::Hit::miss) {
        cache.insert(queries[i].bytes.data(), queries[i].info, answers[i].data(), answers[i].size(), now);
      } else if (length != answers[i].size() || message_id(out.data()) != queries[i].info.id) {
        bad.fetch_add(1);
      }
    }
  };
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 3; ++t) threads.emplace_back(worker, t + 1);
  threads.emplace_back([&] {
    Bytes zone = wire_name("n1.example.com");
    for (int i = 0; i < 200; ++i) {
      if (i % 2 == 0) cache.flush_name(zone.data(), zone.size());
      else if (i % 10 == 1) cache.flush_all();
      (void)cache.stats();
      std::this_thread::yield();
    }
  });
  for (auto& thread : threads) thread.join();
  CHECK(bad.load() == 0);
  PacketCache::Stats stats = cache.stats();
  CHECK(stats.entries <= 64);
  CHECK(stats.hits + stats.misses + stats.stale_hits + stats.stale_misses == 60000);
  MESSAGE("threads: hits " << stats.hits << ", misses " << stats.misses << ", evictions "
                           << stats.evictions << ", flushed " << stats.flushed);
}

TEST_CASE("packet cache: memory per entry for a typical A answer") {
  constexpr size_t kEntries = 10000;
  CacheConfig config = test_config();
  config.max_entries = 2 * kEntries;  // room to spare: shards fill unevenly
  PacketCache cache(config);
  const size_t empty_bytes = cache.stats().bytes;
  Bytes typical = typical_a("www.example.com").build();
  for (size_t i = 0; i < kEntries; ++i) {
    std::string name = "www" + std::to_string(10000 + i) + ".example.com";  // same length for all
    REQUIRE(insert(cache, make_query(name), typical_a(name).build()));
  }
  PacketCache::Stats stats = cache.stats();
  REQUIRE(stats.entries == kEntries);
  const size_t per_entry = static_cast<size_t>(stats.bytes / stats.entries);
  const size_t estimate = PacketCache::entry_footprint(wire_name("www.example.com").size(), typical.size(), 1);
  MESSAGE("typical A answer (" << typical.size() << " bytes on the wire, with OPT): "
          << per_entry << " bytes per entry with " << kEntries << " entries ("
          << (stats.bytes - empty_bytes) / kEntries << " grown per entry; footprint estimate for "
          << "www.example.com " << estimate << "), " << cache.shard_count() << " shards");
  CHECK(per_entry < 512);
  CHECK(estimate < 256);
}
