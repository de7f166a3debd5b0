#include "probe/curl_multi.h"

#include <exception>
#include <utility>

#include "common/util/clock.h"

namespace hubdns {

CurlGlobal::CurlGlobal() {
  const CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
  ok_ = rc == CURLE_OK;
  if (!ok_) LOG_ERROR("msg=\"curl_global_init failed\" error=\"%s\"", curl_easy_strerror(rc));
}

CurlGlobal::~CurlGlobal() {
  if (ok_) curl_global_cleanup();
}

const char* to_string(HttpFetchOutcome outcome) {
  switch (outcome) {
    case HttpFetchOutcome::answered: return "answered";
    case HttpFetchOutcome::timeout: return "timeout";
    case HttpFetchOutcome::connect_error: return "connect_error";
    case HttpFetchOutcome::too_large: return "too_large";
    case HttpFetchOutcome::error: return "error";
  }
  return "error";
}

// One request in flight: owns its easy handle, header list and the response so far.
struct CurlMulti::Transfer {
  uint64_t id = 0;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  std::string response;
  size_t max_body_bytes = 0;
  bool too_large = false;
  uint64_t started_ms = 0;
  char error_buffer[CURL_ERROR_SIZE] = {};
  Completion completion;
};

CurlMulti::CurlMulti(uv_loop_t* loop) : loop_(loop) {
  multi_ = curl_multi_init();
  if (multi_ == nullptr) {
    LOG_ERROR("msg=\"curl_multi_init failed\"");
    closed_ = true;
    return;
  }
  timer_.init(uv_timer_init, loop_);
  timer_->data = this;
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &CurlMulti::on_socket);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &CurlMulti::on_timer_set);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
  // Few, short requests to one service: a small connection cache is plenty.
  curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, 4L);
}

CurlMulti::~CurlMulti() { close(); }

uint64_t CurlMulti::start(HttpFetchRequest request, Completion completion, std::string* error) {
  if (closed_) {
    *error = "closed";
    return 0;
  }
  auto transfer = std::make_unique<Transfer>();
  transfer->id = next_id_++;
  transfer->max_body_bytes = request.max_body_bytes;
  transfer->started_ms = monotonic_ms();
  transfer->completion = std::move(completion);
  transfer->easy = curl_easy_init();
  if (transfer->easy == nullptr) {
    *error = "curl_easy_init failed";
    return 0;
  }
  for (const std::string& header : request.headers) {
    curl_slist* list = curl_slist_append(transfer->headers, header.c_str());
    if (list == nullptr) {
      *error = "out of memory";
      release(transfer.get());
      return 0;
    }
    transfer->headers = list;
  }
  CURL* easy = transfer->easy;
  CURLcode rc = CURLE_OK;
  auto set = [&rc](CURLcode result) {
    if (rc == CURLE_OK) rc = result;
  };
  set(curl_easy_setopt(easy, CURLOPT_URL, request.url.c_str()));
  set(curl_easy_setopt(easy, CURLOPT_PRIVATE, transfer.get()));
  set(curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, transfer->error_buffer));
  set(curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &CurlMulti::on_write));
  set(curl_easy_setopt(easy, CURLOPT_WRITEDATA, transfer.get()));
  set(curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L));
  set(curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(request.connect_timeout_ms)));
  set(curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(request.timeout_ms)));
  // Directly, whatever http_proxy / HTTPS_PROXY say: "" disables a proxy, "*" exempts every host.
  set(curl_easy_setopt(easy, CURLOPT_PROXY, ""));
  set(curl_easy_setopt(easy, CURLOPT_NOPROXY, "*"));
  set(curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L));
  set(curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https"));
  set(curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(request.max_body_bytes)));
  set(curl_easy_setopt(easy, CURLOPT_USERAGENT, "hubdns/" HUBDNS_VERSION));
  if (request.method == "POST") {
    set(curl_easy_setopt(easy, CURLOPT_POST, 1L));
    set(curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size())));
    set(curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, request.body.c_str()));
  } else if (request.method != "GET") {
    *error = "unsupported method " + request.method;
    release(transfer.get());
    return 0;
  }
  set(curl_easy_setopt(easy, CURLOPT_HTTPHEADER, transfer->headers));
  if (rc != CURLE_OK) {
    *error = curl_easy_strerror(rc);
    release(transfer.get());
    return 0;
  }
  const CURLMcode added = curl_multi_add_handle(multi_, easy);
  if (added != CURLM_OK) {
    *error = curl_multi_strerror(added);
    release(transfer.get());
    return 0;
  }
  const uint64_t id = transfer->id;
  transfers_.emplace(id, std::move(transfer));
  return id;
}

void CurlMulti::release(Transfer* transfer) {
  if (transfer->easy != nullptr) curl_easy_cleanup(transfer->easy);
  transfer->easy = nullptr;
  if (transfer->headers != nullptr) curl_slist_free_all(transfer->headers);
  transfer->headers = nullptr;
}

void CurlMulti::cancel(uint64_t id) {
  auto it = transfers_.find(id);
  if (it == transfers_.end()) return;
  std::unique_ptr<Transfer> transfer = std::move(it->second);
  transfers_.erase(it);
  // May call on_socket (CURL_POLL_REMOVE) and on_timer_set synchronously: both are safe here.
  curl_multi_remove_handle(multi_, transfer->easy);
  release(transfer.get());
}

void CurlMulti::close() {
  if (multi_ == nullptr) return;
  closed_ = true;
  while (!transfers_.empty()) cancel(transfers_.begin()->first);
  // Closes cached connections; may still report CURL_POLL_REMOVE for their sockets, which
  // finds the watcher (or nothing) in sockets_.
  curl_multi_cleanup(multi_);
  multi_ = nullptr;
  sockets_.clear();  // each UvPoll closes; its memory goes in the close callback
  timer_.close();
}

int CurlMulti::on_socket(CURL*, curl_socket_t fd, int what, void* userp, void*) {
  auto* self = static_cast<CurlMulti*>(userp);
  if (what == CURL_POLL_REMOVE) {
    // Dropping the watcher stops polling at once (uv_close), before curl closes the socket.
    self->sockets_.erase(fd);
    return 0;
  }
  if (self->closed_) return 0;
  std::unique_ptr<SocketWatch>& watch = self->sockets_[fd];
  if (!watch) {
    watch = std::make_unique<SocketWatch>();
    watch->owner = self;
    watch->fd = fd;
    const int rc = watch->poll.init(uv_poll_init_socket, self->loop_, fd);
    if (rc != 0) {
      LOG_WARN("msg=\"cannot watch an HTTP client socket\" error=\"%s\"", uv_strerror(rc));
      self->sockets_.erase(fd);
      return -1;  // curl fails the transfer that owns this socket
    }
    watch->poll->data = watch.get();
  }
  int events = 0;
  if ((what & CURL_POLL_IN) != 0) events |= UV_READABLE;
  if ((what & CURL_POLL_OUT) != 0) events |= UV_WRITABLE;
  if (events == 0) {
    uv_poll_stop(watch->poll.get());
  } else {
    uv_poll_start(watch->poll.get(), events, &CurlMulti::on_poll);
  }
  return 0;
}

int CurlMulti::on_timer_set(CURLM*, long timeout_ms, void* userp) {
  auto* self = static_cast<CurlMulti*>(userp);
  if (!self->timer_.initialized()) return 0;
  if (timeout_ms < 0) {
    uv_timer_stop(self->timer_.get());
  } else {
    // 0 is valid: the action then runs on the next loop iteration, outside this callback
    // (curl_multi_socket_action must not be called from inside a curl callback).
    uv_timer_start(self->timer_.get(), &CurlMulti::on_timeout, static_cast<uint64_t>(timeout_ms), 0);
  }
  return 0;
}

void CurlMulti::on_poll(uv_poll_t* handle, int status, int events) {
  auto* watch = static_cast<SocketWatch*>(handle->data);
  if (watch == nullptr) return;
  // The action may drop this watcher (CURL_POLL_REMOVE): copy what is needed first and do
  // not touch `watch` afterwards.
  CurlMulti* self = watch->owner;
  const curl_socket_t fd = watch->fd;
  int flags = 0;
  if (status < 0) {
    flags = CURL_CSELECT_ERR;
  } else {
    if ((events & UV_READABLE) != 0) flags |= CURL_CSELECT_IN;
    if ((events & UV_WRITABLE) != 0) flags |= CURL_CSELECT_OUT;
  }
  self->socket_action(fd, flags);
}

void CurlMulti::on_timeout(uv_timer_t* timer) {
  auto* self = static_cast<CurlMulti*>(timer->data);
  if (self != nullptr) self->socket_action(CURL_SOCKET_TIMEOUT, 0);
}

size_t CurlMulti::on_write(char* data, size_t size, size_t count, void* userp) {
  auto* transfer = static_cast<Transfer*>(userp);
  const size_t bytes = size * count;
  if (transfer->response.size() + bytes > transfer->max_body_bytes) {
    transfer->too_large = true;
    return 0;  // anything but `bytes` aborts the transfer (CURLE_WRITE_ERROR)
  }
  transfer->response.append(data, bytes);
  return bytes;
}

void CurlMulti::socket_action(curl_socket_t fd, int flags) {
  if (closed_ || multi_ == nullptr) return;
  int running = 0;
  const CURLMcode rc = curl_multi_socket_action(multi_, fd, flags, &running);
  if (rc != CURLM_OK) {
    uint64_t suppressed = 0;
    if (error_log_.allow(monotonic_ms(), &suppressed)) {
      LOG_WARN("msg=\"curl_multi_socket_action failed\" error=\"%s\" suppressed=%llu", curl_multi_strerror(rc),
               static_cast<unsigned long long>(suppressed));
    }
  }
  finish_transfers();
}

void CurlMulti::finish_transfers() {
  int left = 0;
  while (!closed_) {
    CURLMsg* message = curl_multi_info_read(multi_, &left);
    if (message == nullptr) break;
    if (message->msg != CURLMSG_DONE) continue;
    // The message is invalid once its handle is removed: copy it out first.
    CURL* easy = message->easy_handle;
    const CURLcode code = message->data.result;
    char* private_data = nullptr;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &private_data);
    auto* found = reinterpret_cast<Transfer*>(private_data);
    curl_multi_remove_handle(multi_, easy);
    auto it = found != nullptr ? transfers_.find(found->id) : transfers_.end();
    if (it == transfers_.end()) {
      curl_easy_cleanup(easy);  // not ours (cannot happen); do not leak it
      continue;
    }
    std::unique_ptr<Transfer> transfer = std::move(it->second);
    transfers_.erase(it);

    HttpFetchResult result;
    result.elapsed_ms = monotonic_ms() - transfer->started_ms;
    if (code == CURLE_OK) {
      result.outcome = HttpFetchOutcome::answered;
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &result.status);
      result.body = std::move(transfer->response);
    } else {
      if (transfer->too_large || code == CURLE_FILESIZE_EXCEEDED) {
        result.outcome = HttpFetchOutcome::too_large;
      } else if (code == CURLE_OPERATION_TIMEDOUT) {
        result.outcome = HttpFetchOutcome::timeout;
      } else if (code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_HOST ||
                 code == CURLE_COULDNT_RESOLVE_PROXY) {
        result.outcome = HttpFetchOutcome::connect_error;
      } else {
        result.outcome = HttpFetchOutcome::error;
      }
      result.error = transfer->error_buffer[0] != '\0' ? transfer->error_buffer : curl_easy_strerror(code);
    }
    release(transfer.get());
    Completion completion = std::move(transfer->completion);
    transfer.reset();
    try {
      if (completion) completion(std::move(result));
    } catch (const std::exception& e) {
      LOG_ERROR("msg=\"HTTP request completion failed\" error=\"%s\"", e.what());
    }
  }
}

}  // namespace hubdns
