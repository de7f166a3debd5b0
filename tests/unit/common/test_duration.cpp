// Duration strings as written in configuration files.
#include <doctest/doctest.h>

#include <string>

#include "common/util/duration.h"

namespace hubdns {
namespace {

Duration parsed(std::string_view text) {
  std::string error;
  const std::optional<Duration> d = parse_duration(text, &error);
  INFO("text=", std::string(text), " error=", error);
  REQUIRE(d.has_value());
  return *d;
}

std::string rejection(std::string_view text) {
  std::string error;
  const std::optional<Duration> d = parse_duration(text, &error);
  INFO("text=", std::string(text));
  CHECK_FALSE(d.has_value());
  CHECK_FALSE(error.empty());
  return error;
}

TEST_CASE("parse_duration: every unit") {
  CHECK(parsed("250ms") == Duration{250});
  CHECK(parsed("5s") == Duration{5000});
  CHECK(parsed("2m") == Duration{120000});
  CHECK(parsed("1h") == Duration{3600000});
  CHECK(parsed("1d") == Duration{86400000});
  CHECK(parsed("0s") == Duration{0});
  CHECK(parsed("0ms") == Duration{0});
  CHECK(parsed("4500ms") == Duration{4500});
  CHECK(parsed("007s") == Duration{7000});
}

TEST_CASE("parse_duration: sums and decimals") {
  CHECK(parsed("1m30s") == Duration{90000});
  CHECK(parsed("1d2h3m4s5ms") == Duration{86400000 + 7200000 + 180000 + 4000 + 5});
  CHECK(parsed("1.5s") == Duration{1500});
  CHECK(parsed("0.25s") == Duration{250});
  CHECK(parsed("1.000s") == Duration{1000});
  CHECK(parsed("0.001s") == Duration{1});
  CHECK(parsed("1.5d") == Duration{129600000});
  CHECK(parsed("0.0000000000s") == Duration{0});
}

TEST_CASE("parse_duration: refusals say why") {
  CHECK(rejection("").find("empty") != std::string::npos);
  CHECK(rejection("5").find("missing unit") != std::string::npos);
  CHECK(rejection("1.5").find("missing unit") != std::string::npos);
  CHECK(rejection("-5s").find("negative") != std::string::npos);
  CHECK(rejection("+5s").find("'+'") != std::string::npos);
  CHECK(rejection("5sec").find("unknown unit 'sec'") != std::string::npos);
  CHECK(rejection("5us").find("unknown unit 'us'") != std::string::npos);
  CHECK(rejection("5S").find("unknown unit 'S'") != std::string::npos);
  CHECK(rejection("5 s").find("space") != std::string::npos);
  CHECK(rejection(" 5s").find("space") != std::string::npos);
  CHECK(rejection("5s ").find("space") != std::string::npos);
  CHECK(rejection("s").find("expected a number") != std::string::npos);
  CHECK(rejection("0.5ms").find("whole number of milliseconds") != std::string::npos);
  CHECK(rejection("0.0001s").find("whole number of milliseconds") != std::string::npos);
  CHECK(rejection("0.12345678901s").find("whole number of milliseconds") != std::string::npos);
  CHECK(rejection("5.s").find("digits after '.'") != std::string::npos);
  CHECK(rejection(".5s").find("digit before '.'") != std::string::npos);
  CHECK(rejection("30s1m").find("larger to smaller") != std::string::npos);
  CHECK(rejection("1s1s").find("larger to smaller") != std::string::npos);
  CHECK(rejection("1s2").find("missing unit") != std::string::npos);
}

TEST_CASE("parse_duration: overflow is refused, not wrapped") {
  // int64 milliseconds end at 9223372036854775807.
  CHECK(parsed("9223372036854775807ms") == Duration{INT64_MAX});
  CHECK(rejection("9223372036854775808ms").find("too large") != std::string::npos);
  CHECK(rejection("99999999999999999999999999s").find("too large") != std::string::npos);
  CHECK(rejection("106751991167301d").find("too large") != std::string::npos);
  CHECK(rejection("9223372036854775807ms1ms").find("too large") != std::string::npos);
  CHECK(rejection("9223372036854775s1s").find("too large") != std::string::npos);
}

TEST_CASE("format_duration: largest exact unit, and it reads back") {
  CHECK(format_duration(Duration{0}) == "0s");
  CHECK(format_duration(Duration{250}) == "250ms");
  CHECK(format_duration(Duration{4500}) == "4500ms");
  CHECK(format_duration(Duration{5000}) == "5s");
  CHECK(format_duration(Duration{90000}) == "90s");
  CHECK(format_duration(Duration{120000}) == "2m");
  CHECK(format_duration(Duration{3600000}) == "1h");
  CHECK(format_duration(Duration{86400000}) == "1d");
  CHECK(format_duration(Duration{-5000}) == "-5s");
  for (const int64_t ms : {int64_t{1}, int64_t{999}, int64_t{1001}, int64_t{60000}, int64_t{86400001},
                           int64_t{172800000}, INT64_MAX}) {
    CHECK(parsed(format_duration(Duration{ms})) == Duration{ms});
  }
}

TEST_CASE("parse_duration: error pointer may be null") {
  CHECK_FALSE(parse_duration("5", nullptr).has_value());
  CHECK(parse_duration("5s").has_value());
}

}  // namespace
}  // namespace hubdns
