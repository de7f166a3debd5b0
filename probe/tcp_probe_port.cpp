#include "probe/tcp_probe_port.h"

#include "probe/tcp_listener.h"

#include <new>
#include <utility>

#include "common/log/log.h"
#include "common/util/clock.h"

namespace hubdns {
namespace {

constexpr int kBacklog = 128;
constexpr uint64_t kErrorLogIntervalMs = 10000;

}  // namespace

TcpProbePort::TcpProbePort(uv_loop_t* loop, std::vector<SocketAddress> addresses)
    : loop_(loop), addresses_(std::move(addresses)), slots_(addresses_.size()) {}

TcpProbePort::~TcpProbePort() { close(); }

void TcpProbePort::close() {
  closed_ = true;
  for (Slot& slot : slots_) slot.listener.reset();  // UvHandle closes and frees
}

bool TcpProbePort::listening() const { return listening_count() > 0; }

size_t TcpProbePort::listening_count() const {
  size_t count = 0;
  for (const Slot& slot : slots_) count += slot.listener != nullptr ? 1u : 0u;
  return count;
}

void TcpProbePort::set_ready(bool ready) {
  if (closed_) return;
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (ready && slots_[i].listener == nullptr) {
      open(i);
    } else if (!ready && slots_[i].listener != nullptr) {
      // Closing the socket makes the kernel reset connections still in its accept queue,
      // and answer new attempts with a reset: the prober sees "refused" at once.
      slots_[i].listener.reset();
      LOG_INFO("msg=\"TCP probe port closed (not ready)\" address=%s", addresses_[i].to_string().c_str());
    }
  }
}

void TcpProbePort::open(size_t index) {
  const SocketAddress& address = addresses_[index];
  std::unique_ptr<UvTcp> listener;
  const char* step = "";
  int rc = open_tcp_listener(loop_, address, this, kBacklog, on_connection, &listener, &step);
  if (rc != 0) {
    Slot& slot = slots_[index];
    const uint64_t now = monotonic_ms();
    if (slot.last_error_log_ms == 0 || now - slot.last_error_log_ms >= kErrorLogIntervalMs) {
      slot.last_error_log_ms = now;
      LOG_WARN("msg=\"cannot open the TCP probe port; retrying while ready\" address=%s step=%s error=%s",
               address.to_string().c_str(), step, uv_strerror(rc));
    }
    return;
  }
  slots_[index].listener = std::move(listener);
  LOG_INFO("msg=\"TCP probe port listening (ready)\" address=%s", address.to_string().c_str());
}

void TcpProbePort::on_connection(uv_stream_t* listener, int status) {
  auto* self = static_cast<TcpProbePort*>(listener->data);
  if (self == nullptr || status < 0) return;
  // Accept and close at once: the completed handshake is the whole answer. libuv stops
  // watching a listener while a connection waits to be accepted, so always accept.
  auto* connection = new (std::nothrow) uv_tcp_t{};
  if (connection == nullptr) return;
  if (uv_tcp_init(self->loop_, connection) != 0) {
    delete connection;
    return;
  }
  if (uv_accept(listener, reinterpret_cast<uv_stream_t*>(connection)) == 0) ++self->accepted_;
  uv_close(reinterpret_cast<uv_handle_t*>(connection),
           [](uv_handle_t* handle) { delete reinterpret_cast<uv_tcp_t*>(handle); });
}

}  // namespace hubdns
