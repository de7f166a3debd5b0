// A small, strict HTTP/1.1 request parser for the health listener. Pure: it works on bytes
// handed to it and does no I/O, so it is unit-tested and fuzzed on its own. One parser per
// connection, used only on the thread that owns the connection (the control loop).
//
// Decisions (RFC 9110 / 9112), so the endpoint behaves the same for every prober:
// - Line ends: CRLF, and leniently a bare LF (RFC 9112 §2.2 allows it; curl, probers and
//   hand-typed `nc` sessions differ). A bare CR anywhere else is an error (400).
// - Empty lines before the request line are skipped (RFC 9112 §2.2), within the head limit.
// - Request line: METHOD SP request-target SP HTTP/1.x with single spaces. Only HTTP/1.0
//   and HTTP/1.1 are served; another well-formed version gets 505.
// - request-target: origin-form ("/path?query"), absolute-form ("http://host/path", the
//   authority is ignored) and "*". Anything else, or a '#', or a malformed %XX is 400.
// - The path is matched as sent (not percent-decoded); query keys and values are decoded
//   ("%41" -> "A", '+' -> ' ').
// - Header names are case-insensitive (stored lower-cased); values are trimmed of SP/HTAB;
//   control characters other than HTAB are 400. obs-fold (a line starting with SP/HTAB)
//   is 400 (RFC 9112 §5.2 allows rejecting it). Whitespace before ':' is 400.
// - Host: a missing Host on HTTP/1.1 is tolerated (load-balancer probers omit it); more
//   than one Host is 400.
// - Content-Length: digits only; repeated with different values is 400; above the body
//   limit is 413. Transfer-Encoding (chunked or any other) is 501: no endpoint needs a
//   streamed body, and without a length the message end is unknown, so the connection closes.
// - Connection: "close" ends the connection after the answer; HTTP/1.0 keeps it open only
//   with "keep-alive".
// - Limits: request line + headers at most HttpLimits::max_head_bytes (8 KiB) and
//   max_headers lines, else 431 (also for a long request line: one status for "head too
//   big" keeps probers' logs simple).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hubdns {

struct HttpLimits {
  size_t max_head_bytes = 8 * 1024;  // request line + headers, line ends included
  size_t max_headers = 100;
  size_t max_body_bytes = 4 * 1024;  // POST bodies of the admin endpoints are tiny
};

// One parsed request. Header names are lower-case; values keep their case.
struct HttpRequest {
  std::string method;  // case-sensitive token as sent ("GET", "HEAD", ...)
  std::string target;  // request-target as sent
  std::string path;    // target up to '?', not decoded ("/livez")
  std::string query;   // raw text after '?', without it ("" if none)
  std::vector<std::pair<std::string, std::string>> query_params;  // decoded, in order
  int version_minor = 1;                                          // HTTP/1.<minor>
  std::vector<std::pair<std::string, std::string>> headers;       // (lower-case name, value)
  bool keep_alive = true;     // false when the connection must close after the answer
  size_t content_length = 0;  // body length announced by Content-Length
  std::string body;

  // First header with this lower-case name, or nullptr.
  const std::string* header(std::string_view lower_name) const;
  // First decoded query value for this decoded key, or nullopt.
  std::optional<std::string> query_param(std::string_view key) const;
};

enum class HttpParseStatus {
  need_more,  // everything fed so far is a valid prefix: feed more bytes
  complete,   // one request is ready in request(); `consumed` says how much of the last feed it used
  error,      // answer with `http_status` and close the connection
};

struct HttpParseResult {
  HttpParseStatus status = HttpParseStatus::need_more;
  size_t consumed = 0;        // bytes taken from the data passed to this feed() call
  int http_status = 0;        // for error: 400, 413, 431, 501 or 505
  const char* reason = "";    // for error: a short static explanation, for logs and the body
};

// Incremental parser for one request at a time. Feed bytes as they arrive; when the result
// is complete, take request(), call reset(), and feed the unconsumed rest of the data again
// (that is how pipelined requests are read in order). After an error the parser stays in
// the error state until reset(); the connection is expected to close.
class HttpRequestParser {
 public:
  explicit HttpRequestParser(HttpLimits limits = {}) : limits_(limits) {}

  HttpParseResult feed(std::string_view data);
  const HttpRequest& request() const { return request_; }
  // Forgets the current request and any partial input: ready for the next one.
  void reset();
  // True when some bytes of a next request were received (used for the slow-client timer).
  bool in_progress() const { return phase_ != Phase::idle; }

 private:
  enum class Phase { idle, head, body, done, failed };

  HttpParseResult fail(int http_status, const char* reason, size_t consumed);
  struct HeadVerdict {
    int http_status = 0;  // 0: the head is valid
    const char* reason = "";
  };
  // Parses head_ (request line and headers, line ends included) into request_.
  HeadVerdict parse_head();

  HttpLimits limits_;
  Phase phase_ = Phase::idle;
  std::string head_;          // bytes of the head received so far (after leading empty lines)
  size_t line_start_ = 0;     // offset in head_ where the current line starts
  size_t head_bytes_ = 0;     // bytes counted against max_head_bytes (incl. leading empty lines)
  size_t line_count_ = 0;     // complete non-empty lines in head_
  HttpRequest request_;
  HttpParseResult failure_;   // repeated on every feed after an error
};

// Decodes %XX escapes and, when plus_is_space, '+' as ' ' (query strings). Returns nullopt
// on a malformed escape ('%' not followed by two hex digits).
std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space);

}  // namespace hubdns
