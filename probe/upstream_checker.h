// UpstreamChecker: the active health checks of every upstream of every forward rule, on
// the control loop. Each round (HealthMonitor calls run_round() every health.interval) it
// folds in the passive evidence the DNS workers left in the shared UpstreamHealthTable
// (answers since the last round prove an upstream works, so it is not probed), and asks
// every other upstream its rule's `probe` question over UDP with a fresh socket and a
// random ID, waiting health.timeout. Results go through an UpstreamTracker (rise / fall
// hysteresis, see probe/check_logic.h), and the checker, the only writer of
// UpstreamHealthEntry::status, publishes every change there for the workers.
//
// Thread: the control loop only. Outstanding probes are cancelled by close() or the
// destructor. Holds the configuration snapshot and the shared table it was built from.
#pragma once

#include <uv.h>

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/config/config.h"
#include "common/health/upstream_health.h"
#include "common/net/address.h"
#include "probe/check_logic.h"
#include "probe/dns_exchange.h"

namespace hubdns {

// "." stays "."; "corp.contoso.com." is shown as "corp.contoso.com" (how operators write it).
std::string display_zone(const std::string& zone);

class UpstreamChecker {
 public:
  struct Upstream {
    size_t rule = 0;
    size_t index = 0;  // in the rule's upstreams
    SocketAddress address;
    std::string address_text;  // "192.0.2.1:53"
    UpstreamTracker tracker;
    std::array<uint64_t, kProbeResultCount> probe_results{};  // probes that ended, by result
    uint64_t traffic_checks = 0;  // rounds decided by real answers instead of a probe
    uint64_t seen_answers = 0;    // the entry's `answers` at the previous round
    int64_t last_probe_latency_us = -1;  // of the last probe that got an answer; -1: none yet
    DnsExchange* in_flight = nullptr;

    Upstream(size_t rule_index, size_t upstream_index, const SocketAddress& upstream, uint32_t rise, uint32_t fall);
    uint64_t probes_sent() const;
  };

  // Called after every upstream status change and after the first round completed.
  using ChangeListener = std::function<void()>;

  UpstreamChecker(uv_loop_t* loop, ConfigSnapshot config, SharedUpstreamHealth table);
  ~UpstreamChecker();
  UpstreamChecker(const UpstreamChecker&) = delete;
  UpstreamChecker& operator=(const UpstreamChecker&) = delete;

  void set_change_listener(ChangeListener listener) { listener_ = std::move(listener); }

  // One round: passive evidence, then probes. A probe still outstanding from the previous
  // round (health.timeout is validated to be shorter than interval, so only a stalled
  // loop gets here) is left to finish, not doubled.
  void run_round();
  // Cancels outstanding probes. Idempotent.
  void close();
  // A reload: the upstreams of `config` from now on. One that stays (same zone, same
  // address) keeps its tracker (status, streaks, last error) and its counts; probes in
  // flight are cancelled (the next round asks again).
  void reconfigure(ConfigSnapshot config, SharedUpstreamHealth table);

  // The loop detector's verdict for upstream `index` of rule `rule` (which must still be
  // `address`, else nothing happens): while `loop`, the shared status is `loop` and the
  // checks cannot lift it (see UpstreamTracker::set_loop). Clearing one is logged here;
  // finding one is logged by the detector. Returns true when the status changed.
  bool set_loop(size_t rule, size_t index, const SocketAddress& address, bool loop);

  // True once every upstream has had at least one result.
  bool first_round_done() const { return unchecked_ == 0; }
  size_t unchecked() const { return unchecked_; }
  // Per rule (Config::forward order), each rule's upstreams in order.
  const std::vector<std::vector<Upstream>>& upstreams() const { return upstreams_; }
  const Config& config() const { return *config_; }
  const UpstreamHealthTable& table() const { return *table_; }

 private:
  void start_probe(Upstream& upstream);
  void apply(Upstream& upstream, const ProbeOutcome& outcome);

  uv_loop_t* loop_;
  ConfigSnapshot config_;
  SharedUpstreamHealth table_;
  std::vector<std::vector<Upstream>> upstreams_;
  size_t unchecked_ = 0;
  bool closed_ = false;
  ChangeListener listener_;
};

}  // namespace hubdns
