#include "probe/json_reader.h"

#include <charconv>
#include <cmath>
#include <system_error>

#include "probe/json_writer.h"
#include "probe/utf8.h"

namespace hubdns {
namespace {

const std::string kEmptyString;
const std::vector<JsonValue> kEmptyItems;
const std::vector<JsonValue::Member> kEmptyMembers;

void append_utf8(std::string* out, uint32_t code) {
  if (code < 0x80) {
    out->push_back(static_cast<char>(code));
  } else if (code < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (code >> 6)));
    out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
  } else if (code < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (code >> 12)));
    out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (code >> 18)));
    out->push_back(static_cast<char>(0x80 | ((code >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
  }
}

// For a valid JSON number that a double cannot hold: true if it is too close to zero (it
// then reads as zero), false if too large. Decided by the decimal exponent of its first
// significant digit.
bool is_underflow(std::string_view number) {
  const size_t e = number.find_first_of("eE");
  const std::string_view mantissa = number.substr(0, e);
  int64_t exponent = 0;
  if (e != std::string_view::npos) {
    size_t i = e + 1;
    bool negative = false;
    if (i < number.size() && (number[i] == '+' || number[i] == '-')) negative = number[i++] == '-';
    for (; i < number.size(); ++i) {
      if (exponent < 1000000000) exponent = exponent * 10 + (number[i] - '0');
    }
    if (negative) exponent = -exponent;
  }
  // Position of the first significant digit relative to the decimal point: 1 for "1.5",
  // 3 for "123", -2 for "0.001".
  int64_t position = 0;
  bool before_point = true;
  for (char c : mantissa) {
    if (c == '-') continue;
    if (c == '.') {
      before_point = false;
      continue;
    }
    if (c != '0') {
      if (before_point) {
        for (size_t k = mantissa.find(c); k < mantissa.size() && mantissa[k] != '.'; ++k) ++position;
      }
      return position + exponent <= 0;
    }
    if (!before_point) --position;
  }
  return true;  // all zeros: zero is never out of range, but it would read as zero anyway
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class Parser {
 public:
  Parser(std::string_view text, const JsonLimits& limits) : text_(text), limits_(limits) {}

  bool parse(JsonValue* out, std::string* error) {
    if (text_.size() > limits_.max_bytes) {
      *error = "document of " + std::to_string(text_.size()) + " bytes exceeds the limit of " +
               std::to_string(limits_.max_bytes);
      return false;
    }
    skip_space();
    bool ok = parse_value(out, 0);
    if (ok) {
      skip_space();
      if (pos_ != text_.size()) ok = fail("unexpected text after the value");
    }
    if (!ok) *error = "offset " + std::to_string(error_pos_) + ": " + error_;
    return ok;
  }

 private:
  bool fail(const char* message) {
    error_ = message;
    error_pos_ = pos_;
    return false;
  }

  bool at_end() const { return pos_ >= text_.size(); }
  char peek() const { return text_[pos_]; }

  void skip_space() {
    while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')) ++pos_;
  }

  bool literal(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return fail("invalid literal");
    pos_ += word.size();
    return true;
  }

  bool parse_value(JsonValue* out, unsigned depth) {
    if (++values_ > limits_.max_values) return fail("too many values");
    if (at_end()) return fail("unexpected end of input");
    switch (peek()) {
      case '{': return parse_object(out, depth + 1);
      case '[': return parse_array(out, depth + 1);
      case '"': {
        std::string text;
        if (!parse_string(&text)) return false;
        *out = JsonValue::make_string(std::move(text));
        return true;
      }
      case 't':
        if (!literal("true")) return false;
        *out = JsonValue::make_bool(true);
        return true;
      case 'f':
        if (!literal("false")) return false;
        *out = JsonValue::make_bool(false);
        return true;
      case 'n':
        if (!literal("null")) return false;
        *out = JsonValue::make_null();
        return true;
      default:
        if (peek() == '-' || (peek() >= '0' && peek() <= '9')) return parse_number(out);
        return fail("expected a value");
    }
  }

  bool parse_object(JsonValue* out, unsigned depth) {
    if (depth > limits_.max_depth) return fail("nesting too deep");
    ++pos_;  // '{'
    std::vector<JsonValue::Member> members;
    skip_space();
    if (!at_end() && peek() == '}') {
      ++pos_;
      *out = JsonValue::make_object(std::move(members));
      return true;
    }
    while (true) {
      skip_space();
      if (at_end() || peek() != '"') return fail("expected a string key");
      std::string key;
      if (!parse_string(&key)) return false;
      skip_space();
      if (at_end() || peek() != ':') return fail("expected ':'");
      ++pos_;
      skip_space();
      JsonValue value;
      if (!parse_value(&value, depth)) return false;
      members.emplace_back(std::move(key), std::move(value));
      skip_space();
      if (at_end()) return fail("unexpected end of input in an object");
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == '}') {
        ++pos_;
        *out = JsonValue::make_object(std::move(members));
        return true;
      }
      return fail("expected ',' or '}'");
    }
  }

  bool parse_array(JsonValue* out, unsigned depth) {
    if (depth > limits_.max_depth) return fail("nesting too deep");
    ++pos_;  // '['
    std::vector<JsonValue> items;
    skip_space();
    if (!at_end() && peek() == ']') {
      ++pos_;
      *out = JsonValue::make_array(std::move(items));
      return true;
    }
    while (true) {
      skip_space();
      JsonValue value;
      if (!parse_value(&value, depth)) return false;
      items.push_back(std::move(value));
      skip_space();
      if (at_end()) return fail("unexpected end of input in an array");
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == ']') {
        ++pos_;
        *out = JsonValue::make_array(std::move(items));
        return true;
      }
      return fail("expected ',' or ']'");
    }
  }

  // Four hex digits after "\u"; pos_ is on the first one.
  bool read_hex4(uint32_t* code) {
    if (pos_ + 4 > text_.size()) return fail("truncated \\u escape");
    uint32_t value = 0;
    for (size_t k = 0; k < 4; ++k) {
      int digit = hex_digit(text_[pos_ + k]);
      if (digit < 0) return fail("invalid \\u escape");
      value = (value << 4) | static_cast<uint32_t>(digit);
    }
    pos_ += 4;
    *code = value;
    return true;
  }

  bool parse_string(std::string* out) {
    ++pos_;  // opening quote
    while (true) {
      if (at_end()) return fail("unterminated string");
      const auto c = static_cast<unsigned char>(peek());
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c < 0x20) return fail("control character in a string");
      if (c == '\\') {
        ++pos_;
        if (at_end()) return fail("unterminated string");
        const char escape = peek();
        ++pos_;
        switch (escape) {
          case '"': out->push_back('"'); break;
          case '\\': out->push_back('\\'); break;
          case '/': out->push_back('/'); break;
          case 'b': out->push_back('\b'); break;
          case 'f': out->push_back('\f'); break;
          case 'n': out->push_back('\n'); break;
          case 'r': out->push_back('\r'); break;
          case 't': out->push_back('\t'); break;
          case 'u': {
            uint32_t code = 0;
            if (!read_hex4(&code)) return false;
            if (code >= 0xD800 && code <= 0xDBFF && text_.substr(pos_, 2) == "\\u") {
              const size_t saved = pos_;
              pos_ += 2;
              uint32_t low = 0;
              if (!read_hex4(&low)) return false;
              if (low >= 0xDC00 && low <= 0xDFFF) {
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
              } else {
                pos_ = saved;  // not a pair: the high half alone, the next escape on its own
                code = 0xFFFD;
              }
            } else if (code >= 0xD800 && code <= 0xDFFF) {
              code = 0xFFFD;  // a lone surrogate cannot be UTF-8
            }
            append_utf8(out, code);
            break;
          }
          default:
            --pos_;
            return fail("invalid escape");
        }
        continue;
      }
      const size_t length = utf8_sequence_length(text_, pos_);
      if (length == 0) return fail("invalid UTF-8 in a string");
      out->append(text_.substr(pos_, length));
      pos_ += length;
    }
  }

  bool parse_number(JsonValue* out) {
    const size_t begin = pos_;
    auto digits = [this] {
      size_t count = 0;
      while (!at_end() && peek() >= '0' && peek() <= '9') ++pos_, ++count;
      return count;
    };
    if (peek() == '-') ++pos_;
    if (at_end()) return fail("truncated number");
    if (peek() == '0') {
      ++pos_;
    } else if (digits() == 0) {
      return fail("invalid number");
    }
    if (!at_end() && peek() == '.') {
      ++pos_;
      if (digits() == 0) return fail("invalid number: digits must follow '.'");
    }
    if (!at_end() && (peek() == 'e' || peek() == 'E')) {
      ++pos_;
      if (!at_end() && (peek() == '+' || peek() == '-')) ++pos_;
      if (digits() == 0) return fail("invalid number: digits must follow the exponent");
    }
    double number = 0.0;
    const char* first = text_.data() + begin;
    const char* last = text_.data() + pos_;
    auto result = std::from_chars(first, last, number);
    if (result.ec == std::errc::result_out_of_range) {
      // Underflow reads as zero (of the right sign); overflow has no double.
      const std::string_view text(first, static_cast<size_t>(last - first));
      if (!is_underflow(text)) {
        pos_ = begin;
        return fail("number out of range");
      }
      number = text[0] == '-' ? -0.0 : 0.0;
    } else if (result.ec != std::errc() || result.ptr != last || !std::isfinite(number)) {
      pos_ = begin;
      return fail("invalid number");
    }
    *out = JsonValue::make_number(number);
    return true;
  }

  std::string_view text_;
  const JsonLimits& limits_;
  size_t pos_ = 0;
  size_t values_ = 0;
  std::string error_;
  size_t error_pos_ = 0;
};

void write_value(JsonWriter& json, const JsonValue& value) {
  switch (value.type()) {
    case JsonValue::Type::null: json.null(); break;
    case JsonValue::Type::boolean: json.value(value.as_bool()); break;
    case JsonValue::Type::number: json.value(value.as_number()); break;
    case JsonValue::Type::string: json.value(value.as_string()); break;
    case JsonValue::Type::array:
      json.begin_array();
      for (const JsonValue& item : value.items()) write_value(json, item);
      json.end_array();
      break;
    case JsonValue::Type::object:
      json.begin_object();
      for (const auto& [key, member] : value.members()) {
        json.key(key);
        write_value(json, member);
      }
      json.end_object();
      break;
  }
}

}  // namespace

const std::string& JsonValue::as_string() const { return type_ == Type::string ? string_ : kEmptyString; }
const std::vector<JsonValue>& JsonValue::items() const { return type_ == Type::array ? items_ : kEmptyItems; }
const std::vector<JsonValue::Member>& JsonValue::members() const {
  return type_ == Type::object ? members_ : kEmptyMembers;
}

const JsonValue* JsonValue::find(std::string_view key) const {
  for (const Member& member : members()) {
    if (member.first == key) return &member.second;
  }
  return nullptr;
}

std::string JsonValue::string_member(std::string_view key, std::string_view fallback) const {
  const JsonValue* member = find(key);
  if (member == nullptr || !member->is_string()) return std::string(fallback);
  return member->as_string();
}

JsonValue JsonValue::make_bool(bool flag) {
  JsonValue value;
  value.type_ = Type::boolean;
  value.bool_ = flag;
  return value;
}

JsonValue JsonValue::make_number(double number) {
  JsonValue value;
  value.type_ = Type::number;
  value.number_ = number;
  return value;
}

JsonValue JsonValue::make_string(std::string text) {
  JsonValue value;
  value.type_ = Type::string;
  value.string_ = std::move(text);
  return value;
}

JsonValue JsonValue::make_array(std::vector<JsonValue> items) {
  JsonValue value;
  value.type_ = Type::array;
  value.items_ = std::move(items);
  return value;
}

JsonValue JsonValue::make_object(std::vector<Member> members) {
  JsonValue value;
  value.type_ = Type::object;
  value.members_ = std::move(members);
  return value;
}

bool JsonValue::operator==(const JsonValue& other) const {
  if (type_ != other.type_) return false;
  switch (type_) {
    case Type::null: return true;
    case Type::boolean: return bool_ == other.bool_;
    case Type::number: return number_ == other.number_ && std::signbit(number_) == std::signbit(other.number_);
    case Type::string: return string_ == other.string_;
    case Type::array: return items_ == other.items_;
    case Type::object: return members_ == other.members_;
  }
  return false;
}

bool parse_json(std::string_view text, JsonValue* out, std::string* error, const JsonLimits& limits) {
  Parser parser(text, limits);
  JsonValue value;
  if (!parser.parse(&value, error)) return false;
  *out = std::move(value);
  return true;
}

std::string to_json_text(const JsonValue& value) {
  JsonWriter json;
  write_value(json, value);
  return json.str();
}

}  // namespace hubdns
