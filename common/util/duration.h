// Durations as written in configuration files: "250ms", "5s", "2m", "1h", "1d", sums in
// decreasing unit order ("1m30s") and decimals that come out to whole milliseconds
// ("1.5s"). Parsing and formatting are pure functions on whole milliseconds; any thread.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace hubdns {

// Same alias as in common/config/config.h (an identical redeclaration is allowed), so this
// header can be used without pulling in the whole configuration.
using Duration = std::chrono::milliseconds;

// Parses a duration. Rejected, with a human reason in *error: an empty string, a missing
// or unknown unit ("5", "5sec", "5us"), a sign ("-5s", "+5s"), spaces, a unit used twice or
// out of decreasing order ("30s1m"), a value that is not a whole number of milliseconds
// ("0.5ms"), and anything beyond the range of Duration.
std::optional<Duration> parse_duration(std::string_view text, std::string* error = nullptr);

// The shortest exact form in a single unit that parse_duration reads back to the same value:
// 4500ms -> "4500ms", 5000ms -> "5s", 86400000ms -> "1d", 0 -> "0s". Negative values get a
// leading '-' (which parse_duration refuses: configuration durations are never negative).
std::string format_duration(Duration duration);

}  // namespace hubdns
