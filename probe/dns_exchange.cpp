#include "probe/dns_exchange.h"

#include <cstring>
#include <exception>
#include <utility>

#include "common/dns/message.h"
#include "common/log/log.h"
#include "probe/probe_query.h"

namespace hubdns {
namespace {

constexpr size_t kUdpBufferSize = 65536;  // any datagram fits: none is reported as partial
constexpr size_t kTcpReadChunk = 4096;
constexpr size_t kTcpMaxBuffered = 2 + 65535 + kTcpReadChunk;

}  // namespace

const char* to_string(DnsTransport transport) { return transport == DnsTransport::udp ? "udp" : "tcp"; }

DnsExchange::DnsExchange(DnsTransport transport, const SocketAddress& server, std::vector<uint8_t> query,
                         Completion completion)
    : transport_(transport), server_(server), completion_(std::move(completion)) {
  if (transport_ == DnsTransport::tcp) {
    query_.resize(2);
    dns::write_u16(query_.data(), static_cast<uint16_t>(query.size()));
    query_offset_ = 2;
  }
  query_.insert(query_.end(), query.begin(), query.end());
}

DnsExchange* DnsExchange::start(uv_loop_t* loop, DnsTransport transport, const SocketAddress& server,
                                const std::optional<SocketAddress>& source, std::vector<uint8_t> query,
                                uint64_t timeout_ms, Completion completion) {
  auto* exchange = new DnsExchange(transport, server, std::move(query), std::move(completion));
  exchange->begin(loop, source, timeout_ms);
  return exchange;
}

int DnsExchange::begin(uv_loop_t* loop, const std::optional<SocketAddress>& source, uint64_t timeout_ms) {
  started_ns_ = uv_hrtime();
  uv_timer_init(loop, &timer_);  // cannot fail on a live loop
  timer_.data = this;
  timer_open_ = true;
  ++open_handles_;
  int rc = transport_ == DnsTransport::udp ? begin_udp(loop, source) : begin_tcp(loop, source);
  if (rc != 0) {
    // Reported from the loop, never from inside start(): the owner has not stored the
    // pointer yet when start() returns.
    setup_error_ = rc;
    timeout_ms = 0;
  }
  uv_timer_start(&timer_, on_timer, timeout_ms, 0);
  return rc;
}

int DnsExchange::begin_udp(uv_loop_t* loop, const std::optional<SocketAddress>& source) {
  if (int rc = uv_udp_init(loop, &udp_); rc != 0) return rc;
  udp_.data = this;
  socket_open_ = true;
  ++open_handles_;
  buffer_.resize(kUdpBufferSize);
  if (source) {
    if (int rc = uv_udp_bind(&udp_, source->sockaddr_ptr(), 0); rc != 0) return rc;
  }
  if (int rc = uv_udp_connect(&udp_, server_.sockaddr_ptr()); rc != 0) return rc;
  if (int rc = uv_udp_recv_start(&udp_, on_udp_alloc, on_udp_recv); rc != 0) return rc;
  uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(query_.data()), static_cast<unsigned>(query_.size()));
  return uv_udp_send(&udp_send_, &udp_, &buf, 1, nullptr, on_udp_send);
}

int DnsExchange::begin_tcp(uv_loop_t* loop, const std::optional<SocketAddress>& source) {
  if (int rc = uv_tcp_init(loop, &tcp_); rc != 0) return rc;
  tcp_.data = this;
  socket_open_ = true;
  ++open_handles_;
  if (source) {
    if (int rc = uv_tcp_bind(&tcp_, source->sockaddr_ptr(), 0); rc != 0) return rc;
  }
  return uv_tcp_connect(&tcp_connect_, &tcp_, server_.sockaddr_ptr(), on_tcp_connect);
}

void DnsExchange::cancel() {
  if (done_) return;
  done_ = true;
  completion_ = nullptr;
  close_handles();
}

void DnsExchange::finish(int error) {
  if (done_) return;
  done_ = true;
  result_.error = error;
  result_.latency_us = (uv_hrtime() - started_ns_) / 1000;
  Completion completion = std::move(completion_);
  completion_ = nullptr;
  // Closing first: whatever the completion does, the handles are on their way out, and
  // this object lives until their close callbacks run on a later loop iteration.
  close_handles();
  if (!completion) return;
  try {
    completion(std::move(result_));
  } catch (const std::exception& e) {
    LOG_ERROR("msg=\"health check completion failed\" error=\"%s\"", e.what());
  } catch (...) {
    LOG_ERROR("msg=\"health check completion failed\" error=unknown");
  }
}

void DnsExchange::close_handles() {
  auto close = [](uv_handle_t* handle, bool* open) {
    if (!*open) return;
    *open = false;
    if (!uv_is_closing(handle)) uv_close(handle, on_closed);
  };
  if (transport_ == DnsTransport::udp) {
    close(reinterpret_cast<uv_handle_t*>(&udp_), &socket_open_);
  } else {
    close(reinterpret_cast<uv_handle_t*>(&tcp_), &socket_open_);
  }
  close(reinterpret_cast<uv_handle_t*>(&timer_), &timer_open_);
}

void DnsExchange::on_closed(uv_handle_t* handle) {
  auto* self = static_cast<DnsExchange*>(handle->data);
  handle->data = nullptr;
  if (self != nullptr && --self->open_handles_ == 0) delete self;
}

void DnsExchange::on_timer(uv_timer_t* timer) {
  auto* self = static_cast<DnsExchange*>(timer->data);
  if (self == nullptr || self->done_) return;
  self->finish(self->setup_error_ != 0 ? self->setup_error_ : UV_ETIMEDOUT);
}

void DnsExchange::consider(const uint8_t* data, size_t length) {
  const uint8_t* query = query_.data() + query_offset_;
  const size_t query_length = query_.size() - query_offset_;
  switch (match_answer(query, query_length, data, length)) {
    case AnswerMatch::matches:
      result_.answer.assign(data, data + length);
      finish(0);
      return;
    case AnswerMatch::mismatched:
      ++result_.mismatched;
      return;
    case AnswerMatch::garbled:
      ++result_.garbled;
      return;
  }
}

// --- UDP ---------------------------------------------------------------------------------

void DnsExchange::on_udp_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  auto* self = static_cast<DnsExchange*>(handle->data);
  if (self == nullptr || self->done_) {
    *buf = uv_buf_init(nullptr, 0);
    return;
  }
  *buf = uv_buf_init(reinterpret_cast<char*>(self->buffer_.data()), static_cast<unsigned>(self->buffer_.size()));
}

void DnsExchange::on_udp_recv(uv_udp_t* udp, ssize_t nread, const uv_buf_t* buf, const sockaddr* from,
                              unsigned flags) {
  auto* self = static_cast<DnsExchange*>(udp->data);
  if (self == nullptr || self->done_) return;
  if (nread < 0) {
    // On a connected socket: an ICMP error for our datagram (ECONNREFUSED, EHOSTUNREACH).
    self->finish(static_cast<int>(nread));
    return;
  }
  if (from == nullptr) return;  // nothing more to read now
  // The socket is connected, so the kernel already filtered the source; checked anyway,
  // because an answer counts only from the address and port it was asked of.
  if (!(SocketAddress::from_sockaddr(from) == self->server_)) return;
  if ((flags & UV_UDP_PARTIAL) != 0) {
    ++self->result_.garbled;
    return;
  }
  self->consider(reinterpret_cast<const uint8_t*>(buf->base), static_cast<size_t>(nread));
}

void DnsExchange::on_udp_send(uv_udp_send_t* req, int status) {
  auto* self = static_cast<DnsExchange*>(req->handle->data);
  if (self == nullptr || self->done_ || status == 0) return;
  self->finish(status);
}

// --- TCP ---------------------------------------------------------------------------------

void DnsExchange::on_tcp_connect(uv_connect_t* req, int status) {
  auto* self = static_cast<DnsExchange*>(req->handle->data);
  if (self == nullptr || self->done_) return;
  if (status < 0) {
    self->finish(status);
    return;
  }
  uv_tcp_nodelay(&self->tcp_, 1);
  auto* stream = reinterpret_cast<uv_stream_t*>(&self->tcp_);
  if (int rc = uv_read_start(stream, on_tcp_alloc, on_tcp_read); rc != 0) {
    self->finish(rc);
    return;
  }
  uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(self->query_.data()), static_cast<unsigned>(self->query_.size()));
  if (int rc = uv_write(&self->tcp_write_, stream, &buf, 1, on_tcp_write); rc != 0) self->finish(rc);
}

void DnsExchange::on_tcp_write(uv_write_t* req, int status) {
  auto* self = static_cast<DnsExchange*>(req->handle->data);
  if (self == nullptr || self->done_ || status == 0) return;
  self->finish(status);
}

void DnsExchange::on_tcp_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  auto* self = static_cast<DnsExchange*>(handle->data);
  if (self == nullptr || self->done_ || self->tcp_filled_ + kTcpReadChunk > kTcpMaxBuffered) {
    *buf = uv_buf_init(nullptr, 0);  // libuv reports UV_ENOBUFS, which ends the exchange
    return;
  }
  if (self->buffer_.size() < self->tcp_filled_ + kTcpReadChunk) self->buffer_.resize(self->tcp_filled_ + kTcpReadChunk);
  *buf = uv_buf_init(reinterpret_cast<char*>(self->buffer_.data() + self->tcp_filled_),
                     static_cast<unsigned>(self->buffer_.size() - self->tcp_filled_));
}

void DnsExchange::on_tcp_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t*) {
  auto* self = static_cast<DnsExchange*>(stream->data);
  if (self == nullptr || self->done_) return;
  if (nread < 0) {
    self->finish(static_cast<int>(nread));  // UV_EOF: closed before answering
    return;
  }
  self->tcp_filled_ += static_cast<size_t>(nread);
  // Frames: a 2-byte length, then the message. Each complete one is looked at in order.
  size_t pos = 0;
  while (self->tcp_filled_ - pos >= 2) {
    const size_t length = dns::read_u16(self->buffer_.data() + pos);
    if (self->tcp_filled_ - pos < 2 + length) break;
    self->consider(self->buffer_.data() + pos + 2, length);
    if (self->done_) return;
    pos += 2 + length;
  }
  if (pos > 0) {
    std::memmove(self->buffer_.data(), self->buffer_.data() + pos, self->tcp_filled_ - pos);
    self->tcp_filled_ -= pos;
  }
}

}  // namespace hubdns
