// CurlMulti on a real EventLoop against a scripted HTTP server on 127.0.0.1 (a blocking
// server on its own thread), and the pure parts of ScheduledEventsWatcher (backoff,
// classification). Every loop test ends with EventLoop::close() == 0: no handle leaked.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/uv/handle.h"
#include "common/util/clock.h"
#include "probe/curl_multi.h"
#include "probe/scheduled_events.h"
#include "tests/unit/probe/probe_test_support.h"

using namespace hubdns;

namespace {

// Answers each connection according to `script(request)`: the raw bytes to send back, or
// nullopt to hold the connection open without answering until stop().
class ScriptedHttpServer {
 public:
  using Script = std::function<std::optional<std::string>(const std::string& request)>;

  explicit ScriptedHttpServer(Script script) : script_(std::move(script)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0);
    socklen_t length = sizeof sin;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&sin), &length);
    port_ = ntohs(sin.sin_port);
    REQUIRE(::listen(fd_, 16) == 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~ScriptedHttpServer() { stop(); }

  void stop() {
    if (stopped_.exchange(true)) return;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
    std::lock_guard<std::mutex> lock(mutex_);
    for (int fd : held_) ::close(fd);
    held_.clear();
  }

  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
  std::vector<std::string> requests() {
    std::lock_guard<std::mutex> lock(mutex_);
    return requests_;
  }

 private:
  void serve() {
    while (!stopped_) {
      int client = ::accept(fd_, nullptr, nullptr);
      if (client < 0) return;
      std::string request;
      char buffer[4096];
      size_t body_expected = 0;
      size_t head_end = std::string::npos;
      while (true) {
        if (head_end != std::string::npos && request.size() >= head_end + 4 + body_expected) break;
        ssize_t n = ::recv(client, buffer, sizeof buffer, 0);
        if (n <= 0) break;
        request.append(buffer, static_cast<size_t>(n));
        if (head_end == std::string::npos) {
          head_end = request.find("\r\n\r\n");
          if (head_end != std::string::npos) {
            size_t at = request.find("Content-Length: ");
            if (at != std::string::npos && at < head_end) body_expected = std::stoul(request.substr(at + 16));
          }
        }
      }
      std::optional<std::string> answer = script_(request);
      std::lock_guard<std::mutex> lock(mutex_);
      requests_.push_back(request);
      if (answer) {
        ::send(client, answer->data(), answer->size(), MSG_NOSIGNAL);
        ::close(client);
      } else {
        held_.push_back(client);
      }
    }
  }

  Script script_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopped_{false};
  std::thread thread_;
  std::mutex mutex_;
  std::vector<std::string> requests_;
  std::vector<int> held_;
};

std::string http_answer(int status, const std::string& body) {
  return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

// Runs the loop until `done` or the deadline.
void run_until(EventLoop& loop, const std::function<bool()>& done, uint64_t timeout_ms = 5000) {
  UvTimer guard;
  guard.init(uv_timer_init, loop.get());
  uv_timer_start(guard.get(), [](uv_timer_t*) {}, 20, 20);
  const uint64_t deadline = monotonic_ms() + timeout_ms;
  while (!done() && monotonic_ms() < deadline) loop.run(UV_RUN_ONCE);
  guard.close();
}

struct Fetched {
  bool called = false;
  HttpFetchResult result;
};

CurlMulti::Completion record(Fetched* fetched) {
  return [fetched](HttpFetchResult&& result) {
    fetched->called = true;
    fetched->result = std::move(result);
  };
}

// Tests set http_proxy to a dead port: requests must not go through it.
struct ProxyEnvironment {
  ProxyEnvironment() {
    ::setenv("http_proxy", "http://127.0.0.1:9", 1);
    ::setenv("ALL_PROXY", "http://127.0.0.1:9", 1);
  }
  ~ProxyEnvironment() {
    ::unsetenv("http_proxy");
    ::unsetenv("ALL_PROXY");
  }
};

}  // namespace

TEST_CASE("CurlMulti: GET and POST on the loop, direct, with the given headers") {
  CurlGlobal global;
  ProxyEnvironment proxy;
  ScriptedHttpServer server([](const std::string& request) -> std::optional<std::string> {
    if (request.rfind("POST ", 0) == 0) return http_answer(200, "");
    return http_answer(200, R"({"ok":true})");
  });
  EventLoop loop;
  {
    CurlMulti http(loop.get());
    Fetched get, post;
    std::string error;
    HttpFetchRequest request;
    request.url = server.url("/metadata/instance?api-version=2021-02-01");
    request.headers = {"Metadata: true"};
    CHECK(http.start(request, record(&get), &error) > 0);
    request.method = "POST";
    request.url = server.url("/metadata/scheduledevents?api-version=2020-07-01");
    request.headers.push_back("Content-Type: application/json");
    request.body = R"({"StartRequests":[{"EventId":"E1"}]})";
    CHECK(http.start(request, record(&post), &error) > 0);
    CHECK(http.in_flight() == 2);
    CHECK_FALSE(get.called);  // never inside start()
    run_until(loop, [&] { return get.called && post.called; });
    REQUIRE(get.called);
    CHECK(get.result.outcome == HttpFetchOutcome::answered);
    CHECK(get.result.status == 200);
    CHECK(get.result.body == R"({"ok":true})");
    REQUIRE(post.called);
    CHECK(post.result.status == 200);
    CHECK(http.in_flight() == 0);
    std::vector<std::string> seen = server.requests();
    REQUIRE(seen.size() == 2);
    for (const std::string& raw : seen) {
      CHECK(raw.find(" /metadata/") != std::string::npos);  // origin-form: not sent to a proxy
      CHECK(raw.find("\r\nMetadata: true\r\n") != std::string::npos);
    }
    const std::string& raw_post = seen[0].rfind("POST", 0) == 0 ? seen[0] : seen[1];
    CHECK(raw_post.find("\r\n\r\n{\"StartRequests\":[{\"EventId\":\"E1\"}]}") != std::string::npos);
    http.close();
    CHECK(http.watched_sockets() == 0);
  }
  CHECK(loop.close() == 0);
  server.stop();
}

TEST_CASE("CurlMulti: refused, timeout, oversized body, HTTP errors") {
  CurlGlobal global;
  ScriptedHttpServer server([](const std::string& request) -> std::optional<std::string> {
    if (request.find("GET /hang") == 0) return std::nullopt;
    if (request.find("GET /big") == 0) return "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + std::string(5000, 'x');
    if (request.find("GET /declared") == 0) return http_answer(200, std::string(5000, 'y'));
    if (request.find("GET /busy") == 0) return http_answer(429, "{}");
    return "not http at all\r\n\r\n";
  });
  EventLoop loop;
  {
    CurlMulti http(loop.get());
    Fetched refused, hang, big, declared, busy, garbage;
    std::string error;
    HttpFetchRequest request;
    request.timeout_ms = 300;
    request.connect_timeout_ms = 300;
    request.max_body_bytes = 1000;
    request.url = "http://" + test::closed_loopback_port().to_string() + "/";
    REQUIRE(http.start(request, record(&refused), &error) > 0);
    request.url = server.url("/hang");
    REQUIRE(http.start(request, record(&hang), &error) > 0);
    request.url = server.url("/big");
    REQUIRE(http.start(request, record(&big), &error) > 0);
    request.url = server.url("/declared");
    REQUIRE(http.start(request, record(&declared), &error) > 0);
    request.url = server.url("/busy");
    REQUIRE(http.start(request, record(&busy), &error) > 0);
    request.url = server.url("/garbage");
    REQUIRE(http.start(request, record(&garbage), &error) > 0);
    run_until(loop, [&] {
      return refused.called && hang.called && big.called && declared.called && busy.called && garbage.called;
    });
    CHECK(refused.result.outcome == HttpFetchOutcome::connect_error);
    CHECK(hang.result.outcome == HttpFetchOutcome::timeout);
    CHECK(hang.result.elapsed_ms >= 250);
    CHECK(big.result.outcome == HttpFetchOutcome::too_large);
    CHECK(declared.result.outcome == HttpFetchOutcome::too_large);
    CHECK(busy.result.outcome == HttpFetchOutcome::answered);
    CHECK(busy.result.status == 429);
    CHECK(garbage.result.outcome == HttpFetchOutcome::error);
    CHECK_FALSE(garbage.result.error.empty());

    CHECK(classify_imds_answer(refused.result) == ImdsResult::connect_error);
    CHECK(classify_imds_answer(hang.result) == ImdsResult::timeout);
    CHECK(classify_imds_answer(big.result) == ImdsResult::too_large);
    CHECK(classify_imds_answer(busy.result) == ImdsResult::http_429);
    CHECK(classify_imds_answer(garbage.result) == ImdsResult::error);
    // Unsupported methods and a closed multi never start.
    request.method = "DELETE";
    CHECK(http.start(request, record(&garbage), &error) == 0);
    http.close();
    request.method = "GET";
    CHECK(http.start(request, record(&garbage), &error) == 0);
    CHECK(error == "closed");
  }
  CHECK(loop.close() == 0);
  server.stop();
}

TEST_CASE("CurlMulti: cancel and close with requests in flight call no completion and leak nothing") {
  CurlGlobal global;
  ScriptedHttpServer server([](const std::string&) -> std::optional<std::string> { return std::nullopt; });
  EventLoop loop;
  {
    CurlMulti http(loop.get());
    Fetched first, second;
    std::string error;
    HttpFetchRequest request;
    request.url = server.url("/hang");
    const uint64_t id = http.start(request, record(&first), &error);
    REQUIRE(id > 0);
    REQUIRE(http.start(request, record(&second), &error) > 0);
    // Let both connect and send, so curl watches their sockets.
    run_until(loop, [&] { return server.requests().size() == 2; });
    CHECK(http.watched_sockets() == 2);
    http.cancel(id);
    http.cancel(id);      // twice: ignored
    http.cancel(999999);  // unknown: ignored
    CHECK(http.in_flight() == 1);
    CHECK(http.watched_sockets() == 1);
    run_until(loop, [] { return false; }, 100);
    http.close();  // the second one still in flight
    CHECK(http.in_flight() == 0);
    CHECK(http.watched_sockets() == 0);
    CHECK_FALSE(first.called);
    CHECK_FALSE(second.called);
  }
  CHECK(loop.close() == 0);
  server.stop();
}

TEST_CASE("A completion may start the next request") {
  CurlGlobal global;
  ScriptedHttpServer server([](const std::string&) -> std::optional<std::string> { return http_answer(200, "{}"); });
  EventLoop loop;
  {
    CurlMulti http(loop.get());
    int completed = 0;
    std::string error;
    HttpFetchRequest request;
    request.url = server.url("/again");
    std::function<void(HttpFetchResult&&)> again = [&](HttpFetchResult&& result) {
      CHECK(result.status == 200);
      if (++completed < 5) CHECK(http.start(request, again, &error) > 0);
    };
    REQUIRE(http.start(request, again, &error) > 0);
    run_until(loop, [&] { return completed == 5; });
    CHECK(completed == 5);
  }
  CHECK(loop.close() == 0);
  server.stop();
}

TEST_CASE("IMDS backoff: exponential from the poll interval, capped, jittered in the upper half") {
  CHECK(imds_backoff_ms(1, 1000, 60000, 0) == 500);
  CHECK(imds_backoff_ms(1, 1000, 60000, 0xFFFFFFFFu) == 999);
  CHECK(imds_backoff_ms(2, 1000, 60000, 0) == 1000);
  CHECK(imds_backoff_ms(3, 1000, 60000, 0x80000000u) == 3000);
  CHECK(imds_backoff_ms(7, 1000, 60000, 0) == 30000);   // 64 s capped at 60 s
  CHECK(imds_backoff_ms(1000, 1000, 60000, 0xFFFFFFFFu) <= 60000);
  CHECK(imds_backoff_ms(1000, 1000, 60000, 0) == 30000);
  CHECK(imds_backoff_ms(0, 1000, 60000, 0) == 1000);
}

TEST_CASE("IMDS answers are classified by status") {
  HttpFetchResult result;
  result.outcome = HttpFetchOutcome::answered;
  result.status = 200;
  CHECK(classify_imds_answer(result) == ImdsResult::ok);
  result.status = 503;
  CHECK(classify_imds_answer(result) == ImdsResult::http_5xx);
  result.status = 404;
  CHECK(classify_imds_answer(result) == ImdsResult::http_other);
  result.status = 301;  // redirects are not followed
  CHECK(classify_imds_answer(result) == ImdsResult::http_other);
}
