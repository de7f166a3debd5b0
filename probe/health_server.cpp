#include "probe/health_server.h"

#include "probe/tcp_listener.h"

#include <ctime>
#include <exception>
#include <utility>

#include "common/log/log.h"
#include "common/util/clock.h"

namespace hubdns {
namespace {

constexpr int kListenBacklog = 128;
constexpr size_t kReadBufferSize = 16 * 1024;
constexpr uint64_t kRejectLogIntervalMs = 10000;

// A write owns its bytes until libuv calls back, whatever the status. req.data points back
// to the WriteRequest (no layout assumption about where req sits inside it).
struct WriteRequest {
  uv_write_t req{};
  std::string bytes;
};

HttpResponse error_response(int status, std::string body) {
  HttpResponse response = HttpResponse::text(status, std::move(body));
  response.close_connection = true;
  return response;
}

}  // namespace

// One client connection. Owned by itself: it is created on accept and deletes itself in
// the last of its two close callbacks. While open it is listed in server_->connections_;
// start_close() removes it from there, so a closing connection never uses server_ again
// and may outlive the server by one loop iteration.
class HealthServer::Connection {
 public:
  explicit Connection(HealthServer* server)
      : server_(server), parser_(server->options_.limits) {}

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Called once it is listed in server_->connections_: initializes both handles, accepts
  // the pending connection from listener and starts reading. Returns false on failure;
  // the object is then deleted or closing and the caller must not use it.
  bool start(uv_stream_t* listener);
  void start_close();
  uint64_t accepted_ms() const { return accepted_ms_; }
  bool finishing() const { return finishing_; }

 private:
  enum class TimerPurpose { none, request, idle };

  static void on_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_shutdown(uv_shutdown_t* req, int status);
  static void on_timeout(uv_timer_t* timer);
  static void on_closed(uv_handle_t* handle);

  void handle_bytes(std::string_view data);
  void respond(const HttpResponse& response, const ResponseOptions& options);
  // Stops reading; once queued answers are written, sends FIN and closes.
  void finish();
  void arm_timer(TimerPurpose purpose, uint64_t timeout_ms);
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }

  HealthServer* server_;  // valid while !closing_
  uv_tcp_t tcp_{};
  uv_timer_t timer_{};
  int open_handles_ = 0;  // handles whose close callback has not run yet
  bool closing_ = false;
  bool finishing_ = false;  // no more requests are read; closing once the answers are out
  TimerPurpose timer_purpose_ = TimerPurpose::none;
  HttpRequestParser parser_;
  SocketAddress peer_;
  uint64_t accepted_ms_ = monotonic_ms();
};

bool HealthServer::Connection::start(uv_stream_t* listener) {
  uv_loop_t* loop = server_->loop_;
  if (int rc = uv_tcp_init(loop, &tcp_); rc != 0) {
    LOG_WARN("msg=\"health connection setup failed\" error=%s", uv_strerror(rc));
    server_->forget(this);
    delete this;  // nothing registered with the loop yet
    return false;
  }
  tcp_.data = this;
  ++open_handles_;
  uv_timer_init(loop, &timer_);  // cannot fail
  timer_.data = this;
  ++open_handles_;

  if (int rc = uv_accept(listener, stream()); rc != 0) {
    LOG_WARN("msg=\"health accept failed\" error=%s", uv_strerror(rc));
    start_close();
    return false;
  }
  sockaddr_storage peer{};
  int peer_length = sizeof peer;
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&peer), &peer_length) == 0) {
    peer_ = SocketAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&peer));
  }
  uv_tcp_nodelay(&tcp_, 1);  // answers are one small write each: send at once
  if (int rc = uv_read_start(stream(), on_alloc, on_read); rc != 0) {
    LOG_WARN("msg=\"health read start failed\" error=%s", uv_strerror(rc));
    start_close();
    return false;
  }
  arm_timer(TimerPurpose::request, server_->options_.request_timeout_ms);
  return true;
}

void HealthServer::Connection::start_close() {
  if (closing_) return;
  closing_ = true;
  server_->forget(this);
  server_ = nullptr;
  // data stays pointing here: this object lives until both close callbacks ran, and
  // request callbacks (UV_ECANCELED) run before the close callback, so they may look at
  // closing_ safely.
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), on_closed);
}

void HealthServer::Connection::on_closed(uv_handle_t* handle) {
  auto* self = static_cast<Connection*>(handle->data);
  handle->data = nullptr;
  if (self != nullptr && --self->open_handles_ == 0) delete self;
}

void HealthServer::Connection::on_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  auto* self = static_cast<Connection*>(handle->data);
  if (self == nullptr || self->closing_) {
    *buf = uv_buf_init(nullptr, 0);  // libuv then reports UV_ENOBUFS; we are closing anyway
    return;
  }
  *buf = uv_buf_init(self->server_->read_buffer_.get(), static_cast<unsigned>(kReadBufferSize));
}

void HealthServer::Connection::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<Connection*>(stream->data);
  if (self == nullptr || self->closing_) return;
  try {
    if (nread > 0) {
      self->handle_bytes(std::string_view(buf->base, static_cast<size_t>(nread)));
    } else if (nread == UV_EOF) {
      // The client will send nothing more; answers already queued still go out.
      self->finish();
    } else if (nread < 0) {
      self->start_close();  // reset by peer, or UV_ENOBUFS
    }
  } catch (const std::exception& e) {
    LOG_ERROR("msg=\"health connection failed\" error=\"%s\"", e.what());
    self->start_close();
  } catch (...) {
    LOG_ERROR("msg=\"health connection failed\" error=unknown");
    self->start_close();
  }
}

void HealthServer::Connection::handle_bytes(std::string_view data) {
  // Pipelined requests are answered in order; each answer is queued before the next
  // request is parsed, and libuv writes a stream's requests in order.
  while (!closing_ && !finishing_) {
    HttpParseResult result = parser_.feed(data);
    data.remove_prefix(result.consumed);
    if (result.status == HttpParseStatus::need_more) break;

    HealthServerStats& stats = server_->stats_;
    ++stats.requests;
    if (result.status == HttpParseStatus::error) {
      ++stats.bad_requests;
      LOG_DEBUG("msg=\"bad health request\" peer=%s status=%d reason=\"%s\"",
                peer_.to_string().c_str(), result.http_status, result.reason);
      ResponseOptions options;
      options.keep_alive = false;
      options.date = std::time(nullptr);
      respond(error_response(result.http_status, std::string(result.reason) + "\n"), options);
      finish();
      return;
    }

    const HttpRequest& request = parser_.request();
    RequestContext context{peer_, monotonic_ms()};
    HttpResponse response;
    try {
      response = server_->dispatch(request, context);
    } catch (...) {
      LOG_ERROR("msg=\"health handler threw\" path=\"%s\"", request.path.c_str());
      response = error_response(500, "internal error\n");
    }
    ResponseOptions options;
    options.head_request = request.method == "HEAD";
    options.keep_alive = request.keep_alive;
    options.date = std::time(nullptr);
    const bool keep_open = request.keep_alive && !response.close_connection;
    respond(response, options);
    parser_.reset();
    timer_purpose_ = TimerPurpose::none;  // the next request gets its own full budget
    if (closing_) return;
    if (!keep_open) {
      finish();
      return;
    }
    if (uv_stream_get_write_queue_size(stream()) > server_->options_.max_pending_write_bytes) {
      LOG_DEBUG("msg=\"health client does not read; closing\" peer=%s", peer_.to_string().c_str());
      start_close();
      return;
    }
    if (data.empty()) break;
  }
  if (closing_ || finishing_) return;
  if (parser_.in_progress()) {
    // Part of a request is here: it must be complete within request_timeout_ms of its
    // first byte, however slowly the rest trickles in.
    if (timer_purpose_ != TimerPurpose::request) {
      arm_timer(TimerPurpose::request, server_->options_.request_timeout_ms);
    }
  } else {
    arm_timer(TimerPurpose::idle, server_->options_.keep_alive_idle_ms);
  }
}

void HealthServer::Connection::respond(const HttpResponse& response, const ResponseOptions& options) {
  auto write = std::make_unique<WriteRequest>();
  write->bytes = serialize_response(response, options);
  write->req.data = write.get();
  uv_buf_t buf = uv_buf_init(write->bytes.data(), static_cast<unsigned>(write->bytes.size()));
  if (int rc = uv_write(&write->req, stream(), &buf, 1, on_write); rc != 0) {
    LOG_DEBUG("msg=\"health write failed\" error=%s", uv_strerror(rc));
    start_close();
    return;
  }
  write.release();  // owned by libuv until on_write
}

void HealthServer::Connection::on_write(uv_write_t* req, int status) {
  // Take ownership back first: freed whatever happens next.
  std::unique_ptr<WriteRequest> write(static_cast<WriteRequest*>(req->data));
  auto* self = static_cast<Connection*>(req->handle->data);
  if (self == nullptr || self->closing_) return;  // UV_ECANCELED after close, or late
  if (status < 0) self->start_close();
}

void HealthServer::Connection::finish() {
  if (finishing_ || closing_) return;
  finishing_ = true;
  uv_read_stop(stream());
  auto* shutdown = new uv_shutdown_t{};
  // uv_shutdown waits for queued writes, then sends FIN: the client gets every answer.
  if (int rc = uv_shutdown(shutdown, stream(), on_shutdown); rc != 0) {
    delete shutdown;
    start_close();
    return;
  }
  // A client that never reads would keep the shutdown pending forever: bound it.
  arm_timer(TimerPurpose::idle, server_->options_.keep_alive_idle_ms);
}

void HealthServer::Connection::on_shutdown(uv_shutdown_t* req, int) {
  std::unique_ptr<uv_shutdown_t> owned(req);
  auto* self = static_cast<Connection*>(req->handle->data);
  if (self == nullptr || self->closing_) return;
  self->start_close();
}

void HealthServer::Connection::arm_timer(TimerPurpose purpose, uint64_t timeout_ms) {
  timer_purpose_ = purpose;
  uv_timer_start(&timer_, on_timeout, timeout_ms, 0);
}

void HealthServer::Connection::on_timeout(uv_timer_t* timer) {
  auto* self = static_cast<Connection*>(timer->data);
  if (self == nullptr || self->closing_) return;
  ++self->server_->stats_.timeouts;
  LOG_DEBUG("msg=\"health connection timed out\" peer=%s waiting_for=%s",
            self->peer_.to_string().c_str(),
            self->timer_purpose_ == TimerPurpose::request ? "request" : "idle");
  self->start_close();
}

// ---------------------------------------------------------------------------------------

HealthServer::HealthServer(uv_loop_t* loop, const ProcessState& state, HealthServerOptions options)
    : loop_(loop),
      state_(state),
      options_(options),
      read_buffer_(new char[kReadBufferSize]) {
  // The control loop runs if it gets here; the timer keeps proving it.
  control_heartbeat_ms_ = monotonic_ms();
  if (heartbeat_.init(uv_timer_init, loop_) == 0) {
    heartbeat_->data = this;
    uv_timer_start(heartbeat_.get(), on_heartbeat, options_.heartbeat_interval_ms,
                   options_.heartbeat_interval_ms);
    uv_unref(heartbeat_.as_handle());  // never keeps the loop alive on its own
  }

  auto readyz = [this](const HttpRequest&, const RequestContext&) { return answer_readyz(); };
  add_route("GET", "/readyz", readyz);
  add_route("GET", "/healthz", readyz);
  add_route("GET", "/livez", [this](const HttpRequest& request, const RequestContext&) {
    std::optional<std::string> format = request.query_param("format");
    return answer_livez(format && *format == "azure");
  });
  // The same JSON on a path without a query string: version 2 of the Application Health
  // extension puts its requestPath into the URL's path, escaping "?" (it would ask for
  // "/livez%3Fformat=azure"), so "?format=azure" cannot be configured there.
  add_route("GET", "/livez/azure",
            [this](const HttpRequest&, const RequestContext&) { return answer_livez(true); });
}

HealthServer::~HealthServer() { close(); }

void HealthServer::on_heartbeat(uv_timer_t* timer) {
  auto* self = static_cast<HealthServer*>(timer->data);
  if (self != nullptr) self->control_heartbeat_ms_ = monotonic_ms();
}

int HealthServer::listen(const std::vector<SocketAddress>& addresses, std::string* error) {
  if (closed_ || !listeners_.empty()) {
    if (error != nullptr) *error = "health listener already started or closed";
    return UV_EALREADY;
  }
  std::vector<std::unique_ptr<UvTcp>> opened;
  for (const SocketAddress& address : addresses) {
    std::unique_ptr<UvTcp> listener;
    const char* step = "";
    int rc = open_tcp_listener(loop_, address, this, kListenBacklog, on_connection, &listener, &step);
    if (rc != 0) {
      if (error != nullptr) {
        *error = "health listener " + address.to_string() + ": " + step + ": " + uv_strerror(rc);
      }
      return rc;  // `opened` closes the sockets already open on the way out
    }
    opened.push_back(std::move(listener));
  }
  listeners_ = std::move(opened);
  for (const SocketAddress& address : bound_addresses()) {
    LOG_INFO("msg=\"health listener ready\" address=%s", address.to_string().c_str());
  }
  return 0;
}

std::vector<SocketAddress> HealthServer::bound_addresses() const {
  std::vector<SocketAddress> addresses;
  for (const auto& listener : listeners_) {
    sockaddr_storage storage{};
    int length = sizeof storage;
    if (uv_tcp_getsockname(listener->get(), reinterpret_cast<sockaddr*>(&storage), &length) == 0) {
      addresses.push_back(SocketAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&storage)));
    }
  }
  return addresses;
}

void HealthServer::close() {
  if (closed_) return;
  closed_ = true;
  listeners_.clear();  // UvHandle closes each socket and clears its data
  heartbeat_.close();
  // start_close() erases from connections_; close from a copy.
  std::unordered_set<Connection*> open = std::move(connections_);
  connections_.clear();
  for (Connection* connection : open) connection->start_close();
}

void HealthServer::forget(Connection* connection) { connections_.erase(connection); }

void HealthServer::on_connection(uv_stream_t* listener, int status) {
  auto* self = static_cast<HealthServer*>(listener->data);
  if (self == nullptr) return;
  if (status < 0) {
    LOG_WARN("msg=\"health listener error\" error=%s", uv_strerror(status));
    return;
  }
  // libuv callbacks must not throw; only allocation can fail here.
  try {
    if (self->connections_.size() >= self->options_.max_connections) {
      self->make_room_and_accept(listener);
    } else {
      self->accept_one(listener);
    }
  } catch (...) {
    LOG_ERROR("msg=\"health accept failed\" error=\"out of memory\"");
  }
}

void HealthServer::accept_one(uv_stream_t* listener) {
  // Listed before its handles exist, so a failed insert (bad_alloc) leaks nothing.
  auto connection = std::make_unique<Connection>(this);
  connections_.insert(connection.get());
  if (connection.release()->start(listener)) ++stats_.connections_accepted;
}

void HealthServer::make_room_and_accept(uv_stream_t* listener) {
  // At the cap, the oldest connection that is not already finishing an answer makes room,
  // so idle or slow clients holding every slot cannot lock the load balancer's probe out:
  // a probe is answered within a millisecond of its connection, long before it is oldest.
  Connection* oldest = nullptr;
  for (Connection* connection : connections_) {
    if (connection->finishing()) continue;
    if (oldest == nullptr || connection->accepted_ms() < oldest->accepted_ms()) oldest = connection;
  }
  if (oldest != nullptr) {
    ++stats_.connections_evicted;
    oldest->start_close();
    accept_one(listener);
  } else {
    // Every slot is finishing an answer: accept and close at once (libuv stops watching
    // the listener while a connection is pending), a failed probe the prober will retry.
    ++stats_.connections_rejected;
    auto* doomed = new uv_tcp_t{};
    if (uv_tcp_init(loop_, doomed) != 0) {
      delete doomed;
      return;
    }
    uv_accept(listener, reinterpret_cast<uv_stream_t*>(doomed));
    uv_close(reinterpret_cast<uv_handle_t*>(doomed),
             [](uv_handle_t* handle) { delete reinterpret_cast<uv_tcp_t*>(handle); });
  }
  uint64_t now = monotonic_ms();
  if (now - last_reject_log_ms_ >= kRejectLogIntervalMs) {
    last_reject_log_ms_ = now;
    LOG_WARN("msg=\"health listener at connection limit; closing the oldest connections\" limit=%zu evicted=%llu rejected=%llu",
             options_.max_connections, static_cast<unsigned long long>(stats_.connections_evicted),
             static_cast<unsigned long long>(stats_.connections_rejected));
  }
}

void HealthServer::add_route(std::string method, std::string path, RouteHandler handler) {
  std::vector<Route>& routes = routes_[std::move(path)];
  for (Route& route : routes) {
    if (route.method == method) {
      route.handler = std::move(handler);
      return;
    }
  }
  routes.push_back(Route{std::move(method), std::move(handler)});
}

void HealthServer::set_readiness_contributor(ReadinessContributor contributor) {
  readiness_contributor_ = std::move(contributor);
}

HttpResponse HealthServer::dispatch(const HttpRequest& request, const RequestContext& context) const {
  auto found = routes_.find(request.path);
  if (found == routes_.end()) return HttpResponse::text(404, "not found\n");
  // HEAD is answered by the GET handler; the body is dropped when serializing.
  std::string_view wanted = request.method;
  if (wanted == "HEAD") wanted = "GET";
  std::string allow;
  for (const Route& route : found->second) {
    if (route.method == wanted) return route.handler(request, context);
    if (!allow.empty()) allow += ", ";
    allow += route.method;
    if (route.method == "GET") allow += ", HEAD";
  }
  HttpResponse response = HttpResponse::text(405, "method not allowed\n");
  response.allow = std::move(allow);
  return response;
}

LoopHeartbeats HealthServer::loop_heartbeats() const {
  LoopHeartbeats loops;
  loops.now_ms = monotonic_ms();
  loops.max_silence_ms = options_.max_loop_silence_ms;
  loops.control_loop_last_ms = control_heartbeat_ms_;
  loops.worker_last_ms.reserve(state_.worker_count());
  for (unsigned i = 0; i < state_.worker_count(); ++i) {
    loops.worker_last_ms.push_back(state_.last_worker_heartbeat(i));
  }
  return loops;
}

ReadinessReport HealthServer::readiness() const {
  ReadinessInputs inputs;
  inputs.listeners_bound = state_.listeners_bound();
  inputs.draining = state_.draining();
  inputs.loops = loop_heartbeats();
  if (readiness_contributor_) readiness_contributor_(inputs);
  return evaluate_readiness(inputs);
}

LivenessReport HealthServer::liveness() const { return evaluate_liveness(loop_heartbeats()); }

HttpResponse HealthServer::answer_readyz() const {
  ReadinessReport report = readiness();
  return HttpResponse::text(report.ready ? 200 : 503, reasons_body(report.reasons));
}

HttpResponse HealthServer::answer_livez(bool azure_format) const {
  LivenessReport report = liveness();
  if (azure_format) {
    // Azure Application Health extension, rich health states: the state is read from the
    // body of a 2xx answer; a non-2xx answer counts as "Unknown", not "Unhealthy". So an
    // unhealthy process still answers 200, with "Unhealthy" in the body.
    return HttpResponse::json(200, report.alive ? "{\"ApplicationHealthState\":\"Healthy\"}\n"
                                                : "{\"ApplicationHealthState\":\"Unhealthy\"}\n");
  }
  return HttpResponse::text(report.alive ? 200 : 503, reasons_body(report.reasons));
}

}  // namespace hubdns
