// JsonValue and parse_json(): a small strict JSON reader (RFC 8259) for what the instance
// metadata service answers (probe/azure_metadata.h). The input is untrusted, so it is
// bounded: total size, nesting depth and number of values have limits, strings must be
// valid UTF-8 (a \u escape of a lone surrogate becomes U+FFFD), numbers follow the JSON
// grammar and must fit a double, and nothing may follow the top-level value. Errors are
// returned, never thrown (only allocation failure can throw). Pure; any thread. Fuzzed by
// tests/fuzz/fuzz_imds_json.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hubdns {

struct JsonLimits {
  size_t max_bytes = 1 << 20;   // the whole text
  unsigned max_depth = 32;      // nested arrays / objects
  size_t max_values = 100000;   // every value counts, containers and members included
};

class JsonValue {
 public:
  enum class Type : uint8_t { null, boolean, number, string, array, object };
  using Member = std::pair<std::string, JsonValue>;

  JsonValue() = default;

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::null; }
  bool is_bool() const { return type_ == Type::boolean; }
  bool is_number() const { return type_ == Type::number; }
  bool is_string() const { return type_ == Type::string; }
  bool is_array() const { return type_ == Type::array; }
  bool is_object() const { return type_ == Type::object; }

  // The value as its type; the accessor of another type returns the empty default.
  bool as_bool() const { return type_ == Type::boolean && bool_; }
  double as_number() const { return type_ == Type::number ? number_ : 0.0; }
  const std::string& as_string() const;                 // "" unless a string
  const std::vector<JsonValue>& items() const;          // empty unless an array
  const std::vector<Member>& members() const;           // empty unless an object, in order

  // Object member `key` (the first one if the text repeats it), or nullptr.
  const JsonValue* find(std::string_view key) const;
  // The member's text if it is a string, else `fallback`.
  std::string string_member(std::string_view key, std::string_view fallback = {}) const;

  static JsonValue make_null() { return JsonValue(); }
  static JsonValue make_bool(bool flag);
  static JsonValue make_number(double number);
  static JsonValue make_string(std::string text);
  static JsonValue make_array(std::vector<JsonValue> items);
  static JsonValue make_object(std::vector<Member> members);

  // Same type and same contents (numbers compared exactly; members in order).
  bool operator==(const JsonValue& other) const;

 private:
  Type type_ = Type::null;
  bool bool_ = false;
  double number_ = 0.0;
  std::string string_;
  std::vector<JsonValue> items_;
  std::vector<Member> members_;
};

// Parses `text` as one JSON value. On success returns true and sets *out; otherwise returns
// false and sets *error to a message with the byte offset ("offset 12: expected ':'").
bool parse_json(std::string_view text, JsonValue* out, std::string* error, const JsonLimits& limits = {});

// Serializes with JsonWriter (probe/json_writer.h): compact, members in order. For tests
// and the fuzz target's round trip.
std::string to_json_text(const JsonValue& value);

}  // namespace hubdns
