// Monotonic time in milliseconds, for heartbeats and timeouts shared across threads.
#pragma once

#include <chrono>
#include <cstdint>

namespace hubdns {

inline uint64_t monotonic_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace hubdns
