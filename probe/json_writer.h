// JsonWriter: builds one JSON text (RFC 8259) into a string, for GET /status. Commas and
// nesting are tracked by the writer, strings are escaped (quote, backslash, control
// characters; invalid UTF-8 becomes U+FFFD so the output is always valid JSON), and
// numbers that JSON cannot carry (NaN, infinities) are written as null. Pure; any thread.
//
// Misuse (a value where a key is due, closing what is not open) is a programming error
// and caught by the unit tests; the writer does not try to repair it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hubdns {

class JsonWriter {
 public:
  JsonWriter& begin_object();
  JsonWriter& end_object();
  JsonWriter& begin_array();
  JsonWriter& end_array();
  // In an object: the next member's name; the value call that follows completes it.
  JsonWriter& key(std::string_view name);

  JsonWriter& value(std::string_view text);
  JsonWriter& value(const char* text) { return value(std::string_view(text)); }
  JsonWriter& value(const std::string& text) { return value(std::string_view(text)); }
  JsonWriter& value(bool flag);
  JsonWriter& value(int64_t number);
  JsonWriter& value(uint64_t number);
  JsonWriter& value(int number) { return value(static_cast<int64_t>(number)); }
  JsonWriter& value(unsigned number) { return value(static_cast<uint64_t>(number)); }
  JsonWriter& value(double number);
  JsonWriter& null();

  // key(name) then value(v).
  template <typename T>
  JsonWriter& member(std::string_view name, const T& v) {
    key(name);
    return value(v);
  }

  // The text so far; complete once every object and array is closed.
  const std::string& str() const { return out_; }
  bool complete() const { return stack_.empty() && !out_.empty(); }

 private:
  void before_value();

  std::string out_;
  // One entry per open container: true while no element has been written yet.
  std::vector<bool> stack_;
  bool after_key_ = false;
};

// `text` as a JSON string literal, quotes included.
std::string json_quote(std::string_view text);

}  // namespace hubdns
