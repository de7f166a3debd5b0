#include "common/metrics/forwarder_metrics.h"

namespace hubdns {

// A new field in ForwarderCounters must get a family here too, or it would be counted but
// never seen: this fails to compile until both change together.
static_assert(sizeof(ForwarderCounters) == 25 * sizeof(ForwarderCounters::Counter),
              "ForwarderCounters changed: map the new field in register_forwarder_metrics()");

namespace {

uint64_t difference(const ForwarderCounters::Counter& started, const ForwarderCounters::Counter& finished) {
  // finished first: read the other way, a query that starts and finishes in between would
  // count as finished but not started.
  uint64_t done = finished.load(std::memory_order_relaxed);
  uint64_t begun = started.load(std::memory_order_relaxed);
  return begun > done ? begun - done : 0;
}

}  // namespace

void register_forwarder_metrics(MetricsRegistry& registry, const ForwarderCounters& counters) {
  const ForwarderCounters* c = &counters;

  // Names follow CoreDNS (coredns_dns_requests_total{proto}) and dnsdist (acl-drops,
  // downstream-timeouts, ...): hubdns_dns_* is what clients see, hubdns_upstream_* what the
  // upstreams see. Outcomes of one kind share a family with a `reason` label, so
  // sum by () gives the total and nothing is counted twice.
  registry.add_family({.name = "hubdns_dns_queries_total",
                       .type = MetricType::counter,
                       .help = "DNS queries received from clients, by transport (including those later dropped or refused).",
                       .label_names = {"proto"}},
                      [c](MetricSink& sink) {
                        sink.add({"udp"}, c->queries_udp);
                        sink.add({"tcp"}, c->queries_tcp);
                      });
  registry.add_family({.name = "hubdns_dns_dropped_total",
                       .type = MetricType::counter,
                       .help = "Client messages dropped without an answer: no readable DNS header, or not a query.",
                       .label_names = {"reason"}},
                      [c](MetricSink& sink) { sink.add({"malformed"}, c->dropped_malformed); });
  registry.add_family({.name = "hubdns_dns_refused_total",
                       .type = MetricType::counter,
                       .help = "Queries answered REFUSED: client outside server.allow (acl), or no forward rule for the name (no_route).",
                       .label_names = {"reason"}},
                      [c](MetricSink& sink) {
                        sink.add({"acl"}, c->refused_acl);
                        sink.add({"no_route"}, c->no_route);
                      });
  registry.add_family({.name = "hubdns_dns_invalid_queries_total",
                       .type = MetricType::counter,
                       .help = "Queries answered FORMERR, NOTIMP or BADVERS without forwarding them."},
                      [c](MetricSink& sink) { sink.add({}, c->formerr); });
  registry.add_family({.name = "hubdns_dns_servfail_total",
                       .type = MetricType::counter,
                       .help = "Queries hubdns answered SERVFAIL itself: no usable upstream answer within the budget (upstream), or server.max_inflight reached (overload).",
                       .label_names = {"reason"}},
                      [c](MetricSink& sink) {
                        sink.add({"upstream"}, c->servfail_sent);
                        sink.add({"overload"}, c->overload_servfail);
                      });
  registry.add_family({.name = "hubdns_dns_truncated_total",
                       .type = MetricType::counter,
                       .help = "UDP answers cut to the client's size limit and sent with TC set."},
                      [c](MetricSink& sink) { sink.add({}, c->truncated); });
  registry.add_family({.name = "hubdns_dns_tcp_clients_rejected_total",
                       .type = MetricType::counter,
                       .help = "TCP client connections closed at once because server.max_tcp_clients was reached and every open connection was owed an answer."},
                      [c](MetricSink& sink) { sink.add({}, c->tcp_clients_rejected); });
  registry.add_family({.name = "hubdns_dns_tcp_clients_evicted_total",
                       .type = MetricType::counter,
                       .help = "Idle client TCP connections (no query in flight, nothing unsent) closed to make room for a new client at server.max_tcp_clients."},
                      [c](MetricSink& sink) { sink.add({}, c->tcp_clients_evicted); });
  registry.add_family({.name = "hubdns_dns_coalesced_total",
                       .type = MetricType::counter,
                       .help = "Client queries that waited for an identical question already in flight upstream instead of sending their own."},
                      [c](MetricSink& sink) { sink.add({}, c->coalesced); });

  // Read as two relaxed loads while workers go on: the queries that start or finish in
  // between make one scrape a little off (never negative: clamped); the next is right.
  registry.add_family({.name = "hubdns_dns_inflight_queries",
                       .type = MetricType::gauge,
                       .help = "Client queries (and cache prefetches) waiting for an upstream answer now; server.max_inflight caps it, beyond it queries get SERVFAIL (reason overload)."},
                      [c](MetricSink& sink) { sink.add({}, difference(c->pending_started, c->pending_finished)); });
  registry.add_family({.name = "hubdns_dns_tcp_clients",
                       .type = MetricType::gauge,
                       .help = "Client TCP connections open now; server.max_tcp_clients caps it: beyond it a new connection takes the place of an idle one, or is closed at once when none is idle."},
                      [c](MetricSink& sink) { sink.add({}, difference(c->tcp_clients_opened, c->tcp_clients_closed)); });

  registry.add_family({.name = "hubdns_dns_stale_answers_total",
                       .type = MetricType::counter,
                       .help = "Answers served from an expired cache entry (RFC 8767, TTL cache.stale_answer_ttl, EDE 3) because no upstream could answer."},
                      [c](MetricSink& sink) { sink.add({}, c->stale_answers); });
  registry.add_family({.name = "hubdns_cache_prefetches_total",
                       .type = MetricType::counter,
                       .help = "Popular cache entries near expiry refreshed upstream in the background before a client had to wait for them."},
                      [c](MetricSink& sink) { sink.add({}, c->cache_prefetches); });

  registry.add_family({.name = "hubdns_upstream_queries_total",
                       .type = MetricType::counter,
                       .help = "Query attempts sent to upstream resolvers, over UDP and TCP (retries count again)."},
                      [c](MetricSink& sink) { sink.add({}, c->upstream_queries); });
  registry.add_family({.name = "hubdns_upstream_responses_total",
                       .type = MetricType::counter,
                       .help = "Upstream responses accepted and relayed to the waiting client(s); counted once per response, however many coalesced clients got it."},
                      [c](MetricSink& sink) { sink.add({}, c->answers); });
  registry.add_family({.name = "hubdns_upstream_timeouts_total",
                       .type = MetricType::counter,
                       .help = "Upstream query attempts that got no answer within attempt_timeout."},
                      [c](MetricSink& sink) { sink.add({}, c->upstream_timeouts); });
  registry.add_family({.name = "hubdns_upstream_mismatched_responses_total",
                       .type = MetricType::counter,
                       .help = "Upstream responses dropped because source address, port, ID or question did not match a query."},
                      [c](MetricSink& sink) { sink.add({}, c->upstream_mismatched); });
  registry.add_family({.name = "hubdns_upstream_errors_total",
                       .type = MetricType::counter,
                       .help = "Upstream query attempts that failed to send, connect or read."},
                      [c](MetricSink& sink) { sink.add({}, c->upstream_errors); });
  // After CoreDNS' coredns_forward_max_concurrent_rejects_total, named for the config key.
  registry.add_family({.name = "hubdns_upstream_max_outstanding_rejects_total",
                       .type = MetricType::counter,
                       .help = "Times a query had no upstream left to try because every untried one had max_outstanding queries pending."},
                      [c](MetricSink& sink) { sink.add({}, c->upstream_overload); });
  registry.add_family({.name = "hubdns_upstream_none_healthy_total",
                       .type = MetricType::counter,
                       .help = "Queries answered SERVFAIL at once because every upstream of their zone was down (also counted in hubdns_dns_servfail_total)."},
                      [c](MetricSink& sink) { sink.add({}, c->no_healthy_upstream); });
}

}  // namespace hubdns
