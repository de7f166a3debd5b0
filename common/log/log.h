// Logging: one line per event, "level=... msg=... key=value", to stderr (journald adds
// time and unit). Any thread may log; each line is written with one call so lines from
// different threads do not interleave.
#pragma once

#include <cstdarg>
#include <cstdint>

namespace hubdns {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();

// printf-style message; the caller writes key=value pairs in the format string.
void log_line(LogLevel level, const char* format, ...) __attribute__((format(printf, 2, 3)));

#define HUBDNS_LOG(level, ...)                                        \
  do {                                                                \
    if (static_cast<int>(level) >= static_cast<int>(::hubdns::log_level())) \
      ::hubdns::log_line(level, __VA_ARGS__);                         \
  } while (0)
#define LOG_DEBUG(...) HUBDNS_LOG(::hubdns::LogLevel::debug, __VA_ARGS__)
#define LOG_INFO(...) HUBDNS_LOG(::hubdns::LogLevel::info, __VA_ARGS__)
#define LOG_WARN(...) HUBDNS_LOG(::hubdns::LogLevel::warn, __VA_ARGS__)
#define LOG_ERROR(...) HUBDNS_LOG(::hubdns::LogLevel::error, __VA_ARGS__)

}  // namespace hubdns

namespace hubdns {

// Lets one kind of data-path event through to the log at most once per interval, and
// reports how many were held back since; the counters keep the exact figures. One per
// event kind per thread (not thread-safe by design: each worker owns its own).
class LogRateLimit {
 public:
  explicit LogRateLimit(uint64_t interval_ms = 10000) : interval_ms_(interval_ms) {}
  // True if this occurrence should be logged; *suppressed receives how many were skipped
  // since the last one that was.
  bool allow(uint64_t now_ms, uint64_t* suppressed) {
    if (last_ms_ != 0 && now_ms - last_ms_ < interval_ms_) {
      ++suppressed_;
      return false;
    }
    last_ms_ = now_ms;
    *suppressed = suppressed_;
    suppressed_ = 0;
    return true;
  }

 private:
  uint64_t interval_ms_;
  uint64_t last_ms_ = 0;
  uint64_t suppressed_ = 0;
};

}  // namespace hubdns
