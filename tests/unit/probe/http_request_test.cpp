// Unit tests for the HTTP/1.1 request parser (probe/http_request.h).
#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "probe/http_request.h"

using namespace hubdns;

namespace {

// Feeds the whole text at once.
HttpParseResult parse_all(HttpRequestParser& parser, std::string_view text) {
  return parser.feed(text);
}

// Feeds one byte at a time; returns the first result that is not need_more (or the last).
HttpParseResult parse_bytewise(HttpRequestParser& parser, std::string_view text, size_t* fed) {
  HttpParseResult result;
  *fed = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    result = parser.feed(text.substr(i, 1));
    *fed += result.consumed;
    if (result.status != HttpParseStatus::need_more) break;
  }
  return result;
}

int error_status(std::string_view text, HttpLimits limits = {}) {
  HttpRequestParser parser(limits);
  HttpParseResult result = parser.feed(text);
  if (result.status != HttpParseStatus::error) return 0;
  return result.http_status;
}

}  // namespace

TEST_CASE("parses a simple GET") {
  HttpRequestParser parser;
  const std::string text = "GET /livez HTTP/1.1\r\nHost: 127.0.0.1:8053\r\nUser-Agent: curl/7.88\r\n\r\n";
  HttpParseResult result = parse_all(parser, text);
  REQUIRE(result.status == HttpParseStatus::complete);
  CHECK(result.consumed == text.size());
  const HttpRequest& request = parser.request();
  CHECK(request.method == "GET");
  CHECK(request.target == "/livez");
  CHECK(request.path == "/livez");
  CHECK(request.query.empty());
  CHECK(request.version_minor == 1);
  CHECK(request.keep_alive);
  CHECK(request.content_length == 0);
  REQUIRE(request.header("host") != nullptr);
  CHECK(*request.header("host") == "127.0.0.1:8053");
  CHECK(*request.header("user-agent") == "curl/7.88");
  CHECK(request.header("accept") == nullptr);
}

TEST_CASE("header names are case-insensitive and values are trimmed") {
  HttpRequestParser parser;
  HttpParseResult result = parse_all(
      parser, "GET / HTTP/1.1\r\nAUTHORIZATION: \t Bearer s3cret \t\r\nX-Empty:\r\n\r\n");
  REQUIRE(result.status == HttpParseStatus::complete);
  REQUIRE(parser.request().header("authorization") != nullptr);
  CHECK(*parser.request().header("authorization") == "Bearer s3cret");
  REQUIRE(parser.request().header("x-empty") != nullptr);
  CHECK(parser.request().header("x-empty")->empty());
}

TEST_CASE("splits path and query and percent-decodes query values") {
  HttpRequestParser parser;
  HttpParseResult result =
      parse_all(parser, "GET /livez?format=azure&name=www.contoso.com%2E&q=a+b%20c&flag&&e= HTTP/1.1\r\n\r\n");
  REQUIRE(result.status == HttpParseStatus::complete);
  const HttpRequest& request = parser.request();
  CHECK(request.path == "/livez");
  CHECK(request.query == "format=azure&name=www.contoso.com%2E&q=a+b%20c&flag&&e=");
  CHECK(request.query_param("format") == "azure");
  CHECK(request.query_param("name") == "www.contoso.com.");
  CHECK(request.query_param("q") == "a b c");
  CHECK(request.query_param("flag") == "");
  CHECK(request.query_param("e") == "");
  CHECK_FALSE(request.query_param("missing").has_value());
  CHECK(request.query_params.size() == 5);
}

TEST_CASE("the path is matched as sent, not decoded") {
  HttpRequestParser parser;
  REQUIRE(parse_all(parser, "GET /live%7A HTTP/1.1\r\n\r\n").status == HttpParseStatus::complete);
  CHECK(parser.request().path == "/live%7A");
}

TEST_CASE("accepts absolute-form and asterisk-form targets") {
  HttpRequestParser parser;
  REQUIRE(parse_all(parser, "GET http://10.0.0.4:8053/readyz?x=1 HTTP/1.1\r\n\r\n").status ==
          HttpParseStatus::complete);
  CHECK(parser.request().path == "/readyz");
  CHECK(parser.request().query_param("x") == "1");

  parser.reset();
  REQUIRE(parse_all(parser, "GET HTTP://host HTTP/1.1\r\n\r\n").status == HttpParseStatus::complete);
  CHECK(parser.request().path == "/");

  parser.reset();
  REQUIRE(parse_all(parser, "OPTIONS * HTTP/1.1\r\n\r\n").status == HttpParseStatus::complete);
  CHECK(parser.request().path == "*");
}

TEST_CASE("a request fed byte by byte parses the same") {
  const std::string text =
      "POST /drain?reason=maint%20window HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
  HttpRequestParser parser;
  size_t fed = 0;
  HttpParseResult result = parse_bytewise(parser, text, &fed);
  REQUIRE(result.status == HttpParseStatus::complete);
  CHECK(fed == text.size());
  CHECK(parser.request().method == "POST");
  CHECK(parser.request().query_param("reason") == "maint window");
  CHECK(parser.request().body == "hello");
  CHECK(parser.in_progress());  // complete but not reset yet
  parser.reset();
  CHECK_FALSE(parser.in_progress());
}

TEST_CASE("pipelined requests are read one after the other") {
  const std::string first = "GET /livez HTTP/1.1\r\nHost: a\r\n\r\n";
  const std::string second = "HEAD /readyz HTTP/1.1\r\nContent-Length: 2\r\n\r\nok";
  const std::string third_part = "GET /healthz HTTP/1.1\r\n";
  std::string_view data;
  const std::string all = first + second + third_part;
  data = all;

  HttpRequestParser parser;
  HttpParseResult result = parser.feed(data);
  REQUIRE(result.status == HttpParseStatus::complete);
  CHECK(result.consumed == first.size());
  CHECK(parser.request().path == "/livez");
  data.remove_prefix(result.consumed);

  parser.reset();
  result = parser.feed(data);
  REQUIRE(result.status == HttpParseStatus::complete);
  CHECK(result.consumed == second.size());
  CHECK(parser.request().method == "HEAD");
  CHECK(parser.request().body == "ok");
  data.remove_prefix(result.consumed);

  parser.reset();
  result = parser.feed(data);
  CHECK(result.status == HttpParseStatus::need_more);
  CHECK(result.consumed == third_part.size());
  CHECK(parser.in_progress());
  result = parser.feed("Connection: close\r\n\r\n");
  REQUIRE(result.status == HttpParseStatus::complete);
  CHECK(parser.request().path == "/healthz");
  CHECK_FALSE(parser.request().keep_alive);
}

TEST_CASE("a body split over several feeds") {
  HttpRequestParser parser;
  HttpParseResult result = parser.feed("POST /reload HTTP/1.1\r\ncontent-length: 10\r\n\r\n01234");
  CHECK(result.status == HttpParseStatus::need_more);
  result = parser.feed("567");
  CHECK(result.status == HttpParseStatus::need_more);
  CHECK(result.consumed == 3);
  result = parser.feed("89GET");  // the rest belongs to the next request
  REQUIRE(result.status == HttpParseStatus::complete);
  CHECK(result.consumed == 2);
  CHECK(parser.request().body == "0123456789");
  // Feeding a completed parser consumes nothing until reset().
  result = parser.feed("GET");
  CHECK(result.status == HttpParseStatus::complete);
  CHECK(result.consumed == 0);
}

TEST_CASE("line ends: CRLF, bare LF, and leading empty lines") {
  HttpRequestParser parser;
  REQUIRE(parse_all(parser, "GET /livez HTTP/1.1\nHost: a\n\n").status == HttpParseStatus::complete);
  CHECK(*parser.request().header("host") == "a");

  parser.reset();
  REQUIRE(parse_all(parser, "\r\n\n\r\nGET /readyz HTTP/1.1\r\n\r\n").status == HttpParseStatus::complete);
  CHECK(parser.request().path == "/readyz");

  CHECK(error_status("GET / HTTP/1.1\rHost: a\r\n\r\n") == 400);
  CHECK(error_status("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n") == 400);
  CHECK(error_status("\rGET / HTTP/1.1\r\n\r\n") == 400);
}

TEST_CASE("keep-alive follows the version and the Connection header") {
  auto keep_alive = [](std::string_view text) {
    HttpRequestParser parser;
    HttpParseResult result = parser.feed(text);
    REQUIRE(result.status == HttpParseStatus::complete);
    return parser.request().keep_alive;
  };
  CHECK(keep_alive("GET / HTTP/1.1\r\n\r\n"));
  CHECK_FALSE(keep_alive("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
  CHECK_FALSE(keep_alive("GET / HTTP/1.1\r\nConnection: Upgrade, CLOSE\r\n\r\n"));
  CHECK_FALSE(keep_alive("GET / HTTP/1.0\r\n\r\n"));
  CHECK(keep_alive("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
  CHECK_FALSE(keep_alive("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"));
}

TEST_CASE("missing Host on HTTP/1.1 is tolerated, two Hosts are not") {
  CHECK(error_status("GET /readyz HTTP/1.1\r\n\r\n") == 0);
  CHECK(error_status("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n") == 400);
}

TEST_CASE("malformed request lines are 400") {
  CHECK(error_status("GET /livez\r\n\r\n") == 400);
  CHECK(error_status("GET\r\n\r\n") == 400);
  CHECK(error_status("GET  /livez HTTP/1.1\r\n\r\n") == 400);
  CHECK(error_status("GET /livez  HTTP/1.1\r\n\r\n") == 400);
  CHECK(error_status("GET /livez HTTP/1.1 \r\n\r\n") == 400);
  CHECK(error_status("GET /livez http/1.1\r\n\r\n") == 400);
  CHECK(error_status("GET /livez HTTP/11\r\n\r\n") == 400);
  CHECK(error_status("G(T / HTTP/1.1\r\n\r\n") == 400);
  CHECK(error_status(" GET / HTTP/1.1\r\n\r\n") == 400);
  CHECK(error_status("GET livez HTTP/1.1\r\n\r\n") == 400);
  CHECK(error_status("GET ftp://host/ HTTP/1.1\r\n\r\n") == 400);
  CHECK(error_status("GET http:///x HTTP/1.1\r\n\r\n") == 400);
  CHECK(error_status("GET /a#frag HTTP/1.1\r\n\r\n") == 400);
  CHECK(error_status("GET /%zz HTTP/1.1\r\n\r\n") == 400);
  CHECK(error_status("GET /?a=%4 HTTP/1.1\r\n\r\n") == 400);
  CHECK(error_status("GET /?a=%G0 HTTP/1.1\r\n\r\n") == 400);
  CHECK(error_status("GET /\tx HTTP/1.1\r\n\r\n") == 400);
  CHECK(error_status("GET /\xC3\xA9 HTTP/1.1\r\n\r\n") == 400);
}

TEST_CASE("unsupported versions are 505") {
  CHECK(error_status("GET / HTTP/2.0\r\n\r\n") == 505);
  CHECK(error_status("GET / HTTP/1.2\r\n\r\n") == 505);
  CHECK(error_status("GET / HTTP/0.9\r\n\r\n") == 505);
}

TEST_CASE("malformed header lines are 400") {
  CHECK(error_status("GET / HTTP/1.1\r\nHost : a\r\n\r\n") == 400);
  CHECK(error_status("GET / HTTP/1.1\r\nNoColon\r\n\r\n") == 400);
  CHECK(error_status("GET / HTTP/1.1\r\n: value\r\n\r\n") == 400);
  CHECK(error_status("GET / HTTP/1.1\r\nX-A: b\r\n folded\r\n\r\n") == 400);
  CHECK(error_status("GET / HTTP/1.1\r\nX-A: b\r\n\tfolded\r\n\r\n") == 400);
  CHECK(error_status(std::string_view("GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n", 28)) == 400);
  CHECK(error_status("GET / HTTP/1.1\r\nX-A: a\x7f\r\n\r\n") == 400);
  // obs-text in a value is allowed.
  CHECK(error_status("GET / HTTP/1.1\r\nX-A: caf\xC3\xA9\r\n\r\n") == 0);
}

TEST_CASE("binary garbage is rejected at once, without waiting for a line end") {
  HttpRequestParser parser;
  HttpParseResult result = parser.feed(std::string_view("\x16\x03\x01\x02\x00", 5));  // TLS ClientHello
  CHECK(result.status == HttpParseStatus::error);
  CHECK(result.http_status == 400);
  CHECK(result.consumed == 1);
  // The parser stays failed until reset.
  result = parser.feed("GET / HTTP/1.1\r\n\r\n");
  CHECK(result.status == HttpParseStatus::error);
  CHECK(result.consumed == 0);
  parser.reset();
  CHECK(parser.feed("GET / HTTP/1.1\r\n\r\n").status == HttpParseStatus::complete);
}

TEST_CASE("Content-Length rules") {
  CHECK(error_status("POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n") == 400);
  CHECK(error_status("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n") == 400);
  CHECK(error_status("POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n") == 400);
  CHECK(error_status("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n") == 400);
  CHECK(error_status("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab") == 400);
  CHECK(error_status("POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab") == 0);
  CHECK(error_status("POST / HTTP/1.1\r\nContent-Length: 4097\r\n\r\n") == 413);
  CHECK(error_status("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n") == 413);
  CHECK(error_status("POST / HTTP/1.1\r\nContent-Length: 4096\r\n\r\n") == 0);  // need_more
}

TEST_CASE("Transfer-Encoding is 501") {
  CHECK(error_status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n") == 501);
  CHECK(error_status("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: gzip\r\n\r\n") == 501);
}

TEST_CASE("oversized heads are 431") {
  HttpLimits limits;  // 8 KiB, 100 headers
  const std::string big_value(9000, 'a');
  CHECK(error_status("GET / HTTP/1.1\r\nX-Big: " + big_value + "\r\n\r\n") == 431);

  // A long request line is cut as soon as the limit is reached, before its end.
  HttpRequestParser parser;
  std::string line = "GET /" + std::string(limits.max_head_bytes, 'x');
  HttpParseResult result = parser.feed(line);
  CHECK(result.status == HttpParseStatus::error);
  CHECK(result.http_status == 431);
  CHECK(result.consumed == limits.max_head_bytes);

  // Exactly at the limit is fine.
  std::string head = "GET / HTTP/1.1\r\nX: ";
  head += std::string(limits.max_head_bytes - head.size() - 4, 'y');
  head += "\r\n\r\n";
  REQUIRE(head.size() == limits.max_head_bytes);
  CHECK(error_status(head) == 0);
  CHECK(error_status(head.substr(0, head.size() - 2) + "z\r\n\r\n") == 431);

  std::string many = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 101; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
  CHECK(error_status(many + "\r\n") == 431);

  // Endless empty lines count against the limit too.
  CHECK(error_status(std::string(limits.max_head_bytes + 2, '\n')) == 431);
}

TEST_CASE("limits are configurable") {
  HttpLimits tight;
  tight.max_head_bytes = 32;
  tight.max_headers = 1;
  tight.max_body_bytes = 2;
  CHECK(error_status("GET / HTTP/1.1\r\nA: b\r\n\r\n", tight) == 0);
  CHECK(error_status("GET / HTTP/1.1\r\nA: b\r\nC: d\r\n\r\n", tight) == 431);
  CHECK(error_status("GET / HTTP/1.1\r\nA: bbbbbbbbbbbbbbb\r\n\r\n", tight) == 431);
  CHECK(error_status("POST / HTTP/1.1\r\nA: 3\r\n\r\n", tight) == 0);
  CHECK(error_status("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n", tight) == 431);  // head too long first
  tight.max_head_bytes = 64;
  CHECK(error_status("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n", tight) == 413);
}

TEST_CASE("percent_decode") {
  CHECK(percent_decode("", true) == "");
  CHECK(percent_decode("%41%62c", false) == "Abc");
  CHECK(percent_decode("%2f%2F", false) == "//");
  CHECK(percent_decode("a+b", true) == "a b");
  CHECK(percent_decode("a+b", false) == "a+b");
  CHECK(percent_decode("%2B", true) == "+");
  CHECK(percent_decode("%00", false) == std::string(1, '\0'));
  CHECK_FALSE(percent_decode("%", true).has_value());
  CHECK_FALSE(percent_decode("%4", true).has_value());
  CHECK_FALSE(percent_decode("a%", true).has_value());
  CHECK_FALSE(percent_decode("%zz", true).has_value());
  CHECK_FALSE(percent_decode("%4g", true).has_value());
}
