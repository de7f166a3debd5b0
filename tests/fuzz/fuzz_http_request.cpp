// libFuzzer target: the health listener's HTTP/1.1 request parser (probe/http_request.h)
// over arbitrary bytes, read as a connection would read them: pipelined requests one after
// the other until an error or the end of the input. The same bytes are parsed three ways
// (all at once, byte by byte, in chunks of a size derived from the input) and must give
// the same sequence of outcomes: how bytes are split by the network must never change what
// a request means. Answers are serialized too, as the server would.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "probe/http_request.h"
#include "probe/http_response.h"

namespace {

void check(bool condition) {
  if (!condition) std::abort();
}

// One line per complete request or error, with everything the server acts upon.
std::string describe(const hubdns::HttpRequest& request) {
  std::string out = "complete " + request.method + " " + request.path + " ?" + request.query;
  out += " v" + std::to_string(request.version_minor);
  out += request.keep_alive ? " keep" : " close";
  out += " len=" + std::to_string(request.content_length) + " body=" + request.body;
  for (const auto& [name, value] : request.headers) out += " [" + name + ":" + value + "]";
  for (const auto& [key, value] : request.query_params) out += " {" + key + "=" + value + "}";
  return out;
}

std::vector<std::string> parse_stream(std::string_view input, size_t chunk) {
  std::vector<std::string> outcomes;
  hubdns::HttpRequestParser parser;
  size_t position = 0;
  while (position < input.size()) {
    std::string_view piece = input.substr(position, chunk);
    while (!piece.empty()) {
      hubdns::HttpParseResult result = parser.feed(piece);
      check(result.consumed <= piece.size());
      piece.remove_prefix(result.consumed);
      position += result.consumed;
      if (result.status == hubdns::HttpParseStatus::error) {
        check(result.http_status >= 400 && result.http_status <= 599);
        outcomes.push_back("error " + std::to_string(result.http_status));
        return outcomes;
      }
      if (result.status == hubdns::HttpParseStatus::need_more) {
        check(piece.empty());  // need_more always takes everything it was given
        break;
      }
      const hubdns::HttpRequest& request = parser.request();
      check(request.body.size() == request.content_length);
      check(!request.path.empty());
      outcomes.push_back(describe(request));

      hubdns::HttpResponse response = hubdns::HttpResponse::text(200, request.body);
      hubdns::ResponseOptions options;
      options.head_request = request.method == "HEAD";
      options.keep_alive = request.keep_alive;
      std::string bytes = hubdns::serialize_response(response, options);
      check(bytes.compare(0, 9, "HTTP/1.1 ") == 0);
      parser.reset();
    }
  }
  outcomes.push_back(parser.in_progress() ? "partial" : "idle");
  return outcomes;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> whole = parse_stream(input, input.size() + 1);
  std::vector<std::string> bytewise = parse_stream(input, 1);
  std::vector<std::string> chunked = parse_stream(input, 1 + size % 13);
  check(whole == bytewise);
  check(whole == chunked);
  hubdns::percent_decode(input, true);
  return 0;
}
