// Unit tests for the JSON writer behind GET /status (probe/json_writer.h).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>

#include "probe/json_writer.h"

using namespace hubdns;

TEST_CASE("commas and nesting") {
  JsonWriter json;
  json.begin_object();
  json.member("a", 1);
  json.key("b").begin_array().value(true).value(false).null().begin_object().end_object().begin_array().end_array().end_array();
  json.member("c", "x");
  json.key("d").begin_object().member("e", uint64_t{18446744073709551615ULL}).member("f", int64_t{-9}).end_object();
  json.end_object();
  CHECK(json.complete());
  CHECK(json.str() == R"({"a":1,"b":[true,false,null,{},[]],"c":"x","d":{"e":18446744073709551615,"f":-9}})");
}

TEST_CASE("top-level values and empty containers") {
  JsonWriter empty;
  CHECK_FALSE(empty.complete());
  empty.begin_array().end_array();
  CHECK(empty.str() == "[]");
  CHECK(empty.complete());
}

TEST_CASE("strings are escaped") {
  CHECK(json_quote("plain") == "\"plain\"");
  CHECK(json_quote("q\"b\\s/") == R"("q\"b\\s/")");
  CHECK(json_quote("\n\r\t\b\f") == R"("\n\r\t\b\f")");
  CHECK(json_quote(std::string("\x01\x1f\x7f", 3)) == R"("\u0001\u001f\u007f")");
  CHECK(json_quote(std::string("nul\0byte", 8)) == R"("nul\u0000byte")");
}

TEST_CASE("valid UTF-8 passes through, invalid bytes become U+FFFD") {
  CHECK(json_quote("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") == "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
  CHECK(json_quote("\xff") == R"("\ufffd")");
  CHECK(json_quote("\xc3") == R"("\ufffd")");                    // cut short at the end
  CHECK(json_quote("\xc3(") == R"("\ufffd(")");                  // bad continuation
  CHECK(json_quote("\xc0\xaf") == R"("\ufffd\ufffd")");          // overlong '/'
  CHECK(json_quote("\xed\xa0\x80") == R"("\ufffd\ufffd\ufffd")");  // surrogate
  CHECK(json_quote("\xf4\x90\x80\x80") == R"("\ufffd\ufffd\ufffd\ufffd")");  // above U+10FFFF
}

TEST_CASE("keys are escaped too") {
  JsonWriter json;
  json.begin_object().member("k\"ey", 0).end_object();
  CHECK(json.str() == R"({"k\"ey":0})");
}

TEST_CASE("numbers: shortest round-trip doubles, no NaN or infinity") {
  JsonWriter json;
  json.begin_array();
  json.value(0.5).value(1.0).value(0.1).value(1e300).value(std::nan("")).value(std::numeric_limits<double>::infinity());
  json.end_array();
  CHECK(json.str() == "[0.5,1,0.1,1e+300,null,null]");
}
