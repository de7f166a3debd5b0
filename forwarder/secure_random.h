// Unpredictable 16-bit values for upstream query IDs and source-socket choice. Bytes come
// from the kernel CSPRNG (getrandom) in blocks, so one system call serves thousands of
// queries. One instance per DNS worker; not thread-safe by design (no locks on the hot path).
#pragma once

#include <sys/random.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace hubdns {

class SecureRandom {
 public:
  uint16_t next_u16() {
    if (position_ + 2 > sizeof buffer_) refill();
    uint16_t value;
    std::memcpy(&value, buffer_ + position_, 2);
    position_ += 2;
    return value;
  }
  // Uniform in [0, bound) for bound <= 65536 (rejection sampling avoids modulo bias).
  uint32_t uniform(uint32_t bound) {
    if (bound <= 1) return 0;
    uint32_t limit = 65536u - (65536u % bound);
    while (true) {
      uint32_t value = next_u16();
      if (value < limit) return value % bound;
    }
  }

 private:
  void refill() {
    size_t filled = 0;
    while (filled < sizeof buffer_) {
      ssize_t n = getrandom(buffer_ + filled, sizeof buffer_ - filled, 0);
      if (n > 0) filled += static_cast<size_t>(n);
    }
    position_ = 0;
  }
  uint8_t buffer_[4096];
  size_t position_ = sizeof buffer_;
};

}  // namespace hubdns
