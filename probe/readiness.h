// Readiness and liveness as pure functions of a snapshot. The caller (HealthServer, on the
// control loop) copies plain values out of the shared atomics into the inputs; evaluation
// then touches no shared state, takes no lock and is trivially unit-tested.
//
// Liveness (/livez): every event loop of the process proved recently that it runs; never
// looks at upstreams (a dead upstream must not get a healthy VM repaired).
// Readiness (/readyz): configuration loaded and listeners bound, not draining, every worker
// loop alive, the first upstream check round has finished, each critical zone has an
// upstream that is up (unknown does not count), and every DNS listener answers the
// data-path self-check. Each failed condition is one line an operator can act on.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/health/upstream_health.h"

namespace hubdns {

// When each event loop last proved it runs, in monotonic milliseconds (0 = never yet).
struct LoopHeartbeats {
  uint64_t now_ms = 0;
  uint64_t max_silence_ms = 5000;      // a loop silent for longer is considered stuck
  uint64_t control_loop_last_ms = 0;   // the control loop (HTTP, health checks, signals)
  std::vector<uint64_t> worker_last_ms;  // one per DNS worker, by worker index
};

// One upstream of a critical zone, as the reason line describes it.
struct UpstreamHealthSummary {
  std::string address;  // "192.168.1.10:53"
  UpstreamStatus status = UpstreamStatus::unknown;
  bool checked = false;        // has had at least one check result
  std::string last_error;      // latest failure ("timeout", "REFUSED"), "" if none
  uint32_t error_streak = 0;   // consecutive failures with last_error (the "x3")
};

// Upstream health of one zone marked `critical = true`, filled by the health checks. Only
// critical zones are listed.
struct CriticalZoneHealth {
  std::string zone;  // as shown to operators: "." or "corp.contoso.com"
  std::vector<UpstreamHealthSummary> upstreams;
};

// The data-path self-check of one DNS listener over one transport.
struct DataPathHealth {
  std::string listener;  // "127.0.0.1:53/udp"
  bool answered_yet = false;  // some self-check was answered since start
  bool failing = false;       // failed health.fall times in a row
  std::string last_error;
  uint32_t consecutive_failures = 0;
};

struct ReadinessInputs {
  bool listeners_bound = false;  // configuration loaded and every DNS listener bound
  bool draining = false;
  LoopHeartbeats loops;
  // Filled by HealthMonitor (the contributor). Left at their defaults (a process without
  // health checks, e.g. in HealthServer's own tests) they add no reason.
  bool first_probe_round_done = true;
  size_t upstreams_unchecked = 0;  // for the reason line while the first round runs
  std::vector<CriticalZoneHealth> critical_zones;
  std::vector<DataPathHealth> data_path;
};

struct ReadinessReport {
  bool ready = false;
  std::vector<std::string> reasons;  // one human line per failed condition, empty when ready
};

struct LivenessReport {
  bool alive = false;
  std::vector<std::string> reasons;  // which loop is silent and for how long
};

ReadinessReport evaluate_readiness(const ReadinessInputs& inputs);
LivenessReport evaluate_liveness(const LoopHeartbeats& loops);

// "ok\n" when there is no reason, else one reason per line: the body of /readyz and /livez.
std::string reasons_body(const std::vector<std::string>& reasons);

}  // namespace hubdns
