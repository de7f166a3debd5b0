// The running generation of the DNS side and its replacement on a reload (SIGHUP or POST
// /reload). Owns the DNS workers, the configuration snapshot they run on, the upstream
// health table and the answer cache; used only on the control loop (main thread).
//
// A reload parses and validates the file on the control loop (the workers go on
// answering), then builds a new generation beside the running one:
// - new workers on the new snapshot, listening on duplicates of the running workers'
//   sockets for the addresses that stay (the same kernel sockets: nothing queued is lost,
//   nothing is re-bound) and on new sockets for new addresses;
// - a health table that keeps the entries (status, counters) of upstreams that stay;
// - the same cache, unless [cache] changed (then a new, empty one).
// Once the new workers run, the old ones stop listening (reading what is queued first),
// finish their queries in flight on the old snapshot, and are joined when drained. A
// failure at any step (a bad file, an address that cannot be bound) leaves the running
// generation untouched and is reported in the log, /status and /metrics.
#pragma once

#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include "common/cache/packet_cache.h"
#include "common/config/config.h"
#include "common/health/process_state.h"
#include "common/health/upstream_health.h"
#include "common/metrics/forwarder_counters.h"
#include "common/metrics/registry.h"
#include "common/uv/handle.h"
#include "forwarder/dns_worker.h"
#include "probe/health_monitor.h"
#include "probe/status_json.h"

namespace hubdns {

class Reloader {
 public:
  struct Outcome {
    bool ok = false;
    std::string message;  // one line per error or warning, for the log and POST /reload
  };

  // config_path: the file to read again ("" = the embedded default configuration).
  Reloader(uv_loop_t* loop, std::string config_path, unsigned worker_count, ProcessState* state,
           ForwarderCounters* counters, ConfigSnapshot config);
  ~Reloader();
  Reloader(const Reloader&) = delete;
  Reloader& operator=(const Reloader&) = delete;

  // Start-up: the first generation's workers on the sockets opened by main(). False (and
  // *error) if one cannot start.
  bool start_workers(std::vector<std::vector<ListenSocket>> sockets, std::string* error);
  // The health side, once it exists (it is built after the health table).
  void attach_monitor(HealthMonitor* monitor) { monitor_ = monitor; }

  Outcome reload(const char* trigger);

  // The stop: every worker, current and retiring.
  void stop_listening_all();
  bool all_drained() const;
  void stop_all();

  const ConfigSnapshot& config() const { return config_; }
  const SharedUpstreamHealth& health() const { return health_; }
  // The cache in use (nullptr when [cache] is disabled). A pointer to the slot, so that
  // /metrics, /status and POST /cache/flush always see the current one.
  const std::shared_ptr<PacketCache>* cache_slot() const { return &cache_; }
  const ConfigSnapshot* config_slot() const { return &config_; }
  uint64_t generation() const { return generation_; }

  void register_metrics(MetricsRegistry& registry);
  void fill_status(StatusView* view) const;

 private:
  struct Retiring {
    std::shared_ptr<PacketCache> cache;  // the cache it may still use: destroyed after it
    std::unique_ptr<DnsWorker> worker;
    uint64_t deadline_ms = 0;            // joined then even if not drained
  };

  static void on_retire_timer(uv_timer_t* timer);
  void retire_drained();
  // New workers for `config`, listening on what stays and on new addresses.
  bool build_generation(const ConfigSnapshot& config, const SharedUpstreamHealth& health,
                        const std::shared_ptr<PacketCache>& cache,
                        std::vector<std::unique_ptr<DnsWorker>>* workers, std::string* error);

  uv_loop_t* loop_;
  std::string config_path_;
  unsigned worker_count_;
  ProcessState* state_;
  ForwarderCounters* counters_;
  HealthMonitor* monitor_ = nullptr;

  ConfigSnapshot config_;
  SharedUpstreamHealth health_;
  std::shared_ptr<PacketCache> cache_;
  std::vector<std::unique_ptr<DnsWorker>> workers_;
  std::vector<Retiring> retiring_;
  UvTimer retire_timer_;

  uint64_t generation_ = 1;
  uint64_t reloads_ok_ = 0;
  uint64_t reloads_failed_ = 0;
  bool last_reload_ok_ = true;
  bool stopping_ = false;  // the stop began: a reload would start listening again
  std::string last_reload_error_;
};

}  // namespace hubdns
