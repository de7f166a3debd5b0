// The embedded default configuration: what `hubdns` runs with when no --config is given,
// and what --print-default-config prints. It is written for a first try on a workstation:
// unprivileged ports on loopback, the host's own resolvers upstream, no contact with the
// instance metadata service. tests/unit/conf checks that it loads.
#include "conf/loader.h"

namespace hubdns {
namespace {

constexpr std::string_view kDefaultConfigText = R"toml(# hubdns configuration: the embedded default (hubdns --print-default-config).
# Every key is shown with its value; conf/README.md explains each one and its limits.
# Durations are strings with a unit: "250ms", "5s", "2m", "1h", "1d".
# Addresses are "IP", "IP:PORT" or "[IPv6]:PORT".

[server]
# DNS over UDP and TCP on each address (port 53 when none is given). An unprivileged
# port on loopback, so this default runs without root: dig @127.0.0.1 -p 5300 example.com
listen = ["127.0.0.1:5300"]
# DNS worker threads, each with its own event loop and sockets; 0 = one per CPU.
workers = 0
# Clients allowed to query (CIDR prefixes); everyone else gets REFUSED.
# Here: loopback and the private ranges.
allow = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "::1/128", "fc00::/7"]
# Total time budget for one client query, across all upstream attempts.
query_timeout = "5s"
# EDNS UDP payload size advertised and accepted; 1232 avoids IP fragmentation.
edns_udp_size = 1232
# Client queries in flight per process; beyond it they are answered SERVFAIL, and counted.
max_inflight = 10000
# An idle client TCP connection is closed after this long.
tcp_idle_timeout = "10s"
# Concurrent client TCP connections per process.
max_tcp_clients = 1000
# Per-query log lines (one key=value line per answered query): 0 = none, N = one query
# in N (sampled, for busy servers), 1 = every query.
log_queries = 0

[health]
# HTTP endpoints (/readyz, /livez, /status, /metrics, ...): curl -i 127.0.0.1:8053/healthz
listen = ["127.0.0.1:8053"]
# Optional plain TCP probe ports ("IP:PORT"): accept while ready, refuse while not.
tcp_listen = []
# How often each upstream is probed.
interval = "2s"
# How long a probe may take; must be shorter than interval.
timeout = "1s"
# Consecutive successful probes before a down upstream counts as up again (at start,
# the first success is enough, so an instance is ready after one round).
rise = 2
# Consecutive failed probes before an upstream counts as down.
fall = 3
# Bearer token for POST /drain, /undrain, /reload, /cache/flush from other than loopback.
# Empty: admin endpoints answer loopback clients only.
admin_token = ""
# Run the control loop (this endpoint, the checks) at real-time priority where allowed
# (root, CAP_SYS_NICE or LimitRTPRIO), so probes are answered at once under full load.
realtime_priority = true

[cache]
# Cache answers (per rule, see `cache` in [[forward]]).
enabled = true
# Most answers kept.
max_entries = 100000
# Answer TTLs are raised to at least this (whole seconds).
min_ttl = "0s"
# ... and cut to at most this.
max_ttl = "1d"
# Negative answers (NXDOMAIN, NODATA) are kept at most this long.
max_negative_ttl = "5m"
# Serve expired answers when no upstream answers (RFC 8767).
serve_stale = true
# TTL given to such stale answers.
stale_answer_ttl = "30s"
# How long past expiry an answer may still be served stale.
max_stale = "1d"

[lifecycle]
# On SIGTERM: readiness turns 503 at once, DNS is answered this long, then hubdns exits.
drain_grace = "15s"
# Azure IMDS Scheduled Events: "off" never contacts the metadata service, "auto" uses it
# only where it answers, "on" requires it.
scheduled_events = "off"
# Approve a scheduled event once drained, so maintenance is not delayed.
ack_scheduled_events = false
# Instance metadata service base URL.
metadata_url = "http://169.254.169.254"

[[forward]]
# Names under this zone go to these upstreams ("." = every name). The longest matching
# zone wins, case-insensitively, on label boundaries.
zone = "."
# Up to 16 upstreams ("IP", "IP:PORT", "[IPv6]:PORT", port 53 by default), or the absolute
# path of a resolv.conf-style file: its nameserver lines, re-read on every reload;
# 168.63.129.16 (Azure DNS) when the file is missing or names no server.
upstreams = ["/etc/resolv.conf"]
# How an upstream is chosen: "fastest", "sequential", "round_robin" or "random".
policy = "fastest"
# Readiness requires a healthy upstream for this zone.
critical = true
# Time allowed for one attempt at one upstream (Azure DNS recursion can take over 4 s).
attempt_timeout = "4500ms"
# Queries outstanding per upstream at once (Azure DNS drops beyond 200 per VM).
max_outstanding = 200
# The question the active health check asks each upstream.
probe = { name = ".", type = "SOA" }
# Answers for this zone may be cached.
cache = true
)toml";

}  // namespace

std::string_view default_config_text() { return kDefaultConfigText; }

}  // namespace hubdns
