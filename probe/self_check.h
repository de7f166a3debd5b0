// DataPathSelfCheck: proves, every health.interval, that the DNS listeners deliver queries
// to DNS workers that answer them. For each DNS listen address (a wildcard is asked on its
// family's loopback address: 0.0.0.0 -> 127.0.0.1, :: -> ::1) it asks
// `_selfcheck.hubdns.invalid. TXT` over UDP and over TCP; every worker answers that question
// itself when it comes from loopback (TXT "worker N"), so no upstream is involved and a
// wedged worker or a dead socket shows up however healthy the upstreams are. The query is
// always sent from a loopback source address (bound explicitly when the listener's address
// is not loopback), so workers recognise it.
//
// Any response that matches the question counts as an answer, whatever its rcode: the
// point is that the listener delivered the query to a worker that answered. A listener
// fails after health.fall consecutive failures (see probe/check_logic.h) and passes again
// on its first answer.
//
// Thread: the control loop only; outstanding exchanges are cancelled by close().
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/net/address.h"
#include "probe/check_logic.h"
#include "probe/dns_exchange.h"

namespace hubdns {

class DataPathSelfCheck {
 public:
  struct Target {
    SocketAddress listener;  // as configured / bound ("0.0.0.0:53")
    SocketAddress address;   // where the query goes ("127.0.0.1:53")
    std::optional<SocketAddress> source;  // loopback source to bind, when `address` is not loopback
    DnsTransport transport = DnsTransport::udp;
    std::string name;  // "127.0.0.1:53/udp": what reasons and /status call it
    SelfCheckTracker tracker;
    std::string answered_by;  // TXT of the last answer ("worker 1"), "" if none had one
    int64_t last_latency_us = -1;
    DnsExchange* in_flight = nullptr;
  };

  // Called after a target's state changed.
  using ChangeListener = std::function<void()>;

  DataPathSelfCheck(uv_loop_t* loop, const std::vector<SocketAddress>& dns_listeners, uint64_t timeout_ms,
                    uint32_t fall);
  ~DataPathSelfCheck();
  DataPathSelfCheck(const DataPathSelfCheck&) = delete;
  DataPathSelfCheck& operator=(const DataPathSelfCheck&) = delete;

  void set_change_listener(ChangeListener listener) { listener_ = std::move(listener); }
  void run_round();
  void close();
  // A reload: the listeners as bound now; a target that stays (same listener, transport)
  // keeps its state, checks in flight are cancelled (the next round asks again).
  void reconfigure(const std::vector<SocketAddress>& dns_listeners, uint64_t timeout_ms, uint32_t fall);

  const std::vector<Target>& targets() const { return targets_; }

 private:
  void start_check(Target& target);
  static std::vector<Target> make_targets(const std::vector<SocketAddress>& dns_listeners);

  uv_loop_t* loop_;
  uint64_t timeout_ms_;
  uint32_t fall_;
  std::vector<Target> targets_;
  bool closed_ = false;
  ChangeListener listener_;
};

}  // namespace hubdns
