// HealthMonitor: the health side of the control loop, put together. It owns the upstream
// checks (UpstreamChecker), the data-path self-check (DataPathSelfCheck) and the TCP probe
// port (TcpProbePort), runs a check round every health.interval (the first at once), and
// plugs into the HealthServer: the readiness contributor (critical zones, first round,
// self-check), GET /status, POST /drain and POST /undrain. It also registers the health
// families of /metrics. Readiness is re-evaluated after every state change and every
// 250 ms (a worker heartbeat going stale changes it without any event here), which drives
// the TCP probe port and the "ready" / "not ready" log lines.
//
// Thread: constructed, used and destroyed on the control loop's thread (the main thread,
// before the DNS workers start). register_metrics() must be called before any other
// thread starts, and this object must outlive the registry's last render(); close()
// replaces its routes with ones that no longer reach it, so the HealthServer may outlive it.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/config/config.h"
#include "common/health/process_state.h"
#include "common/health/upstream_health.h"
#include "common/metrics/registry.h"
#include "common/net/address.h"
#include "common/uv/handle.h"
#include "probe/health_server.h"
#include "probe/loop_detector.h"
#include "probe/self_check.h"
#include "probe/status_json.h"
#include "probe/tcp_probe_port.h"
#include "probe/upstream_checker.h"

namespace hubdns {

struct HealthMonitorOptions {
  uint64_t config_generation = 1;      // until reloads exist, the first configuration is 1
  uint64_t readiness_watch_ms = 250;   // period of the readiness re-evaluation
};

class HealthMonitor {
 public:
  // dns_listeners: the DNS listen addresses as bound (real ports), for the self-check.
  HealthMonitor(uv_loop_t* loop, HealthServer* server, ConfigSnapshot config, SharedUpstreamHealth table,
                ProcessState* state, std::vector<SocketAddress> dns_listeners, HealthMonitorOptions options = {});
  ~HealthMonitor();
  HealthMonitor(const HealthMonitor&) = delete;
  HealthMonitor& operator=(const HealthMonitor&) = delete;

  void register_metrics(MetricsRegistry& registry);
  // Starts the rounds (the first one at once) and the readiness watch.
  void start();
  // Stops timers and checks, closes the TCP probe port, detaches from the server. Idempotent.
  void close();
  // A reload: checks the upstreams of `config` from now on (those that stay keep their
  // state), with its health settings; /status and /metrics show `generation`. Readiness
  // does not wait for a new first round: new upstreams start "unknown", which is usable.
  // dns_listeners: the DNS listen addresses as bound now, for the self-check.
  void reconfigure(ConfigSnapshot config, SharedUpstreamHealth table, uint64_t generation,
                   std::vector<SocketAddress> dns_listeners);

  StatusView status_view() const;
  // Adds facts owned elsewhere on the control loop (instance metadata, scheduled events)
  // to every /status document; called last in status_view().
  // Adds a part of /status that lives outside probe/'s health state (scheduled events,
  // the cache); each is called, in order, on every rendering.
  void add_status_contributor(std::function<void(StatusView&)> contributor) {
    status_contributors_.push_back(std::move(contributor));
  }
  bool ready() const { return server_->readiness().ready; }
  // Re-evaluates readiness: opens or closes the TCP probe port, logs a change. Called by
  // the monitor itself, and by whoever changes a readiness input it does not own (the
  // scheduled-events drain).
  void readiness_may_have_changed();

  const UpstreamChecker& checker() const { return checker_; }
  const LoopDetector& loop_detector() const { return loop_detector_; }
  // Checks every upstream for a forwarding loop again (start() and reconfigure() do it
  // too); safe while a check is in flight. Verdicts hold until the new ones arrive.
  void check_forwarding_loops() { loop_detector_.run_all(); }
  const DataPathSelfCheck& self_check() const { return self_check_; }
  const TcpProbePort& tcp_probe_port() const { return tcp_probe_; }

 private:
  static void on_round(uv_timer_t* timer);
  static void on_watch(uv_timer_t* timer);
  void contribute(ReadinessInputs& inputs) const;
  // Calls fn(zone as displayed, upstream) for every upstream of every rule, in order: the
  // shape every per-upstream metric family shares.
  template <typename Fn>
  void for_each_upstream(Fn&& fn) const {
    for (const auto& rule : checker_.upstreams()) {
      for (const UpstreamChecker::Upstream& upstream : rule) {
        fn(display_zone_of(upstream.rule), upstream);
      }
    }
  }
  std::string display_zone_of(size_t rule) const;
  // The first check round finished once: a milestone of the process, kept across reloads.
  bool first_round_done() const { return first_round_done_before_ || checker_.first_round_done(); }
  HttpResponse admin(const HttpRequest& request, const RequestContext& context, bool drain);
  HttpResponse status_response() const;

  uv_loop_t* loop_;
  HealthServer* server_;
  ConfigSnapshot config_;
  SharedUpstreamHealth table_;
  ProcessState* state_;
  HealthMonitorOptions options_;
  std::vector<SocketAddress> dns_listeners_;
  UpstreamChecker checker_;
  LoopDetector loop_detector_;  // its verdicts reach the checker, the writer of the shared status
  DataPathSelfCheck self_check_;
  TcpProbePort tcp_probe_;
  UvTimer round_timer_;
  UvTimer watch_timer_;
  uint64_t started_ms_;
  std::vector<std::function<void(StatusView&)>> status_contributors_;
  std::optional<bool> logged_ready_;  // the readiness last logged
  bool closed_ = false;
  bool first_round_done_before_ = false;  // by a configuration before the current one
};

}  // namespace hubdns
