// Client TCP connections of a DNS worker (RFC 7766): several queries per connection,
// answers in any order, flow control so a client that does not read cannot make the
// worker buffer without bound, idle timeout. Part of DnsWorkerLoop (dns_worker_loop.h);
// runs on the worker's thread only.
#include <cstdint>
#include <cstring>

#include "common/util/clock.h"
#include "forwarder/dns_worker_loop.h"

namespace hubdns {

namespace {

// Per TCP client: beyond these, reading pauses until answers drain.
constexpr unsigned kMaxQueriesPerTcpClient = 64;
constexpr size_t kMaxUnsentBytesPerTcpClient = 256 * 1024;

// A write request that owns its bytes; freed in its callback whatever the status.
struct OwnedWrite {
  uv_write_t request{};
  std::vector<uint8_t> bytes;
};

}  // namespace

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
  if (self->tcp_clients_.size() >= self->max_tcp_clients_here_ && !self->evict_idle_tcp_client()) {
    self->counters_->tcp_clients_rejected.fetch_add(1, std::memory_order_relaxed);
    return;  // the client's destructor closes the accepted connection
  }
  if (client->timer.init(uv_timer_init, self->loop_.get()) != 0) return;
  client->timer->data = client.get();
  uv_tcp_nodelay(client->tcp.get(), 1);
  if (uv_read_start(client->tcp.as<uv_stream_t>(), on_tcp_client_alloc, on_tcp_client_read) != 0) {
    return;
  }
  client->reading = true;
  client->last_activity_ms = monotonic_ms();
  uv_timer_start(client->timer.get(), on_tcp_client_timer,
                 static_cast<uint64_t>(self->config_->server.tcp_idle_timeout.count()), 0);
  uint64_t id = client->id;
  self->tcp_clients_.emplace(id, std::move(client));
  self->counters_->tcp_clients_opened.fetch_add(1, std::memory_order_relaxed);
}

bool DnsWorkerLoop::tcp_client_may_read(const TcpClient& client) {
  return !client.close_when_idle && client.queries_in_flight < kMaxQueriesPerTcpClient &&
         client.unsent_bytes < kMaxUnsentBytesPerTcpClient;
}

void DnsWorkerLoop::schedule_tcp_client_service(TcpClient& client) {
  // Through the client's timer, so whoever calls this never finds its client destroyed
  // under it (never destroy an owner inside its own callback frame).
  uv_timer_start(client.timer.get(), on_tcp_client_timer, 0, 0);
}

// The client's one timer: idle timeout, deferred close, and resuming a paused reader.
void DnsWorkerLoop::on_tcp_client_timer(uv_timer_t* timer) {
  auto* client = static_cast<TcpClient*>(timer->data);
  if (client == nullptr) return;
  DnsWorkerLoop* self = client->worker;
  if (client->close_when_idle) {
    // No more reads, but complete queries already received (a pipeline paused at the
    // in-flight limit) are still answered, then the connection closes. Otherwise
    // release_slot or the last write callback schedules this again.
    self->process_tcp_frames(*client);
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
  uv_timer_start(client->timer.get(), on_tcp_client_timer, idle < timeout ? timeout - idle : timeout, 0);
}

void DnsWorkerLoop::on_tcp_client_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  auto* client = static_cast<TcpClient*>(handle->data);
  // Reads are consumed before the next one, so the worker's one buffer serves every client.
  *buf = client ? uv_buf_init(reinterpret_cast<char*>(client->worker->tcp_receive_buffer_),
                              sizeof client->worker->tcp_receive_buffer_)
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
  while (client.received.size() - consumed >= kTcpLengthPrefix && !client.write_failed &&
         client.queries_in_flight < kMaxQueriesPerTcpClient &&
         client.unsent_bytes < kMaxUnsentBytesPerTcpClient) {
    size_t length = dns::read_u16(client.received.data() + consumed);
    if (client.received.size() - consumed - kTcpLengthPrefix < length) break;
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

bool DnsWorkerLoop::holds_complete_frame(const TcpClient& client) {
  return client.received.size() >= kTcpLengthPrefix &&
         client.received.size() - kTcpLengthPrefix >= dns::read_u16(client.received.data());
}

bool DnsWorkerLoop::evict_idle_tcp_client() {
  // RFC 7766 §6.2.3 lets a server under pressure close idle connections. Without this, a
  // few hundred connections that send nothing (or dribble a partial frame) would hold
  // every place until their idle timeout, and each new legitimate client would be turned
  // away; with it they are the ones to go. A linear scan: it runs only at the limit, and
  // the limit per worker is small.
  uint64_t victim = 0;
  uint64_t oldest = UINT64_MAX;
  for (const auto& [id, client] : tcp_clients_) {
    if (client->queries_in_flight != 0 || client->pending_writes != 0 || client->close_when_idle) continue;
    // Paused at its in-flight or unsent limit, or holding a complete query not started
    // yet: owed answers, just not begun (a partial frame, as a slow-loris sends, is not).
    if (!client->reading || holds_complete_frame(*client)) continue;
    if (client->last_activity_ms < oldest) {
      oldest = client->last_activity_ms;
      victim = id;
    }
  }
  if (oldest == UINT64_MAX) return false;
  counters_->tcp_clients_evicted.fetch_add(1, std::memory_order_relaxed);
  close_tcp_client(victim);
  return true;
}

void DnsWorkerLoop::close_tcp_client(uint64_t id) {
  // Destroying the client closes its handles; libuv frees them in their close callbacks.
  if (tcp_clients_.erase(id) != 0) counters_->tcp_clients_closed.fetch_add(1, std::memory_order_relaxed);
  if (listening_stopped_) note_if_drained();
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
                      if (status < 0) c->close_when_idle = c->write_failed = true;
                      bool owes_nothing = c->queries_in_flight == 0 && c->pending_writes == 0;
                      if ((c->close_when_idle && owes_nothing) || (!c->close_when_idle && !c->reading)) {
                        c->worker->schedule_tcp_client_service(*c);
                      }
                    });
  if (rc != 0) {
    delete write;
    client.close_when_idle = client.write_failed = true;
    schedule_tcp_client_service(client);
    return;
  }
  client.pending_writes++;
  client.unsent_bytes += kTcpLengthPrefix + length;
}

// ---------------------------------------------------------------------------------------

void DnsWorkerLoop::tcp_query_finished(uint64_t tcp_client_id) {
  auto it = tcp_clients_.find(tcp_client_id);
  if (it == tcp_clients_.end() || it->second->queries_in_flight == 0) return;
  TcpClient& client = *it->second;
  client.queries_in_flight--;
  bool owes_nothing = client.queries_in_flight == 0 && client.pending_writes == 0;
  if ((client.close_when_idle && owes_nothing) || (!client.close_when_idle && !client.reading)) {
    schedule_tcp_client_service(client);
  }
}

}  // namespace hubdns
