// Building HTTP/1.1 responses for the health listener: a plain value (HttpResponse) that
// handlers return, and serialize_response() that turns it into the bytes to write. Pure,
// no I/O; used on the control loop but safe anywhere.
//
// Every response carries Content-Type, Content-Length, Cache-Control: no-store (a probe
// answer must never be served from a cache), Connection and Date. A HEAD answer has the
// same status and headers as the GET answer, Content-Length included, and no body.
#pragma once

#include <ctime>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hubdns {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::string allow;  // for 405: "GET, HEAD"
  std::vector<std::pair<std::string, std::string>> extra_headers;  // e.g. WWW-Authenticate
  bool close_connection = false;  // the server closes after this answer whatever the client asked

  static HttpResponse text(int status, std::string body);
  static HttpResponse json(int status, std::string body);
};

struct ResponseOptions {
  bool head_request = false;  // omit the body, keep the headers
  bool keep_alive = true;     // what the request asked for; close_connection overrides it
  std::time_t date = 0;       // Date header (seconds since the epoch); 0 leaves it out
};

// The standard reason phrase ("Not Found"), or "Unknown" for a code this server never sends.
const char* http_reason_phrase(int status);

// Status line, headers and (unless HEAD) body, ready to write.
std::string serialize_response(const HttpResponse& response, const ResponseOptions& options);

// IMF-fixdate, as HTTP wants it: "Sun, 06 Nov 1994 08:49:37 GMT".
std::string http_date(std::time_t when);

}  // namespace hubdns
