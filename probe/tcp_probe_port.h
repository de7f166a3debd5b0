// TcpProbePort: health.tcp_listen, the plain TCP probe for load balancers that only open a
// connection. While the instance is ready it listens and accepts every connection, closing
// it at once; while not ready it does not listen at all (the listening sockets are closed),
// so a connection attempt is answered with a reset: a prober sees "refused" immediately,
// instead of waiting for a timeout. HealthMonitor calls set_ready() whenever readiness may
// have changed; a bind failure is logged (at most every 10 s per address) and retried on
// the next call, never fatal: the HTTP endpoints tell the same truth.
//
// Thread: the control loop only. Listener handles are UvTcp (closed and freed through
// libuv); each accepted connection is closed in the same callback that accepted it.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "common/net/address.h"
#include "common/uv/handle.h"

namespace hubdns {

class TcpProbePort {
 public:
  TcpProbePort(uv_loop_t* loop, std::vector<SocketAddress> addresses);
  ~TcpProbePort();
  TcpProbePort(const TcpProbePort&) = delete;
  TcpProbePort& operator=(const TcpProbePort&) = delete;

  // Listens on every address when ready (those not yet listening), closes every listener
  // when not. Cheap when nothing changes.
  void set_ready(bool ready);
  // Closes every listener for good; set_ready() does nothing afterwards.
  void close();

  const std::vector<SocketAddress>& addresses() const { return addresses_; }
  bool listening() const;                  // at least one address accepts connections now
  size_t listening_count() const;
  uint64_t accepted() const { return accepted_; }

 private:
  struct Slot {
    std::unique_ptr<UvTcp> listener;  // null while not listening
    uint64_t last_error_log_ms = 0;
  };

  static void on_connection(uv_stream_t* listener, int status);
  void open(size_t index);

  uv_loop_t* loop_;
  std::vector<SocketAddress> addresses_;
  std::vector<Slot> slots_;
  bool closed_ = false;
  uint64_t accepted_ = 0;
};

}  // namespace hubdns
