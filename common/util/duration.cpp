#include "common/util/duration.h"

#include <array>
#include <cstdint>
#include <limits>

namespace hubdns {
namespace {

struct DurationUnit {
  std::string_view suffix;
  int64_t milliseconds;
};

// Largest first: format_duration picks the first that divides exactly, and parse_duration
// uses the index to insist that a sum goes from larger to smaller units.
constexpr std::array<DurationUnit, 5> kUnits{{
    {"d", 86'400'000},
    {"h", 3'600'000},
    {"m", 60'000},
    {"s", 1'000},
    {"ms", 1},
}};

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

bool fail(std::string* error, std::string message) {
  if (error != nullptr) *error = std::move(message);
  return false;
}

std::string quoted(std::string_view text) { return "\"" + std::string(text) + "\""; }

// Parses one "<digits>[.<digits>]<unit>" term starting at *pos and adds its value to *total.
// unit_index receives the position of the unit in kUnits.
bool parse_term(std::string_view text, size_t* pos, size_t* unit_index, int64_t* total,
                std::string* error) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  size_t i = *pos;
  const size_t number_begin = i;

  int64_t whole = 0;
  bool whole_overflow = false;
  while (i < text.size() && is_digit(text[i])) {
    const int64_t digit = text[i] - '0';
    if (whole > (kMax - digit) / 10) whole_overflow = true;
    if (!whole_overflow) whole = whole * 10 + digit;
    ++i;
  }
  const bool has_whole = i > number_begin;

  // The fraction is kept as digits: it only has to produce whole milliseconds, so after
  // dropping trailing zeros at most 10 digits can matter (a day is 2^10 * 3^3 * 5^5 ms).
  std::string_view fraction;
  if (i < text.size() && text[i] == '.') {
    ++i;
    const size_t fraction_begin = i;
    while (i < text.size() && is_digit(text[i])) ++i;
    fraction = text.substr(fraction_begin, i - fraction_begin);
    if (fraction.empty()) {
      return fail(error, "expected digits after '.' in " + quoted(text));
    }
  }
  if (!has_whole && fraction.empty()) {
    if (i < text.size() && text[i] == '-') {
      return fail(error, "negative duration " + quoted(text) + " is not allowed");
    }
    if (i < text.size() && text[i] == '+') {
      return fail(error, "unexpected '+' in " + quoted(text) + " (durations take no sign)");
    }
    if (i < text.size() && (text[i] == ' ' || text[i] == '\t')) {
      return fail(error, "unexpected space in " + quoted(text));
    }
    return fail(error, "expected a number in " + quoted(text) + " (e.g. \"5s\")");
  }
  if (!has_whole) {
    return fail(error, "expected a digit before '.' in " + quoted(text) + " (write \"0." +
                           std::string(fraction) + "...\")");
  }

  const size_t unit_begin = i;
  while (i < text.size() && is_letter(text[i])) ++i;
  const std::string_view suffix = text.substr(unit_begin, i - unit_begin);
  if (suffix.empty()) {
    if (i < text.size() && (text[i] == ' ' || text[i] == '\t')) {
      return fail(error, "unexpected space in " + quoted(text) + " (write e.g. \"5s\")");
    }
    return fail(error, "missing unit in " + quoted(text) + " (use ms, s, m, h or d, e.g. \"" +
                           std::string(text.substr(number_begin, unit_begin - number_begin)) +
                           "s\")");
  }
  size_t found = kUnits.size();
  for (size_t u = 0; u < kUnits.size(); ++u) {
    if (kUnits[u].suffix == suffix) found = u;
  }
  if (found == kUnits.size()) {
    return fail(error, "unknown unit '" + std::string(suffix) + "' in " + quoted(text) +
                           " (use ms, s, m, h or d)");
  }
  const int64_t unit_ms = kUnits[found].milliseconds;

  const std::string too_large = quoted(text) + " is too large";
  if (whole_overflow || whole > kMax / unit_ms) return fail(error, too_large);
  int64_t value = whole * unit_ms;

  while (!fraction.empty() && fraction.back() == '0') fraction.remove_suffix(1);
  if (!fraction.empty()) {
    const std::string not_whole =
        quoted(text) + " is not a whole number of milliseconds";
    if (fraction.size() > 10) return fail(error, not_whole);
    int64_t numerator = 0;
    int64_t denominator = 1;
    for (const char c : fraction) {
      numerator = numerator * 10 + (c - '0');
      denominator *= 10;
    }
    // numerator < 10^10 and unit_ms <= 8.64e7, so the product stays below 2^63.
    const int64_t scaled = numerator * unit_ms;
    if (scaled % denominator != 0) return fail(error, not_whole);
    if (value > kMax - scaled / denominator) return fail(error, too_large);
    value += scaled / denominator;
  }

  if (*total > kMax - value) return fail(error, too_large);
  *total += value;
  *pos = i;
  *unit_index = found;
  return true;
}

}  // namespace

std::optional<Duration> parse_duration(std::string_view text, std::string* error) {
  if (text.empty()) {
    fail(error, "empty duration (write e.g. \"5s\")");
    return std::nullopt;
  }
  int64_t total = 0;
  size_t pos = 0;
  size_t previous_unit = 0;
  bool first = true;
  while (pos < text.size()) {
    size_t unit_index = 0;
    if (!parse_term(text, &pos, &unit_index, &total, error)) return std::nullopt;
    if (!first && unit_index <= previous_unit) {
      fail(error, "units in " + quoted(text) +
                      " must go from larger to smaller, each at most once (e.g. \"1m30s\")");
      return std::nullopt;
    }
    previous_unit = unit_index;
    first = false;
  }
  return Duration{total};
}

std::string format_duration(Duration duration) {
  int64_t ms = duration.count();
  if (ms == 0) return "0s";
  std::string sign;
  if (ms < 0) {
    sign = "-";
    // The most negative value has no positive counterpart; it has no exact form anyway.
    if (ms == std::numeric_limits<int64_t>::min()) return sign + "9223372036854775808ms";
    ms = -ms;
  }
  for (const DurationUnit& unit : kUnits) {
    if (ms % unit.milliseconds == 0) {
      return sign + std::to_string(ms / unit.milliseconds) + std::string(unit.suffix);
    }
  }
  return sign + std::to_string(ms) + "ms";  // unreachable: "ms" divides everything
}

}  // namespace hubdns
