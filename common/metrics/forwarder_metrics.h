// Maps ForwarderCounters (the DNS data path's atomics) onto /metrics families. Called once
// on the main thread before the workers start; the registry's collectors then read the
// counters with relaxed loads on the control loop. `counters` must outlive `registry`'s
// last render().
//
// Families (all counters):
//   hubdns_dns_queries_total{proto="udp"|"tcp"}              queries received from clients
//   hubdns_dns_dropped_total{reason="malformed"}             not answered at all
//   hubdns_dns_refused_total{reason="acl"|"no_route"}        answered REFUSED
//   hubdns_dns_invalid_queries_total                         answered FORMERR/NOTIMP/BADVERS
//   hubdns_dns_servfail_total{reason="upstream"|"overload"}  answered SERVFAIL by hubdns
//   hubdns_dns_truncated_total                               UDP answers sent with TC set
//   hubdns_dns_tcp_clients_rejected_total                    TCP clients closed at max_tcp_clients
//   hubdns_dns_coalesced_total                               queries that joined one in flight
//   hubdns_upstream_queries_total                            attempts sent upstream
//   hubdns_upstream_responses_total                          upstream answers relayed to clients
//   hubdns_upstream_timeouts_total                           attempts that timed out
//   hubdns_upstream_mismatched_responses_total               answers dropped as not matching
//   hubdns_upstream_errors_total                             send/connect/read failures
//   hubdns_upstream_max_outstanding_rejects_total            no upstream left below max_outstanding
#pragma once

#include "common/metrics/forwarder_counters.h"
#include "common/metrics/registry.h"

namespace hubdns {

void register_forwarder_metrics(MetricsRegistry& registry, const ForwarderCounters& counters);

}  // namespace hubdns
