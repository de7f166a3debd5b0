// LoopDetector: finds forward-rule upstreams that lead back to this instance. A rule whose
// upstream forwards the zone back to us (the VNet's DNS server, or an on-premises
// forwarder pointing at the load balancer in front of the hubdns tier) makes every query
// of that zone circle until it times out. At start, and again at every run_all() (a
// reload), each upstream of each rule is asked "<token>._hubdns-loop.<zone> TXT" over UDP,
// with a fresh random token registered in the process-wide LoopProbeRegistry
// (common/health/loop_probes.h). The name is under the rule's zone, so forwarders on the
// way treat it as they would a client's query. If a DNS worker of this process receives
// it, the upstream leads back here: verdict loop, one error line in the log, and the
// verdict listener (HealthMonitor) marks the upstream `loop` so no worker sends it queries.
//
// Verdicts, per upstream and check:
// - loop: a worker saw our token (during the wait, or during the previous unanswered
//   attempt's, whose token stays registered until the next attempt is judged);
// - clear: any answer other than SERVFAIL came back and the token never arrived;
// - no verdict (timeout, network error, SERVFAIL): asked again after health.interval,
//   doubling up to a minute, until an answer decides. A loop through several instances
//   behind a load balancer may land on another instance first and stall there; a later
//   attempt lands on us. Nothing is ever flagged without our token arriving.
// A verdict stays until the next run_all(): the periodic health checks never undo it.
//
// Thread: the control loop only. Outstanding probes and the retry timer are cancelled by
// close() or the destructor; tokens are removed from the registry then too.
#pragma once

#include <uv.h>

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/config/config.h"
#include "common/health/loop_probes.h"
#include "common/net/address.h"
#include "common/uv/handle.h"
#include "probe/dns_exchange.h"

namespace hubdns {

enum class LoopCheckState : uint8_t {
  pending,      // first probe of this check in flight
  clear,        // answered, and our probe never came back to us
  loop,         // our probe came back to one of our own listeners
  retrying,     // no answer that decides yet (timeout, network error, SERVFAIL)
  not_checked,  // the zone is too long to put a probe label under it
};
const char* to_string(LoopCheckState state);

// Results of the probes, also the `result` label of hubdns_loop_probes_total.
enum class LoopProbeResult : uint8_t { loop, clear, no_verdict };
inline constexpr size_t kLoopProbeResultCount = 3;
const char* loop_probe_result_label(LoopProbeResult result);

struct LoopDetectorOptions {
  uint64_t max_wait_ms = 3000;    // a probe waits the rule's attempt_timeout, at most this
  uint64_t first_retry_ms = 0;    // after a probe without verdict; 0: health.interval
  uint64_t max_retry_ms = 60000;  // the retry delay doubles up to this
};

class LoopDetector {
 public:
  struct Upstream {
    size_t rule = 0;
    size_t index = 0;  // in the rule's upstreams
    SocketAddress address;
    std::string address_text;
    LoopCheckState state = LoopCheckState::pending;
    std::string last_result;  // "NXDOMAIN", "timeout", "came back to this instance", ...
    uint64_t probes_sent = 0;
    DnsExchange* in_flight = nullptr;
    // Registered tokens: the one in flight, and the previous attempt's if it got no answer
    // (a slow loop may still bring it back).
    std::vector<uint64_t> tokens;
    uint64_t retry_at_ms = 0;  // loop time of the next attempt; 0: none planned
    uint64_t retry_delay_ms = 0;

    Upstream(size_t rule_index, size_t upstream_index, const SocketAddress& upstream);
  };

  // Called with every verdict (loop true or false), also when it repeats an earlier one.
  using VerdictListener = std::function<void(const Upstream& upstream, bool loop)>;

  LoopDetector(uv_loop_t* loop, ConfigSnapshot config, LoopProbeRegistry* registry,
               LoopDetectorOptions options = {});
  ~LoopDetector();
  LoopDetector(const LoopDetector&) = delete;
  LoopDetector& operator=(const LoopDetector&) = delete;

  void set_verdict_listener(VerdictListener listener) { listener_ = std::move(listener); }

  // Checks every upstream again, now: probes in flight and planned retries are dropped
  // (their tokens too), a fresh probe goes to each upstream. Safe at any time, also while
  // a check is in flight; earlier verdicts hold until the new ones arrive.
  void run_all();
  // A reload: the upstreams of `config` from now on, all checked again (run_all()).
  void reconfigure(ConfigSnapshot config);
  // Cancels probes and retries, forgets the tokens. Idempotent.
  void close();

  // Per rule (Config::forward order), each rule's upstreams in order.
  const std::vector<std::vector<Upstream>>& upstreams() const { return upstreams_; }
  const std::array<uint64_t, kLoopProbeResultCount>& results() const { return results_; }

 private:
  void build_upstreams();
  // Drops every probe in flight, its tokens and planned retries.
  void cancel_all();
  void start_probe(Upstream& upstream);
  void judge(Upstream& upstream, const DnsExchangeResult& result);
  void forget_tokens(Upstream& upstream, size_t keep_last);
  void arm_retry_timer();
  static void on_retry_timer(uv_timer_t* timer);

  uv_loop_t* loop_;
  ConfigSnapshot config_;
  LoopProbeRegistry* registry_;
  LoopDetectorOptions options_;
  std::vector<std::vector<Upstream>> upstreams_;
  std::array<uint64_t, kLoopProbeResultCount> results_{};
  UvTimer retry_timer_;
  VerdictListener listener_;
  bool closed_ = false;
};

}  // namespace hubdns
