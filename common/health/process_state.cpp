#include "common/health/process_state.h"

namespace hubdns {

ProcessState::ProcessState(unsigned worker_count)
    : worker_count_(worker_count), heartbeats_(new std::atomic<uint64_t>[worker_count]) {
  for (unsigned i = 0; i < worker_count; ++i) heartbeats_[i].store(0);
}

int ProcessState::stale_worker(uint64_t now_ms, uint64_t max_age_ms) const {
  for (unsigned i = 0; i < worker_count_; ++i) {
    uint64_t beat = last_worker_heartbeat(i);
    if (beat == 0 || now_ms - beat > max_age_ms) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace hubdns
