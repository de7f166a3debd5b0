// Unit tests for response building (probe/http_response.h).
#include <doctest/doctest.h>

#include <string>

#include "probe/http_response.h"

using namespace hubdns;

TEST_CASE("http_date formats IMF-fixdate") {
  CHECK(http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT");
  CHECK(http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT");
}

TEST_CASE("reason phrases") {
  CHECK(std::string(http_reason_phrase(200)) == "OK");
  CHECK(std::string(http_reason_phrase(405)) == "Method Not Allowed");
  CHECK(std::string(http_reason_phrase(431)) == "Request Header Fields Too Large");
  CHECK(std::string(http_reason_phrase(503)) == "Service Unavailable");
  CHECK(std::string(http_reason_phrase(799)) == "Unknown");
}

TEST_CASE("a 200 text answer, kept alive") {
  ResponseOptions options;
  options.date = 784111777;
  std::string bytes = serialize_response(HttpResponse::text(200, "ok\n"), options);
  CHECK(bytes ==
        "HTTP/1.1 200 OK\r\n"
        "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Length: 3\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: keep-alive\r\n"
        "\r\n"
        "ok\n");
}

TEST_CASE("HEAD keeps status and headers, drops the body") {
  HttpResponse response = HttpResponse::text(503, "draining\nlisteners not bound\n");
  ResponseOptions get_options;
  ResponseOptions head_options;
  head_options.head_request = true;
  std::string get_bytes = serialize_response(response, get_options);
  std::string head_bytes = serialize_response(response, head_options);
  CHECK(head_bytes ==
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Length: 29\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: keep-alive\r\n"
        "\r\n");
  CHECK(get_bytes == head_bytes + response.body);
}

TEST_CASE("405 carries Allow; close_connection wins over keep-alive") {
  HttpResponse response = HttpResponse::text(405, "method not allowed\n");
  response.allow = "GET, HEAD";
  response.close_connection = true;
  ResponseOptions options;
  options.keep_alive = true;
  std::string bytes = serialize_response(response, options);
  CHECK(bytes.rfind("HTTP/1.1 405 Method Not Allowed\r\n", 0) == 0);
  CHECK(bytes.find("\r\nAllow: GET, HEAD\r\n") != std::string::npos);
  CHECK(bytes.find("\r\nConnection: close\r\n") != std::string::npos);
  CHECK(bytes.find("Date:") == std::string::npos);
}

TEST_CASE("json answers and extra headers") {
  HttpResponse response = HttpResponse::json(200, "{\"ApplicationHealthState\":\"Healthy\"}");
  response.extra_headers.emplace_back("WWW-Authenticate", "Bearer");
  ResponseOptions options;
  options.keep_alive = false;
  std::string bytes = serialize_response(response, options);
  CHECK(bytes.find("\r\nContent-Type: application/json\r\n") != std::string::npos);
  CHECK(bytes.find("\r\nContent-Length: 36\r\n") != std::string::npos);
  CHECK(bytes.find("\r\nWWW-Authenticate: Bearer\r\n") != std::string::npos);
  CHECK(bytes.find("\r\nConnection: close\r\n\r\n{") != std::string::npos);
}
