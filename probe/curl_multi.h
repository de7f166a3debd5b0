// CurlMulti: HTTP requests with libcurl's multi interface driven by a libuv loop, so a
// request never blocks the control loop (for the instance metadata service,
// probe/scheduled_events.h). CURLMOPT_SOCKETFUNCTION starts, changes and stops one
// uv_poll_t per socket curl uses; CURLMOPT_TIMERFUNCTION arms one uv_timer_t; both call
// curl_multi_socket_action() from their libuv callbacks (never from inside a curl
// callback), then finished transfers are read with curl_multi_info_read(), removed,
// cleaned up, and only then is their completion called.
//
// Every request is bounded: connect and total timeouts, no redirects, http/https only, a
// response size cap, no proxy whatever the environment says (CURLOPT_NOPROXY "*": the
// metadata service must be reached directly), no signals (CURLOPT_NOSIGNAL).
//
// Lifetimes: each socket watcher owns a UvPoll (memory freed in its close callback) and is
// dropped when curl says CURL_POLL_REMOVE; it is found by socket, never through a pointer
// curl keeps, so a REMOVE for a socket whose watcher is already gone is a no-op. close()
// removes every transfer (their completions are not called), cleans up the multi handle
// (which may still report REMOVEs), and only then closes the remaining watchers and the
// timer. Completions must not throw and must not destroy the CurlMulti (they may start and
// cancel requests).
//
// Thread: the loop's thread only. curl_global_init() must have run before (CurlGlobal, in
// main(), before any thread starts).
#pragma once

#include <curl/curl.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/log/log.h"
#include "common/uv/handle.h"

namespace hubdns {

// curl_global_init() for the lifetime of this object: construct once in main() before any
// thread starts.
class CurlGlobal {
 public:
  CurlGlobal();
  ~CurlGlobal();
  CurlGlobal(const CurlGlobal&) = delete;
  CurlGlobal& operator=(const CurlGlobal&) = delete;
  bool ok() const { return ok_; }

 private:
  bool ok_ = false;
};

struct HttpFetchRequest {
  std::string method = "GET";  // "GET" or "POST"
  std::string url;
  std::vector<std::string> headers;  // "Metadata: true"
  std::string body;                  // sent with POST
  uint64_t connect_timeout_ms = 2000;
  uint64_t timeout_ms = 2000;        // the whole transfer
  size_t max_body_bytes = 256 * 1024;
};

enum class HttpFetchOutcome : uint8_t {
  answered,       // an HTTP response arrived (any status): see `status`
  timeout,        // connect or total timeout
  connect_error,  // refused, unreachable, name not resolved
  too_large,      // the body exceeded max_body_bytes
  error,          // anything else (reset, not HTTP, ...)
};
const char* to_string(HttpFetchOutcome outcome);

struct HttpFetchResult {
  HttpFetchOutcome outcome = HttpFetchOutcome::error;
  long status = 0;        // HTTP status when answered
  std::string body;
  std::string error;      // curl's message when not answered
  uint64_t elapsed_ms = 0;
};

class CurlMulti {
 public:
  using Completion = std::function<void(HttpFetchResult&&)>;

  explicit CurlMulti(uv_loop_t* loop);
  ~CurlMulti();  // close()
  CurlMulti(const CurlMulti&) = delete;
  CurlMulti& operator=(const CurlMulti&) = delete;

  // Starts a request; its completion runs later on the loop (never inside start()), once.
  // Returns the request's id (> 0), or 0 if it could not even start (closed, curl refused
  // an option): then the completion never runs and *error says why.
  uint64_t start(HttpFetchRequest request, Completion completion, std::string* error);
  // Stops a request; its completion does not run. Unknown or finished ids are ignored.
  void cancel(uint64_t id);
  // Cancels every request and closes the handles. Idempotent.
  void close();

  size_t in_flight() const { return transfers_.size(); }
  size_t watched_sockets() const { return sockets_.size(); }

 private:
  struct Transfer;
  struct SocketWatch {
    CurlMulti* owner = nullptr;
    curl_socket_t fd = CURL_SOCKET_BAD;
    UvPoll poll;
  };

  static int on_socket(CURL* easy, curl_socket_t fd, int what, void* userp, void* socketp);
  static int on_timer_set(CURLM* multi, long timeout_ms, void* userp);
  static void on_poll(uv_poll_t* handle, int status, int events);
  static void on_timeout(uv_timer_t* timer);
  static size_t on_write(char* data, size_t size, size_t count, void* userp);
  void socket_action(curl_socket_t fd, int flags);
  void finish_transfers();
  void release(Transfer* transfer);

  uv_loop_t* loop_;
  CURLM* multi_ = nullptr;
  UvTimer timer_;
  bool closed_ = false;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, std::unique_ptr<Transfer>> transfers_;
  std::unordered_map<curl_socket_t, std::unique_ptr<SocketWatch>> sockets_;
  LogRateLimit error_log_{10000};
};

}  // namespace hubdns
