// Process-wide facts that readiness and liveness are computed from: whether the listeners
// are bound, whether the process drains, and each event loop's last heartbeat. DNS workers
// and main() write them; the control loop (probe/) reads them. All fields are atomics, so
// the hot path takes no lock and a probe never waits for a busy worker. Also the
// forwarding-loop probes outstanding (see loop_probes.h for its threads and its lock).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "common/health/loop_probes.h"

namespace hubdns {

class ProcessState {
 public:
  explicit ProcessState(unsigned worker_count);

  unsigned worker_count() const { return worker_count_; }

  void set_listeners_bound(bool bound) { listeners_bound_.store(bound, std::memory_order_release); }
  bool listeners_bound() const { return listeners_bound_.load(std::memory_order_acquire); }

  // Two sources of a drain, kept apart so that the end of one does not end the other: an
  // operator's (POST /drain, a stop signal) and a scheduled event's (which ends by itself
  // when the event is over, e.g. after a Freeze). Readiness sees either.
  void set_draining(bool draining) { draining_.store(draining, std::memory_order_release); }
  void set_event_draining(bool draining) { event_draining_.store(draining, std::memory_order_release); }
  bool draining() const {
    return draining_.load(std::memory_order_acquire) || event_draining_.load(std::memory_order_acquire);
  }
  bool event_draining() const { return event_draining_.load(std::memory_order_acquire); }
  // A stop signal arrived: the drain leads to the exit, POST /undrain cannot end it.
  void set_stopping() { stopping_.store(true, std::memory_order_release); }
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }

  // Called by worker `index` from a timer on its own loop: proves that loop runs.
  void worker_heartbeat(unsigned index, uint64_t now_ms) {
    heartbeats_[index].store(now_ms, std::memory_order_relaxed);
  }
  uint64_t last_worker_heartbeat(unsigned index) const {
    return heartbeats_[index].load(std::memory_order_relaxed);
  }

  // Index of a worker whose loop has not beaten since now_ms - max_age_ms, or -1 if all
  // beat recently (a worker that never beat counts as stale).
  int stale_worker(uint64_t now_ms, uint64_t max_age_ms) const;

  // The tokens of the forwarding-loop probes in flight: the control loop's LoopDetector
  // registers them, every DNS worker checks probe-shaped names against them. Here because
  // both sides already share this object.
  LoopProbeRegistry& loop_probes() { return loop_probes_; }

 private:
  unsigned worker_count_;
  std::unique_ptr<std::atomic<uint64_t>[]> heartbeats_;
  std::atomic<bool> listeners_bound_{false};
  std::atomic<bool> draining_{false};
  std::atomic<bool> event_draining_{false};
  std::atomic<bool> stopping_{false};
  LoopProbeRegistry loop_probes_;
};

}  // namespace hubdns
