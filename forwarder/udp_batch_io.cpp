#include "forwarder/udp_batch_io.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace hubdns {

namespace {
// Reads per readiness event before yielding to the rest of the loop (fairness between
// sockets and timers): at most kReadBurst * kReceiveBatch datagrams.
constexpr int kReadBurst = 4;
}  // namespace

struct UdpBatchIo::ReceiveSlots {
  mmsghdr headers[kReceiveBatch];
  iovec vectors[kReceiveBatch];
  sockaddr_storage addresses[kReceiveBatch];
  alignas(16) uint8_t buffers[kReceiveBatch][kMaxDatagram];
};

struct UdpBatchIo::SendSlots {
  mmsghdr headers[kSendQueue];
  iovec vectors[kSendQueue];
  sockaddr_storage addresses[kSendQueue];
  socklen_t address_lengths[kSendQueue];
  size_t lengths[kSendQueue];
  alignas(16) uint8_t buffers[kSendQueue][kMaxDatagram];
};

UdpBatchIo::UdpBatchIo(uv_loop_t* loop, ReceiveCallback on_receive, BatchEndCallback on_batch_end,
                       void* context)
    : loop_(loop),
      on_receive_(on_receive),
      on_batch_end_(on_batch_end),
      context_(context),
      receive_(std::make_unique<ReceiveSlots>()),
      send_(std::make_unique<SendSlots>()) {
  for (size_t i = 0; i < kReceiveBatch; ++i) {
    receive_->vectors[i].iov_base = receive_->buffers[i];
    receive_->vectors[i].iov_len = kMaxDatagram;
  }
}

UdpBatchIo::~UdpBatchIo() { close_all(); }

int UdpBatchIo::add_socket(int fd) {
  auto socket = std::make_unique<Socket>();
  socket->owner = this;
  socket->id = static_cast<uint32_t>(sockets_.size());
  socket->fd = fd;
  socket->queued.reserve(kSendQueue);
  int rc = socket->poll.init(uv_poll_init, loop_, fd);
  if (rc == 0) {
    socket->poll->data = socket.get();
    rc = uv_poll_start(socket->poll.get(), UV_READABLE, on_readable);
  }
  if (rc != 0) {
    socket->poll.close();
    ::close(fd);
    return rc;
  }
  sockets_.push_back(std::move(socket));
  dirty_sockets_.reserve(sockets_.size());  // flushing never allocates
  return static_cast<int>(sockets_.back()->id);
}

void UdpBatchIo::close_all() {
  for (auto& socket : sockets_) {
    if (socket->fd < 0) continue;
    // uv_close stops the watcher synchronously, so the fd may be closed right after.
    socket->poll.close();
    ::close(socket->fd);
    socket->fd = -1;
  }
  sockets_.clear();
  dirty_sockets_.clear();
  send_used_ = 0;
}

void UdpBatchIo::stop_reading(uint32_t socket_id) {
  if (socket_id >= sockets_.size()) return;
  Socket& socket = *sockets_[socket_id];
  if (socket.fd < 0 || !uv_is_active(socket.poll.as_handle())) return;
  // read_socket stops after a short burst for fairness; here the queue must be emptied.
  // Bounded: the socket's receive buffer holds at most a few thousand datagrams.
  for (int round = 0; round < 256; ++round) {
    uint64_t calls = receive_calls_;
    read_socket(socket);
    if (receive_calls_ - calls < static_cast<uint64_t>(kReadBurst)) break;  // it hit EAGAIN
  }
  uv_poll_stop(socket.poll.get());
  if (on_batch_end_ != nullptr) on_batch_end_(context_);
  flush();
}

void UdpBatchIo::on_readable(uv_poll_t* handle, int status, int) {
  auto* socket = static_cast<Socket*>(handle->data);
  if (socket == nullptr || status < 0) return;
  UdpBatchIo* self = socket->owner;
  self->read_socket(*socket);
  if (self->on_batch_end_ != nullptr) self->on_batch_end_(self->context_);
  self->flush();
}

void UdpBatchIo::read_socket(Socket& socket) {
  ReceiveSlots& slots = *receive_;
  for (int burst = 0; burst < kReadBurst && socket.fd >= 0; ++burst) {
    for (size_t i = 0; i < kReceiveBatch; ++i) {
      msghdr& header = slots.headers[i].msg_hdr;
      header.msg_name = &slots.addresses[i];
      header.msg_namelen = sizeof slots.addresses[i];
      header.msg_iov = &slots.vectors[i];
      header.msg_iovlen = 1;
      header.msg_control = nullptr;
      header.msg_controllen = 0;
      header.msg_flags = 0;
    }
    int count;
    do {
      count = ::recvmmsg(socket.fd, slots.headers, kReceiveBatch, MSG_DONTWAIT, nullptr);
    } while (count < 0 && errno == EINTR);
    ++receive_calls_;
    if (count <= 0) return;  // EAGAIN: drained; other errors (ICMP) are per-datagram noise
    for (int i = 0; i < count; ++i) {
      const mmsghdr& message = slots.headers[i];
      bool truncated = (message.msg_hdr.msg_flags & MSG_TRUNC) != 0;
      if (truncated) ++receive_truncated_;
      size_t length = message.msg_len > kMaxDatagram ? kMaxDatagram : message.msg_len;
      on_receive_(context_, socket.id, reinterpret_cast<const sockaddr*>(&slots.addresses[i]),
                  slots.buffers[i], length, truncated);
      if (socket.fd < 0) return;  // closed by the callback (shutdown)
    }
    if (static_cast<size_t>(count) < kReceiveBatch) return;  // nothing more waiting
  }
}

void UdpBatchIo::send(uint32_t socket_id, const sockaddr* to, socklen_t to_length,
                      const uint8_t* data, size_t length) {
  if (socket_id >= sockets_.size() || sockets_[socket_id]->fd < 0) return;
  if (length > kMaxDatagram || to_length > sizeof(sockaddr_storage)) {
    ++send_errors_;
    return;
  }
  if (send_used_ == kSendQueue) flush();
  size_t slot = send_used_++;
  std::memcpy(send_->buffers[slot], data, length);
  send_->lengths[slot] = length;
  std::memcpy(&send_->addresses[slot], to, to_length);
  send_->address_lengths[slot] = to_length;
  Socket& socket = *sockets_[socket_id];
  if (socket.queued.empty()) dirty_sockets_.push_back(socket_id);
  socket.queued.push_back(static_cast<uint16_t>(slot));
}

void UdpBatchIo::flush() {
  for (uint32_t id : dirty_sockets_) {
    if (id < sockets_.size()) flush_socket(*sockets_[id]);
  }
  dirty_sockets_.clear();
  send_used_ = 0;
}

void UdpBatchIo::flush_socket(Socket& socket) {
  SendSlots& slots = *send_;
  size_t count = socket.queued.size();
  for (size_t i = 0; i < count; ++i) {
    size_t slot = socket.queued[i];
    slots.vectors[i].iov_base = slots.buffers[slot];
    slots.vectors[i].iov_len = slots.lengths[slot];
    msghdr& header = slots.headers[i].msg_hdr;
    header.msg_name = &slots.addresses[slot];
    header.msg_namelen = slots.address_lengths[slot];
    header.msg_iov = &slots.vectors[i];
    header.msg_iovlen = 1;
    header.msg_control = nullptr;
    header.msg_controllen = 0;
    header.msg_flags = 0;
  }
  size_t sent = 0;
  while (sent < count && socket.fd >= 0) {
    int n = ::sendmmsg(socket.fd, slots.headers + sent, static_cast<unsigned>(count - sent), MSG_DONTWAIT);
    ++send_calls_;
    if (n < 0) {
      if (errno == EINTR) continue;
      // The datagram at `sent` failed (a full socket buffer, or an ICMP error reported on
      // this socket): count it lost and go on with the rest.
      ++send_errors_;
      ++sent;
      continue;
    }
    sent += static_cast<size_t>(n);
  }
  socket.queued.clear();
}

}  // namespace hubdns
