// RAII ownership of libuv handles. A UvHandle<T> heap-allocates one libuv handle and, when
// destroyed, closes it with uv_close; the memory is freed in the close callback, as libuv
// requires (a handle may only be released in or after its close_cb). handle->data is
// cleared first so no late callback can reach a dead owner. Owners are neither copied nor
// moved. A UvHandle is used only on the thread that runs its loop.
#pragma once

#include <uv.h>

#include <utility>

namespace hubdns {

template <typename UvType>
class UvHandle {
 public:
  UvHandle() : handle_(new UvType{}) {}
  ~UvHandle() { close(); }

  UvHandle(const UvHandle&) = delete;
  UvHandle& operator=(const UvHandle&) = delete;
  UvHandle(UvHandle&&) = delete;
  UvHandle& operator=(UvHandle&&) = delete;

  // Runs init(loop, handle, args...) (uv_timer_init, uv_udp_init_ex, uv_tcp_init, ...).
  // Only a handle whose init succeeded is registered with the loop and needs uv_close.
  template <typename InitFn, typename... Args>
  int init(InitFn init_fn, uv_loop_t* loop, Args&&... args) {
    int rc = init_fn(loop, handle_, std::forward<Args>(args)...);
    initialized_ = (rc == 0);
    return rc;
  }

  UvType* get() const { return handle_; }
  UvType* operator->() const { return handle_; }
  uv_handle_t* as_handle() const { return reinterpret_cast<uv_handle_t*>(handle_); }
  template <typename T>
  T* as() const { return reinterpret_cast<T*>(handle_); }
  bool initialized() const { return initialized_; }

  // Closes now (idempotent). The memory is freed once the loop runs the close callback.
  void close() {
    if (handle_ == nullptr) return;
    handle_->data = nullptr;
    if (initialized_) {
      if (!uv_is_closing(as_handle())) {
        uv_close(as_handle(), [](uv_handle_t* h) { delete reinterpret_cast<UvType*>(h); });
      }
    } else {
      delete handle_;
    }
    handle_ = nullptr;
    initialized_ = false;
  }

 private:
  UvType* handle_;
  bool initialized_ = false;
};

using UvTimer = UvHandle<uv_timer_t>;
using UvUdp = UvHandle<uv_udp_t>;
using UvTcp = UvHandle<uv_tcp_t>;
using UvAsync = UvHandle<uv_async_t>;
using UvSignal = UvHandle<uv_signal_t>;
using UvPoll = UvHandle<uv_poll_t>;
using UvCheck = UvHandle<uv_check_t>;

// Owns a uv_loop_t. close() closes any handle still open, runs the loop until their close
// callbacks ran, then uv_loop_close(); it returns uv_loop_close's result, which must be 0
// (anything else means a handle leaked).
class EventLoop {
 public:
  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  uv_loop_t* get() { return &loop_; }
  const uv_loop_t* get_const() const { return &loop_; }
  int run(uv_run_mode mode = UV_RUN_DEFAULT) { return uv_run(&loop_, mode); }
  void stop() { uv_stop(&loop_); }
  // Runs pending close callbacks and closes the loop; returns uv_loop_close()'s result.
  int close();

 private:
  uv_loop_t loop_{};
  bool open_ = false;
};

}  // namespace hubdns
