#include "forwarder/dns_worker.h"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/dns/name.h"
#include "common/health/loop_probes.h"
#include "common/util/clock.h"
#include "forwarder/dns_worker_loop.h"

namespace hubdns {

namespace {

constexpr uint64_t kHeartbeatIntervalMs = 250;
// Upstream source sockets per address family and worker. Each query goes out on one drawn
// at random (its kernel-chosen random port) with a random 16-bit ID. More sockets add port
// entropy but split the sendmmsg/recvmmsg batches: 16 keeps both reasonable.
constexpr size_t kUpstreamSocketsPerFamily = 16;
constexpr size_t kMaxUpstreamsPerRule = 32;  // width of the "already tried" bit mask
// A question already waiting upstream takes at most this many more clients; beyond it a
// new client starts its own upstream query.
constexpr uint32_t kMaxFollowers = 1024;

uint32_t divide_round_up(uint32_t total, unsigned parts) {
  if (parts == 0) return total;
  return (total + parts - 1) / parts;
}

int open_upstream_socket(int family) {
  int fd = ::socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int bytes = 1 << 20;  // room for a burst of answers between two reads
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
  sockaddr_storage any{};
  any.ss_family = static_cast<sa_family_t>(family);
  socklen_t length = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  // Port 0: the kernel draws a random ephemeral port for each socket of the pool.
  if (::bind(fd, reinterpret_cast<sockaddr*>(&any), length) != 0) {
    int error = -errno;
    ::close(fd);
    return error;
  }
  return fd;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Setup and teardown

DnsWorkerLoop::DnsWorkerLoop(unsigned index, ConfigSnapshot config, SharedUpstreamHealth upstream_health,
                             ProcessState* state, ForwarderCounters* counters, PacketCache* cache,
                             std::vector<ListenSocket> sockets)
    : index_(index),
      config_(std::move(config)),
      upstream_health_(std::move(upstream_health)),
      router_(config_->forward),
      state_(state),
      counters_(counters),
      cache_(cache != nullptr && cache->enabled() ? cache : nullptr),
      listen_sockets_(std::move(sockets)),
      max_inflight_here_(divide_round_up(config_->server.max_inflight, state->worker_count())),
      max_tcp_clients_here_(divide_round_up(config_->server.max_tcp_clients, state->worker_count())),
      log_queries_every_(config_->server.log_queries),
      udp_(loop_.get(), on_udp_datagram, on_udp_batch_end, this) {
  const auto& rules = config_->forward;
  upstream_state_.resize(rules.size());
  round_robin_next_.resize(rules.size());
  max_outstanding_here_.resize(rules.size());
  rule_attempt_list_.resize(rules.size());
  for (size_t i = 0; i < rules.size(); ++i) {
    upstream_state_[i].resize(rules[i].upstreams.size());
    max_outstanding_here_[i] = std::max(1u, divide_round_up(rules[i].max_outstanding, state->worker_count()));
    uint64_t timeout = static_cast<uint64_t>(rules[i].attempt_timeout.count());
    uint32_t list = kNone;
    for (uint32_t k = 0; k < attempt_deadlines_.size(); ++k) {
      if (attempt_deadlines_[k].timeout_ms == timeout) list = k;
    }
    if (list == kNone) {
      list = static_cast<uint32_t>(attempt_deadlines_.size());
      attempt_deadlines_.push_back(DeadlineList{timeout, kNone, kNone});
    }
    rule_attempt_list_[i] = list;
  }
  query_deadlines_.timeout_ms = static_cast<uint64_t>(config_->server.query_timeout.count());
  // Every table is sized once for the most queries this worker may hold.
  pending_.reserve(max_inflight_here_);
  free_slots_.reserve(max_inflight_here_);
  udp_waiting_.reset(max_inflight_here_);
  in_flight_.reset(max_inflight_here_);
  question_seed_ = (static_cast<uint64_t>(random_.next_u16()) << 48) |
                   (static_cast<uint64_t>(random_.next_u16()) << 32) |
                   (static_cast<uint64_t>(random_.next_u16()) << 16) | random_.next_u16();
}

DnsWorkerLoop::~DnsWorkerLoop() {
  // Sockets not yet handed over (start failed) are closed here.
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
  rc = stop_listening_async_.init(uv_async_init, loop_.get(), [](uv_async_t* async) {
    auto* self = static_cast<DnsWorkerLoop*>(async->data);
    if (self != nullptr) self->stop_listening();
  });
  if (rc != 0) {
    *error = std::string("uv_async_init: ") + uv_strerror(rc);
    return false;
  }
  stop_listening_async_->data = this;
  uv_unref(stop_listening_async_.as_handle());

  for (ListenSocket& socket : listen_sockets_) {
    listening_fds_.push_back(socket);
    int id = udp_.add_socket(socket.udp_fd);
    socket.udp_fd = -1;  // owned by udp_ now, even on failure
    if (id < 0) {
      *error = "cannot use UDP socket " + socket.address.to_string() + ": " + uv_strerror(id);
      return false;
    }
    listener_sockets_.push_back(static_cast<uint32_t>(id));

    auto tcp = std::make_unique<TcpListener>();
    tcp->worker = this;
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
    for (const SocketAddress& upstream : rule.upstreams) (upstream.is_ipv6() ? need_v6 : need_v4) = true;
  }
  for (int family : {AF_INET, AF_INET6}) {
    if (!(family == AF_INET ? need_v4 : need_v6)) continue;
    for (size_t i = 0; i < kUpstreamSocketsPerFamily; ++i) {
      int fd = open_upstream_socket(family);
      int id = fd < 0 ? fd : udp_.add_socket(fd);
      if (id < 0) {
        *error = std::string("cannot open an upstream UDP socket: ") + uv_strerror(id);
        return false;
      }
      (family == AF_INET ? upstream_sockets_v4_ : upstream_sockets_v6_).push_back(static_cast<uint32_t>(id));
    }
  }
  is_upstream_socket_.assign(listener_sockets_.size() + upstream_sockets_v4_.size() + upstream_sockets_v6_.size(), false);
  for (uint32_t id : upstream_sockets_v4_) is_upstream_socket_[id] = true;
  for (uint32_t id : upstream_sockets_v6_) is_upstream_socket_[id] = true;

  upstream_tcp_ = std::make_unique<UpstreamTcpPool>(loop_.get(), UpstreamTcpPoolOptions{},
                                                    on_upstream_tcp_result, this);

  rc = heartbeat_timer_.init(uv_timer_init, loop_.get());
  if (rc == 0) rc = deadline_timer_.init(uv_timer_init, loop_.get());
  if (rc == 0) rc = flush_check_.init(uv_check_init, loop_.get());
  if (rc != 0) {
    *error = std::string("cannot create loop handles: ") + uv_strerror(rc);
    return false;
  }
  heartbeat_timer_->data = this;
  deadline_timer_->data = this;
  flush_check_->data = this;
  return true;
}

void DnsWorkerLoop::run() {
  // "dns0", "dns1"...: what `top -H` and `ps -T` show for this thread, so an operator can
  // tell a busy DNS worker from the control loop (the main thread keeps the process name).
  char thread_name[16];
  std::snprintf(thread_name, sizeof thread_name, "dns%u", index_);
  pthread_setname_np(pthread_self(), thread_name);
  state_->worker_heartbeat(index_, monotonic_ms());
  uv_timer_start(
      heartbeat_timer_.get(),
      [](uv_timer_t* timer) {
        auto* self = static_cast<DnsWorkerLoop*>(timer->data);
        if (self != nullptr) self->state_->worker_heartbeat(self->index_, monotonic_ms());
      },
      kHeartbeatIntervalMs, kHeartbeatIntervalMs);
  // Datagrams queued by timers and TCP callbacks leave once per loop iteration.
  uv_check_start(flush_check_.get(), on_flush_check);
  uv_unref(flush_check_.as_handle());
  loop_.run();
  close_everything();
  loop_.run();  // lets the close callbacks run
}

bool DnsWorkerLoop::finish() {
  // Only now, with the worker thread joined, may the stop handles go: until then another
  // thread could still call uv_async_send on them.
  stop_async_.close();
  stop_listening_async_.close();
  return loop_.close() == 0;
}

void DnsWorkerLoop::stop_listening() {
  if (listening_stopped_) return;
  listening_stopped_ = true;
  // UDP: what is queued is still read and answered; the sockets stay open to send the
  // answers of queries in flight, and are closed with everything else at the stop.
  for (uint32_t id : listener_sockets_) udp_.stop_reading(id);
  // TCP: no new connections; clients get the answers they are owed, then are closed.
  tcp_listeners_.clear();
  for (auto& [id, client] : tcp_clients_) {
    client->close_when_idle = true;
    schedule_tcp_client_service(*client);
  }
  LOG_DEBUG("msg=\"DNS worker stopped listening\" worker=%u queries_in_flight=%u tcp_clients=%zu", index_,
            pending_count_, tcp_clients_.size());
  note_if_drained();
}

void DnsWorkerLoop::close_everything() {
  // Queries still pending get SERVFAIL rather than silence: a stop never drops them.
  for (uint32_t slot = 0; slot < pending_.size(); ++slot) {
    if (pending_[slot].in_use && pending_[slot].leader_slot == kNone) {
      finish_with_servfail(slot, dns::ExtendedError::other);
    }
  }
  udp_.flush();
  counters_->tcp_clients_closed.fetch_add(tcp_clients_.size(), std::memory_order_relaxed);
  tcp_clients_.clear();
  tcp_listeners_.clear();
  upstream_tcp_.reset();  // closes its connections and timers
  udp_.close_all();
  heartbeat_timer_.close();
  deadline_timer_.close();
  flush_check_.close();
}

void DnsWorkerLoop::on_flush_check(uv_check_t* check) {
  auto* self = static_cast<DnsWorkerLoop*>(check->data);
  if (self != nullptr) self->udp_.flush();
}

void DnsWorkerLoop::on_udp_batch_end(void*) {}

void DnsWorkerLoop::on_udp_datagram(void* context, uint32_t socket_id, const sockaddr* from,
                                    uint8_t* data, size_t length, bool truncated) {
  auto* self = static_cast<DnsWorkerLoop*>(context);
  if (socket_id < self->is_upstream_socket_.size() && self->is_upstream_socket_[socket_id]) {
    if (truncated) {
      self->counters_->upstream_mismatched.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    self->on_upstream_datagram(socket_id, from, data, length);
    return;
  }
  if (truncated) {
    self->counters_->queries_udp.fetch_add(1, std::memory_order_relaxed);
    // Larger than any query we accept: not a query we can answer.
    self->counters_->dropped_malformed.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  self->handle_query(ClientKind::udp, socket_id, SocketAddress::from_sockaddr(from), 0, data, length);
}

// ---------------------------------------------------------------------------------------
// Queries

bool DnsWorkerLoop::client_allowed(const SocketAddress& client) const {
  for (const Cidr& cidr : config_->server.allow) {
    if (cidr.contains(client)) return true;
  }
  return false;
}

bool DnsWorkerLoop::answer_self_check(ClientKind kind, uint32_t udp_socket, const SocketAddress& client,
                                      uint64_t tcp_client_id, const uint8_t* data,
                                      const dns::QueryInfo& info) {
  static constexpr uint8_t kSelfCheckName[] = "\x0a_selfcheck\x06hubdns\x07invalid";  // + final 0
  constexpr uint16_t kTypeTxt = 16;
  if (info.qtype != kTypeTxt || info.qname_length != sizeof kSelfCheckName || !client.is_loopback()) {
    return false;
  }
  uint8_t lower[sizeof kSelfCheckName];
  dns::lowercase_wire_name(data + info.qname_offset, sizeof lower, lower);
  if (std::memcmp(lower, kSelfCheckName, sizeof lower) != 0) return false;
  char text[32];
  std::snprintf(text, sizeof text, "worker %u", index_);
  uint8_t answer[dns::kHeaderSize + dns::kMaxNameWireLength + 4 + 64 + 64];
  size_t length = dns::build_txt_answer(data, info, text, config_->server.edns_udp_size, answer, sizeof answer);
  if (length == 0) return false;
  if (kind == ClientKind::udp) {
    udp_.send(udp_socket, client.sockaddr_ptr(), client.sockaddr_len(), answer, length);
  } else {
    send_tcp_to_client(tcp_client_id, answer, length);
  }
  return true;
}

bool DnsWorkerLoop::answer_loop_probe(ClientKind kind, uint32_t udp_socket, const SocketAddress& client,
                                      uint64_t tcp_client_id, const uint8_t* data,
                                      const dns::QueryInfo& info) {
  uint64_t token = 0;
  if (!parse_loop_probe_name(data + info.qname_offset, info.qname_length, &token)) return false;
  // Another instance's probe (a chained tier) is no loop of ours: it is forwarded as usual.
  if (!state_->loop_probes().note_arrival(token)) return false;
  // Answered here, never forwarded: the circle ends at its first turn. NXDOMAIN rather than
  // REFUSED, so resolvers on the way back take it as final instead of trying their other
  // servers; the control loop judges by the arrival noted above, not by this answer.
  reply_error(kind, udp_socket, client, tcp_client_id, data, info, dns::kNxDomain, dns::ExtendedError::none);
  return true;
}

uint64_t DnsWorkerLoop::question_key(const uint8_t* lower_name, const dns::QueryInfo& info,
                                     size_t rule, ClientKind kind) const {
  // FNV-1a over everything that makes two queries the same upstream question, seeded per
  // worker so clients cannot aim collisions at the table.
  uint64_t hash = 0xcbf29ce484222325ULL ^ question_seed_;
  auto mix = [&hash](uint64_t byte) {
    hash ^= byte;
    hash *= 0x100000001b3ULL;
  };
  for (size_t i = 0; i < info.qname_length; ++i) mix(lower_name[i]);
  mix(info.qtype >> 8);
  mix(info.qtype & 0xFF);
  mix(info.qclass & 0xFF);
  mix(rule & 0xFF);
  mix((static_cast<uint64_t>(kind) << 4) | (info.has_edns ? 8u : 0u) | (info.edns_do ? 4u : 0u) |
      (info.flags & dns::kFlagCd ? 2u : 0u) | (info.flags & dns::kFlagRd ? 1u : 0u));
  return hash;
}

bool DnsWorkerLoop::same_question(const PendingQuery& a, const uint8_t* lower_name,
                                  const dns::QueryInfo& info, size_t rule, ClientKind kind) const {
  // A UDP answer may be truncated, so UDP and TCP clients never share one upstream query;
  // EDNS, DO, CD and RD change the answer, so they must match too.
  if (a.rule != rule || a.client_kind != kind || a.info.qtype != info.qtype ||
      a.info.qclass != info.qclass || a.info.qname_length != info.qname_length ||
      a.info.has_edns != info.has_edns || a.info.edns_do != info.edns_do ||
      (a.info.flags & (dns::kFlagCd | dns::kFlagRd)) != (info.flags & (dns::kFlagCd | dns::kFlagRd))) {
    return false;
  }
  const uint8_t* name = a.upstream_query.data() + dns::kHeaderSize;
  for (size_t i = 0; i < info.qname_length; ++i) {
    uint8_t c = name[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<uint8_t>(c + 32);
    if (c != lower_name[i]) return false;
  }
  return true;
}

void DnsWorkerLoop::handle_query(ClientKind kind, uint32_t udp_socket, const SocketAddress& client,
                                 uint64_t tcp_client_id, const uint8_t* data, size_t length) {
  const Config& config = *config_;
  dns::QueryInfo info;
  dns::QueryCheck check = dns::parse_query(data, length, &info);
  if (check == dns::QueryCheck::drop) {
    (kind == ClientKind::udp ? counters_->queries_udp : counters_->queries_tcp).fetch_add(1, std::memory_order_relaxed);
    counters_->dropped_malformed.fetch_add(1, std::memory_order_relaxed);
    uint64_t suppressed = 0;
    if (log_limits_.malformed.allow(now(), &suppressed)) {
      LOG_INFO("msg=\"dropped a datagram that is not a DNS query\" client=%s bytes=%zu similar_suppressed=%llu",
               client.to_string().c_str(), length, static_cast<unsigned long long>(suppressed));
    }
    return;
  }

  // The health self-check is answered here, before the ACL: it proves that this listener
  // delivers queries to a worker, whatever `allow` says about loopback.
  // Not counted as a client query: /metrics shows what clients asked.
  if (check == dns::QueryCheck::ok && answer_self_check(kind, udp_socket, client, tcp_client_id, data, info)) {
    return;
  }
  // Our forwarding-loop probe, back from an upstream that leads here: before the ACL too
  // (it comes from whatever forwarder closes the loop), and not a client query either.
  if (check == dns::QueryCheck::ok && answer_loop_probe(kind, udp_socket, client, tcp_client_id, data, info)) {
    return;
  }
  (kind == ClientKind::udp ? counters_->queries_udp : counters_->queries_tcp).fetch_add(1, std::memory_order_relaxed);

  if (!client_allowed(client)) {
    counters_->refused_acl.fetch_add(1, std::memory_order_relaxed);
    uint64_t suppressed = 0;
    if (log_limits_.refused.allow(now(), &suppressed)) {
      LOG_INFO("msg=\"refused a client outside allow\" client=%s similar_suppressed=%llu",
               client.ip_string().c_str(), static_cast<unsigned long long>(suppressed));
    }
    reply_error(kind, udp_socket, client, tcp_client_id, data, info, dns::kRefused,
                dns::ExtendedError::prohibited);
    return;
  }

  if (check != dns::QueryCheck::ok) {
    counters_->formerr.fetch_add(1, std::memory_order_relaxed);
    uint8_t rcode = check == dns::QueryCheck::notimp    ? dns::kNotImp
                    : check == dns::QueryCheck::badvers ? dns::kBadVers
                                                        : dns::kFormErr;
    if (check == dns::QueryCheck::formerr) info.question_end = 0;  // do not echo a bad question
    reply_error(kind, udp_socket, client, tcp_client_id, data, info, rcode, dns::ExtendedError::none);
    return;
  }

  uint8_t lower_name[dns::kMaxNameWireLength];
  dns::lowercase_wire_name(data + info.qname_offset, info.qname_length, lower_name);
  size_t rule = router_.route(lower_name, info.qname_length);
  if (rule == ZoneRouter::kNoRule) {
    counters_->no_route.fetch_add(1, std::memory_order_relaxed);
    reply_error(kind, udp_socket, client, tcp_client_id, data, info, dns::kRefused,
                dns::ExtendedError::prohibited);
    return;
  }

  if (cache_enabled_for(rule)) {
    size_t answer_length = 0;
    PacketCache::Hit hit = cache_->lookup(data, info, now(), false, answer_copy_, sizeof answer_copy_, &answer_length);
    if (hit == PacketCache::Hit::fresh || hit == PacketCache::Hit::fresh_prefetch) {
      deliver(kind, udp_socket, client, tcp_client_id, info, answer_copy_, answer_length);
      if (hit == PacketCache::Hit::fresh_prefetch) start_prefetch(data, length, info, rule);
      return;
    }
  }

  if (pending_count_ >= max_inflight_here_) {
    counters_->overload_servfail.fetch_add(1, std::memory_order_relaxed);
    uint64_t suppressed = 0;
    if (log_limits_.overload.allow(now(), &suppressed)) {
      LOG_WARN("msg=\"max_inflight reached; answering SERVFAIL\" worker=%u limit_per_worker=%u similar_suppressed=%llu",
               index_, max_inflight_here_, static_cast<unsigned long long>(suppressed));
    }
    reply_error(kind, udp_socket, client, tcp_client_id, data, info, dns::kServFail,
                dns::ExtendedError::other);
    return;
  }

  uint64_t key = question_key(lower_name, info, rule, kind);
  uint32_t leader = in_flight_.find(key);
  if (leader != FlatMap::kNotFound &&
      (!pending_[leader].in_use || !same_question(pending_[leader], lower_name, info, rule, kind) ||
       pending_[leader].follower_count >= kMaxFollowers)) {
    leader = FlatMap::kNotFound;  // a hash collision or a full leader: go on alone
  }

  uint32_t slot = allocate_slot();
  PendingQuery& query = pending_[slot];
  query.client_kind = kind;
  query.over_tcp = kind == ClientKind::tcp;
  query.udp_socket = udp_socket;
  query.client_address = client;
  query.tcp_client_id = tcp_client_id;
  query.info = info;
  query.query.assign(data, data + length);
  query.rule = rule;
  if (kind == ClientKind::tcp) {
    auto it = tcp_clients_.find(tcp_client_id);
    if (it != tcp_clients_.end()) it->second->queries_in_flight++;
  }

  if (leader != FlatMap::kNotFound) {
    // The same question is already on its way upstream: wait for that answer.
    counters_->coalesced.fetch_add(1, std::memory_order_relaxed);
    PendingQuery& lead = pending_[leader];
    query.leader_slot = leader;
    query.next_follower = lead.next_follower;
    lead.next_follower = slot;
    lead.follower_count++;
    return;
  }

  query.leader = true;
  query.question_key = key;
  query.upstream_query.resize(info.question_end + 32);
  size_t upstream_length = dns::build_upstream_query(data, info, config.server.edns_udp_size,
                                                     query.upstream_query.data(), query.upstream_query.size());
  query.upstream_query.resize(upstream_length);
  if (upstream_length == 0) {
    finish_with_servfail(slot, dns::ExtendedError::other);
    return;
  }
  if (!in_flight_.full()) {
    in_flight_.insert(key, slot);
  } else {
    query.question_key = 0;
    query.leader = false;  // not findable: no follower can join
  }
  link_deadline(slot, &PendingQuery::query_deadline, kNone, now());
  if (!start_attempt(slot)) finish_with_servfail(slot, dns::ExtendedError::no_reachable_authority);
}

void DnsWorkerLoop::reply_error(ClientKind kind, uint32_t udp_socket, const SocketAddress& client,
                                uint64_t tcp_client_id, const uint8_t* query,
                                const dns::QueryInfo& info, uint8_t rcode, dns::ExtendedError ede) {
  uint8_t answer[dns::kHeaderSize + dns::kMaxNameWireLength + 4 + 64];
  size_t length = dns::build_error_response(query, info, rcode, ede, config_->server.edns_udp_size,
                                            answer, sizeof answer);
  if (length == 0) return;
  maybe_log_query(kind, client, info, answer, length);
  if (kind == ClientKind::udp) {
    udp_.send(udp_socket, client.sockaddr_ptr(), client.sockaddr_len(), answer, length);
  } else {
    send_tcp_to_client(tcp_client_id, answer, length);
  }
}

void DnsWorkerLoop::send_to_client(const PendingQuery& query, uint8_t* answer, size_t length) {
  // The client's own ID and spelling of the name (0x20 randomisation by clients).
  if (query.client_kind == ClientKind::prefetch) return;  // nobody asked: the cache has it
  dns::set_message_id(answer, query.info.id);
  std::memcpy(answer + query.info.qname_offset, query.query.data() + query.info.qname_offset,
              query.info.qname_length);
  deliver(query.client_kind, query.udp_socket, query.client_address, query.tcp_client_id, query.info,
          answer, length);
}

void DnsWorkerLoop::deliver(ClientKind kind, uint32_t udp_socket, const SocketAddress& client,
                            uint64_t tcp_client_id, const dns::QueryInfo& info, uint8_t* answer,
                            size_t length) {
  maybe_log_query(kind, client, info, answer, length);
  if (kind == ClientKind::tcp) {
    send_tcp_to_client(tcp_client_id, answer, length);
    return;
  }
  size_t limit = dns::client_udp_limit(info, config_->server.edns_udp_size);
  if (length > limit) {
    counters_->truncated.fetch_add(1, std::memory_order_relaxed);
    length = dns::truncate_response(answer, length, info.question_end, info.has_edns, info.edns_do,
                                    config_->server.edns_udp_size);
  }
  udp_.send(udp_socket, client.sockaddr_ptr(), client.sockaddr_len(), answer, length);
}

void DnsWorkerLoop::log_query(ClientKind kind, const SocketAddress& client, const dns::QueryInfo& info,
                              const uint8_t* answer, size_t length) const {
  static constexpr const char* kRcodes[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"};
  const uint8_t rcode = length >= dns::kHeaderSize ? dns::message_rcode(answer) : 0;
  // The question as the client spelled it; an answer to a malformed query may have none.
  std::string name = info.question_end > info.qname_offset && info.qname_offset + info.qname_length <= length
                         ? wire_name_to_text(answer + info.qname_offset, info.qname_length)
                         : "-";
  LOG_INFO("msg=\"query\" proto=%s client=%s name=%s type=%u rcode=%s bytes=%zu worker=%u",
           kind == ClientKind::tcp ? "tcp" : "udp", client.to_string().c_str(), name.c_str(),
           static_cast<unsigned>(info.qtype), rcode < 6 ? kRcodes[rcode] : std::to_string(rcode).c_str(), length,
           index_);
}

// ---------------------------------------------------------------------------------------
// Cache: prefetch and stale answers

void DnsWorkerLoop::start_prefetch(const uint8_t* data, size_t length, const dns::QueryInfo& info,
                                   size_t rule) {
  // A refresh is worth less than a client's query: never at the cost of one.
  if (pending_count_ >= max_inflight_here_) return;
  uint32_t slot = allocate_slot();
  PendingQuery& query = pending_[slot];
  query.client_kind = ClientKind::prefetch;
  query.info = info;
  query.query.assign(data, data + length);
  query.rule = rule;
  // Not entered in in_flight_: clients asking meanwhile are answered from the cache, which
  // still holds the entry being refreshed.
  query.upstream_query.resize(info.question_end + 32);
  size_t upstream_length = dns::build_upstream_query(data, info, config_->server.edns_udp_size,
                                                     query.upstream_query.data(), query.upstream_query.size());
  query.upstream_query.resize(upstream_length);
  if (upstream_length == 0) {
    release_slot(slot);
    return;
  }
  counters_->cache_prefetches.fetch_add(1, std::memory_order_relaxed);
  link_deadline(slot, &PendingQuery::query_deadline, kNone, now());
  if (!start_attempt(slot)) finish_with_servfail(slot, dns::ExtendedError::no_reachable_authority);
}

bool DnsWorkerLoop::send_stale(const PendingQuery& waiting) {
  if (waiting.client_kind == ClientKind::prefetch || !cache_enabled_for(waiting.rule)) return false;
  size_t length = 0;
  PacketCache::Hit hit = cache_->lookup(waiting.query.data(), waiting.info, now(), true, answer_copy_,
                                        sizeof answer_copy_, &length);
  if (hit != PacketCache::Hit::stale) return false;
  length = dns::add_extended_error(answer_copy_, length, sizeof answer_copy_, dns::ExtendedError::stale_answer);
  counters_->stale_answers.fetch_add(1, std::memory_order_relaxed);
  deliver(waiting.client_kind, waiting.udp_socket, waiting.client_address, waiting.tcp_client_id, waiting.info,
          answer_copy_, length);
  return true;
}

// ---------------------------------------------------------------------------------------
// Upstream attempts

namespace {

// Down and loop upstreams get no queries, with one exception: another instance's loop
// probe still goes to a loop upstream. Two hubdns forwarding a zone to each other would
// otherwise learn of the loop one at a time: once the first marks it, the second's probes
// end at the first and never come back. The probe stops at the instance that sent it.
bool upstream_takes(const UpstreamHealthEntry& entry, const std::vector<uint8_t>& upstream_query,
                    size_t qname_length) {
  if (entry.is_usable()) return true;
  uint64_t token = 0;
  return entry.status.load(std::memory_order_relaxed) == UpstreamStatus::loop &&
         parse_loop_probe_name(upstream_query.data() + dns::kHeaderSize, qname_length, &token);
}

}  // namespace

size_t DnsWorkerLoop::choose_upstream(PendingQuery& query) {
  const ForwardRule& rule = config_->forward[query.rule];
  size_t count = std::min(rule.upstreams.size(), kMaxUpstreamsPerRule);
  std::vector<UpstreamState>& states = upstream_state_[query.rule];
  uint32_t limit = max_outstanding_here_[query.rule];
  const UpstreamHealthTable& health = *upstream_health_;
  auto usable = [&](size_t i) {
    return (query.tried_mask & (1u << i)) == 0 && states[i].outstanding < limit &&
           upstream_takes(health.entry(query.rule, i), query.upstream_query, query.info.qname_length);
  };
  auto first_usable_from = [&](size_t start) {
    for (size_t k = 0; k < count; ++k) {
      if (usable((start + k) % count)) return (start + k) % count;
    }
    return count;
  };
  switch (rule.policy) {
    case UpstreamPolicy::sequential:
      return first_usable_from(0);
    case UpstreamPolicy::round_robin:
      return first_usable_from(round_robin_next_[query.rule]++ % count);
    case UpstreamPolicy::random:
      return first_usable_from(random_.uniform(static_cast<uint32_t>(count)));
    case UpstreamPolicy::fastest: {
      // Lowest smoothed RTT (unmeasured first); now and then (1 in 32) a random one, so a
      // recovered or slower upstream gets measured again.
      if (random_.uniform(32) == 0) return first_usable_from(random_.uniform(static_cast<uint32_t>(count)));
      size_t chosen = count;
      for (size_t i = 0; i < count; ++i) {
        if (!usable(i)) continue;
        if (chosen == count || states[i].smoothed_rtt_ms < states[chosen].smoothed_rtt_ms) chosen = i;
      }
      return chosen;
    }
  }
  return count;
}

bool DnsWorkerLoop::start_attempt(uint32_t slot) {
  PendingQuery& query = pending_[slot];
  const ForwardRule& rule = config_->forward[query.rule];
  uint64_t current = now();
  while (current < query.query_deadline.deadline_ms) {
    size_t upstream = choose_upstream(query);
    if (upstream >= rule.upstreams.size() || upstream >= kMaxUpstreamsPerRule) {
      // Nothing left: every upstream tried, or the rest are down or at max_outstanding.
      bool any_full = false, any_down = false;
      for (size_t i = 0; i < std::min(rule.upstreams.size(), kMaxUpstreamsPerRule); ++i) {
        if ((query.tried_mask & (1u << i)) != 0) continue;
        if (!upstream_health_->entry(query.rule, i).is_usable()) {
          any_down = true;
        } else {
          any_full = true;
        }
      }
      if (any_full) counters_->upstream_overload.fetch_add(1, std::memory_order_relaxed);
      if (any_down && !any_full && query.tried_mask == 0) {
        counters_->no_healthy_upstream.fetch_add(1, std::memory_order_relaxed);
      }
      return false;
    }
    query.tried_mask |= 1u << upstream;
    query.upstream = upstream;
    query.attempt_started_ns = uv_hrtime();
    bool sent = query.over_tcp ? send_tcp_attempt(slot, rule.upstreams[upstream])
                                                     : send_udp_attempt(slot, rule.upstreams[upstream]);
    if (sent) {
      query.attempt_active = true;
      upstream_state_[query.rule][upstream].outstanding++;
      counters_->upstream_queries.fetch_add(1, std::memory_order_relaxed);
      link_deadline(slot, &PendingQuery::attempt_deadline, rule_attempt_list_[query.rule], current);
      return true;
    }
    counters_->upstream_errors.fetch_add(1, std::memory_order_relaxed);
  }
  return false;
}

bool DnsWorkerLoop::send_udp_attempt(uint32_t slot, const SocketAddress& upstream) {
  PendingQuery& query = pending_[slot];
  const std::vector<uint32_t>& pool = upstream.is_ipv6() ? upstream_sockets_v6_ : upstream_sockets_v4_;
  if (pool.empty() || udp_waiting_.full()) return false;
  uint32_t socket_id = 0;
  uint16_t id = 0;
  // A fresh random ID on a randomly chosen socket; draw again on the rare collision with a
  // query still waiting on the same socket and ID.
  for (int tries = 0;; ++tries) {
    socket_id = pool[random_.uniform(static_cast<uint32_t>(pool.size()))];
    id = random_.next_u16();
    if (udp_waiting_.find(udp_key(socket_id, id)) == FlatMap::kNotFound) break;
    if (tries > 16) return false;
  }
  dns::set_message_id(query.upstream_query.data(), id);
  udp_.send(socket_id, upstream.sockaddr_ptr(), upstream.sockaddr_len(), query.upstream_query.data(),
            query.upstream_query.size());
  query.upstream_id = id;
  query.upstream_socket = socket_id;
  udp_waiting_.insert(udp_key(socket_id, id), slot);
  return true;
}

void DnsWorkerLoop::on_upstream_datagram(uint32_t socket_id, const sockaddr* from, uint8_t* data,
                                         size_t length) {
  uint32_t slot = length < dns::kHeaderSize ? FlatMap::kNotFound
                                            : udp_waiting_.find(udp_key(socket_id, dns::message_id(data)));
  // Only the upstream we asked, on this socket, with our ID and our question, may answer
  // (anti-spoofing). Anything else is counted and dropped; the attempt keeps waiting.
  bool matches = false;
  if (slot != FlatMap::kNotFound) {
    const PendingQuery& query = pending_[slot];
    const SocketAddress& expected = config_->forward[query.rule].upstreams[query.upstream];
    matches = SocketAddress::from_sockaddr(from) == expected &&
              dns::response_matches(data, length, query.upstream_id,
                                    query.upstream_query.data() + dns::kHeaderSize,
                                    query.info.qname_length, query.info.qtype, query.info.qclass);
  }
  if (!matches) {
    counters_->upstream_mismatched.fetch_add(1, std::memory_order_relaxed);
    uint64_t suppressed = 0;
    if (log_limits_.mismatched.allow(now(), &suppressed)) {
      LOG_WARN("msg=\"dropped an upstream answer that matches no query (wrong source, ID or question)\" source=%s bytes=%zu similar_suppressed=%llu",
               SocketAddress::from_sockaddr(from).to_string().c_str(), length,
               static_cast<unsigned long long>(suppressed));
    }
    return;
  }
  upstream_answered(slot, data, length);
}

void DnsWorkerLoop::upstream_answered(uint32_t slot, uint8_t* data, size_t length) {
  PendingQuery& query = pending_[slot];
  uint64_t latency_us = (uv_hrtime() - query.attempt_started_ns) / 1000;
  counters_->answers.fetch_add(1, std::memory_order_relaxed);
  // Passive evidence for the health checks: SERVFAIL and REFUSED count against the upstream
  // (it answered, but could not resolve); they still reach the client as they are.
  UpstreamHealthEntry& health = upstream_health_->entry(query.rule, query.upstream);
  uint8_t rcode = dns::message_rcode(data);
  // A prefetch has no client to retry over TCP after a truncated answer: it does so
  // itself (an answer that needed TCP the first time needs it again).
  if (query.client_kind == ClientKind::prefetch && !query.over_tcp && (dns::message_flags(data) & dns::kFlagTc) != 0) {
    end_attempt(query);
    query.over_tcp = true;
    query.tried_mask = 0;
    if (!start_attempt(slot)) finish_with_servfail(slot, dns::ExtendedError::no_reachable_authority);
    return;
  }
  double& srtt = upstream_state_[query.rule][query.upstream].smoothed_rtt_ms;
  if (rcode == dns::kServFail || rcode == dns::kRefused) {
    health.record_failure();
    // A quick refusal is no sign of a good upstream: `fastest` must not keep choosing one
    // that refuses everything, so it is pushed back as a timeout would be.
    const double floor = static_cast<double>(config_->forward[query.rule].attempt_timeout.count());
    srtt = std::min(std::max(srtt * 2, floor), 60000.0);
    // Another upstream of the zone may resolve what this one could not (a server that
    // refuses recursion, one path to the resolver failing): the next untried one gets the
    // question while the budget lasts, as after a timeout. With none left, this answer
    // (or a stale one) is what the client gets.
    end_attempt(query);
    if (start_attempt(slot)) return;
    // RFC 8767: an upstream that cannot resolve is no better than one that does not
    // answer; a stale answer, if there is one, serves the clients better than SERVFAIL.
    if (rcode == dns::kServFail && cache_enabled_for(query.rule) && send_stale(query)) {
      for (uint32_t follower = query.next_follower; follower != kNone;) {
        uint32_t next = pending_[follower].next_follower;
        if (!send_stale(pending_[follower])) {
          std::memcpy(answer_copy_, data, length);
          send_to_client(pending_[follower], answer_copy_, length);
        }
        release_slot(follower);
        follower = next;
      }
      pending_[slot].next_follower = kNone;
      release_slot(slot);
      return;
    }
  } else {
    health.record_answer(latency_us);
    const double rtt = static_cast<double>(latency_us) / 1000.0 + 0.001;
    srtt = srtt == 0 ? rtt : srtt * 0.7 + rtt * 0.3;
  }
  // Stored before any client's copy is rewritten in place; the cache decides what is
  // cacheable (no TC, no SERVFAIL, TTL > 0...).
  if (cache_enabled_for(query.rule)) cache_->insert(query.query.data(), query.info, data, length, now());

  // Followers first: send_to_client rewrites ID, name and size in place, so each gets a
  // copy of the upstream's answer.
  for (uint32_t follower = query.next_follower; follower != kNone;) {
    uint32_t next = pending_[follower].next_follower;
    std::memcpy(answer_copy_, data, length);
    send_to_client(pending_[follower], answer_copy_, length);
    release_slot(follower);
    follower = next;
  }
  pending_[slot].next_follower = kNone;
  send_to_client(pending_[slot], data, length);
  release_slot(slot);
}

void DnsWorkerLoop::note_upstream_failure(const PendingQuery& query, const char* what) {
  const ForwardRule& rule = config_->forward[query.rule];
  uint64_t suppressed = 0;
  LogRateLimit& limit = std::strcmp(what, "timeout") == 0 ? log_limits_.upstream_timeout
                                                          : log_limits_.upstream_error;
  if (limit.allow(now(), &suppressed)) {
    LOG_WARN("msg=\"upstream attempt failed\" reason=%s upstream=%s zone=%s worker=%u similar_suppressed=%llu",
             what, rule.upstreams[query.upstream].to_string().c_str(), rule.zone.c_str(), index_,
             static_cast<unsigned long long>(suppressed));
  }
  upstream_health_->entry(query.rule, query.upstream).record_failure();
  // A timeout or an error pushes the upstream's smoothed RTT up to at least the attempt
  // timeout, so `fastest` stops choosing a dead upstream first; answers bring it down again.
  double& srtt = upstream_state_[query.rule][query.upstream].smoothed_rtt_ms;
  double floor = static_cast<double>(rule.attempt_timeout.count());
  srtt = std::min(std::max(srtt * 2, floor), 60000.0);
}

void DnsWorkerLoop::attempt_failed(uint32_t slot, const char* reason, dns::ExtendedError ede) {
  note_upstream_failure(pending_[slot], reason);
  end_attempt(pending_[slot]);
  if (!start_attempt(slot)) finish_with_servfail(slot, ede);
}

void DnsWorkerLoop::finish_with_servfail(uint32_t slot, dns::ExtendedError ede) {
  for (uint32_t follower = pending_[slot].next_follower; follower != kNone;) {
    uint32_t next = pending_[follower].next_follower;
    PendingQuery& waiting = pending_[follower];
    if (!send_stale(waiting)) {
      counters_->servfail_sent.fetch_add(1, std::memory_order_relaxed);
      reply_error(waiting.client_kind, waiting.udp_socket, waiting.client_address, waiting.tcp_client_id,
                  waiting.query.data(), waiting.info, dns::kServFail, ede);
    }
    release_slot(follower);
    follower = next;
  }
  PendingQuery& query = pending_[slot];
  query.next_follower = kNone;
  if (query.client_kind != ClientKind::prefetch && !send_stale(query)) {
    counters_->servfail_sent.fetch_add(1, std::memory_order_relaxed);
    reply_error(query.client_kind, query.udp_socket, query.client_address, query.tcp_client_id,
                query.query.data(), query.info, dns::kServFail, ede);
  }
  release_slot(slot);
}

void DnsWorkerLoop::end_attempt(PendingQuery& query) {
  if (!query.attempt_active) return;
  query.attempt_active = false;
  UpstreamState& state = upstream_state_[query.rule][query.upstream];
  if (state.outstanding > 0) state.outstanding--;
  uint32_t slot = static_cast<uint32_t>(&query - pending_.data());
  unlink_deadline(slot, &PendingQuery::attempt_deadline);
  if (query.upstream_socket >= 0) {
    udp_waiting_.erase(udp_key(static_cast<uint32_t>(query.upstream_socket), query.upstream_id));
    query.upstream_socket = -1;
  } else {
    cancel_tcp_attempt(slot);
  }
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
  query.leader = false;
  query.question_key = 0;
  query.leader_slot = kNone;
  query.next_follower = kNone;
  query.follower_count = 0;
  query.tried_mask = 0;
  query.attempt_active = false;
  query.upstream_socket = -1;
  query.query_deadline = DeadlineLink{};
  query.attempt_deadline = DeadlineLink{};
  query.over_tcp = false;
  ++pending_count_;
  counters_->pending_started.fetch_add(1, std::memory_order_relaxed);
  return slot;
}

void DnsWorkerLoop::release_slot(uint32_t slot) {
  PendingQuery& query = pending_[slot];
  if (!query.in_use) return;
  end_attempt(query);
  unlink_deadline(slot, &PendingQuery::query_deadline);
  if (query.leader && in_flight_.find(query.question_key) == slot) in_flight_.erase(query.question_key);
  query.leader = false;
  query.in_use = false;
  free_slots_.push_back(slot);
  --pending_count_;
  counters_->pending_finished.fetch_add(1, std::memory_order_relaxed);
  if (query.client_kind == ClientKind::tcp) tcp_query_finished(query.tcp_client_id);
  if (listening_stopped_) note_if_drained();
}

DnsWorkerLoop::DeadlineList& DnsWorkerLoop::list_of(const DeadlineLink& link) {
  return link.list == kNone ? query_deadlines_ : attempt_deadlines_[link.list];
}

void DnsWorkerLoop::link_deadline(uint32_t slot, DeadlineLink PendingQuery::*member, uint32_t list,
                                  uint64_t current) {
  unlink_deadline(slot, member);
  DeadlineLink& link = pending_[slot].*member;
  DeadlineList& target = list == kNone ? query_deadlines_ : attempt_deadlines_[list];
  link.list = list;
  link.deadline_ms = current + target.timeout_ms;
  link.prev = target.tail;
  link.next = kNone;
  if (target.tail != kNone) {
    (pending_[target.tail].*member).next = slot;
  } else {
    target.head = slot;
  }
  target.tail = slot;
  arm_deadline_timer();
}

void DnsWorkerLoop::unlink_deadline(uint32_t slot, DeadlineLink PendingQuery::*member) {
  DeadlineLink& link = pending_[slot].*member;
  if (link.deadline_ms == 0) return;  // not linked (loop time is never 0)
  DeadlineList& list = list_of(link);
  if (link.prev != kNone) {
    (pending_[link.prev].*member).next = link.next;
  } else {
    list.head = link.next;
  }
  if (link.next != kNone) {
    (pending_[link.next].*member).prev = link.prev;
  } else {
    list.tail = link.prev;
  }
  link = DeadlineLink{};
}

void DnsWorkerLoop::arm_deadline_timer() {
  if (!deadline_timer_.initialized()) return;
  uint64_t earliest = 0;
  auto consider = [&](const DeadlineList& list, DeadlineLink PendingQuery::*member) {
    if (list.head == kNone) return;
    uint64_t deadline = (pending_[list.head].*member).deadline_ms;
    if (earliest == 0 || deadline < earliest) earliest = deadline;
  };
  consider(query_deadlines_, &PendingQuery::query_deadline);
  for (const DeadlineList& list : attempt_deadlines_) consider(list, &PendingQuery::attempt_deadline);
  if (earliest == 0) {
    if (armed_deadline_ != 0) uv_timer_stop(deadline_timer_.get());
    armed_deadline_ = 0;
    return;
  }
  if (armed_deadline_ == earliest) return;
  armed_deadline_ = earliest;
  uint64_t current = now();
  uv_timer_start(deadline_timer_.get(), on_deadline_timer, earliest > current ? earliest - current : 0, 0);
}

void DnsWorkerLoop::on_deadline_timer(uv_timer_t* timer) {
  auto* self = static_cast<DnsWorkerLoop*>(timer->data);
  if (self == nullptr) return;
  self->armed_deadline_ = 0;
  uint64_t current = self->now();
  // The client's budget first: a query past query_timeout is answered SERVFAIL now.
  while (self->query_deadlines_.head != kNone &&
         self->pending_[self->query_deadlines_.head].query_deadline.deadline_ms <= current) {
    uint32_t slot = self->query_deadlines_.head;
    if (self->pending_[slot].attempt_active) {
      self->counters_->upstream_timeouts.fetch_add(1, std::memory_order_relaxed);
      self->note_upstream_failure(self->pending_[slot], "timeout");
    }
    self->finish_with_servfail(slot, dns::ExtendedError::no_reachable_authority);
  }
  // Then attempts past attempt_timeout: the next upstream gets the query.
  for (DeadlineList& list : self->attempt_deadlines_) {
    while (list.head != kNone && self->pending_[list.head].attempt_deadline.deadline_ms <= current) {
      uint32_t slot = list.head;
      self->counters_->upstream_timeouts.fetch_add(1, std::memory_order_relaxed);
      self->attempt_failed(slot, "timeout", dns::ExtendedError::no_reachable_authority);
    }
  }
  self->arm_deadline_timer();
}

// ---------------------------------------------------------------------------------------
// DnsWorker: the thread around a DnsWorkerLoop

DnsWorker::DnsWorker(unsigned index, ConfigSnapshot config, SharedUpstreamHealth upstream_health,
                     ProcessState* state, ForwarderCounters* counters, PacketCache* cache,
                     std::vector<ListenSocket> sockets)
    : loop_(std::make_unique<DnsWorkerLoop>(index, std::move(config), std::move(upstream_health), state,
                                            counters, cache, std::move(sockets))) {}

DnsWorker::~DnsWorker() {
  if (thread_.joinable()) {
    request_stop();
    join();
  }
}

bool DnsWorker::prepare(std::string* error) { return loop_->prepare(error); }

bool DnsWorker::launch() {
  thread_ = std::thread([this] { loop_->run(); });
  return true;
}

void DnsWorker::request_stop_listening() {
  if (thread_.joinable()) loop_->request_stop_listening();
}

bool DnsWorker::drained() const { return loop_->drained(); }

std::vector<SocketAddress> DnsWorker::listen_addresses() const {
  std::vector<SocketAddress> addresses;
  for (const ListenSocket& socket : loop_->listening_fds()) addresses.push_back(socket.address);
  return addresses;
}

std::vector<ListenSocket> DnsWorker::duplicate_listen_sockets(std::string* error) const {
  std::vector<ListenSocket> copies;
  for (const ListenSocket& socket : loop_->listening_fds()) {
    ListenSocket copy{socket.address, ::fcntl(socket.udp_fd, F_DUPFD_CLOEXEC, 0),
                      ::fcntl(socket.tcp_fd, F_DUPFD_CLOEXEC, 0)};
    if (copy.udp_fd < 0 || copy.tcp_fd < 0) {
      *error = std::string("cannot duplicate the listening sockets of ") + socket.address.to_string() + ": " +
               std::strerror(errno);
      if (copy.udp_fd >= 0) ::close(copy.udp_fd);
      if (copy.tcp_fd >= 0) ::close(copy.tcp_fd);
      for (ListenSocket& made : copies) {
        ::close(made.udp_fd);
        ::close(made.tcp_fd);
      }
      return {};
    }
    copies.push_back(copy);
  }
  return copies;
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
