#include "forwarder/dns_worker.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <unordered_map>

#include "common/dns/message.h"
#include "common/log/log.h"
#include "common/util/clock.h"
#include "common/uv/handle.h"
#include "forwarder/secure_random.h"
#include "forwarder/zone_router.h"

namespace hubdns {

namespace {

constexpr uint64_t kHeartbeatIntervalMs = 250;
constexpr size_t kUpstreamSocketsPerFamily = 16;
constexpr size_t kMaxUpstreamsPerRule = 32;  // bit mask width for "already tried"
constexpr size_t kTcpLengthPrefix = 2;
// Per TCP client: beyond these, reading pauses until answers drain, so a client that
// pipelines without reading its answers cannot make the worker buffer without bound.
constexpr unsigned kMaxQueriesPerTcpClient = 64;
constexpr size_t kMaxUnsentBytesPerTcpClient = 256 * 1024;

uint32_t divide_round_up(uint32_t total, unsigned parts) {
  if (parts == 0) return total;
  return (total + parts - 1) / parts;
}

// A write request that owns its bytes; freed in its callback whatever the status.
struct OwnedWrite {
  uv_write_t request{};
  std::vector<uint8_t> bytes;
};

struct OwnedUdpSend {
  uv_udp_send_t request{};
  std::vector<uint8_t> bytes;
};

}  // namespace

// Everything a worker owns; lives on the worker's thread once start() handed it over.
class DnsWorkerLoop {
 public:
  DnsWorkerLoop(unsigned index, ConfigSnapshot config, ProcessState* state,
                ForwarderCounters* counters, std::vector<ListenSocket> sockets);
  ~DnsWorkerLoop();

  bool prepare(std::string* error);  // main thread, before the thread starts
  void run();                        // worker thread: returns once every handle is closed
  bool finish();                     // main thread, after join: false if a handle leaked
  // Any thread. The stop handle lives until finish(), so this is safe until the join.
  void request_stop() { uv_async_send(stop_async_.get()); }

 private:
  enum class ClientKind : uint8_t { udp, tcp };

  struct UdpListener {
    DnsWorkerLoop* worker = nullptr;
    uint32_t index = 0;
    UvUdp udp;
    SocketAddress address;
  };

  struct TcpListener {
    DnsWorkerLoop* worker = nullptr;
    UvTcp tcp;
    SocketAddress address;
  };

  struct TcpClient {
    DnsWorkerLoop* worker = nullptr;
    uint64_t id = 0;
    UvTcp tcp;
    UvTimer idle_timer;
    SocketAddress peer;
    std::vector<uint8_t> received;
    unsigned queries_in_flight = 0;
    unsigned pending_writes = 0;
    size_t unsent_bytes = 0;
    bool reading = false;
    // Close once the answers still owed are written (client half-closed, or a write failed).
    bool close_when_idle = false;
    uint64_t last_activity_ms = 0;
  };

  struct UpstreamSocket {
    DnsWorkerLoop* worker = nullptr;
    UvUdp udp;
    uint32_t index = 0;
  };

  // A TCP connection to an upstream for one query (queries that came over TCP go upstream
  // over TCP). Connection reuse and pipelining come with the relay-core work.
  struct UpstreamTcpExchange {
    DnsWorkerLoop* worker = nullptr;
    UvTcp tcp;
    uint32_t slot = 0;
    uint64_t generation = 0;
    std::vector<uint8_t> received;
  };

  struct PendingQuery {
    bool in_use = false;
    uint64_t generation = 0;
    ClientKind client_kind = ClientKind::udp;
    uint32_t udp_listener = 0;
    SocketAddress client_address;
    uint64_t tcp_client_id = 0;
    dns::QueryInfo info;
    std::vector<uint8_t> query;  // the client's query; its ID is rewritten per attempt
    size_t rule = 0;
    uint32_t tried_mask = 0;
    size_t upstream = 0;
    uint16_t upstream_id = 0;
    int64_t upstream_socket = -1;  // index into upstream_sockets_, -1 for TCP
    uint64_t attempt_started_ms = 0;
    uint64_t query_deadline_ms = 0;
    std::multimap<uint64_t, uint32_t>::iterator deadline;
    std::unique_ptr<UpstreamTcpExchange> tcp_exchange;
  };

  struct UpstreamStats {
    double smoothed_rtt_ms = 0;  // 0 = never measured
  };

  // --- setup and teardown
  bool open_upstream_sockets(int family, std::string* error);
  void close_everything();

  // --- client side
  static void on_udp_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void on_udp_query(uv_udp_t* handle, ssize_t nread, const uv_buf_t* buf,
                           const sockaddr* addr, unsigned flags);
  static void on_tcp_connection(uv_stream_t* server, int status);
  static void on_tcp_client_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void on_tcp_client_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void on_tcp_client_timer(uv_timer_t* timer);
  void handle_query(ClientKind kind, uint32_t udp_listener, const SocketAddress& client,
                    uint64_t tcp_client_id, const uint8_t* data, size_t length);
  void send_udp_to_client(uint32_t listener, const SocketAddress& client, const uint8_t* data,
                          size_t length);
  void send_tcp_to_client(uint64_t tcp_client_id, const uint8_t* data, size_t length);
  void reply_error(ClientKind kind, uint32_t udp_listener, const SocketAddress& client,
                   uint64_t tcp_client_id, const uint8_t* query, const dns::QueryInfo& info,
                   uint8_t rcode, dns::ExtendedError ede);
  void close_tcp_client(uint64_t id);
  void process_tcp_frames(TcpClient& client);
  void schedule_tcp_client_service(TcpClient& client);
  static bool tcp_client_may_read(const TcpClient& client);

  // --- upstream side
  bool start_attempt(uint32_t slot);
  size_t choose_upstream(PendingQuery& query);
  bool send_udp_attempt(uint32_t slot, const SocketAddress& upstream);
  bool send_tcp_attempt(uint32_t slot, const SocketAddress& upstream);
  static void on_upstream_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void on_upstream_udp(uv_udp_t* handle, ssize_t nread, const uv_buf_t* buf,
                              const sockaddr* addr, unsigned flags);
  static void on_upstream_tcp_connected(uv_connect_t* request, int status);
  static void on_upstream_tcp_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  void upstream_answered(uint32_t slot, uint8_t* data, size_t length);
  void finish_with_servfail(uint32_t slot, dns::ExtendedError ede);
  void end_attempt(PendingQuery& query);
  void note_upstream_failure(const PendingQuery& query, const char* what);

  // --- pending table and deadlines
  uint32_t allocate_slot();
  void release_slot(uint32_t slot);
  void set_deadline(uint32_t slot, uint64_t deadline_ms);
  void arm_deadline_timer();
  static void on_deadline_timer(uv_timer_t* timer);
  static uint32_t udp_key(uint32_t socket_index, uint16_t id) { return (socket_index << 16) | id; }

  unsigned index_;
  ConfigSnapshot config_;
  ZoneRouter router_;
  ProcessState* state_;
  ForwarderCounters* counters_;
  std::vector<ListenSocket> listen_sockets_;
  uint32_t max_inflight_here_;
  uint32_t max_tcp_clients_here_;

  EventLoop loop_;
  UvAsync stop_async_;
  UvTimer heartbeat_timer_;
  UvTimer deadline_timer_;
  std::vector<std::unique_ptr<UdpListener>> udp_listeners_;
  std::vector<std::unique_ptr<TcpListener>> tcp_listeners_;
  std::unordered_map<uint64_t, std::unique_ptr<TcpClient>> tcp_clients_;
  uint64_t next_tcp_client_id_ = 1;
  std::vector<std::unique_ptr<UpstreamSocket>> upstream_sockets_;
  std::vector<uint32_t> upstream_sockets_v4_;
  std::vector<uint32_t> upstream_sockets_v6_;

  std::vector<PendingQuery> pending_;
  std::vector<uint32_t> free_slots_;
  uint32_t pending_count_ = 0;
  uint64_t next_generation_ = 1;
  std::unordered_map<uint32_t, uint32_t> udp_waiting_;  // udp_key -> slot
  std::multimap<uint64_t, uint32_t> deadlines_;
  uint64_t armed_deadline_ = 0;

  std::vector<std::vector<UpstreamStats>> upstream_stats_;  // [rule][upstream]
  std::vector<uint32_t> round_robin_next_;                  // [rule]
  SecureRandom random_;
  // Data-path events reach the log at most once per 10 s each; the counters are exact.
  struct {
    LogRateLimit upstream_timeout, upstream_error, mismatched, malformed, refused, overload;
  } log_limits_;
  alignas(16) uint8_t receive_buffer_[dns::kMaxMessageSize];
  uint8_t scratch_[dns::kMaxMessageSize];
};

// ---------------------------------------------------------------------------------------
// Setup and teardown

DnsWorkerLoop::DnsWorkerLoop(unsigned index, ConfigSnapshot config, ProcessState* state,
                             ForwarderCounters* counters, std::vector<ListenSocket> sockets)
    : index_(index),
      config_(std::move(config)),
      router_(config_->forward),
      state_(state),
      counters_(counters),
      listen_sockets_(std::move(sockets)),
      max_inflight_here_(divide_round_up(config_->server.max_inflight, state->worker_count())),
      max_tcp_clients_here_(divide_round_up(config_->server.max_tcp_clients, state->worker_count())) {
  upstream_stats_.resize(config_->forward.size());
  round_robin_next_.resize(config_->forward.size());
  for (size_t i = 0; i < config_->forward.size(); ++i) {
    upstream_stats_[i].resize(config_->forward[i].upstreams.size());
  }
}

DnsWorkerLoop::~DnsWorkerLoop() {
  // Sockets not yet handed to libuv (start failed) are closed here.
  for (ListenSocket& socket : listen_sockets_) {
    if (socket.udp_fd >= 0) ::close(socket.udp_fd);
    if (socket.tcp_fd >= 0) ::close(socket.tcp_fd);
  }
  close_everything();
  stop_async_.close();
  loop_.close();
}

bool DnsWorkerLoop::prepare(std::string* error) {
  int rc = stop_async_.init(uv_async_init, loop_.get(), [](uv_async_t* async) {
    auto* self = static_cast<DnsWorkerLoop*>(async->data);
    if (self != nullptr) self->close_everything();
  });
  if (rc != 0) {
    *error = std::string("uv_async_init: ") + uv_strerror(rc);
    return false;
  }
  stop_async_->data = this;
  // The stop handle alone must not keep the loop running once everything else is closed.
  uv_unref(stop_async_.as_handle());

  for (ListenSocket& socket : listen_sockets_) {
    auto udp = std::make_unique<UdpListener>();
    udp->worker = this;
    udp->index = static_cast<uint32_t>(udp_listeners_.size());
    udp->address = socket.address;
    rc = udp->udp.init(uv_udp_init, loop_.get());
    if (rc == 0) rc = uv_udp_open(udp->udp.get(), socket.udp_fd);
    if (rc != 0) {
      *error = "cannot use UDP socket " + socket.address.to_string() + ": " + uv_strerror(rc);
      return false;
    }
    socket.udp_fd = -1;  // libuv owns it now
    udp->udp->data = udp.get();
    udp_listeners_.push_back(std::move(udp));

    auto tcp = std::make_unique<TcpListener>();
    tcp->worker = this;
    tcp->address = socket.address;
    rc = tcp->tcp.init(uv_tcp_init, loop_.get());
    if (rc == 0) rc = uv_tcp_open(tcp->tcp.get(), socket.tcp_fd);
    if (rc != 0) {
      *error = "cannot use TCP socket " + socket.address.to_string() + ": " + uv_strerror(rc);
      return false;
    }
    socket.tcp_fd = -1;
    tcp->tcp->data = tcp.get();
    rc = uv_listen(tcp->tcp.as<uv_stream_t>(), 1024, on_tcp_connection);
    if (rc != 0) {
      *error = "cannot listen on TCP " + socket.address.to_string() + ": " + uv_strerror(rc);
      return false;
    }
    tcp_listeners_.push_back(std::move(tcp));
  }

  bool need_v4 = false, need_v6 = false;
  for (const ForwardRule& rule : config_->forward) {
    for (const SocketAddress& upstream : rule.upstreams) {
      (upstream.is_ipv6() ? need_v6 : need_v4) = true;
    }
  }
  if (need_v4 && !open_upstream_sockets(AF_INET, error)) return false;
  if (need_v6 && !open_upstream_sockets(AF_INET6, error)) return false;

  rc = heartbeat_timer_.init(uv_timer_init, loop_.get());
  if (rc == 0) rc = deadline_timer_.init(uv_timer_init, loop_.get());
  if (rc != 0) {
    *error = std::string("uv_timer_init: ") + uv_strerror(rc);
    return false;
  }
  heartbeat_timer_->data = this;
  deadline_timer_->data = this;
  return true;
}

bool DnsWorkerLoop::open_upstream_sockets(int family, std::string* error) {
  for (size_t i = 0; i < kUpstreamSocketsPerFamily; ++i) {
    auto socket = std::make_unique<UpstreamSocket>();
    socket->worker = this;
    socket->index = static_cast<uint32_t>(upstream_sockets_.size());
    int rc = socket->udp.init(uv_udp_init_ex, loop_.get(), static_cast<unsigned>(family));
    SocketAddress any = *SocketAddress::parse(family == AF_INET ? "0.0.0.0" : "::", 0);
    // Port 0: the kernel draws a random ephemeral port for each socket of the pool.
    if (rc == 0) rc = uv_udp_bind(socket->udp.get(), any.sockaddr_ptr(), 0);
    if (rc == 0) rc = uv_udp_recv_start(socket->udp.get(), on_upstream_alloc, on_upstream_udp);
    if (rc != 0) {
      *error = std::string("cannot open upstream UDP socket: ") + uv_strerror(rc);
      return false;
    }
    socket->udp->data = socket.get();
    (family == AF_INET ? upstream_sockets_v4_ : upstream_sockets_v6_).push_back(socket->index);
    upstream_sockets_.push_back(std::move(socket));
  }
  return true;
}

void DnsWorkerLoop::run() {
  for (auto& listener : udp_listeners_) {
    uv_udp_recv_start(listener->udp.get(), on_udp_alloc, on_udp_query);
  }
  state_->worker_heartbeat(index_, monotonic_ms());
  uv_timer_start(
      heartbeat_timer_.get(),
      [](uv_timer_t* timer) {
        auto* self = static_cast<DnsWorkerLoop*>(timer->data);
        if (self != nullptr) self->state_->worker_heartbeat(self->index_, monotonic_ms());
      },
      kHeartbeatIntervalMs, kHeartbeatIntervalMs);
  loop_.run();
  close_everything();
  loop_.run();  // lets the close callbacks run
}

bool DnsWorkerLoop::finish() {
  // Only now, with the worker thread joined, may the stop handle go: until then another
  // thread could still call uv_async_send on it.
  stop_async_.close();
  return loop_.close() == 0;
}

void DnsWorkerLoop::close_everything() {
  // Queries still pending get SERVFAIL rather than silence: a stop never drops them.
  for (uint32_t slot = 0; slot < pending_.size(); ++slot) {
    if (pending_[slot].in_use) finish_with_servfail(slot, dns::ExtendedError::other);
  }
  tcp_clients_.clear();
  udp_listeners_.clear();
  tcp_listeners_.clear();
  upstream_sockets_.clear();
  heartbeat_timer_.close();
  deadline_timer_.close();
}

// ---------------------------------------------------------------------------------------
// Client side

void DnsWorkerLoop::on_udp_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  auto* listener = static_cast<UdpListener*>(handle->data);
  if (listener == nullptr) {
    *buf = uv_buf_init(nullptr, 0);
    return;
  }
  // One datagram at a time, copied out before the next read: one buffer per worker suffices.
  *buf = uv_buf_init(reinterpret_cast<char*>(listener->worker->receive_buffer_),
                     sizeof listener->worker->receive_buffer_);
}

void DnsWorkerLoop::on_udp_query(uv_udp_t* handle, ssize_t nread, const uv_buf_t* buf,
                                 const sockaddr* addr, unsigned) {
  auto* listener = static_cast<UdpListener*>(handle->data);
  if (listener == nullptr || nread <= 0 || addr == nullptr) return;
  DnsWorkerLoop* self = listener->worker;
  self->counters_->queries_udp.fetch_add(1, std::memory_order_relaxed);
  self->handle_query(ClientKind::udp, listener->index, SocketAddress::from_sockaddr(addr), 0,
                     reinterpret_cast<const uint8_t*>(buf->base), static_cast<size_t>(nread));
}

void DnsWorkerLoop::on_tcp_connection(uv_stream_t* server, int status) {
  auto* listener = static_cast<TcpListener*>(server->data);
  if (listener == nullptr || status < 0) return;
  DnsWorkerLoop* self = listener->worker;
  auto client = std::make_unique<TcpClient>();
  client->worker = self;
  client->id = self->next_tcp_client_id_++;
  if (client->tcp.init(uv_tcp_init, self->loop_.get()) != 0) return;
  client->tcp->data = client.get();
  if (uv_accept(server, client->tcp.as<uv_stream_t>()) != 0) return;
  sockaddr_storage peer{};
  int peer_length = sizeof peer;
  if (uv_tcp_getpeername(client->tcp.get(), reinterpret_cast<sockaddr*>(&peer), &peer_length) != 0) return;
  client->peer = SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&peer));
  if (self->tcp_clients_.size() >= self->max_tcp_clients_here_) {
    self->counters_->tcp_clients_rejected.fetch_add(1, std::memory_order_relaxed);
    return;  // the client's destructor closes the accepted connection
  }
  if (client->idle_timer.init(uv_timer_init, self->loop_.get()) != 0) return;
  client->idle_timer->data = client.get();
  uv_tcp_nodelay(client->tcp.get(), 1);
  if (uv_read_start(client->tcp.as<uv_stream_t>(), on_tcp_client_alloc, on_tcp_client_read) != 0) {
    return;
  }
  client->reading = true;
  client->last_activity_ms = monotonic_ms();
  uv_timer_start(client->idle_timer.get(), on_tcp_client_timer,
                 static_cast<uint64_t>(self->config_->server.tcp_idle_timeout.count()), 0);
  uint64_t id = client->id;
  self->tcp_clients_.emplace(id, std::move(client));
}

bool DnsWorkerLoop::tcp_client_may_read(const TcpClient& client) {
  return !client.close_when_idle && client.queries_in_flight < kMaxQueriesPerTcpClient &&
         client.unsent_bytes < kMaxUnsentBytesPerTcpClient;
}

void DnsWorkerLoop::schedule_tcp_client_service(TcpClient& client) {
  // Through the client's timer, so whoever calls this never finds its client destroyed
  // under it (never destroy an owner inside its own callback frame).
  uv_timer_start(client.idle_timer.get(), on_tcp_client_timer, 0, 0);
}

// The client's one timer: idle timeout, deferred close, and resuming a paused reader.
void DnsWorkerLoop::on_tcp_client_timer(uv_timer_t* timer) {
  auto* client = static_cast<TcpClient*>(timer->data);
  if (client == nullptr) return;
  DnsWorkerLoop* self = client->worker;
  if (client->close_when_idle) {
    // Otherwise release_slot or the last write callback schedules this again.
    if (client->queries_in_flight == 0 && client->pending_writes == 0) self->close_tcp_client(client->id);
    return;
  }
  self->process_tcp_frames(*client);
  if (!client->reading && tcp_client_may_read(*client) &&
      uv_read_start(client->tcp.as<uv_stream_t>(), on_tcp_client_alloc, on_tcp_client_read) == 0) {
    client->reading = true;
  }
  uint64_t timeout = static_cast<uint64_t>(self->config_->server.tcp_idle_timeout.count());
  uint64_t idle = monotonic_ms() - client->last_activity_ms;
  if (client->queries_in_flight == 0 && client->pending_writes == 0 && idle >= timeout) {
    self->close_tcp_client(client->id);  // last statement: the client is gone after this
    return;
  }
  uv_timer_start(client->idle_timer.get(), on_tcp_client_timer, idle < timeout ? timeout - idle : timeout, 0);
}

void DnsWorkerLoop::on_tcp_client_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  auto* client = static_cast<TcpClient*>(handle->data);
  // Reads are consumed before the next one, so the worker's one buffer serves every client.
  *buf = client ? uv_buf_init(reinterpret_cast<char*>(client->worker->receive_buffer_),
                              sizeof client->worker->receive_buffer_)
                : uv_buf_init(nullptr, 0);
}

void DnsWorkerLoop::on_tcp_client_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* client = static_cast<TcpClient*>(stream->data);
  if (client == nullptr) return;
  DnsWorkerLoop* self = client->worker;
  if (nread == UV_EOF) {
    // The client has sent all it will: answer what it asked (complete frames), then close.
    uv_read_stop(stream);
    client->reading = false;
    self->process_tcp_frames(*client);
    client->close_when_idle = true;
    self->schedule_tcp_client_service(*client);
    return;
  }
  if (nread < 0) {
    self->close_tcp_client(client->id);  // reset: nothing can be delivered any more
    return;
  }
  if (nread == 0) return;
  client->received.insert(client->received.end(), reinterpret_cast<uint8_t*>(buf->base),
                          reinterpret_cast<uint8_t*>(buf->base) + nread);
  self->process_tcp_frames(*client);
}

void DnsWorkerLoop::process_tcp_frames(TcpClient& client) {
  size_t consumed = 0;
  while (client.received.size() - consumed >= kTcpLengthPrefix && !client.close_when_idle &&
         client.queries_in_flight < kMaxQueriesPerTcpClient &&
         client.unsent_bytes < kMaxUnsentBytesPerTcpClient) {
    size_t length = dns::read_u16(client.received.data() + consumed);
    if (client.received.size() - consumed - kTcpLengthPrefix < length) break;
    counters_->queries_tcp.fetch_add(1, std::memory_order_relaxed);
    // Copy out: handle_query may answer at once and must not see a buffer we then shift.
    std::memcpy(scratch_, client.received.data() + consumed + kTcpLengthPrefix, length);
    consumed += kTcpLengthPrefix + length;
    client.last_activity_ms = monotonic_ms();
    // handle_query never destroys a client (closing is always deferred), so `client` stays valid.
    handle_query(ClientKind::tcp, 0, client.peer, client.id, scratch_, length);
  }
  client.received.erase(client.received.begin(),
                        client.received.begin() + static_cast<std::ptrdiff_t>(consumed));
  if (client.reading && !tcp_client_may_read(client)) {
    uv_read_stop(client.tcp.as<uv_stream_t>());
    client.reading = false;
  }
}

void DnsWorkerLoop::close_tcp_client(uint64_t id) {
  // Destroying the client closes its handles; libuv frees them in their close callbacks.
  tcp_clients_.erase(id);
}

void DnsWorkerLoop::handle_query(ClientKind kind, uint32_t udp_listener, const SocketAddress& client,
                                 uint64_t tcp_client_id, const uint8_t* data, size_t length) {
  const Config& config = *config_;
  dns::QueryInfo info;
  dns::QueryCheck check = dns::parse_query(data, length, &info);
  if (check == dns::QueryCheck::drop) {
    counters_->dropped_malformed.fetch_add(1, std::memory_order_relaxed);
    uint64_t suppressed = 0;
    if (log_limits_.malformed.allow(monotonic_ms(), &suppressed)) {
      LOG_INFO("msg=\"dropped a datagram that is not a DNS query\" client=%s bytes=%zu similar_suppressed=%llu",
               client.to_string().c_str(), length, static_cast<unsigned long long>(suppressed));
    }
    return;
  }

  {
    bool allowed = false;
    for (const Cidr& cidr : config.server.allow) {
      if (cidr.contains(client)) {
        allowed = true;
        break;
      }
    }
    if (!allowed) {
      counters_->refused_acl.fetch_add(1, std::memory_order_relaxed);
      uint64_t suppressed = 0;
      if (log_limits_.refused.allow(monotonic_ms(), &suppressed)) {
        LOG_INFO("msg=\"refused a client outside allow\" client=%s similar_suppressed=%llu",
                 client.ip_string().c_str(), static_cast<unsigned long long>(suppressed));
      }
      reply_error(kind, udp_listener, client, tcp_client_id, data, info, dns::kRefused,
                  dns::ExtendedError::prohibited);
      return;
    }
  }

  if (check != dns::QueryCheck::ok) {
    counters_->formerr.fetch_add(1, std::memory_order_relaxed);
    uint8_t rcode = check == dns::QueryCheck::notimp    ? dns::kNotImp
                    : check == dns::QueryCheck::badvers ? dns::kBadVers
                                                        : dns::kFormErr;
    if (check == dns::QueryCheck::formerr) info.question_end = 0;  // do not echo a bad question
    reply_error(kind, udp_listener, client, tcp_client_id, data, info, rcode,
                dns::ExtendedError::none);
    return;
  }

  uint8_t lower_name[dns::kMaxNameWireLength];
  dns::lowercase_wire_name(data + info.qname_offset, info.qname_length, lower_name);
  size_t rule = router_.route(lower_name, info.qname_length);
  if (rule == ZoneRouter::kNoRule) {
    counters_->no_route.fetch_add(1, std::memory_order_relaxed);
    reply_error(kind, udp_listener, client, tcp_client_id, data, info, dns::kRefused,
                dns::ExtendedError::prohibited);
    return;
  }

  if (pending_count_ >= max_inflight_here_) {
    counters_->overload_servfail.fetch_add(1, std::memory_order_relaxed);
    uint64_t suppressed = 0;
    if (log_limits_.overload.allow(monotonic_ms(), &suppressed)) {
      LOG_WARN("msg=\"max_inflight reached; answering SERVFAIL\" worker=%u limit_per_worker=%u similar_suppressed=%llu",
               index_, max_inflight_here_, static_cast<unsigned long long>(suppressed));
    }
    reply_error(kind, udp_listener, client, tcp_client_id, data, info, dns::kServFail,
                dns::ExtendedError::other);
    return;
  }

  uint32_t slot = allocate_slot();
  PendingQuery& query = pending_[slot];
  query.client_kind = kind;
  query.udp_listener = udp_listener;
  query.client_address = client;
  query.tcp_client_id = tcp_client_id;
  query.info = info;
  query.query.assign(data, data + length);
  query.rule = rule;
  query.tried_mask = 0;
  query.query_deadline_ms = monotonic_ms() + static_cast<uint64_t>(config.server.query_timeout.count());
  if (kind == ClientKind::tcp) {
    auto it = tcp_clients_.find(tcp_client_id);
    if (it != tcp_clients_.end()) it->second->queries_in_flight++;
  }
  if (!start_attempt(slot)) finish_with_servfail(slot, dns::ExtendedError::no_reachable_authority);
}

void DnsWorkerLoop::reply_error(ClientKind kind, uint32_t udp_listener, const SocketAddress& client,
                                uint64_t tcp_client_id, const uint8_t* query,
                                const dns::QueryInfo& info, uint8_t rcode, dns::ExtendedError ede) {
  uint8_t answer[dns::kHeaderSize + dns::kMaxNameWireLength + 4 + 64];
  size_t length = dns::build_error_response(query, info, rcode, ede, config_->server.edns_udp_size,
                                            answer, sizeof answer);
  if (length == 0) return;
  if (kind == ClientKind::udp) {
    send_udp_to_client(udp_listener, client, answer, length);
  } else {
    send_tcp_to_client(tcp_client_id, answer, length);
  }
}

void DnsWorkerLoop::send_udp_to_client(uint32_t listener, const SocketAddress& client,
                                       const uint8_t* data, size_t length) {
  if (listener >= udp_listeners_.size()) return;
  uv_udp_t* udp = udp_listeners_[listener]->udp.get();
  uv_buf_t buf = uv_buf_init(const_cast<char*>(reinterpret_cast<const char*>(data)),
                             static_cast<unsigned>(length));
  int rc = uv_udp_try_send(udp, &buf, 1, client.sockaddr_ptr());
  if (rc != UV_EAGAIN) return;
  // The socket buffer is full: queue a send that owns a copy of the bytes.
  auto* send = new OwnedUdpSend;
  send->bytes.assign(data, data + length);
  buf = uv_buf_init(reinterpret_cast<char*>(send->bytes.data()), static_cast<unsigned>(length));
  if (uv_udp_send(&send->request, udp, &buf, 1, client.sockaddr_ptr(),
                  [](uv_udp_send_t* request, int) { delete reinterpret_cast<OwnedUdpSend*>(request); }) != 0) {
    delete send;
  }
}

void DnsWorkerLoop::send_tcp_to_client(uint64_t tcp_client_id, const uint8_t* data, size_t length) {
  auto it = tcp_clients_.find(tcp_client_id);
  if (it == tcp_clients_.end()) return;  // the client went away; nothing to answer
  TcpClient& client = *it->second;
  auto* write = new OwnedWrite;
  write->bytes.resize(kTcpLengthPrefix + length);
  dns::write_u16(write->bytes.data(), static_cast<uint16_t>(length));
  std::memcpy(write->bytes.data() + kTcpLengthPrefix, data, length);
  uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(write->bytes.data()),
                             static_cast<unsigned>(write->bytes.size()));
  int rc = uv_write(&write->request, client.tcp.as<uv_stream_t>(), &buf, 1,
                    [](uv_write_t* request, int status) {
                      auto* owned = reinterpret_cast<OwnedWrite*>(request);
                      size_t written = owned->bytes.size();
                      auto* c = static_cast<TcpClient*>(request->handle->data);
                      delete owned;
                      if (c == nullptr) return;  // the client was closed meanwhile
                      c->pending_writes--;
                      c->unsent_bytes -= written;
                      c->last_activity_ms = monotonic_ms();
                      if (status < 0) c->close_when_idle = true;
                      bool owes_nothing = c->queries_in_flight == 0 && c->pending_writes == 0;
                      if ((c->close_when_idle && owes_nothing) || (!c->close_when_idle && !c->reading)) {
                        c->worker->schedule_tcp_client_service(*c);
                      }
                    });
  if (rc != 0) {
    delete write;
    client.close_when_idle = true;
    schedule_tcp_client_service(client);
    return;
  }
  client.pending_writes++;
  client.unsent_bytes += kTcpLengthPrefix + length;
}

// ---------------------------------------------------------------------------------------
// Upstream side

size_t DnsWorkerLoop::choose_upstream(PendingQuery& query) {
  const ForwardRule& rule = config_->forward[query.rule];
  size_t count = std::min(rule.upstreams.size(), kMaxUpstreamsPerRule);
  auto untried = [&](size_t i) { return (query.tried_mask & (1u << i)) == 0; };
  size_t chosen = count;
  switch (rule.policy) {
    case UpstreamPolicy::sequential:
      for (size_t i = 0; i < count && chosen == count; ++i) {
        if (untried(i)) chosen = i;
      }
      break;
    case UpstreamPolicy::round_robin: {
      size_t start = round_robin_next_[query.rule]++ % count;
      for (size_t k = 0; k < count && chosen == count; ++k) {
        if (untried((start + k) % count)) chosen = (start + k) % count;
      }
      break;
    }
    case UpstreamPolicy::random: {
      size_t start = random_.uniform(static_cast<uint32_t>(count));
      for (size_t k = 0; k < count && chosen == count; ++k) {
        if (untried((start + k) % count)) chosen = (start + k) % count;
      }
      break;
    }
    case UpstreamPolicy::fastest: {
      // Lowest smoothed RTT; unmeasured upstreams first, and now and then (1 in 32) a random
      // one so a recovered upstream gets measured again.
      if (random_.uniform(32) == 0) {
        size_t start = random_.uniform(static_cast<uint32_t>(count));
        for (size_t k = 0; k < count && chosen == count; ++k) {
          if (untried((start + k) % count)) chosen = (start + k) % count;
        }
        break;
      }
      double best = 0;
      for (size_t i = 0; i < count; ++i) {
        if (!untried(i)) continue;
        double rtt = upstream_stats_[query.rule][i].smoothed_rtt_ms;
        if (chosen == count || rtt < best) {
          chosen = i;
          best = rtt;
        }
      }
      break;
    }
  }
  return chosen;
}

bool DnsWorkerLoop::start_attempt(uint32_t slot) {
  PendingQuery& query = pending_[slot];
  const ForwardRule& rule = config_->forward[query.rule];
  uint64_t now = monotonic_ms();
  while (now < query.query_deadline_ms) {
    size_t upstream = choose_upstream(query);
    if (upstream >= rule.upstreams.size() || upstream >= kMaxUpstreamsPerRule) return false;
    query.tried_mask |= 1u << upstream;
    query.upstream = upstream;
    query.attempt_started_ms = now;
    bool sent = query.client_kind == ClientKind::tcp
                    ? send_tcp_attempt(slot, rule.upstreams[upstream])
                    : send_udp_attempt(slot, rule.upstreams[upstream]);
    if (sent) {
      counters_->upstream_queries.fetch_add(1, std::memory_order_relaxed);
      uint64_t attempt_deadline = now + static_cast<uint64_t>(rule.attempt_timeout.count());
      set_deadline(slot, std::min(attempt_deadline, query.query_deadline_ms));
      return true;
    }
    counters_->upstream_errors.fetch_add(1, std::memory_order_relaxed);
  }
  return false;
}

bool DnsWorkerLoop::send_udp_attempt(uint32_t slot, const SocketAddress& upstream) {
  PendingQuery& query = pending_[slot];
  const std::vector<uint32_t>& pool = upstream.is_ipv6() ? upstream_sockets_v6_ : upstream_sockets_v4_;
  if (pool.empty()) return false;
  uint32_t socket_index = 0;
  uint16_t id = 0;
  // A fresh random ID on a randomly chosen socket; retry on the rare collision with a
  // query still waiting on the same socket and ID.
  for (int tries = 0;; ++tries) {
    socket_index = pool[random_.uniform(static_cast<uint32_t>(pool.size()))];
    id = random_.next_u16();
    if (udp_waiting_.find(udp_key(socket_index, id)) == udp_waiting_.end()) break;
    if (tries > 16) return false;
  }
  dns::set_message_id(query.query.data(), id);
  uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(query.query.data()),
                             static_cast<unsigned>(query.query.size()));
  uv_udp_t* udp = upstream_sockets_[socket_index]->udp.get();
  int rc = uv_udp_try_send(udp, &buf, 1, upstream.sockaddr_ptr());
  if (rc == UV_EAGAIN) {
    auto* send = new OwnedUdpSend;
    send->bytes = query.query;
    buf = uv_buf_init(reinterpret_cast<char*>(send->bytes.data()), static_cast<unsigned>(send->bytes.size()));
    rc = uv_udp_send(&send->request, udp, &buf, 1, upstream.sockaddr_ptr(),
                     [](uv_udp_send_t* request, int) { delete reinterpret_cast<OwnedUdpSend*>(request); });
    if (rc != 0) delete send;
  }
  if (rc < 0) return false;
  query.upstream_id = id;
  query.upstream_socket = socket_index;
  udp_waiting_.emplace(udp_key(socket_index, id), slot);
  return true;
}

void DnsWorkerLoop::on_upstream_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  auto* socket = static_cast<UpstreamSocket*>(handle->data);
  if (socket == nullptr) {
    *buf = uv_buf_init(nullptr, 0);
    return;
  }
  *buf = uv_buf_init(reinterpret_cast<char*>(socket->worker->receive_buffer_),
                     sizeof socket->worker->receive_buffer_);
}

void DnsWorkerLoop::on_upstream_udp(uv_udp_t* handle, ssize_t nread, const uv_buf_t* buf,
                                    const sockaddr* addr, unsigned) {
  auto* socket = static_cast<UpstreamSocket*>(handle->data);
  if (socket == nullptr || nread <= 0 || addr == nullptr) return;
  DnsWorkerLoop* self = socket->worker;
  auto* data = reinterpret_cast<uint8_t*>(buf->base);
  size_t length = static_cast<size_t>(nread);
  SocketAddress source = SocketAddress::from_sockaddr(addr);
  auto it = length < dns::kHeaderSize
                ? self->udp_waiting_.end()
                : self->udp_waiting_.find(udp_key(socket->index, dns::message_id(data)));
  // Only the upstream we asked, on this socket, with our ID and our question, may answer
  // (anti-spoofing). Anything else is counted and dropped; the attempt keeps waiting.
  bool matches = false;
  if (it != self->udp_waiting_.end()) {
    PendingQuery& query = self->pending_[it->second];
    const SocketAddress& expected = self->config_->forward[query.rule].upstreams[query.upstream];
    matches = source == expected &&
              dns::response_matches(data, length, query.upstream_id,
                                    query.query.data() + query.info.qname_offset, query.info.qname_length,
                                    query.info.qtype, query.info.qclass);
  }
  if (!matches) {
    self->counters_->upstream_mismatched.fetch_add(1, std::memory_order_relaxed);
    uint64_t suppressed = 0;
    if (self->log_limits_.mismatched.allow(monotonic_ms(), &suppressed)) {
      LOG_WARN("msg=\"dropped an upstream answer that matches no query (wrong source, ID or question)\" source=%s bytes=%zu similar_suppressed=%llu",
               source.to_string().c_str(), length, static_cast<unsigned long long>(suppressed));
    }
    return;
  }
  self->upstream_answered(it->second, data, length);
}

bool DnsWorkerLoop::send_tcp_attempt(uint32_t slot, const SocketAddress& upstream) {
  PendingQuery& query = pending_[slot];
  auto exchange = std::make_unique<UpstreamTcpExchange>();
  exchange->worker = this;
  exchange->slot = slot;
  exchange->generation = query.generation;
  if (exchange->tcp.init(uv_tcp_init, loop_.get()) != 0) return false;
  exchange->tcp->data = exchange.get();
  query.upstream_id = random_.next_u16();
  dns::set_message_id(query.query.data(), query.upstream_id);
  // The connect request outlives the exchange if the exchange is closed first: it is
  // freed in its own callback, which finds the exchange through handle->data (or not).
  auto* connect = new uv_connect_t;
  int rc = uv_tcp_connect(connect, exchange->tcp.get(), upstream.sockaddr_ptr(), on_upstream_tcp_connected);
  if (rc != 0) {
    delete connect;
    return false;
  }
  query.upstream_socket = -1;
  query.tcp_exchange = std::move(exchange);
  return true;
}

void DnsWorkerLoop::on_upstream_tcp_connected(uv_connect_t* request, int status) {
  auto* exchange = static_cast<UpstreamTcpExchange*>(request->handle->data);
  delete request;
  if (exchange == nullptr) return;  // the attempt was abandoned meanwhile
  DnsWorkerLoop* self = exchange->worker;
  uint32_t slot = exchange->slot;
  if (status < 0) {
    self->counters_->upstream_errors.fetch_add(1, std::memory_order_relaxed);
    self->note_upstream_failure(self->pending_[slot], uv_err_name(status));
    self->end_attempt(self->pending_[slot]);
    if (!self->start_attempt(slot)) self->finish_with_servfail(slot, dns::ExtendedError::network_error);
    return;
  }
  PendingQuery& query = self->pending_[slot];
  auto* write = new OwnedWrite;
  write->bytes.resize(kTcpLengthPrefix + query.query.size());
  dns::write_u16(write->bytes.data(), static_cast<uint16_t>(query.query.size()));
  std::memcpy(write->bytes.data() + kTcpLengthPrefix, query.query.data(), query.query.size());
  uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(write->bytes.data()),
                             static_cast<unsigned>(write->bytes.size()));
  int rc = uv_write(&write->request, exchange->tcp.as<uv_stream_t>(), &buf, 1,
                    [](uv_write_t* req, int) { delete reinterpret_cast<OwnedWrite*>(req); });
  if (rc != 0) delete write;
  if (rc == 0) {
    rc = uv_read_start(
        exchange->tcp.as<uv_stream_t>(),
        [](uv_handle_t* handle, size_t, uv_buf_t* buf_out) {
          auto* ex = static_cast<UpstreamTcpExchange*>(handle->data);
          *buf_out = ex ? uv_buf_init(reinterpret_cast<char*>(ex->worker->receive_buffer_),
                                      sizeof ex->worker->receive_buffer_)
                        : uv_buf_init(nullptr, 0);
        },
        on_upstream_tcp_read);
  }
  if (rc != 0) {
    self->counters_->upstream_errors.fetch_add(1, std::memory_order_relaxed);
    self->note_upstream_failure(self->pending_[slot], uv_err_name(rc));
    self->end_attempt(query);
    if (!self->start_attempt(slot)) self->finish_with_servfail(slot, dns::ExtendedError::network_error);
  }
}

void DnsWorkerLoop::on_upstream_tcp_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* exchange = static_cast<UpstreamTcpExchange*>(stream->data);
  if (exchange == nullptr) return;
  DnsWorkerLoop* self = exchange->worker;
  uint32_t slot = exchange->slot;
  PendingQuery& query = self->pending_[slot];
  if (nread < 0) {
    self->counters_->upstream_errors.fetch_add(1, std::memory_order_relaxed);
    self->note_upstream_failure(self->pending_[slot], uv_err_name(static_cast<int>(nread)));
    self->end_attempt(query);
    if (!self->start_attempt(slot)) self->finish_with_servfail(slot, dns::ExtendedError::network_error);
    return;
  }
  exchange->received.insert(exchange->received.end(), reinterpret_cast<uint8_t*>(buf->base),
                            reinterpret_cast<uint8_t*>(buf->base) + nread);
  if (exchange->received.size() < kTcpLengthPrefix) return;
  size_t length = dns::read_u16(exchange->received.data());
  if (exchange->received.size() < kTcpLengthPrefix + length) return;
  uint8_t* answer = exchange->received.data() + kTcpLengthPrefix;
  if (!dns::response_matches(answer, length, query.upstream_id, query.query.data() + query.info.qname_offset,
                             query.info.qname_length, query.info.qtype, query.info.qclass)) {
    self->counters_->upstream_mismatched.fetch_add(1, std::memory_order_relaxed);
    self->end_attempt(query);
    if (!self->start_attempt(slot)) self->finish_with_servfail(slot, dns::ExtendedError::network_error);
    return;
  }
  // upstream_answered ends the attempt, which destroys this exchange: copy the answer out.
  std::memcpy(self->scratch_, answer, length);
  self->upstream_answered(slot, self->scratch_, length);
}

void DnsWorkerLoop::upstream_answered(uint32_t slot, uint8_t* data, size_t length) {
  PendingQuery& query = pending_[slot];
  uint64_t rtt = monotonic_ms() - query.attempt_started_ms;
  double& srtt = upstream_stats_[query.rule][query.upstream].smoothed_rtt_ms;
  srtt = srtt == 0 ? static_cast<double>(rtt) + 0.1 : srtt * 0.7 + static_cast<double>(rtt) * 0.3;
  counters_->answers.fetch_add(1, std::memory_order_relaxed);

  dns::set_message_id(data, query.info.id);
  // Give back the client's own spelling of the name (0x20 randomisation by clients).
  std::memcpy(data + query.info.qname_offset, query.query.data() + query.info.qname_offset,
              query.info.qname_length);
  if (query.client_kind == ClientKind::udp) {
    size_t limit = dns::client_udp_limit(query.info, config_->server.edns_udp_size);
    if (length > limit) {
      counters_->truncated.fetch_add(1, std::memory_order_relaxed);
      length = dns::truncate_response(data, length, query.info.question_end, query.info.has_edns,
                                      query.info.edns_do, config_->server.edns_udp_size);
    }
    send_udp_to_client(query.udp_listener, query.client_address, data, length);
  } else {
    send_tcp_to_client(query.tcp_client_id, data, length);
  }
  release_slot(slot);
}

void DnsWorkerLoop::finish_with_servfail(uint32_t slot, dns::ExtendedError ede) {
  PendingQuery& query = pending_[slot];
  counters_->servfail_sent.fetch_add(1, std::memory_order_relaxed);
  dns::set_message_id(query.query.data(), query.info.id);
  reply_error(query.client_kind, query.udp_listener, query.client_address, query.tcp_client_id,
              query.query.data(), query.info, dns::kServFail, ede);
  release_slot(slot);
}

void DnsWorkerLoop::note_upstream_failure(const PendingQuery& query, const char* what) {
  const ForwardRule& rule = config_->forward[query.rule];
  uint64_t suppressed = 0;
  LogRateLimit& limit = std::strcmp(what, "timeout") == 0 ? log_limits_.upstream_timeout
                                                          : log_limits_.upstream_error;
  if (limit.allow(monotonic_ms(), &suppressed)) {
    LOG_WARN("msg=\"upstream attempt failed\" reason=%s upstream=%s zone=%s worker=%u similar_suppressed=%llu",
             what, rule.upstreams[query.upstream].to_string().c_str(), rule.zone.c_str(), index_,
             static_cast<unsigned long long>(suppressed));
  }
  // A timeout or an error pushes the upstream's smoothed RTT up to at least the attempt
  // timeout, so `fastest` stops choosing a dead upstream first; answers bring it down again.
  double& srtt = upstream_stats_[query.rule][query.upstream].smoothed_rtt_ms;
  double floor = static_cast<double>(config_->forward[query.rule].attempt_timeout.count());
  srtt = std::min(std::max(srtt * 2, floor), 60000.0);
}

void DnsWorkerLoop::end_attempt(PendingQuery& query) {
  if (query.upstream_socket >= 0) {
    udp_waiting_.erase(udp_key(static_cast<uint32_t>(query.upstream_socket), query.upstream_id));
    query.upstream_socket = -1;
  }
  // Closing the exchange: its handle's data is cleared first, so a late callback is ignored.
  query.tcp_exchange.reset();
}

// ---------------------------------------------------------------------------------------
// Pending table and deadlines

uint32_t DnsWorkerLoop::allocate_slot() {
  uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<uint32_t>(pending_.size());
    pending_.emplace_back();
  }
  PendingQuery& query = pending_[slot];
  query.in_use = true;
  query.generation = next_generation_++;
  query.upstream_socket = -1;
  query.deadline = deadlines_.end();
  ++pending_count_;
  return slot;
}

void DnsWorkerLoop::release_slot(uint32_t slot) {
  PendingQuery& query = pending_[slot];
  if (!query.in_use) return;
  end_attempt(query);
  if (query.deadline != deadlines_.end()) {
    deadlines_.erase(query.deadline);
    query.deadline = deadlines_.end();
  }
  if (query.client_kind == ClientKind::tcp) {
    auto it = tcp_clients_.find(query.tcp_client_id);
    if (it != tcp_clients_.end() && it->second->queries_in_flight > 0) {
      TcpClient& client = *it->second;
      client.queries_in_flight--;
      bool owes_nothing = client.queries_in_flight == 0 && client.pending_writes == 0;
      if ((client.close_when_idle && owes_nothing) || (!client.close_when_idle && !client.reading)) {
        schedule_tcp_client_service(client);
      }
    }
  }
  query.in_use = false;
  free_slots_.push_back(slot);
  --pending_count_;
}

void DnsWorkerLoop::set_deadline(uint32_t slot, uint64_t deadline_ms) {
  PendingQuery& query = pending_[slot];
  if (query.deadline != deadlines_.end()) deadlines_.erase(query.deadline);
  query.deadline = deadlines_.emplace(deadline_ms, slot);
  arm_deadline_timer();
}

void DnsWorkerLoop::arm_deadline_timer() {
  if (!deadline_timer_.initialized()) return;
  if (deadlines_.empty()) {
    uv_timer_stop(deadline_timer_.get());
    armed_deadline_ = 0;
    return;
  }
  uint64_t earliest = deadlines_.begin()->first;
  if (armed_deadline_ == earliest && uv_is_active(deadline_timer_.as_handle())) return;
  uint64_t now = monotonic_ms();
  armed_deadline_ = earliest;
  uv_timer_start(deadline_timer_.get(), on_deadline_timer, earliest > now ? earliest - now : 0, 0);
}

void DnsWorkerLoop::on_deadline_timer(uv_timer_t* timer) {
  auto* self = static_cast<DnsWorkerLoop*>(timer->data);
  if (self == nullptr) return;
  self->armed_deadline_ = 0;
  uint64_t now = monotonic_ms();
  while (!self->deadlines_.empty() && self->deadlines_.begin()->first <= now) {
    uint32_t slot = self->deadlines_.begin()->second;
    self->deadlines_.erase(self->deadlines_.begin());
    PendingQuery& query = self->pending_[slot];
    query.deadline = self->deadlines_.end();
    self->counters_->upstream_timeouts.fetch_add(1, std::memory_order_relaxed);
    self->note_upstream_failure(query, "timeout");
    self->end_attempt(query);
    if (now >= query.query_deadline_ms || !self->start_attempt(slot)) {
      self->finish_with_servfail(slot, dns::ExtendedError::no_reachable_authority);
    }
  }
  self->arm_deadline_timer();
}

// ---------------------------------------------------------------------------------------
// DnsWorker: the thread around a DnsWorkerLoop

DnsWorker::DnsWorker(unsigned index, ConfigSnapshot config, ProcessState* state,
                     ForwarderCounters* counters, std::vector<ListenSocket> sockets)
    : loop_(std::make_unique<DnsWorkerLoop>(index, std::move(config), state, counters,
                                            std::move(sockets))) {}

DnsWorker::~DnsWorker() {
  if (thread_.joinable()) {
    request_stop();
    join();
  }
}

bool DnsWorker::start(std::string* error) {
  if (!loop_->prepare(error)) return false;
  thread_ = std::thread([this] { loop_->run(); });
  return true;
}

void DnsWorker::request_stop() {
  if (thread_.joinable()) loop_->request_stop();
}

bool DnsWorker::join() {
  if (!thread_.joinable()) return clean_exit_;
  thread_.join();
  clean_exit_ = loop_->finish();
  return clean_exit_;
}

}  // namespace hubdns
