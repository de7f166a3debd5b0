#include "probe/http_request.h"

#include <algorithm>

namespace hubdns {
namespace {

// RFC 9110 §5.6.2 token characters.
bool is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

bool is_token(std::string_view text) {
  if (text.empty()) return false;
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return is_tchar(static_cast<unsigned char>(c)); });
}

// Field value characters: HTAB, SP, VCHAR and obs-text (RFC 9110 §5.5).
bool is_field_value_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

char to_lower_ascii(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string lower_ascii(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = to_lower_ascii(c);
  return out;
}

bool equals_ignore_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (to_lower_ascii(a[i]) != to_lower_ascii(b[i])) return false;
  }
  return true;
}

std::string_view trim_ows(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Splits the request-target into path and query. Returns false when it is not a form
// this server accepts.
bool split_target(std::string_view target, std::string* path, std::string* query) {
  if (target.find('#') != std::string_view::npos) return false;  // fragments are never sent
  std::string_view rest;
  if (target == "*") {
    rest = target;
  } else if (target.front() == '/') {
    rest = target;
  } else {
    // absolute-form: scheme "://" authority [path-abempty] ["?" query]
    size_t scheme_end = target.find("://");
    if (scheme_end == std::string_view::npos) return false;
    std::string_view scheme = target.substr(0, scheme_end);
    if (!equals_ignore_case(scheme, "http") && !equals_ignore_case(scheme, "https")) return false;
    std::string_view after = target.substr(scheme_end + 3);
    size_t authority_end = after.find_first_of("/?");
    if (authority_end == 0) return false;  // empty authority
    rest = authority_end == std::string_view::npos ? std::string_view{} : after.substr(authority_end);
    if (rest.empty() || rest.front() == '?') {
      // "http://host" and "http://host?x" address the root.
      path->assign(1, '/');  // not `= "/"`: g++ 12 -O2 raises a false -Wrestrict on that (GCC PR 105329)
      *query = rest.empty() ? std::string{} : std::string(rest.substr(1));
      return true;
    }
  }
  size_t question = rest.find('?');
  *path = std::string(rest.substr(0, question));
  *query = question == std::string_view::npos ? std::string{} : std::string(rest.substr(question + 1));
  return true;
}

// Splits "a=1&b=x%20y" into decoded pairs. Returns false on a malformed escape.
bool parse_query(std::string_view query, std::vector<std::pair<std::string, std::string>>* out) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (item.empty()) continue;  // "a=1&&b=2"
    size_t eq = item.find('=');
    std::optional<std::string> key = percent_decode(item.substr(0, eq), true);
    std::optional<std::string> value =
        percent_decode(eq == std::string_view::npos ? std::string_view{} : item.substr(eq + 1), true);
    if (!key || !value) return false;
    out->emplace_back(std::move(*key), std::move(*value));
  }
  return true;
}

// Content-Length: 1*DIGIT. Values above `cap` are reported as cap + 1 (too large anyway),
// which also keeps the arithmetic from overflowing.
std::optional<size_t> parse_content_length(std::string_view text, size_t cap) {
  if (text.empty()) return std::nullopt;
  size_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    if (value <= cap) value = value * 10 + static_cast<size_t>(c - '0');
  }
  return std::min(value, cap + 1);
}

}  // namespace

const std::string* HttpRequest::header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return &value;
  }
  return nullptr;
}

std::optional<std::string> HttpRequest::query_param(std::string_view key) const {
  for (const auto& [name, value] : query_params) {
    if (name == key) return value;
  }
  return std::nullopt;
}

std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      int high = hex_value(text[i + 1]);
      int low = hex_value(text[i + 2]);
      if (high < 0 || low < 0) return std::nullopt;
      out.push_back(static_cast<char>(high * 16 + low));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

void HttpRequestParser::reset() {
  phase_ = Phase::idle;
  head_.clear();
  line_start_ = 0;
  head_bytes_ = 0;
  line_count_ = 0;
  request_ = HttpRequest{};
  failure_ = HttpParseResult{};
}

HttpParseResult HttpRequestParser::fail(int http_status, const char* reason, size_t consumed) {
  phase_ = Phase::failed;
  failure_ = HttpParseResult{HttpParseStatus::error, consumed, http_status, reason};
  return failure_;
}

HttpParseResult HttpRequestParser::feed(std::string_view data) {
  if (phase_ == Phase::failed) {
    HttpParseResult again = failure_;
    again.consumed = 0;
    return again;
  }
  if (phase_ == Phase::done) return HttpParseResult{HttpParseStatus::complete, 0, 0, ""};

  size_t used = 0;
  if (phase_ == Phase::idle && !data.empty()) phase_ = Phase::head;

  while (phase_ == Phase::head && used < data.size()) {
    if (head_bytes_ >= limits_.max_head_bytes) {
      return fail(431, "request line and headers too large", used);
    }
    const char c = data[used];
    const auto byte = static_cast<unsigned char>(c);
    ++used;
    ++head_bytes_;
    // Reject what can never become valid as soon as it arrives, so a TLS handshake or
    // binary garbage is answered at once instead of waiting for the slow-client timer.
    if (!head_.empty() && head_.back() == '\r' && c != '\n') {
      return fail(400, "bare CR in request head", used);
    }
    if (byte < 0x20 && c != '\t' && c != '\r' && c != '\n') {
      return fail(400, "control character in request head", used);
    }
    if (byte == 0x7f) return fail(400, "control character in request head", used);
    if (line_count_ == 0 && (byte >= 0x80 || c == '\t')) {
      return fail(400, "invalid character in request line", used);
    }
    head_.push_back(c);
    if (c != '\n') continue;

    size_t line_length = head_.size() - line_start_ - 1;  // without the LF
    if (line_length > 0 && head_[head_.size() - 2] == '\r') --line_length;
    if (line_length == 0) {
      if (line_count_ == 0) {
        // An empty line before the request line: skip it (still counted in head_bytes_).
        head_.clear();
        line_start_ = 0;
        continue;
      }
      HeadVerdict verdict = parse_head();
      if (verdict.http_status != 0) return fail(verdict.http_status, verdict.reason, used);
      phase_ = request_.content_length > 0 ? Phase::body : Phase::done;
      break;
    }
    ++line_count_;
    if (line_count_ > limits_.max_headers + 1) return fail(431, "too many header fields", used);
    line_start_ = head_.size();
  }

  if (phase_ == Phase::body) {
    size_t wanted = request_.content_length - request_.body.size();
    size_t take = std::min(wanted, data.size() - used);
    request_.body.append(data.substr(used, take));
    used += take;
    if (request_.body.size() == request_.content_length) phase_ = Phase::done;
  }

  if (phase_ == Phase::done) return HttpParseResult{HttpParseStatus::complete, used, 0, ""};
  return HttpParseResult{HttpParseStatus::need_more, used, 0, ""};
}

HttpRequestParser::HeadVerdict HttpRequestParser::parse_head() {
  std::string_view head = head_;
  bool first_line = true;
  bool has_close = false;
  bool has_keep_alive = false;
  bool has_content_length = false;
  unsigned host_count = 0;

  while (!head.empty()) {
    size_t lf = head.find('\n');
    std::string_view line = head.substr(0, lf);
    head = lf == std::string_view::npos ? std::string_view{} : head.substr(lf + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;  // the end of the head

    if (first_line) {
      first_line = false;
      size_t sp1 = line.find(' ');
      if (sp1 == std::string_view::npos) return {400, "malformed request line"};
      size_t sp2 = line.find(' ', sp1 + 1);
      if (sp2 == std::string_view::npos) return {400, "malformed request line"};
      std::string_view method = line.substr(0, sp1);
      std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
      std::string_view version = line.substr(sp2 + 1);
      if (!is_token(method)) return {400, "invalid method"};
      if (target.empty()) return {400, "empty request target"};
      for (char c : target) {
        if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
          return {400, "invalid character in request target"};
        }
      }
      if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' ||
          version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9') {
        return {400, "malformed HTTP version"};
      }
      if (version[5] != '1' || (version[7] != '0' && version[7] != '1')) {
        return {505, "only HTTP/1.0 and HTTP/1.1 are supported"};
      }
      request_.method = std::string(method);
      request_.target = std::string(target);
      request_.version_minor = version[7] - '0';
      if (!split_target(target, &request_.path, &request_.query)) {
        return {400, "unsupported request target"};
      }
      if (!percent_decode(request_.path, false)) return {400, "malformed escape in path"};
      if (!parse_query(request_.query, &request_.query_params)) {
        return {400, "malformed escape in query"};
      }
      continue;
    }

    if (line.front() == ' ' || line.front() == '\t') {
      return {400, "obsolete line folding is not accepted"};
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return {400, "header line without colon"};
    std::string_view name = line.substr(0, colon);
    if (!is_token(name)) return {400, "invalid header name"};
    std::string_view value = trim_ows(line.substr(colon + 1));
    for (char c : value) {
      if (!is_field_value_char(static_cast<unsigned char>(c))) {
        return {400, "invalid character in header value"};
      }
    }
    std::string lower_name = lower_ascii(name);

    if (lower_name == "content-length") {
      std::optional<size_t> length = parse_content_length(value, limits_.max_body_bytes);
      if (!length) return {400, "invalid Content-Length"};
      if (has_content_length && *length != request_.content_length) {
        return {400, "conflicting Content-Length"};
      }
      has_content_length = true;
      request_.content_length = *length;
    } else if (lower_name == "transfer-encoding") {
      return {501, "Transfer-Encoding is not supported"};
    } else if (lower_name == "host") {
      if (++host_count > 1) return {400, "more than one Host header"};
    } else if (lower_name == "connection") {
      std::string_view options = value;
      while (!options.empty()) {
        size_t comma = options.find(',');
        std::string_view option = trim_ows(options.substr(0, comma));
        options = comma == std::string_view::npos ? std::string_view{} : options.substr(comma + 1);
        if (equals_ignore_case(option, "close")) has_close = true;
        if (equals_ignore_case(option, "keep-alive")) has_keep_alive = true;
      }
    }
    request_.headers.emplace_back(std::move(lower_name), std::string(value));
  }

  if (request_.content_length > limits_.max_body_bytes) {
    return {413, "request body too large"};
  }
  request_.keep_alive = request_.version_minor >= 1 ? !has_close : (has_keep_alive && !has_close);
  return {};
}

}  // namespace hubdns
