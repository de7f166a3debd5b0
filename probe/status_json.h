// GET /status: what an operator (or `jq`) reads to see why this instance is or is not
// ready. StatusView is a plain snapshot (HealthMonitor fills it on the control loop from
// state it already holds); render_status_json() turns it into JSON. Pure; any thread.
//
// Shape (stable keys; durations in milliseconds or seconds as the key says; -1 or null
// where there is nothing to say yet):
// {
//   "version": "0.1.0", "uptime_seconds": 12.5,
//   "ready": false, "reasons": ["zone .: no upstream up (...)"], "draining": false,
//   "listeners_bound": true,
//   "config": {"source": "/etc/hubdns/hubdns.toml", "generation": 1},
//   "health_check": {"interval_ms": 2000, "timeout_ms": 1000, "rise": 2, "fall": 3,
//                    "first_round_done": true},
//   "workers": [{"index": 0, "alive": true, "heartbeat_age_ms": 120}],
//   "listeners": {"dns": ["0.0.0.0:53"], "health": ["0.0.0.0:8053"],
//                 "tcp_probe": {"addresses": [], "listening": false, "accepted": 0}},
//   "self_check": [{"listener": "127.0.0.1:53/udp", "state": "passing", ...}],
//   "zones": [{"zone": ".", "critical": true, "policy": "fastest",
//              "probe": {"name": ".", "type": "SOA"}, "upstreams_up": 1,
//              "upstreams": [{"address": "168.63.129.16:53", "status": "up", ...,
//                             "loop_check": {"state": "clear", "last_result": "NXDOMAIN",
//                                            "probes": 1}}]}],
//   "instance": {"state": "known", "name": "dns-1", "vm_scale_set": "dns", "zone": "1",
//                "location": "westeurope"},   (names null until known; state "off" without IMDS)
//   "scheduled_events": {"mode": "off", "polling": false, "last_result": null,
//                        "consecutive_failures": 0, "polls_ok": 0,
//                        "events": [{"id": "...", "type": "Reboot", "status": "Scheduled",
//                                    "not_before": "...", "resources": ["dns-1"],
//                                    "for_this_instance": true, "drain_requested": true,
//                                    "ack": "pending"}]}
// }
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "common/health/upstream_health.h"
#include "probe/check_logic.h"

namespace hubdns {

struct UpstreamStatusView {
  std::string address;
  UpstreamStatus status = UpstreamStatus::unknown;
  int64_t status_age_ms = -1;  // since the last status change; -1: never changed (still unknown)
  uint32_t consecutive_successes = 0;
  uint32_t consecutive_failures = 0;
  std::string last_error;      // "" if none yet
  int64_t last_error_age_ms = -1;
  int64_t last_probe_latency_us = -1;
  std::array<uint64_t, kProbeResultCount> probe_results{};
  uint64_t probes_in_flight = 0;
  uint64_t traffic_checks = 0;  // rounds decided by real answers, no probe sent
  uint64_t answers = 0;         // real traffic (the DNS workers' passive evidence)
  uint64_t failures = 0;
  int64_t average_latency_us = -1;  // over `answers`; -1 when there were none
  // The forwarding-loop check (probe/loop_detector.h): "pending", "clear", "loop",
  // "retrying" or "not_checked" ("" when none ran: "loop_check" is null); what its last
  // probe got ("NXDOMAIN", "timeout", "came back to this instance"); probes sent.
  std::string loop_check;
  std::string loop_check_result;
  uint64_t loop_probes = 0;
};

struct ZoneStatusView {
  std::string zone;  // "." or "corp.contoso.com"
  bool critical = false;
  std::string policy;
  std::string probe_name;
  std::string probe_type;
  std::vector<UpstreamStatusView> upstreams;
};

struct SelfCheckView {
  std::string listener;  // "127.0.0.1:53/udp"
  SelfCheckState state = SelfCheckState::pending;
  uint32_t consecutive_failures = 0;
  std::string last_error;
  int64_t last_latency_us = -1;
  std::string answered_by;  // "worker 1"
  uint64_t checks = 0;
  uint64_t failures = 0;
};

struct WorkerView {
  unsigned index = 0;
  bool alive = false;
  int64_t heartbeat_age_ms = -1;  // -1: never beat
};

// Who this VM is, from the instance metadata service (probe/scheduled_events.h).
struct InstanceStatusView {
  std::string state = "off";  // off (IMDS not used) | pending | known | unreachable
  std::string name;           // compute.name ("" until known)
  std::string vm_scale_set;
  std::string zone;
  std::string location;
};

struct ScheduledEventStatusView {
  std::string id;
  std::string type;
  std::string status;
  std::string not_before;
  std::vector<std::string> resources;
  bool for_this_instance = false;
  bool drain_requested = false;
  std::string ack;  // none | pending | in_flight | sent | skipped | failed
};

struct ScheduledEventsStatusView {
  std::string mode = "off";  // [lifecycle] scheduled_events
  bool polling = false;
  std::string last_result;   // "ok", "http_5xx", ...; "" before the first poll
  uint32_t consecutive_failures = 0;
  uint64_t polls_ok = 0;
  std::vector<ScheduledEventStatusView> events;  // as listed by the latest answer
};

struct CacheStatusView {
  bool enabled = false;
  uint64_t max_entries = 0;
  uint64_t entries = 0;
  uint64_t bytes = 0;
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t stale_hits = 0;
  uint64_t insertions = 0;
  uint64_t evictions = 0;
};

struct ReloadStatusView {
  uint64_t ok = 0;
  uint64_t failed = 0;
  bool last_ok = true;       // true until a reload fails
  std::string last_error;    // of the last failed reload ("FILE:LINE:COL: ..." lines)
  size_t retiring_workers = 0;  // workers of an older generation still finishing queries
};

struct StatusView {
  std::string version;
  double uptime_seconds = 0;
  bool ready = false;
  std::vector<std::string> reasons;
  bool draining = false;
  bool listeners_bound = false;
  std::string config_source;
  uint64_t config_generation = 0;
  uint64_t interval_ms = 0;
  uint64_t timeout_ms = 0;
  uint32_t rise = 0;
  uint32_t fall = 0;
  bool first_round_done = false;
  std::vector<WorkerView> workers;
  std::vector<std::string> dns_listeners;
  std::vector<std::string> health_listeners;
  std::vector<std::string> tcp_probe_addresses;
  bool tcp_probe_listening = false;
  uint64_t tcp_probe_accepted = 0;
  std::vector<SelfCheckView> self_checks;
  std::vector<ZoneStatusView> zones;
  InstanceStatusView instance;
  ScheduledEventsStatusView scheduled_events;
  CacheStatusView cache;
  ReloadStatusView reload;
};

std::string render_status_json(const StatusView& view);

}  // namespace hubdns
