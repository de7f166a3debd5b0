// DnsExchange: one DNS question and its answer over UDP or TCP, on the control loop, for
// the health checks (upstream probes, the data-path self-check). Low rate by design: each
// exchange opens its own socket, so every probe gets a fresh source port from the kernel,
// and a UDP socket can be connected to the server: the kernel then drops datagrams from
// anyone else and reports ICMP errors (ECONNREFUSED) that an unconnected socket never sees.
//
// Lifetime: an exchange owns itself. start() returns a pointer that stays valid until the
// completion has run or cancel() was called, whichever comes first; after that the owner
// must forget it. The completion runs exactly once, on the loop, never inside start()
// (a setup failure is reported from a zero-delay timer), unless cancel() came first. The
// exchange owns a socket handle and a timer; it frees itself in the last close callback,
// never earlier, and its send / connect / write requests are members, which libuv calls
// back (UV_ECANCELED at worst) before those close callbacks.
//
// Thread: the loop's thread only. Completions must not throw; a throw is caught and logged.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "common/net/address.h"

namespace hubdns {

enum class DnsTransport : uint8_t { udp, tcp };
const char* to_string(DnsTransport transport);

struct DnsExchangeResult {
  int error = 0;  // 0: `answer` holds the matching response; else UV_ETIMEDOUT, UV_EOF or another libuv error
  std::vector<uint8_t> answer;
  uint64_t latency_us = 0;  // from start() to the answer (or the failure); a TCP connect included
  unsigned mismatched = 0;  // DNS responses that arrived with another ID or question
  unsigned garbled = 0;     // datagrams / frames that were not DNS responses
};

class DnsExchange {
 public:
  using Completion = std::function<void(DnsExchangeResult&&)>;

  // Sends `query` (a DNS message; TCP adds the length prefix) to `server` and waits up to
  // timeout_ms for a response that match_answer() says matches. When `source` is given the
  // socket is bound to it first (port 0: the kernel picks one).
  static DnsExchange* start(uv_loop_t* loop, DnsTransport transport, const SocketAddress& server,
                            const std::optional<SocketAddress>& source, std::vector<uint8_t> query,
                            uint64_t timeout_ms, Completion completion);

  // Stops at once without calling the completion. The pointer is invalid afterwards.
  void cancel();

  DnsExchange(const DnsExchange&) = delete;
  DnsExchange& operator=(const DnsExchange&) = delete;

 private:
  DnsExchange(DnsTransport transport, const SocketAddress& server, std::vector<uint8_t> query,
              Completion completion);
  ~DnsExchange() = default;  // only from on_closed

  // Returns 0 or a libuv error; on error the caller reports it through the timer.
  int begin(uv_loop_t* loop, const std::optional<SocketAddress>& source, uint64_t timeout_ms);
  int begin_udp(uv_loop_t* loop, const std::optional<SocketAddress>& source);
  int begin_tcp(uv_loop_t* loop, const std::optional<SocketAddress>& source);
  // Looks at one received message; finishes when it is the answer.
  void consider(const uint8_t* data, size_t length);
  void finish(int error);
  void close_handles();

  static void on_timer(uv_timer_t* timer);
  static void on_udp_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void on_udp_recv(uv_udp_t* udp, ssize_t nread, const uv_buf_t* buf, const sockaddr* from,
                          unsigned flags);
  static void on_udp_send(uv_udp_send_t* req, int status);
  static void on_tcp_connect(uv_connect_t* req, int status);
  static void on_tcp_write(uv_write_t* req, int status);
  static void on_tcp_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void on_tcp_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void on_closed(uv_handle_t* handle);

  DnsTransport transport_;
  SocketAddress server_;
  std::vector<uint8_t> query_;   // for TCP with the 2-byte length prefix in front
  size_t query_offset_ = 0;      // where the DNS message starts in query_ (2 for TCP)
  Completion completion_;
  uint64_t started_ns_ = 0;
  int setup_error_ = 0;          // reported by the timer when begin() failed
  bool done_ = false;            // finished or cancelled: no more results, handles closing
  int open_handles_ = 0;         // handles whose close callback has not run yet
  bool socket_open_ = false;
  bool timer_open_ = false;
  DnsExchangeResult result_;

  uv_timer_t timer_{};
  uv_udp_t udp_{};
  uv_tcp_t tcp_{};
  uv_udp_send_t udp_send_{};
  uv_connect_t tcp_connect_{};
  uv_write_t tcp_write_{};
  std::vector<uint8_t> buffer_;  // UDP: one datagram; TCP: bytes read so far
  size_t tcp_filled_ = 0;
};

}  // namespace hubdns
