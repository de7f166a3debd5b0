#include "common/uv/handle.h"

#include <cstdio>
#include <cstdlib>

namespace hubdns {

EventLoop::EventLoop() {
  int rc = uv_loop_init(&loop_);
  if (rc != 0) {
    std::fprintf(stderr, "hubdns: uv_loop_init failed: %s\n", uv_strerror(rc));
    std::abort();
  }
  open_ = true;
}

EventLoop::~EventLoop() { close(); }

int EventLoop::close() {
  if (!open_) return 0;
  // Let close callbacks of handles already closed by their owners run.
  uv_run(&loop_, UV_RUN_NOWAIT);
  int rc = uv_loop_close(&loop_);
  if (rc == UV_EBUSY) {
    // A handle is still open: its owner outlived the loop. Report it; never free the loop
    // under a live handle.
    uv_walk(
        &loop_,
        [](uv_handle_t* h, void*) {
          std::fprintf(stderr, "hubdns: handle still open at loop close: %s%s\n",
                       uv_handle_type_name(h->type), uv_is_closing(h) ? " (closing)" : "");
        },
        nullptr);
    return rc;
  }
  open_ = false;
  return rc;
}

}  // namespace hubdns
