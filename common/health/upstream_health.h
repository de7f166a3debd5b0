// The health of every upstream of every forward rule, shared between the two sides:
// - the control loop (probe/) decides each upstream's status from its active checks and
//   from the passive evidence below, and is the only writer of `status`;
// - DNS workers (forwarder/) read `status` to skip upstreams that are down or loop, and
//   bump the passive-evidence counters for every upstream attempt they finish;
// - /readyz, /status and /metrics read both.
// Everything here is an atomic: no lock, and a worker never waits for the control loop.
// Built once per configuration snapshot (entries follow Config::forward and each rule's
// upstreams, by index) and shared through a shared_ptr.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/config/config.h"
#include "common/metrics/registry.h"

namespace hubdns {

enum class UpstreamStatus : uint8_t {
  unknown = 0,  // not yet checked: usable, but the instance is not ready before the first round
  up = 1,
  down = 2,
  // Leads back to this instance (probe/loop_detector.h): a query sent there came back to
  // one of our own listeners. A configuration error, not an outage: the health checks never
  // lift it; it stays until a reload or a restart checks again.
  loop = 3,
};

const char* to_string(UpstreamStatus status);

// Bucket bounds of the per-upstream latency histogram, in microseconds: 0.5 ms (a resolver
// on the same host or VNet) to 5 s (beyond Azure DNS' slowest recursion).
std::vector<uint64_t> upstream_latency_bounds_us();

struct UpstreamHealthEntry {
  std::atomic<UpstreamStatus> status{UpstreamStatus::unknown};

  // Passive evidence from real traffic, bumped by workers (relaxed, monotonic). The control
  // loop compares them between checks: answers since the last check prove the upstream
  // works, so a busy upstream is not probed; failures alone are shown (/status, /metrics)
  // but do not decide, the active probe does (see probe/check_logic.h for why).
  std::atomic<uint64_t> answers{0};   // an answer other than SERVFAIL/REFUSED came back
  std::atomic<uint64_t> failures{0};  // timeout, network error, SERVFAIL or REFUSED
  std::atomic<uint64_t> answer_latency_us_total{0};  // over `answers`, for the average
  // The same answers' latencies (microseconds) for hubdns_upstream_latency_seconds.
  // Observed inside record_answer(), so workers make one call per answer, as before; an
  // observe() is a binary search over 13 bounds and two relaxed fetch_adds, no allocation.
  Histogram latency{upstream_latency_bounds_us(), 1'000'000};

  void record_answer(uint64_t latency_us) {
    answers.fetch_add(1, std::memory_order_relaxed);
    answer_latency_us_total.fetch_add(latency_us, std::memory_order_relaxed);
    latency.observe(latency_us);
  }
  void record_failure() { failures.fetch_add(1, std::memory_order_relaxed); }
  bool is_down() const { return status.load(std::memory_order_relaxed) == UpstreamStatus::down; }
  // Whether workers may send it client queries: not down, not a loop. One relaxed load.
  bool is_usable() const {
    const UpstreamStatus now = status.load(std::memory_order_relaxed);
    return now != UpstreamStatus::down && now != UpstreamStatus::loop;
  }
};

class UpstreamHealthTable {
 public:
  explicit UpstreamHealthTable(const Config& config);
  // For a reload: an upstream that stays (same zone, same address) keeps its entry, shared
  // with `previous`, so its status, counters and latency histogram carry on (and workers
  // still on the old configuration keep feeding the same evidence); new ones start unknown.
  UpstreamHealthTable(const Config& config, const Config& previous_config, const UpstreamHealthTable& previous);

  size_t rule_count() const { return rules_.size(); }
  size_t upstream_count(size_t rule) const { return rules_[rule].size(); }
  UpstreamHealthEntry& entry(size_t rule, size_t upstream) { return *rules_[rule][upstream]; }
  const UpstreamHealthEntry& entry(size_t rule, size_t upstream) const { return *rules_[rule][upstream]; }

 private:
  // Pointers: atomics are neither copyable nor movable, and the entries must not move;
  // shared, because a reload's new table keeps the entries of the upstreams that stay.
  std::vector<std::vector<std::shared_ptr<UpstreamHealthEntry>>> rules_;
};

using SharedUpstreamHealth = std::shared_ptr<UpstreamHealthTable>;

}  // namespace hubdns
