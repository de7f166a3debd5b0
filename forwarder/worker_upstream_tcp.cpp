// Queries that go upstream over TCP (those that came over TCP: a client retrying after
// TC, or a TCP-only client), through the worker's UpstreamTcpPool: connections reused
// and pipelined. Part of DnsWorkerLoop (dns_worker_loop.h); worker thread only.
#include <cstring>

#include "forwarder/dns_worker_loop.h"

namespace hubdns {

namespace {
// The pool's token names the pending slot and its generation, so an answer for a slot
// that was reused meanwhile is recognised and dropped.
uint64_t make_token(uint32_t slot, uint64_t generation) { return (generation << 32) | slot; }
uint32_t token_slot(uint64_t token) { return static_cast<uint32_t>(token & 0xFFFFFFFFu); }
uint64_t token_generation(uint64_t token) { return token >> 32; }
}  // namespace

bool DnsWorkerLoop::send_tcp_attempt(uint32_t slot, const SocketAddress& upstream) {
  PendingQuery& query = pending_[slot];
  // The pool refuses an ID still outstanding to this upstream: then draw another.
  for (int tries = 0; tries < 8; ++tries) {
    query.upstream_id = random_.next_u16();
    dns::set_message_id(query.upstream_query.data(), query.upstream_id);
    UpstreamTcpPool::SendResult result = upstream_tcp_->send_query(
        upstream, make_token(slot, query.generation), query.upstream_query.data(), query.upstream_query.size());
    if (result == UpstreamTcpPool::SendResult::accepted) {
      query.upstream_socket = -1;
      return true;
    }
    if (result != UpstreamTcpPool::SendResult::id_in_use) return false;
  }
  return false;
}

void DnsWorkerLoop::cancel_tcp_attempt(uint32_t slot) {
  if (upstream_tcp_) upstream_tcp_->cancel(make_token(slot, pending_[slot].generation));
}

void DnsWorkerLoop::on_upstream_tcp_result(void* context, uint64_t token, int status,
                                           const uint8_t* answer, size_t length) {
  auto* self = static_cast<DnsWorkerLoop*>(context);
  uint32_t slot = token_slot(token);
  if (slot >= self->pending_.size()) return;
  PendingQuery& query = self->pending_[slot];
  if (!query.in_use || query.generation != token_generation(token) || !query.attempt_active ||
      query.upstream_socket != -1) {
    return;  // the attempt was abandoned meanwhile
  }
  if (status < 0) {
    self->counters_->upstream_errors.fetch_add(1, std::memory_order_relaxed);
    self->attempt_failed(slot, uv_err_name(status), dns::ExtendedError::network_error);
    return;
  }
  if (length > sizeof self->scratch_ ||
      !dns::response_matches(answer, length, query.upstream_id, query.upstream_query.data() + dns::kHeaderSize,
                             query.info.qname_length, query.info.qtype, query.info.qclass)) {
    self->counters_->upstream_mismatched.fetch_add(1, std::memory_order_relaxed);
    self->attempt_failed(slot, "mismatched answer over TCP", dns::ExtendedError::network_error);
    return;
  }
  std::memcpy(self->scratch_, answer, length);
  self->upstream_answered(slot, self->scratch_, length);
}

}  // namespace hubdns
