// Counters of the DNS data path, shared by every worker (relaxed atomics: each increment is
// one uncontended-ish add, no lock) and read by the control loop for /metrics and /status.
// Each field is exposed by register_forwarder_metrics() (forwarder_metrics.cpp), which
// refuses to compile when a field is added here without a metric family there.
#pragma once

#include <atomic>
#include <cstdint>

namespace hubdns {

struct ForwarderCounters {
  using Counter = std::atomic<uint64_t>;
  Counter queries_udp{0};
  Counter queries_tcp{0};
  Counter refused_acl{0};         // client outside `allow`
  Counter dropped_malformed{0};   // not even a readable header, or a response sent as query
  Counter formerr{0};             // answered FORMERR / NOTIMP / BADVERS
  Counter no_route{0};            // no forward rule matched
  Counter upstream_queries{0};    // attempts sent upstream (UDP and TCP)
  Counter upstream_timeouts{0};   // attempts that timed out
  Counter upstream_mismatched{0}; // answers dropped: wrong source, ID or question
  Counter upstream_errors{0};     // send/connect failures
  Counter answers{0};             // upstream answers relayed to clients
  Counter truncated{0};           // UDP answers cut to fit the client (TC set)
  Counter servfail_sent{0};       // SERVFAIL because the budget was spent / nothing usable
  Counter overload_servfail{0};   // SERVFAIL because max_inflight was reached
  Counter tcp_clients_rejected{0};  // at max_tcp_clients with every connection owed an answer
  Counter tcp_clients_evicted{0};   // idle connections closed to make room for a new one
  Counter coalesced{0};           // queries that joined an identical one already upstream
  Counter upstream_overload{0};   // attempts not sent: every untried upstream at max_outstanding
  Counter no_healthy_upstream{0}; // SERVFAIL at once: every upstream of the rule is down
  Counter stale_answers{0};       // cache entries past their TTL answered instead of SERVFAIL
  Counter cache_prefetches{0};    // background refreshes of popular entries sent upstream
  // Gauges kept as two monotonic counts (now = started - finished), so each worker only
  // ever adds, like every other field, and a reader never sees a torn pair go negative
  // for long.
  Counter pending_started{0};     // client queries and prefetches that took a pending slot
  Counter pending_finished{0};    // ...and gave it back
  Counter tcp_clients_opened{0};  // client TCP connections accepted and kept
  Counter tcp_clients_closed{0};  // ...and closed
};

}  // namespace hubdns
