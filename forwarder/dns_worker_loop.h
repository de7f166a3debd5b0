// DnsWorkerLoop: everything one DNS worker owns (private to forwarder/; DnsWorker in
// dns_worker.h is the public face). Built on the main thread, then run and touched only by
// the worker's own thread until it is joined; request_stop() is the one call from outside.
//
// A query's path: UdpBatchIo (or a TCP client connection) -> handle_query: parse, ACL,
// route -> an in-flight question already waiting upstream? join it (coalescing) : a new
// pending query -> start_attempt: pick an upstream (policy, max_outstanding), send with a
// fresh random ID on a random pool socket -> the answer is matched (socket, source, ID,
// question) -> every client waiting on that question gets it with its own ID and spelling.
// The shared cache (common/cache/packet_cache.h) sits before all of that: a fresh entry is
// answered at once without touching the upstream path (and a popular one near expiry is
// refreshed by a prefetch, a pending query with no client); an answer from upstream is
// stored; when no upstream can answer, a stale entry (RFC 8767) goes out instead of
// SERVFAIL.
// Timeouts come from deadline lists (one per distinct timeout, appended in time order),
// so the hot path allocates nothing once warm.
//
// Implementation files: dns_worker.cpp (setup, UDP path, pending queries, deadlines),
// worker_tcp_clients.cpp (client TCP connections), worker_upstream_tcp.cpp (queries that go
// upstream over TCP).
#pragma once

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/cache/packet_cache.h"
#include "common/config/config.h"
#include "common/dns/message.h"
#include "common/health/process_state.h"
#include "common/health/upstream_health.h"
#include "common/log/log.h"
#include "common/metrics/forwarder_counters.h"
#include "common/uv/handle.h"
#include "forwarder/flat_map.h"
#include "forwarder/listen_sockets.h"
#include "forwarder/secure_random.h"
#include "forwarder/udp_batch_io.h"
#include "forwarder/upstream_tcp_pool.h"
#include "forwarder/zone_router.h"

namespace hubdns {

class DnsWorkerLoop {
 public:
  DnsWorkerLoop(unsigned index, ConfigSnapshot config, SharedUpstreamHealth upstream_health,
                ProcessState* state, ForwarderCounters* counters, PacketCache* cache,
                std::vector<ListenSocket> sockets);
  ~DnsWorkerLoop();
  DnsWorkerLoop(const DnsWorkerLoop&) = delete;
  DnsWorkerLoop& operator=(const DnsWorkerLoop&) = delete;

  bool prepare(std::string* error);  // main thread, before the thread starts
  void run();                        // worker thread: returns once every handle is closed
  bool finish();                     // main thread, after join: false if a handle leaked
  // Any thread. The stop handles live until finish(), so these are safe until the join.
  void request_stop() { uv_async_send(stop_async_.get()); }
  void request_stop_listening() { uv_async_send(stop_listening_async_.get()); }
  bool drained() const { return drained_.load(std::memory_order_acquire); }
  // The listening sockets as handed over (fd numbers fixed after prepare(), readable from
  // the main thread; the fds stay open until stop_listening or the stop).
  const std::vector<ListenSocket>& listening_fds() const { return listening_fds_; }

 private:
  static constexpr uint32_t kNone = 0xFFFFFFFFu;
  static constexpr size_t kTcpLengthPrefix = 2;

  // prefetch: a query of our own refreshing a cache entry; its answer goes only to the
  // cache (and to clients that joined it), never to a client of its own.
  enum class ClientKind : uint8_t { udp, tcp, prefetch };

  struct TcpListener {
    DnsWorkerLoop* worker = nullptr;
    UvTcp tcp;
  };

  struct TcpClient {
    DnsWorkerLoop* worker = nullptr;
    uint64_t id = 0;
    UvTcp tcp;
    UvTimer timer;  // idle timeout, deferred close, resuming a paused reader
    SocketAddress peer;
    std::vector<uint8_t> received;
    unsigned queries_in_flight = 0;
    unsigned pending_writes = 0;
    size_t unsent_bytes = 0;
    bool reading = false;
    // Close once the answers still owed are written (client half-closed, or a write failed).
    bool close_when_idle = false;
    // A write failed: the connection is broken, so queries still buffered are not started
    // (after an EOF or a stop they are: the client is owed an answer to each complete one).
    bool write_failed = false;
    uint64_t last_activity_ms = 0;
  };

  // An intrusive list of pending queries ordered by deadline: everything in one list has
  // the same timeout, so appending keeps it sorted and the head is the next to expire.
  struct DeadlineList {
    uint64_t timeout_ms = 0;
    uint32_t head = kNone;
    uint32_t tail = kNone;
  };
  struct DeadlineLink {
    uint32_t list = kNone;  // which list, kNone when in none
    uint32_t prev = kNone;
    uint32_t next = kNone;
    uint64_t deadline_ms = 0;
  };

  struct PendingQuery {
    bool in_use = false;
    uint64_t generation = 0;
    ClientKind client_kind = ClientKind::udp;
    uint32_t udp_socket = 0;  // UdpBatchIo socket id of the listener the query came in on
    SocketAddress client_address;
    uint64_t tcp_client_id = 0;
    dns::QueryInfo info;
    std::vector<uint8_t> query;           // the client's query as received
    std::vector<uint8_t> upstream_query;  // what goes upstream (ID rewritten per attempt)
    size_t rule = 0;
    // Coalescing: a leader owns the upstream exchange; followers wait on it.
    bool leader = false;
    uint64_t question_key = 0;
    uint32_t leader_slot = kNone;    // for a follower
    uint32_t next_follower = kNone;  // singly linked list from the leader
    uint32_t follower_count = 0;
    // The current upstream attempt.
    uint32_t tried_mask = 0;
    size_t upstream = 0;
    bool attempt_active = false;
    uint16_t upstream_id = 0;
    int64_t upstream_socket = -1;  // UdpBatchIo socket id, or -1 when over TCP
    // Upstream over TCP: the client came over TCP, or a prefetch got a truncated UDP answer.
    bool over_tcp = false;
    uint64_t attempt_started_ns = 0;  // uv_hrtime(), for the upstream's latency
    DeadlineLink query_deadline;    // in query_deadlines_ (leaders only)
    DeadlineLink attempt_deadline;  // in one of attempt_deadlines_
  };

  struct UpstreamState {
    double smoothed_rtt_ms = 0;  // 0 = never measured
    uint32_t outstanding = 0;    // attempts of this worker waiting on it
  };

  // --- setup and teardown (dns_worker.cpp)
  void close_everything();
  void stop_listening();
  // Once listening stopped: publishes `drained` when no query and no TCP client is left.
  void note_if_drained() {
    if (listening_stopped_ && pending_count_ == 0 && tcp_clients_.empty()) drained_.store(true, std::memory_order_release);
  }
  static void on_udp_datagram(void* context, uint32_t socket_id, const sockaddr* from,
                              uint8_t* data, size_t length, bool truncated);
  static void on_udp_batch_end(void* context);

  // --- queries (dns_worker.cpp)
  void handle_query(ClientKind kind, uint32_t udp_socket, const SocketAddress& client,
                    uint64_t tcp_client_id, const uint8_t* data, size_t length);
  bool client_allowed(const SocketAddress& client) const;
  bool answer_self_check(ClientKind kind, uint32_t udp_socket, const SocketAddress& client,
                         uint64_t tcp_client_id, const uint8_t* data, const dns::QueryInfo& info);
  // Our own forwarding-loop probe came back (common/health/loop_probes.h): noted, answered.
  bool answer_loop_probe(ClientKind kind, uint32_t udp_socket, const SocketAddress& client,
                         uint64_t tcp_client_id, const uint8_t* data, const dns::QueryInfo& info);
  void reply_error(ClientKind kind, uint32_t udp_socket, const SocketAddress& client,
                   uint64_t tcp_client_id, const uint8_t* query, const dns::QueryInfo& info,
                   uint8_t rcode, dns::ExtendedError ede);
  void send_to_client(const PendingQuery& query, uint8_t* answer, size_t length);
  // Sends an answer that already has the client's ID and name spelling: over TCP as it is,
  // over UDP cut to what the client can take (TC set).
  void deliver(ClientKind kind, uint32_t udp_socket, const SocketAddress& client,
               uint64_t tcp_client_id, const dns::QueryInfo& info, uint8_t* answer, size_t length);
  // server.log_queries: one answer in N gets a log line (the branch is all it costs when 0).
  void maybe_log_query(ClientKind kind, const SocketAddress& client, const dns::QueryInfo& info,
                       const uint8_t* answer, size_t length) {
    if (log_queries_every_ != 0 && ++queries_since_logged_ >= log_queries_every_) {
      queries_since_logged_ = 0;
      log_query(kind, client, info, answer, length);
    }
  }
  void log_query(ClientKind kind, const SocketAddress& client, const dns::QueryInfo& info,
                 const uint8_t* answer, size_t length) const;

  // --- cache (dns_worker.cpp)
  bool cache_enabled_for(size_t rule) const { return cache_ != nullptr && config_->forward[rule].cache; }
  void start_prefetch(const uint8_t* data, size_t length, const dns::QueryInfo& info, size_t rule);
  // Answers the waiting client from a stale cache entry with EDE 3 (Stale Answer); false
  // when there is none (serve_stale off, nothing cached, or older than max_stale).
  bool send_stale(const PendingQuery& waiting);
  uint64_t question_key(const uint8_t* lower_name, const dns::QueryInfo& info, size_t rule,
                        ClientKind kind) const;
  bool same_question(const PendingQuery& a, const uint8_t* lower_name, const dns::QueryInfo& info,
                     size_t rule, ClientKind kind) const;

  // --- upstream attempts (dns_worker.cpp)
  bool start_attempt(uint32_t slot);
  size_t choose_upstream(PendingQuery& query);
  bool send_udp_attempt(uint32_t slot, const SocketAddress& upstream);
  void on_upstream_datagram(uint32_t socket_id, const sockaddr* from, uint8_t* data, size_t length);
  void upstream_answered(uint32_t slot, uint8_t* data, size_t length);
  void attempt_failed(uint32_t slot, const char* reason, dns::ExtendedError ede);
  void finish_with_servfail(uint32_t slot, dns::ExtendedError ede);
  void end_attempt(PendingQuery& query);
  void note_upstream_failure(const PendingQuery& query, const char* what);

  // --- upstream over TCP (worker_upstream_tcp.cpp)
  bool send_tcp_attempt(uint32_t slot, const SocketAddress& upstream);
  void cancel_tcp_attempt(uint32_t slot);
  static void on_upstream_tcp_result(void* context, uint64_t token, int status,
                                     const uint8_t* answer, size_t length);

  // --- pending table and deadlines (dns_worker.cpp)
  uint32_t allocate_slot();
  void release_slot(uint32_t slot);
  void link_deadline(uint32_t slot, DeadlineLink PendingQuery::*link, uint32_t list, uint64_t now);
  void unlink_deadline(uint32_t slot, DeadlineLink PendingQuery::*link);
  DeadlineList& list_of(const DeadlineLink& link);
  void arm_deadline_timer();
  static void on_deadline_timer(uv_timer_t* timer);
  static void on_flush_check(uv_check_t* check);
  static uint64_t udp_key(uint32_t socket_id, uint16_t id) {
    return (static_cast<uint64_t>(socket_id) << 16) | id;
  }
  uint64_t now() const { return uv_now(loop_.get_const()); }

  // --- client TCP connections (worker_tcp_clients.cpp)
  static void on_tcp_connection(uv_stream_t* server, int status);
  static void on_tcp_client_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void on_tcp_client_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void on_tcp_client_timer(uv_timer_t* timer);
  static bool tcp_client_may_read(const TcpClient& client);
  // A whole query (length prefix and message) is buffered, not yet started.
  static bool holds_complete_frame(const TcpClient& client);
  void process_tcp_frames(TcpClient& client);
  void schedule_tcp_client_service(TcpClient& client);
  void send_tcp_to_client(uint64_t tcp_client_id, const uint8_t* data, size_t length);
  void close_tcp_client(uint64_t id);
  // At max_tcp_clients: closes the connection idle longest that is owed nothing (no query
  // in flight, no answer unsent), so that a new client gets its place; false when every
  // connection is owed something.
  bool evict_idle_tcp_client();
  void tcp_query_finished(uint64_t tcp_client_id);

  unsigned index_;
  ConfigSnapshot config_;
  SharedUpstreamHealth upstream_health_;
  ZoneRouter router_;
  ProcessState* state_;
  ForwarderCounters* counters_;
  PacketCache* cache_;  // shared by every worker; nullptr when [cache] is disabled
  std::vector<ListenSocket> listen_sockets_;
  std::vector<ListenSocket> listening_fds_;
  uint32_t max_inflight_here_;
  uint32_t max_tcp_clients_here_;
  uint32_t log_queries_every_;
  uint32_t queries_since_logged_ = 0;

  EventLoop loop_;
  UvAsync stop_async_;
  UvAsync stop_listening_async_;
  bool listening_stopped_ = false;
  std::atomic<bool> drained_{false};
  UvTimer heartbeat_timer_;
  UvTimer deadline_timer_;
  UvCheck flush_check_;
  UdpBatchIo udp_;
  std::vector<uint32_t> listener_sockets_;  // UdpBatchIo ids of the client listeners
  std::vector<bool> is_upstream_socket_;    // by UdpBatchIo id
  std::vector<uint32_t> upstream_sockets_v4_;
  std::vector<uint32_t> upstream_sockets_v6_;
  std::vector<std::unique_ptr<TcpListener>> tcp_listeners_;
  std::unordered_map<uint64_t, std::unique_ptr<TcpClient>> tcp_clients_;
  uint64_t next_tcp_client_id_ = 1;
  std::unique_ptr<UpstreamTcpPool> upstream_tcp_;

  std::vector<PendingQuery> pending_;
  std::vector<uint32_t> free_slots_;
  uint32_t pending_count_ = 0;
  uint64_t next_generation_ = 1;
  FlatMap udp_waiting_;     // udp_key(socket, upstream ID) -> slot
  FlatMap in_flight_;       // question_key -> leader slot
  DeadlineList query_deadlines_;
  std::vector<DeadlineList> attempt_deadlines_;  // one per distinct attempt_timeout
  std::vector<uint32_t> rule_attempt_list_;      // [rule] -> index into attempt_deadlines_
  uint64_t armed_deadline_ = 0;

  std::vector<std::vector<UpstreamState>> upstream_state_;  // [rule][upstream]
  std::vector<uint32_t> max_outstanding_here_;              // [rule]
  std::vector<uint32_t> round_robin_next_;                  // [rule]
  SecureRandom random_;
  uint64_t question_seed_ = 0;  // keys in_flight_ hashing, per worker, unpredictable
  struct {
    LogRateLimit upstream_timeout, upstream_error, mismatched, malformed, refused, overload;
  } log_limits_;
  alignas(16) uint8_t tcp_receive_buffer_[65536];
  uint8_t scratch_[dns::kMaxMessageSize];      // a TCP query or a TCP answer being handled
  uint8_t answer_copy_[dns::kMaxMessageSize];  // one follower's copy of a shared answer, or a cache hit
};

}  // namespace hubdns
