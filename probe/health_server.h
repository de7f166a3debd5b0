// HealthServer: the HTTP health listener (SPEC "HTTP endpoints"). It owns the listening
// sockets for health.listen, every client connection, and a heartbeat timer that proves
// the control loop runs. Requests are routed through a table (path + method -> handler),
// so each later endpoint (/status, /metrics, POST /drain, ...) is one add_route() call.
//
// Thread: everything lives on the control loop passed to the constructor. Construct, call
// and destroy a HealthServer only on that loop's thread. State written by other threads
// (ProcessState) is read through its atomics when a request is answered.
//
// Connection lifetime: each connection owns a uv_tcp_t and a uv_timer_t (slow-client /
// keep-alive timer). Closing it closes both handles; the connection object is freed in
// the second close callback, never earlier and never in a read or timer callback frame.
// Write and shutdown requests own their buffers and find their connection again through
// handle->data, so a late UV_ECANCELED callback never touches freed memory.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "common/health/process_state.h"
#include "common/net/address.h"
#include "common/uv/handle.h"
#include "probe/http_request.h"
#include "probe/http_response.h"
#include "probe/readiness.h"

namespace hubdns {

struct HealthServerOptions {
  uint64_t request_timeout_ms = 10000;    // a started request must be complete within this
  uint64_t keep_alive_idle_ms = 5000;     // idle time allowed between requests
  size_t max_connections = 256;           // beyond it the oldest connection makes room
  size_t max_pending_write_bytes = 256 * 1024;  // a client that does not read is cut off
  uint64_t heartbeat_interval_ms = 1000;  // control-loop heartbeat period
  uint64_t max_loop_silence_ms = 5000;    // liveness / readiness: a loop silent longer is stuck
  HttpLimits limits;
};

// What a handler knows about the request besides the request itself.
struct RequestContext {
  SocketAddress peer;   // the client (admin endpoints check for loopback)
  uint64_t now_ms = 0;  // monotonic_ms() when the request was dispatched
};

// Handlers run on the control loop and must answer from state already held, at once;
// they must not throw (a throw is caught, logged and answered with 500). A handler may
// call HealthServer::close() (its own answer is then dropped) but must not destroy the
// server; defer that to another callback.
using RouteHandler = std::function<HttpResponse(const HttpRequest&, const RequestContext&)>;

// Adds upstream, zone and data-path facts (HealthMonitor) to the readiness snapshot
// before it is evaluated.
using ReadinessContributor = std::function<void(ReadinessInputs&)>;

// Counters for /metrics (hubdns_health_http_*). Only touched on the control loop.
struct HealthServerStats {
  uint64_t connections_accepted = 0;
  uint64_t connections_rejected = 0;  // over max_connections, nothing could be evicted
  uint64_t connections_evicted = 0;   // oldest connection closed to make room for a new one
  uint64_t requests = 0;              // answered requests, bad ones included
  uint64_t bad_requests = 0;          // parse errors (400, 413, 431, 501, 505)
  uint64_t timeouts = 0;              // connections cut by the slow-client / idle timer
};

class HealthServer {
 public:
  // Registers the built-in routes: GET /readyz, /healthz (alias), /livez.
  HealthServer(uv_loop_t* loop, const ProcessState& state, HealthServerOptions options = {});
  ~HealthServer();  // close()

  HealthServer(const HealthServer&) = delete;
  HealthServer& operator=(const HealthServer&) = delete;
  HealthServer(HealthServer&&) = delete;
  HealthServer& operator=(HealthServer&&) = delete;

  // Binds and listens on every address, or on none: on failure all sockets opened by this
  // call are closed, *error names the address and the reason, and the libuv error code
  // (< 0) is returned. IPv6 addresses are bound IPv6-only, so "0.0.0.0:P" and "[::]:P" can
  // both be listed. Returns 0 on success. Call once.
  int listen(const std::vector<SocketAddress>& addresses, std::string* error);

  // The addresses actually bound (real ports when listen() was given port 0).
  std::vector<SocketAddress> bound_addresses() const;

  // Stops accepting, closes every connection and the heartbeat timer. Idempotent. The
  // handles finish closing when the loop next runs.
  void close();

  // Registers handler for `method` on the exact `path` ("/status"). A GET route also
  // answers HEAD (same status and headers, no body). A later registration for the same
  // path and method replaces the earlier one.
  void add_route(std::string method, std::string path, RouteHandler handler);

  // Extension point: called on every readiness evaluation to add upstream/zone facts.
  void set_readiness_contributor(ReadinessContributor contributor);

  // What /readyz and /livez answer right now.
  ReadinessReport readiness() const;
  LivenessReport liveness() const;

  // monotonic_ms() of the control loop's last heartbeat.
  uint64_t control_loop_heartbeat_ms() const { return control_heartbeat_ms_; }
  size_t connection_count() const { return connections_.size(); }
  const HealthServerOptions& options() const { return options_; }
  const HealthServerStats& stats() const { return stats_; }

 private:
  class Connection;
  friend class Connection;

  struct Route {
    std::string method;
    RouteHandler handler;
  };

  static void on_connection(uv_stream_t* listener, int status);
  static void on_heartbeat(uv_timer_t* timer);
  void accept_one(uv_stream_t* listener);
  void make_room_and_accept(uv_stream_t* listener);
  void forget(Connection* connection);
  // Routes one parsed request to its handler, or answers 404 / 405.
  HttpResponse dispatch(const HttpRequest& request, const RequestContext& context) const;
  LoopHeartbeats loop_heartbeats() const;
  HttpResponse answer_readyz() const;
  // azure_format: the Application Health extension's rich-state JSON, always with 200.
  HttpResponse answer_livez(bool azure_format) const;

  uv_loop_t* loop_;
  const ProcessState& state_;
  HealthServerOptions options_;
  std::vector<std::unique_ptr<UvTcp>> listeners_;
  UvTimer heartbeat_;
  uint64_t control_heartbeat_ms_ = 0;
  bool closed_ = false;
  std::unordered_set<Connection*> connections_;  // open ones; a closing one is not listed
  std::map<std::string, std::vector<Route>, std::less<>> routes_;
  ReadinessContributor readiness_contributor_;
  HealthServerStats stats_;
  uint64_t last_reject_log_ms_ = 0;
  // Reads are processed synchronously in the read callback, so one buffer serves every
  // connection of this (single-threaded) server.
  std::unique_ptr<char[]> read_buffer_;
};

}  // namespace hubdns
