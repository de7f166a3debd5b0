// Batched UDP I/O for one DNS worker: every UDP socket of the worker (client listeners and
// the upstream socket pool) is watched with a uv_poll_t, read with recvmmsg (up to
// kReceiveBatch datagrams per system call) and written with sendmmsg: datagrams queued
// while a batch is processed leave in one call per socket when the batch ends. This is
// what brings the forwarder below one system call per query at saturation; libuv 1.44's
// uv_udp_t has no sendmmsg, hence the poll handle on our own sockets.
//
// Owned by a DnsWorkerLoop and used only on its loop's thread. No allocation after
// construction: receive buffers and the send queue are fixed arrays.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/uv/handle.h"

namespace hubdns {

class UdpBatchIo {
 public:
  static constexpr size_t kReceiveBatch = 64;
  static constexpr size_t kMaxDatagram = 4096;  // our EDNS size never exceeds this
  static constexpr size_t kSendQueue = 256;     // datagrams queued before a forced flush

  // Called for each datagram received. `truncated` means it was larger than kMaxDatagram
  // (only the first kMaxDatagram bytes are there). `data` may be modified in place.
  using ReceiveCallback = void (*)(void* context, uint32_t socket_id, const sockaddr* from,
                                   uint8_t* data, size_t length, bool truncated);
  // Called after a burst of reads from one socket, once its datagrams were handed over.
  using BatchEndCallback = void (*)(void* context);

  UdpBatchIo(uv_loop_t* loop, ReceiveCallback on_receive, BatchEndCallback on_batch_end, void* context);
  ~UdpBatchIo();
  UdpBatchIo(const UdpBatchIo&) = delete;
  UdpBatchIo& operator=(const UdpBatchIo&) = delete;

  // Takes ownership of a bound, non-blocking UDP socket and starts reading it. Returns the
  // socket's id (>= 0) or a negative libuv error; on error the fd is closed.
  int add_socket(int fd);

  // Queues a datagram; it leaves at the next flush() (or at once if the queue is full).
  void send(uint32_t socket_id, const sockaddr* to, socklen_t to_length, const uint8_t* data,
            size_t length);
  void flush();

  // Reads what is already queued on the socket (handing it over as usual), then stops
  // watching it; the socket stays open for sending (answers to what was read). Used when
  // the process stops listening: nothing that arrived before is lost.
  void stop_reading(uint32_t socket_id);

  void close_all();

  uint64_t send_errors() const { return send_errors_; }
  uint64_t receive_truncated() const { return receive_truncated_; }
  uint64_t send_calls() const { return send_calls_; }
  uint64_t receive_calls() const { return receive_calls_; }

 private:
  struct Socket {
    UdpBatchIo* owner = nullptr;
    uint32_t id = 0;
    int fd = -1;
    UvPoll poll;
    // Indices into the send queue of datagrams for this socket, in order.
    std::vector<uint16_t> queued;
  };

  static void on_readable(uv_poll_t* handle, int status, int events);
  void read_socket(Socket& socket);
  void flush_socket(Socket& socket);

  uv_loop_t* loop_;
  ReceiveCallback on_receive_;
  BatchEndCallback on_batch_end_;
  void* context_;
  std::vector<std::unique_ptr<Socket>> sockets_;
  std::vector<uint32_t> dirty_sockets_;  // sockets with queued datagrams

  // Receive side: one set of buffers shared by every socket (reads are handed over
  // synchronously before the next read).
  struct ReceiveSlots;
  std::unique_ptr<ReceiveSlots> receive_;
  // Send side: a fixed queue of datagrams shared by every socket.
  struct SendSlots;
  std::unique_ptr<SendSlots> send_;
  size_t send_used_ = 0;

  uint64_t send_errors_ = 0;
  uint64_t receive_truncated_ = 0;
  uint64_t send_calls_ = 0;
  uint64_t receive_calls_ = 0;
};

}  // namespace hubdns
