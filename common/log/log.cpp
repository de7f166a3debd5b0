#include "common/log/log.h"

#include <atomic>
#include <cstdio>

namespace hubdns {

namespace {
std::atomic<int> current_level{static_cast<int>(LogLevel::info)};

const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warn: return "warn";
    case LogLevel::error: return "error";
  }
  return "info";
}
}  // namespace

void set_log_level(LogLevel level) { current_level.store(static_cast<int>(level)); }
LogLevel log_level() { return static_cast<LogLevel>(current_level.load(std::memory_order_relaxed)); }

void log_line(LogLevel level, const char* format, ...) {
  char line[1024];
  int prefix = std::snprintf(line, sizeof line, "level=%s ", level_name(level));
  va_list args;
  va_start(args, format);
  int body = std::vsnprintf(line + prefix, sizeof line - static_cast<size_t>(prefix) - 1, format, args);
  va_end(args);
  size_t len = static_cast<size_t>(prefix) + (body < 0 ? 0 : static_cast<size_t>(body));
  if (len > sizeof line - 2) len = sizeof line - 2;
  line[len] = '\n';
  std::fwrite(line, 1, len + 1, stderr);
}

}  // namespace hubdns
