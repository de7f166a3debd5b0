// Reused, pipelined TCP connections from one DNS worker to its upstream DNS servers
// (RFC 7766 §6.2.1). The pool owns its connections (libuv TCP handles with their read and
// write buffers and a table of the DNS IDs outstanding on each), one copy of every query
// in flight (so a query can be resent once when a reused connection turns out to have
// been closed by the upstream), and two timers. One pool per DNS worker: it is used only on
// the thread that runs that worker's loop (every method, and the callback, run there;
// nothing is locked).
//
// Lifetime: a connection's memory is freed in its TCP handle's close callback, so libuv's
// late callbacks (connect/write with UV_ECANCELED) always find it; after the pool closed a
// connection (close_all(), idle close, death, the pool's destructor) those callbacks only
// release memory. The pool itself must be destroyed before the loop is closed, and not from
// inside its own callback (close_all() from inside the callback is fine).
//
// Behaviour: a query goes to the least loaded open connection to its upstream that has
// room, else to a new one (up to the maximum; writes wait until it is connected). Answers
// are matched by DNS ID, in any order. When a connection dies (EOF, reset, write error),
// a query that was sent on an already established connection and of whose answer no byte
// had arrived is resent once on a fresh connection (the upstream probably closed it as
// idle while the query was on its way, as dnsdist also assumes); the others fail with the
// libuv error. A frame shorter than a DNS header fails the connection's queries with
// UV_EPROTO; empty frames and unknown IDs are dropped and counted.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/net/address.h"
#include "common/uv/handle.h"

namespace hubdns {

struct UpstreamTcpPoolOptions {
  unsigned max_connections_per_upstream = 4;
  unsigned max_pipelined_per_connection = 64;  // outstanding queries on one connection
  uint64_t idle_close_ms = 10000;              // close a connection idle this long; 0: never
};

// status: 0 with the answer bytes (the pool matched the DNS ID to the token; the caller
// still checks the question), or a negative libuv error code (connect failed, connection
// reset/closed before the answer, upstream sent garbage framing) with answer == nullptr.
// The answer points into the connection's receive buffer: it is valid only during the
// call (copy it out; rewriting it in place is allowed). The callback must not throw (it
// runs inside libuv callbacks); it may call send(), cancel() and close_all(), but must not
// destroy the pool.
using UpstreamTcpCallback = void (*)(void* context, uint64_t token, int status,
                                     const uint8_t* answer, size_t length);

// Plain counters, read and written on the loop thread only (the worker copies them into
// its atomic counters if it wants them shared).
struct UpstreamTcpPoolCounters {
  uint64_t connections_opened = 0;
  uint64_t queries_sent = 0;        // accepted by send()
  uint64_t answers = 0;             // delivered with status 0
  uint64_t reconnect_retries = 0;   // queries resent on a fresh connection
  uint64_t errors = 0;              // callbacks delivered with an error status
  uint64_t connection_failures = 0; // connect failed, reset, EOF with queries outstanding, bad framing
  uint64_t unknown_answers = 0;     // frames whose ID matched nothing on the connection, empty frames
  uint64_t late_answers = 0;        // answers to cancelled queries (dropped)
  uint64_t idle_closes = 0;         // connections closed by us: idle, or stuck full of cancelled queries
};

namespace detail {

// Open-addressing hash table from a small integer key to a uint32_t index (linear probing,
// backward-shift deletion, no tombstones). Sized up front; grows only when it is more than
// half full, so once warmed up neither insert nor erase allocates.
template <typename Key>
class IndexTable {
 public:
  static constexpr uint32_t kNone = 0xFFFFFFFFu;

  void reserve(size_t count) {
    size_t capacity = 8;
    while (capacity < count * 2) capacity <<= 1;
    if (capacity > slots_.size()) rehash(capacity);
  }
  size_t size() const { return size_; }

  uint32_t find(Key key) const {
    if (size_ == 0) return kNone;
    for (size_t i = bucket(key);; i = (i + 1) & mask_) {
      if (slots_[i].value == kNone) return kNone;
      if (slots_[i].key == key) return slots_[i].value;
    }
  }

  // The key must not be present.
  void insert(Key key, uint32_t value) {
    if ((size_ + 1) * 2 > slots_.size()) rehash(slots_.empty() ? 16 : slots_.size() * 2);
    size_t i = bucket(key);
    while (slots_[i].value != kNone) i = (i + 1) & mask_;
    slots_[i] = Slot{key, value};
    ++size_;
  }

  bool erase(Key key) {
    if (size_ == 0) return false;
    size_t hole = bucket(key);
    for (;; hole = (hole + 1) & mask_) {
      if (slots_[hole].value == kNone) return false;
      if (slots_[hole].key == key) break;
    }
    // Pull later members of the probe run back into the hole, unless that would move one
    // before its home bucket.
    for (size_t j = (hole + 1) & mask_; slots_[j].value != kNone; j = (j + 1) & mask_) {
      size_t home = bucket(slots_[j].key);
      if (((j - home) & mask_) >= ((j - hole) & mask_)) {
        slots_[hole] = slots_[j];
        hole = j;
      }
    }
    slots_[hole].value = kNone;
    --size_;
    return true;
  }

  template <typename Fn>
  void for_each(Fn&& fn) const {
    for (const Slot& slot : slots_) {
      if (slot.value != kNone) fn(slot.key, slot.value);
    }
  }

  void clear() {
    for (Slot& slot : slots_) slot.value = kNone;
    size_ = 0;
  }

 private:
  struct Slot {
    Key key{};
    uint32_t value = kNone;
  };

  size_t bucket(Key key) const {
    // splitmix64's finaliser: tokens are often sequential, IDs random; both spread well.
    uint64_t x = static_cast<uint64_t>(key);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return static_cast<size_t>(x) & mask_;
  }

  void rehash(size_t capacity) {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(capacity, Slot{});
    mask_ = capacity - 1;
    size_ = 0;
    for (const Slot& slot : old) {
      if (slot.value != kNone) insert(slot.key, slot.value);
    }
  }

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

}  // namespace detail

class UpstreamTcpPool {
 public:
  enum class SendResult {
    accepted,     // the callback will fire exactly once (unless cancel(token) comes first)
    id_in_use,    // this DNS ID is outstanding to this upstream already: pick another ID
    token_in_use, // this token is outstanding already
    full,         // every connection to the upstream is full and max connections reached
    bad_query,    // shorter than a DNS header or longer than 65535 bytes
  };

  UpstreamTcpPool(uv_loop_t* loop, UpstreamTcpPoolOptions options, UpstreamTcpCallback callback,
                  void* context);
  ~UpstreamTcpPool();  // closes everything; no callback is called from the destructor

  UpstreamTcpPool(const UpstreamTcpPool&) = delete;
  UpstreamTcpPool& operator=(const UpstreamTcpPool&) = delete;
  UpstreamTcpPool(UpstreamTcpPool&&) = delete;
  UpstreamTcpPool& operator=(UpstreamTcpPool&&) = delete;

  // Sends one query (without the 2-byte length prefix; the pool frames it and keeps a copy,
  // the caller's buffer is not used after the call). Its DNS ID must not be outstanding
  // already to this upstream (the pool returns false if it is, and when it cannot take the
  // query at all: every connection full and max connections reached). The callback fires
  // exactly once per accepted token, unless cancel(token) came first. It is never called
  // from inside send(): errors are deferred to the loop (a zero timer).
  bool send(const SocketAddress& upstream, uint64_t token, const uint8_t* query, size_t length) {
    return send_query(upstream, token, query, length) == SendResult::accepted;
  }
  // The same, saying why a query was refused.
  SendResult send_query(const SocketAddress& upstream, uint64_t token, const uint8_t* query,
                        size_t length);

  // The caller gave up (attempt timeout): no callback for this token. The query keeps its
  // ID on its connection until the late answer arrives (dropped) or the connection closes,
  // so an ID is never reused on a connection while the upstream may still answer it.
  void cancel(uint64_t token);

  // Stops everything (worker shutdown): closes every connection and forgets every query;
  // pending tokens get no callback. The pool stays usable (a later send() reconnects).
  void close_all();

  size_t open_connections() const { return open_.size(); }
  size_t outstanding() const { return tokens_.size(); }  // accepted tokens not yet called back
  const UpstreamTcpPoolCounters& counters() const { return counters_; }

 private:
  struct Connection;  // defined in the .cpp; freed in its TCP handle's close callback

  struct QueryRecord {
    enum class State : uint8_t {
      free,
      live,       // on a connection, waiting for its answer
      abandoned,  // cancelled, still holding its ID on its connection
      failed,     // waiting for its error callback (deferred_)
    };
    State state = State::free;
    bool reused = false;   // sent on a connection that was already established
    bool retried = false;  // already resent once after a connection died
    uint16_t id = 0;
    uint32_t generation = 0;  // bumped on release, so deferred_ entries can go stale
    int status = 0;           // for failed
    uint64_t token = 0;
    Connection* connection = nullptr;
    std::vector<uint8_t> framed;  // length prefix + query; capacity kept across reuse
  };

  struct DeferredFailure {
    uint32_t record = 0;
    uint32_t generation = 0;
  };

  // libuv callbacks: noexcept, so nothing can unwind through libuv (an exception, e.g.
  // bad_alloc, terminates instead).
  static void on_connected(uv_connect_t* request, int status) noexcept;
  static void on_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf) noexcept;
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) noexcept;
  static void on_written(uv_write_t* request, int status) noexcept;
  static void on_closed(uv_handle_t* handle) noexcept;
  static void on_defer_timer(uv_timer_t* timer) noexcept;
  static void on_idle_timer(uv_timer_t* timer) noexcept;

  Connection* open_connection(const SocketAddress& upstream, int* error);
  void attach(Connection* connection, uint32_t record);
  void start_write(Connection* connection);
  void read_frames(Connection* connection);
  // Closes a connection. status 0: quietly (close_all, idle), its queries are forgotten;
  // status < 0: it died, its queries are retried once (see the .cpp) or fail with status.
  void retire_connection(Connection* connection, int status);
  void became_idle(Connection* connection);
  void check_idle();

  uint32_t allocate_record(uint64_t token, const uint8_t* query, size_t length);
  void release_record(uint32_t record);
  void fail_record(uint32_t record, int status);
  void flush_failures();

  uv_loop_t* loop_;
  UpstreamTcpPoolOptions options_;
  UpstreamTcpCallback callback_;
  void* context_;

  std::vector<Connection*> open_;  // connecting or connected, not closing
  std::vector<QueryRecord> records_;
  std::vector<uint32_t> free_records_;
  detail::IndexTable<uint64_t> tokens_;  // token -> record, for live and failed records
  std::vector<DeferredFailure> deferred_;
  std::vector<DeferredFailure> flushing_;
  std::vector<uint32_t> scratch_;  // retire_connection's list of records
  UvTimer defer_timer_;
  UvTimer idle_timer_;
  UpstreamTcpPoolCounters counters_;
};

}  // namespace hubdns
