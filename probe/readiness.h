// Readiness and liveness as pure functions of a snapshot. The caller (HealthServer, on the
// control loop) copies plain values out of the shared atomics into the inputs; evaluation
// then touches no shared state, takes no lock and is trivially unit-tested.
//
// Liveness (/livez): every event loop of the process proved recently that it runs; never
// looks at upstreams (a dead upstream must not get a healthy VM repaired).
// Readiness (/readyz): configuration loaded and listeners bound, not draining, every worker
// loop alive, and (issue 4) each critical zone has an upstream that is up and the first
// probe round has finished.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hubdns {

// When each event loop last proved it runs, in monotonic milliseconds (0 = never yet).
struct LoopHeartbeats {
  uint64_t now_ms = 0;
  uint64_t max_silence_ms = 5000;      // a loop silent for longer is considered stuck
  uint64_t control_loop_last_ms = 0;   // the control loop (HTTP, health checks, signals)
  std::vector<uint64_t> worker_last_ms;  // one per DNS worker, by worker index
};

// Upstream health of one zone marked `critical = true`; filled by the upstream health
// checks (issue 4). Only critical zones are listed.
struct CriticalZoneHealth {
  std::string zone;                // "." or "contoso.com."
  unsigned upstreams_up = 0;
  unsigned upstreams_total = 0;
};

struct ReadinessInputs {
  bool listeners_bound = false;  // configuration loaded and every DNS listener bound
  bool draining = false;
  LoopHeartbeats loops;
  // Extension point for upstream-aware readiness (issue 4). Until the health checks exist
  // these stay empty / true and add no reason.
  bool first_probe_round_done = true;
  std::vector<CriticalZoneHealth> critical_zones;
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
