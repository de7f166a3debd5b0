#include "probe/tcp_listener.h"

namespace hubdns {

int open_tcp_listener(uv_loop_t* loop, const SocketAddress& address, void* data, int backlog,
                      uv_connection_cb on_connection, std::unique_ptr<UvTcp>* out,
                      const char** failed_step) {
  auto listener = std::make_unique<UvTcp>();
  *failed_step = "init";
  int rc = listener->init(uv_tcp_init, loop);
  if (rc != 0) return rc;
  (*listener)->data = data;
  unsigned flags = address.is_ipv6() ? static_cast<unsigned>(UV_TCP_IPV6ONLY) : 0u;
  *failed_step = "bind";
  rc = uv_tcp_bind(listener->get(), address.sockaddr_ptr(), flags);
  if (rc != 0) return rc;
  // libuv may report a bind conflict only here.
  *failed_step = "listen";
  rc = uv_listen(listener->as<uv_stream_t>(), backlog, on_connection);
  if (rc != 0) return rc;  // `listener` closes the socket on the way out
  *out = std::move(listener);
  return 0;
}

}  // namespace hubdns
