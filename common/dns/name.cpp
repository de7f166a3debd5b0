#include "common/dns/name.h"

#include <cstdio>

namespace hubdns {
namespace {

constexpr size_t kMaxLabelOctets = 63;
constexpr size_t kMaxNameWireOctets = 255;

bool fail(std::string* error, std::string message) {
  if (error != nullptr) *error = std::move(message);
  return false;
}

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

char to_lower_ascii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

}  // namespace

bool normalize_dns_name(std::string_view in, std::string* out_lower_absolute, std::string* error) {
  const std::string quoted = "'" + std::string(in) + "'";
  if (in.empty()) return fail(error, "empty domain name (the root is written \".\")");
  if (in == ".") {
    if (out_lower_absolute != nullptr) *out_lower_absolute = ".";
    return true;
  }
  std::string_view relative = in;
  if (relative.back() == '.') relative.remove_suffix(1);

  std::string result;
  result.reserve(relative.size() + 1);
  size_t wire_octets = 1;  // the root label's length byte
  size_t label_begin = 0;
  while (true) {
    const size_t dot = relative.find('.', label_begin);
    const size_t label_end = dot == std::string_view::npos ? relative.size() : dot;
    const std::string_view label = relative.substr(label_begin, label_end - label_begin);
    if (label.empty()) return fail(error, "empty label in domain name " + quoted);
    if (label.size() > kMaxLabelOctets) {
      return fail(error, "label '" + std::string(label) + "' in " + quoted + " is longer than 63 octets");
    }
    for (const char c : label) {
      if (!is_name_char(c)) {
        // Unprintable octets are shown the way DNS presentation format escapes them: \DDD.
        const auto octet = static_cast<unsigned char>(c);
        std::string shown(1, c);
        if (octet < 0x21 || octet > 0x7e) {
          shown = "\\";
          shown += static_cast<char>('0' + octet / 100);
          shown += static_cast<char>('0' + octet / 10 % 10);
          shown += static_cast<char>('0' + octet % 10);
        }
        return fail(error, "character '" + shown + "' is not allowed in domain name " + quoted +
                               " (letters, digits, '-' and '_' only)");
      }
      result += to_lower_ascii(c);
    }
    result += '.';
    wire_octets += label.size() + 1;
    if (dot == std::string_view::npos) break;
    label_begin = dot + 1;
  }
  if (wire_octets > kMaxNameWireOctets) {
    return fail(error, "domain name " + quoted + " is longer than 255 octets");
  }
  if (out_lower_absolute != nullptr) *out_lower_absolute = std::move(result);
  return true;
}

std::string wire_name_to_text(const uint8_t* name, size_t length) {
  std::string text;
  size_t pos = 0;
  while (pos < length && name[pos] != 0) {
    size_t label = name[pos++];
    for (size_t i = 0; i < label && pos < length; ++i, ++pos) {
      const uint8_t c = name[pos];
      const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                         c == '_';
      if (plain) {
        text.push_back(static_cast<char>(c));
      } else {
        char escaped[5];
        std::snprintf(escaped, sizeof escaped, "\\%03u", static_cast<unsigned>(c));
        text += escaped;
      }
    }
    text.push_back('.');
  }
  return text.empty() ? "." : text;
}

}  // namespace hubdns
