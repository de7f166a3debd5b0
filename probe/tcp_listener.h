// Opening a listening TCP socket on the control loop, shared by the health HTTP server and
// the plain TCP probe port. IPv6 addresses listen on IPv6 only, as the DNS listeners do.
// Control loop thread only.
#pragma once

#include <uv.h>

#include <memory>

#include "common/net/address.h"
#include "common/uv/handle.h"

namespace hubdns {

// Binds and listens; the handle's data is set to `data`. Returns 0 with *out set, or a
// libuv error with *failed_step naming the step ("init", "bind", "listen"); on error the
// socket is already closed.
int open_tcp_listener(uv_loop_t* loop, const SocketAddress& address, void* data, int backlog,
                      uv_connection_cb on_connection, std::unique_ptr<UvTcp>* out,
                      const char** failed_step);

}  // namespace hubdns
