#include "forwarder/upstream_tcp_pool.h"

#include <algorithm>
#include <cassert>
#include <cstring>

#include "common/dns/message.h"

namespace hubdns {

namespace {

constexpr size_t kLengthPrefix = 2;
constexpr size_t kInitialReceiveBuffer = 4096;
// Free space offered to every read; a partially received frame larger than this gets a
// buffer that holds it whole, so a large answer is read in few calls.
constexpr size_t kReadRoom = 2048;
constexpr size_t kInitialWriteBuffer = 512;

}  // namespace

// One TCP connection to one upstream. Its memory (handle and requests included) is freed
// only in the handle's close callback: libuv calls the connect and write callbacks (with
// UV_ECANCELED) before that, so they always find a live object, and `pool == nullptr` tells
// them the pool is done with it. Not a UvHandle: the requests must live exactly as long as
// the handle, which is simplest when they are all one allocation.
struct UpstreamTcpPool::Connection {
  Connection(UpstreamTcpPool* owner, const SocketAddress& address, unsigned max_pipelined)
      : pool(owner), upstream(address) {
    ids.reserve(max_pipelined);
    receive.resize(kInitialReceiveBuffer);
    pending_writes.reserve(kInitialWriteBuffer);
    writing.reserve(kInitialWriteBuffer);
  }

  uv_handle_t* handle() { return reinterpret_cast<uv_handle_t*>(&tcp); }
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp); }

  UpstreamTcpPool* pool;  // nullptr once closing: callbacks then only release memory
  SocketAddress upstream;
  uv_tcp_t tcp{};
  uv_connect_t connect_request{};
  uv_write_t write_request{};  // one write at a time; queries sent meanwhile wait in pending_writes
  bool connected = false;
  bool write_in_flight = false;
  unsigned in_use = 0;  // IDs held: live and abandoned queries
  unsigned live = 0;    // queries someone still waits for
  uint64_t last_activity_ms = 0;  // loop time; meaningful while live == 0
  detail::IndexTable<uint16_t> ids;  // DNS ID -> record
  // Framed queries not yet handed to libuv, and the bytes of the write in flight. Swapped,
  // never freed, so a warmed-up connection writes without allocating.
  std::vector<uint8_t> pending_writes;
  std::vector<uint8_t> writing;
  // Received bytes: [receive_begin, receive_end) is not yet consumed (at most one partial
  // frame after read_frames()).
  std::vector<uint8_t> receive;
  size_t receive_begin = 0;
  size_t receive_end = 0;
};

UpstreamTcpPool::UpstreamTcpPool(uv_loop_t* loop, UpstreamTcpPoolOptions options,
                                 UpstreamTcpCallback callback, void* context)
    : loop_(loop), options_(options), callback_(callback), context_(context) {
  options_.max_connections_per_upstream = std::max(1u, options_.max_connections_per_upstream);
  // IDs are 16 bits: more than 65536 queries cannot be told apart on one connection.
  options_.max_pipelined_per_connection =
      std::clamp(options_.max_pipelined_per_connection, 1u, 65536u);
  // uv_timer_init cannot fail (it only fills in the handle).
  [[maybe_unused]] int rc = defer_timer_.init(uv_timer_init, loop_);
  assert(rc == 0);
  rc = idle_timer_.init(uv_timer_init, loop_);
  assert(rc == 0);
  defer_timer_->data = this;
  idle_timer_->data = this;
  tokens_.reserve(options_.max_pipelined_per_connection);
  deferred_.reserve(options_.max_pipelined_per_connection);
  flushing_.reserve(options_.max_pipelined_per_connection);
  scratch_.reserve(options_.max_pipelined_per_connection);
}

UpstreamTcpPool::~UpstreamTcpPool() {
  close_all();
  // defer_timer_ and idle_timer_ close themselves (UvHandle), clearing their data first.
}

UpstreamTcpPool::SendResult UpstreamTcpPool::send_query(const SocketAddress& upstream,
                                                        uint64_t token, const uint8_t* query,
                                                        size_t length) {
  if (query == nullptr || length < dns::kHeaderSize || length > dns::kMaxMessageSize) {
    return SendResult::bad_query;
  }
  if (tokens_.find(token) != detail::IndexTable<uint64_t>::kNone) return SendResult::token_in_use;
  uint16_t id = dns::message_id(query);

  // The least loaded connection to this upstream that has room and does not hold the ID
  // (a cancelled query keeps holding its ID: its answer may still come).
  Connection* best = nullptr;
  unsigned connections = 0;
  for (Connection* connection : open_) {
    if (!(connection->upstream == upstream)) continue;
    ++connections;
    uint32_t held = connection->ids.find(id);
    if (held != detail::IndexTable<uint16_t>::kNone) {
      if (records_[held].state == QueryRecord::State::live) return SendResult::id_in_use;
      continue;
    }
    if (connection->in_use >= options_.max_pipelined_per_connection) continue;
    if (best == nullptr || connection->in_use < best->in_use) best = connection;
  }
  int error = 0;
  if (best == nullptr) {
    if (connections >= options_.max_connections_per_upstream) return SendResult::full;
    best = open_connection(upstream, &error);
  }
  uint32_t record = allocate_record(token, query, length);
  ++counters_.queries_sent;
  if (best == nullptr) {
    fail_record(record, error);  // reported from the loop, never from inside send()
  } else {
    attach(best, record);
  }
  return SendResult::accepted;
}

void UpstreamTcpPool::cancel(uint64_t token) {
  uint32_t index = tokens_.find(token);
  if (index == detail::IndexTable<uint64_t>::kNone) return;
  QueryRecord& record = records_[index];
  if (record.state == QueryRecord::State::failed) {
    release_record(index);  // its deferred entry goes stale: no callback
    return;
  }
  tokens_.erase(token);
  record.state = QueryRecord::State::abandoned;
  Connection* connection = record.connection;
  --connection->live;
  if (connection->live > 0) return;
  if (connection->in_use >= options_.max_pipelined_per_connection) {
    // Every ID on it belongs to a query the upstream did not answer in time; waiting for
    // the idle timer would keep the slots blocked, so start afresh.
    ++counters_.idle_closes;
    retire_connection(connection, 0);
  } else {
    became_idle(connection);
  }
}

void UpstreamTcpPool::close_all() {
  while (!open_.empty()) retire_connection(open_.back(), 0);
  auto forget = [this](const DeferredFailure& entry) {
    const QueryRecord& record = records_[entry.record];
    if (record.generation == entry.generation && record.state == QueryRecord::State::failed) {
      release_record(entry.record);
    }
  };
  for (const DeferredFailure& entry : deferred_) forget(entry);
  deferred_.clear();
  // When called from inside flush_failures(), the entries it has not reached yet go stale
  // here and it skips them.
  for (const DeferredFailure& entry : flushing_) forget(entry);
  if (defer_timer_.initialized()) uv_timer_stop(defer_timer_.get());
  if (idle_timer_.initialized()) uv_timer_stop(idle_timer_.get());
  assert(tokens_.size() == 0);
}

UpstreamTcpPool::Connection* UpstreamTcpPool::open_connection(const SocketAddress& upstream,
                                                              int* error) {
  auto* connection = new Connection(this, upstream, options_.max_pipelined_per_connection);
  int rc = uv_tcp_init(loop_, &connection->tcp);
  if (rc < 0) {
    delete connection;  // never registered with the loop: no uv_close
    *error = rc;
    return nullptr;
  }
  connection->tcp.data = connection;
  connection->connect_request.data = connection;
  connection->write_request.data = connection;
  rc = uv_tcp_connect(&connection->connect_request, &connection->tcp, upstream.sockaddr_ptr(),
                      on_connected);
  if (rc < 0) {
    connection->pool = nullptr;
    uv_close(connection->handle(), on_closed);
    *error = rc;
    return nullptr;
  }
  connection->last_activity_ms = uv_now(loop_);
  open_.push_back(connection);
  ++counters_.connections_opened;
  return connection;
}

void UpstreamTcpPool::attach(Connection* connection, uint32_t index) {
  QueryRecord& record = records_[index];
  record.state = QueryRecord::State::live;
  record.connection = connection;
  // A query sent on a connection established earlier may meet the upstream's idle close
  // (it closed while the query was on its way): such a query is resent once.
  record.reused = connection->connected;
  connection->ids.insert(record.id, index);
  ++connection->in_use;
  ++connection->live;
  connection->pending_writes.insert(connection->pending_writes.end(), record.framed.begin(),
                                    record.framed.end());
  // Writes wait for the connection; while connecting (always so for the fresh connection of
  // a retry) nothing is written here, so this never re-enters retire_connection() then.
  if (connection->connected && !connection->write_in_flight) start_write(connection);
}

void UpstreamTcpPool::start_write(Connection* connection) {
  connection->writing.swap(connection->pending_writes);
  connection->pending_writes.clear();
  uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(connection->writing.data()),
                             static_cast<unsigned>(connection->writing.size()));
  int rc = uv_write(&connection->write_request, connection->stream(), &buf, 1, on_written);
  if (rc < 0) {
    retire_connection(connection, rc);
    return;
  }
  connection->write_in_flight = true;
}

void UpstreamTcpPool::on_connected(uv_connect_t* request, int status) noexcept {
  auto* connection = static_cast<Connection*>(request->data);
  UpstreamTcpPool* pool = connection->pool;
  if (pool == nullptr) return;  // closed meanwhile (UV_ECANCELED)
  if (status < 0) {
    pool->retire_connection(connection, status);
    return;
  }
  connection->connected = true;
  // Pipelined queries must not wait for Nagle. A failure here only costs latency.
  uv_tcp_nodelay(&connection->tcp, 1);
  int rc = uv_read_start(connection->stream(), on_alloc, on_read);
  if (rc < 0) {
    pool->retire_connection(connection, rc);
    return;
  }
  if (!connection->pending_writes.empty()) pool->start_write(connection);
}

void UpstreamTcpPool::on_written(uv_write_t* request, int status) noexcept {
  auto* connection = static_cast<Connection*>(request->data);
  connection->write_in_flight = false;
  UpstreamTcpPool* pool = connection->pool;
  if (pool == nullptr) return;  // closed meanwhile (UV_ECANCELED)
  if (status < 0) {
    pool->retire_connection(connection, status);
    return;
  }
  if (!connection->pending_writes.empty()) pool->start_write(connection);
}

void UpstreamTcpPool::on_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf) noexcept {
  auto* connection = static_cast<Connection*>(handle->data);
  if (connection == nullptr || connection->pool == nullptr) {
    *buf = uv_buf_init(nullptr, 0);
    return;
  }
  std::vector<uint8_t>& receive = connection->receive;
  // Move the unconsumed partial frame to the front, then make room for it whole plus more.
  if (connection->receive_begin > 0) {
    size_t unconsumed = connection->receive_end - connection->receive_begin;
    std::memmove(receive.data(), receive.data() + connection->receive_begin, unconsumed);
    connection->receive_begin = 0;
    connection->receive_end = unconsumed;
  }
  size_t wanted = connection->receive_end + kReadRoom;
  if (connection->receive_end >= kLengthPrefix) {
    wanted = std::max(wanted, kLengthPrefix + dns::read_u16(receive.data()));
  }
  if (receive.size() < wanted) receive.resize(wanted);
  *buf = uv_buf_init(reinterpret_cast<char*>(receive.data() + connection->receive_end),
                     static_cast<unsigned>(receive.size() - connection->receive_end));
}

void UpstreamTcpPool::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t*) noexcept {
  auto* connection = static_cast<Connection*>(stream->data);
  if (connection == nullptr || connection->pool == nullptr) return;
  UpstreamTcpPool* pool = connection->pool;
  if (nread < 0) {
    pool->retire_connection(connection, static_cast<int>(nread));  // UV_EOF, UV_ECONNRESET, ...
    return;
  }
  if (nread == 0) return;  // EAGAIN
  connection->receive_end += static_cast<size_t>(nread);
  connection->last_activity_ms = uv_now(pool->loop_);
  pool->read_frames(connection);
}

void UpstreamTcpPool::read_frames(Connection* connection) {
  while (connection->receive_end - connection->receive_begin >= kLengthPrefix) {
    const uint8_t* frame = connection->receive.data() + connection->receive_begin;
    size_t length = dns::read_u16(frame);
    if (length == 0) {
      connection->receive_begin += kLengthPrefix;
      ++counters_.unknown_answers;
      continue;
    }
    if (length < dns::kHeaderSize) {
      // Not a DNS message: the stream cannot be trusted to be in frame any more.
      retire_connection(connection, UV_EPROTO);
      return;
    }
    if (connection->receive_end - connection->receive_begin < kLengthPrefix + length) return;
    // Consume the frame before anything else runs, so the buffer state is right even if the
    // callback below closes this connection.
    connection->receive_begin += kLengthPrefix + length;
    const uint8_t* answer = frame + kLengthPrefix;
    uint16_t id = dns::message_id(answer);
    uint32_t index = connection->ids.find(id);
    if (index == detail::IndexTable<uint16_t>::kNone) {
      ++counters_.unknown_answers;
      continue;
    }
    connection->ids.erase(id);
    --connection->in_use;
    if (records_[index].state == QueryRecord::State::abandoned) {
      ++counters_.late_answers;
      release_record(index);
      continue;
    }
    uint64_t token = records_[index].token;
    release_record(index);
    --connection->live;
    ++counters_.answers;
    if (connection->live == 0) became_idle(connection);
    callback_(context_, token, 0, answer, length);
    // The callback may have closed this connection (close_all) or destroyed the pool; the
    // connection's memory lives until its close callback, so this check is safe.
    if (connection->pool == nullptr) return;
  }
}

void UpstreamTcpPool::retire_connection(Connection* connection, int status) {
  auto position = std::find(open_.begin(), open_.end(), connection);
  assert(position != open_.end());
  *position = open_.back();
  open_.pop_back();

  // A query whose answer had begun to arrive was processed by the upstream: this is not the
  // idle-close race, so it is not resent. When fewer than 4 bytes of the next frame arrived
  // its ID is unknown, so then nothing is resent.
  size_t buffered = connection->receive_end - connection->receive_begin;
  const uint8_t* partial = connection->receive.data() + connection->receive_begin;
  bool answer_began_unknown = buffered > 0 && buffered < kLengthPrefix + 2;
  bool answer_began_known = buffered >= kLengthPrefix + 2;
  uint16_t answer_began_id = answer_began_known ? dns::read_u16(partial + kLengthPrefix) : 0;
  if (status < 0 && connection->live > 0) ++counters_.connection_failures;

  scratch_.clear();
  connection->ids.for_each([this](uint16_t, uint32_t index) { scratch_.push_back(index); });
  connection->ids.clear();
  connection->in_use = 0;
  connection->live = 0;
  SocketAddress upstream = connection->upstream;
  connection->pool = nullptr;
  uv_close(connection->handle(), on_closed);  // frees it; reading stops now

  size_t retries = 0;
  for (uint32_t index : scratch_) {
    QueryRecord& record = records_[index];
    record.connection = nullptr;
    if (record.state == QueryRecord::State::abandoned || status == 0) {
      release_record(index);
      continue;
    }
    bool resend = status != UV_EPROTO && record.reused && !record.retried &&
                  !answer_began_unknown && !(answer_began_known && record.id == answer_began_id);
    if (resend) {
      scratch_[retries++] = index;  // compacts in place: retries never passes the loop index
    } else {
      fail_record(index, status);
    }
  }
  scratch_.resize(retries);
  if (retries == 0) return;

  // A fresh connection, not another pooled one: those may be just as stale. The dead one is
  // out of open_, so this stays within max_connections_per_upstream. The queries came from
  // one connection, so their IDs are distinct and they fit its pipeline.
  int error = 0;
  Connection* fresh = open_connection(upstream, &error);
  for (uint32_t index : scratch_) {
    records_[index].retried = true;
    if (fresh == nullptr) {
      fail_record(index, error);
      continue;
    }
    ++counters_.reconnect_retries;
    attach(fresh, index);
  }
}

void UpstreamTcpPool::on_closed(uv_handle_t* handle) noexcept {
  delete static_cast<Connection*>(handle->data);
}

void UpstreamTcpPool::became_idle(Connection* connection) {
  connection->last_activity_ms = uv_now(loop_);
  if (options_.idle_close_ms == 0) return;
  // Every idle deadline is "became idle + idle_close_ms", so one already armed is never
  // later than this one; check_idle() re-arms for the rest.
  if (!uv_is_active(idle_timer_.as_handle())) {
    uv_timer_start(idle_timer_.get(), on_idle_timer, options_.idle_close_ms, 0);
  }
}

void UpstreamTcpPool::on_idle_timer(uv_timer_t* timer) noexcept {
  auto* pool = static_cast<UpstreamTcpPool*>(timer->data);
  if (pool != nullptr) pool->check_idle();
}

void UpstreamTcpPool::check_idle() {
  uint64_t now = uv_now(loop_);
  uint64_t next = UINT64_MAX;
  // Backwards: retire_connection() moves the last element into the removed one's place,
  // and that one has been looked at already.
  for (size_t i = open_.size(); i-- > 0;) {
    Connection* connection = open_[i];
    if (connection->live > 0) continue;
    uint64_t due = connection->last_activity_ms + options_.idle_close_ms;
    if (due <= now) {
      ++counters_.idle_closes;
      retire_connection(connection, 0);
    } else {
      next = std::min(next, due);
    }
  }
  if (next != UINT64_MAX) uv_timer_start(idle_timer_.get(), on_idle_timer, next - now, 0);
}

uint32_t UpstreamTcpPool::allocate_record(uint64_t token, const uint8_t* query, size_t length) {
  uint32_t index = 0;
  if (!free_records_.empty()) {
    index = free_records_.back();
    free_records_.pop_back();
  } else {
    index = static_cast<uint32_t>(records_.size());
    records_.emplace_back();
  }
  QueryRecord& record = records_[index];
  record.state = QueryRecord::State::live;
  record.reused = false;
  record.retried = false;
  record.id = dns::message_id(query);
  record.status = 0;
  record.token = token;
  record.connection = nullptr;
  record.framed.resize(kLengthPrefix + length);  // keeps capacity: no allocation once warm
  dns::write_u16(record.framed.data(), static_cast<uint16_t>(length));
  std::memcpy(record.framed.data() + kLengthPrefix, query, length);
  tokens_.insert(token, index);
  return index;
}

void UpstreamTcpPool::release_record(uint32_t index) {
  QueryRecord& record = records_[index];
  if (record.state == QueryRecord::State::live || record.state == QueryRecord::State::failed) {
    tokens_.erase(record.token);
  }
  record.state = QueryRecord::State::free;
  record.connection = nullptr;
  ++record.generation;
  free_records_.push_back(index);
}

void UpstreamTcpPool::fail_record(uint32_t index, int status) {
  QueryRecord& record = records_[index];
  record.state = QueryRecord::State::failed;
  record.status = status;
  record.connection = nullptr;
  deferred_.push_back(DeferredFailure{index, record.generation});
  if (!uv_is_active(defer_timer_.as_handle())) {
    uv_timer_start(defer_timer_.get(), on_defer_timer, 0, 0);
  }
}

void UpstreamTcpPool::on_defer_timer(uv_timer_t* timer) noexcept {
  auto* pool = static_cast<UpstreamTcpPool*>(timer->data);
  if (pool != nullptr) pool->flush_failures();
}

void UpstreamTcpPool::flush_failures() {
  // Callbacks may send (new failures go to deferred_ and the next timer turn), cancel
  // (the entry goes stale) or close_all (every entry goes stale).
  flushing_.swap(deferred_);
  for (size_t i = 0; i < flushing_.size(); ++i) {
    DeferredFailure entry = flushing_[i];
    const QueryRecord& record = records_[entry.record];
    if (record.generation != entry.generation || record.state != QueryRecord::State::failed) {
      continue;
    }
    uint64_t token = record.token;
    int status = record.status;
    release_record(entry.record);
    ++counters_.errors;
    callback_(context_, token, status, nullptr, 0);
  }
  flushing_.clear();
}

}  // namespace hubdns
