// The loaded configuration: an immutable value. conf/ builds it from TOML; everything else
// reads it through a ConfigSnapshot (shared_ptr<const Config>) so a reload can swap the
// whole thing atomically while in-flight work keeps the snapshot it started with.
// Any thread may read a snapshot; nobody writes one after it is published.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/net/address.h"

namespace hubdns {

using Duration = std::chrono::milliseconds;

struct ServerConfig {
  std::vector<SocketAddress> listen;  // UDP and TCP on each
  unsigned workers = 0;               // 0 = one per CPU (resolved by whoever starts them)
  std::vector<Cidr> allow;
  Duration query_timeout{5000};
  uint16_t edns_udp_size = 1232;
  uint32_t max_inflight = 10000;
  Duration tcp_idle_timeout{10000};
  uint32_t max_tcp_clients = 1000;
  // Per-query log lines: 0 = none, N = one query in N (sampled), 1 = every query.
  uint32_t log_queries = 0;
};

struct HealthConfig {
  std::vector<SocketAddress> listen;      // HTTP endpoints
  std::vector<SocketAddress> tcp_listen;  // plain TCP probe port(s)
  Duration interval{2000};
  Duration timeout{1000};
  uint32_t rise = 2;
  uint32_t fall = 3;
  std::string admin_token;
  // Run the control loop at real-time priority (SCHED_FIFO 1) where allowed, so a probe is
  // answered at once even when the DNS workers keep every CPU busy.
  bool realtime_priority = true;
};

struct CacheConfig {
  bool enabled = true;
  uint64_t max_entries = 100000;
  Duration min_ttl{0};
  Duration max_ttl{86400 * 1000};
  Duration max_negative_ttl{300 * 1000};
  bool serve_stale = true;
  Duration stale_answer_ttl{30 * 1000};
  Duration max_stale{86400 * 1000};
};

enum class ScheduledEventsMode { off, automatic, on };

struct LifecycleConfig {
  Duration drain_grace{15000};
  ScheduledEventsMode scheduled_events = ScheduledEventsMode::off;
  bool ack_scheduled_events = false;
  std::string metadata_url = "http://169.254.169.254";
};

enum class UpstreamPolicy { fastest, sequential, round_robin, random };

struct ProbeQuestion {
  std::string name;     // presentation form, absolute ("contoso.com.")
  uint16_t qtype = 6;   // SOA
};

struct ForwardRule {
  std::string zone;  // lower case, absolute, "." for the root
  std::vector<SocketAddress> upstreams;
  UpstreamPolicy policy = UpstreamPolicy::fastest;
  bool critical = true;
  Duration attempt_timeout{4500};
  uint32_t max_outstanding = 200;
  ProbeQuestion probe;
  bool cache = true;
};

struct Config {
  std::string source;  // file path, or "<default>" for the embedded configuration
  ServerConfig server;
  HealthConfig health;
  CacheConfig cache;
  LifecycleConfig lifecycle;
  std::vector<ForwardRule> forward;
  // Things the loader decided that an operator should hear about, though the file is valid
  // (e.g. "/etc/resolv.conf has no nameserver line; using 168.63.129.16"), each as
  // "FILE:LINE:COL: message". Whoever loads the configuration logs them.
  std::vector<std::string> warnings;
};

using ConfigSnapshot = std::shared_ptr<const Config>;

const char* to_string(UpstreamPolicy policy);
const char* to_string(ScheduledEventsMode mode);

}  // namespace hubdns
