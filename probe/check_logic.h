// The decisions of the health checks, as pure code: how one check's result is classified,
// how consecutive results move an upstream between unknown, up and down (rise / fall
// hysteresis), when real traffic makes a probe unnecessary, and how the data-path
// self-check of a DNS listener passes or fails. No I/O, no clock, no shared state: the
// control loop (UpstreamChecker, DataPathSelfCheck) feeds results in and acts on what
// comes out; the unit tests do the same with made-up results.
//
// Decisions, and why:
// - unknown -> up on the first success: at start there is no history to protect against
//   flapping, and an instance should become ready after one round, not `rise` rounds.
// - unknown -> down only after `fall` consecutive failures, like up -> down: one packet lost
//   at start must not make workers skip an upstream for `rise` intervals.
// - down -> up after `rise` consecutive successes; up -> down after `fall` failures.
// - Passive evidence: answers from real traffic since the last check count as a success
//   and the probe is skipped (a busy upstream is not probed needlessly). Failures from real
//   traffic alone never mark an upstream down: workers count SERVFAIL and REFUSED answers as
//   failures, so one client asking, again and again, a name whose authority is broken would
//   otherwise take a healthy upstream down and, for a critical zone, every instance of the
//   pool out of the load balancer at once. When traffic shows failures and no answers, the
//   active probe decides. A down upstream is always probed: workers skip it, so there is no
//   traffic to judge it by, and only our own question proves it is back.
// - The self-check of a DNS listener fails after `fall` consecutive failures (one datagram
//   dropped by a full socket buffer is not a dead listener) and passes again on the first
//   answer (a listener that answered is delivering queries).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "common/health/upstream_health.h"

namespace hubdns {

// What one active check ended with; also the `result` label of hubdns_upstream_probes_total.
enum class ProbeResult : uint8_t {
  ok,             // NOERROR or NXDOMAIN (the upstream resolved the question)
  timeout,        // no answer within health.timeout
  servfail,
  refused,
  formerr,
  other_rcode,    // NOTIMP, YXDOMAIN, ...: not an answer we can count as resolving
  bad_answer,     // only answers that did not match (wrong ID or question) or were not DNS
  network_error,  // the socket said so (ECONNREFUSED from an ICMP port unreachable, ...)
};
inline constexpr size_t kProbeResultCount = 8;

// "ok", "timeout", "servfail", ... (stable: metric label values).
const char* probe_result_label(ProbeResult result);

struct ProbeOutcome {
  ProbeResult result = ProbeResult::ok;
  std::string error;  // "" on ok; else what an operator reads: "timeout", "SERVFAIL", "network: ECONNREFUSED"

  bool success() const { return result == ProbeResult::ok; }
  static ProbeOutcome failure(ProbeResult result, std::string error) { return {result, std::move(error)}; }
};

// A response that matched the question (ID and question checked), by its rcode.
ProbeOutcome outcome_for_rcode(uint8_t rcode);

// A check that got no matching response: error is 0 for none, or a libuv error code
// (UV_ETIMEDOUT is a timeout); mismatched / garbled count responses that arrived but did
// not match or were not DNS at all, which is reported instead of a plain timeout.
ProbeOutcome outcome_for_failure(int error, unsigned mismatched, unsigned garbled);

// Per-upstream state kept by the control loop: the hysteresis and what /status and the
// readiness reasons show.
class UpstreamTracker {
 public:
  UpstreamTracker(uint32_t rise, uint32_t fall);

  // Applies one check's result at now_ms. Returns true when the status changed.
  bool apply(const ProbeOutcome& outcome, uint64_t now_ms);

  // `loop` while the loop detector (probe/loop_detector.h) says the upstream leads back to
  // this instance, else what the checks decided.
  UpstreamStatus status() const { return loop_ ? UpstreamStatus::loop : status_; }
  // A loop is a configuration error, not an outage, so no check result lifts it: the
  // checks go on underneath (health_status()) and only the loop detector's next verdict (at
  // a reload or restart) clears it. Returns true when status() changed.
  bool set_loop(bool loop, uint64_t now_ms);
  bool loop() const { return loop_; }
  UpstreamStatus health_status() const { return status_; }
  bool checked() const { return results_ > 0; }  // at least one result so far
  // A reload may change health.rise and health.fall; the streaks so far stay.
  void set_thresholds(uint32_t rise, uint32_t fall) {
    rise_ = rise;
    fall_ = fall;
  }
  uint64_t results() const { return results_; }
  uint32_t consecutive_successes() const { return consecutive_successes_; }
  uint32_t consecutive_failures() const { return consecutive_failures_; }
  // The latest failure ("" if none yet), kept after later successes for /status.
  const std::string& last_error() const { return last_error_; }
  // How many failures in a row ended with last_error (the "x3" of "timeout x3"); 0 once a
  // success or a different error came.
  uint32_t last_error_streak() const { return last_error_streak_; }
  uint64_t last_error_ms() const { return last_error_ms_; }
  uint64_t last_change_ms() const { return last_change_ms_; }  // 0: never changed

 private:
  uint32_t rise_;
  uint32_t fall_;
  UpstreamStatus status_ = UpstreamStatus::unknown;
  bool loop_ = false;
  uint64_t results_ = 0;
  uint32_t consecutive_successes_ = 0;
  uint32_t consecutive_failures_ = 0;
  std::string last_error_;
  uint32_t last_error_streak_ = 0;
  uint64_t last_error_ms_ = 0;
  uint64_t last_change_ms_ = 0;
};

enum class CheckPlan {
  traffic_success,  // real answers since the last check: count a success, send no probe
  probe,            // ask the probe question
};

// What a check round does for one upstream, given its status and the answers real traffic
// got from it since the previous round.
CheckPlan plan_check(UpstreamStatus status, uint64_t answers_since_last_check);

// The data-path self-check of one DNS listener and transport.
enum class SelfCheckState : uint8_t {
  pending,  // no answer yet since start
  passing,
  failing,
};
const char* to_string(SelfCheckState state);

struct SelfCheckTracker {
  SelfCheckState state = SelfCheckState::pending;
  uint32_t consecutive_failures = 0;
  std::string last_error;  // latest failure, kept after a success for /status
  uint64_t checks = 0;
  uint64_t failures = 0;

  // Returns true when the state changed.
  bool apply(const ProbeOutcome& outcome, uint32_t fall);
};

}  // namespace hubdns
