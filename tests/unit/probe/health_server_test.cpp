// HealthServer on a real EventLoop on 127.0.0.1 port 0. The loop runs on the test thread;
// a plain blocking-socket client runs on a second thread and, when done, wakes the loop
// with uv_async_send so the server is closed on its own thread. Every test ends with
// EventLoop::close() == 0: no handle leaked.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/config/config.h"
#include "common/health/process_state.h"
#include "common/health/upstream_health.h"
#include "common/metrics/registry.h"
#include "common/uv/handle.h"
#include "common/util/clock.h"
#include "probe/health_monitor.h"
#include "probe/health_server.h"
#include "tests/unit/probe/probe_test_support.h"

using namespace hubdns;

namespace {

SocketAddress loopback_port_zero() {
  std::string error;
  std::optional<SocketAddress> address = SocketAddress::parse("127.0.0.1:0", 0, &error);
  REQUIRE_MESSAGE(address.has_value(), error);
  return *address;
}

// A blocking client socket with a receive timeout, so a broken server fails the test
// instead of hanging it.
class TestClient {
 public:
  explicit TestClient(uint16_t port, int timeout_ms = 5000) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval timeout{};
    timeout.tv_sec = timeout_ms / 1000;
    timeout.tv_usec = (timeout_ms % 1000) * 1000;
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    ::inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    connected_ = ::connect(fd_, reinterpret_cast<const sockaddr*>(&sin), sizeof sin) == 0;
  }
  ~TestClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;

  bool connected() const { return connected_; }

  void send(std::string_view data) {
    while (!data.empty()) {
      ssize_t sent = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (sent <= 0) return;
      data.remove_prefix(static_cast<size_t>(sent));
    }
  }

  // Reads until the server closes (sets closed_by_server) or the timeout expires.
  std::string read_until_close() {
    std::string received;
    char buffer[4096];
    for (;;) {
      ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
      if (n > 0) {
        received.append(buffer, static_cast<size_t>(n));
        continue;
      }
      // A reset after the server's FIN (the client kept sending) also means "closed".
      closed_by_server_ = (n == 0 || errno == ECONNRESET);
      return received;
    }
  }

  // Reads until `count` complete responses (headers + Content-Length body) arrived.
  std::string read_responses(size_t count) {
    std::string received;
    char buffer[4096];
    while (complete_responses(received) < count) {
      ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
      if (n <= 0) {
        closed_by_server_ = (n == 0 || errno == ECONNRESET);
        break;
      }
      received.append(buffer, static_cast<size_t>(n));
    }
    return received;
  }

  bool closed_by_server() const { return closed_by_server_; }

 private:
  static size_t complete_responses(std::string_view text) {
    size_t count = 0;
    for (;;) {
      size_t end = text.find("\r\n\r\n");
      if (end == std::string_view::npos) return count;
      size_t length_at = text.find("Content-Length: ");
      size_t length = 0;
      if (length_at != std::string_view::npos && length_at < end) {
        length = std::stoul(std::string(text.substr(length_at + 16, end - length_at - 16)));
      }
      // HEAD answers carry Content-Length but no body; the tests only pipeline GETs.
      if (text.size() < end + 4 + length) return count;
      text.remove_prefix(end + 4 + length);
      ++count;
    }
  }

  int fd_ = -1;
  bool connected_ = false;
  bool closed_by_server_ = false;
};

// One exchange on a fresh connection: send the request, read until the server closes.
struct Exchange {
  std::string response;
  bool closed_by_server = false;
};

Exchange request_once(uint16_t port, std::string_view request) {
  TestClient client(port);
  Exchange result;
  if (!client.connected()) return result;
  client.send(request);
  result.response = client.read_until_close();
  result.closed_by_server = client.closed_by_server();
  return result;
}

std::string status_line(const std::string& response) { return response.substr(0, response.find("\r\n")); }

std::string body_of(const std::string& response) {
  size_t end = response.find("\r\n\r\n");
  return end == std::string::npos ? std::string{} : response.substr(end + 4);
}

bool has_header(const std::string& response, std::string_view line) {
  size_t end = response.find("\r\n\r\n");
  size_t at = response.find("\r\n" + std::string(line) + "\r\n");
  return at != std::string::npos && at < end;
}

// Runs the loop on this thread while `client` runs on another; when the client is done,
// `on_done` runs on the loop thread (it must close the server so the loop can end).
void run_with_client(EventLoop& loop, const std::function<void()>& client,
                     std::function<void()> on_done) {
  struct Wakeup {
    UvAsync async;
    std::function<void()> on_done;
  };
  Wakeup wakeup;
  wakeup.on_done = std::move(on_done);
  REQUIRE(wakeup.async.init(uv_async_init, loop.get(), [](uv_async_t* handle) {
    auto* self = static_cast<Wakeup*>(handle->data);
    self->on_done();
    self->async.close();
  }) == 0);
  wakeup.async->data = &wakeup;
  uv_async_t* async = wakeup.async.get();
  std::thread client_thread([&client, async] {
    client();
    uv_async_send(async);
  });
  loop.run();
  client_thread.join();
}

uint16_t first_port(const HealthServer& server) {
  std::vector<SocketAddress> bound = server.bound_addresses();
  REQUIRE(bound.size() == 1);
  return bound[0].port();
}

}  // namespace

TEST_CASE("HealthServer answers /livez, /readyz, 404, 405, HEAD, 400 and 431") {
  EventLoop loop;
  ProcessState state(1);
  state.worker_heartbeat(0, monotonic_ms());
  auto server = std::make_unique<HealthServer>(loop.get(), state);
  std::string error;
  REQUIRE_MESSAGE(server->listen({loopback_port_zero()}, &error) == 0, error);
  const uint16_t port = first_port(*server);
  CHECK(port != 0);

  std::vector<Exchange> results;
  Exchange ready_after_bind;
  run_with_client(
      loop,
      [&] {
        const char* close = " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        results.push_back(request_once(port, std::string("GET /livez") + close));                 // 0
        results.push_back(request_once(port, std::string("GET /livez?format=azure") + close));    // 1
        results.push_back(request_once(port, std::string("GET /readyz") + close));                // 2
        results.push_back(request_once(port, std::string("GET /nope") + close));                  // 3
        results.push_back(request_once(port, std::string("POST /livez") + close));                // 4
        results.push_back(request_once(port, std::string("HEAD /livez") + close));                // 5
        results.push_back(request_once(port, "GET /livez HTTP/1.1\r\nBad Header: x\r\n\r\n"));   // 6
        results.push_back(request_once(port, "GET /livez HTTP/1.1\r\nX: " + std::string(9000, 'a') +
                                             "\r\n\r\n"));                                     // 7
        results.push_back(request_once(port, "GET /healthz HTTP/1.0\r\n\r\n"));                    // 8
        state.set_listeners_bound(true);
        ready_after_bind = request_once(port, std::string("GET /healthz") + close);
      },
      [&] { server->close(); });

  REQUIRE(results.size() == 9);
  for (const Exchange& result : results) CHECK(result.closed_by_server);

  CHECK(status_line(results[0].response) == "HTTP/1.1 200 OK");
  CHECK(body_of(results[0].response) == "ok\n");
  CHECK(has_header(results[0].response, "Content-Type: text/plain; charset=utf-8"));
  CHECK(has_header(results[0].response, "Cache-Control: no-store"));
  CHECK(has_header(results[0].response, "Connection: close"));

  CHECK(status_line(results[1].response) == "HTTP/1.1 200 OK");
  CHECK(has_header(results[1].response, "Content-Type: application/json"));
  CHECK(body_of(results[1].response) == "{\"ApplicationHealthState\":\"Healthy\"}\n");

  CHECK(status_line(results[2].response) == "HTTP/1.1 503 Service Unavailable");
  CHECK(body_of(results[2].response) == "listeners not bound\n");

  CHECK(status_line(results[3].response) == "HTTP/1.1 404 Not Found");

  CHECK(status_line(results[4].response) == "HTTP/1.1 405 Method Not Allowed");
  CHECK(has_header(results[4].response, "Allow: GET, HEAD"));

  CHECK(status_line(results[5].response) == "HTTP/1.1 200 OK");
  CHECK(has_header(results[5].response, "Content-Length: 3"));
  CHECK(body_of(results[5].response).empty());

  CHECK(status_line(results[6].response) == "HTTP/1.1 400 Bad Request");
  CHECK(has_header(results[6].response, "Connection: close"));

  CHECK(status_line(results[7].response) == "HTTP/1.1 431 Request Header Fields Too Large");

  CHECK(status_line(results[8].response) == "HTTP/1.1 503 Service Unavailable");  // 1.0: closes

  CHECK(status_line(ready_after_bind.response) == "HTTP/1.1 200 OK");
  CHECK(body_of(ready_after_bind.response) == "ok\n");

  CHECK(server->stats().bad_requests == 2);
  CHECK(server->connection_count() == 0);
  server.reset();
  CHECK(loop.close() == 0);
}

TEST_CASE("HealthServer keeps connections alive and answers pipelined requests in order") {
  EventLoop loop;
  ProcessState state(0);
  state.set_listeners_bound(true);
  HealthServer server(loop.get(), state);
  std::string error;
  REQUIRE_MESSAGE(server.listen({loopback_port_zero()}, &error) == 0, error);
  const uint16_t port = first_port(server);

  std::string first_reply;
  std::string pipelined;
  std::string split_reply;
  bool closed = false;
  run_with_client(
      loop,
      [&] {
        TestClient client(port);
        client.send("GET /livez HTTP/1.1\r\n\r\n");
        first_reply = client.read_responses(1);
        client.send(
            "GET /readyz HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\nGET /livez?format=azure HTTP/1.1\r\n\r\n");
        pipelined = client.read_responses(3);
        // One request split over several sends.
        client.send("GET /hea");
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        client.send("lthz HTTP/1.1\r\nConn");
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        client.send("ection: close\r\n\r\n");
        split_reply = client.read_until_close();
        closed = client.closed_by_server();
      },
      [&] { server.close(); });

  CHECK(status_line(first_reply) == "HTTP/1.1 200 OK");
  CHECK(has_header(first_reply, "Connection: keep-alive"));

  size_t first = pipelined.find("HTTP/1.1 200 OK\r\n");
  size_t second = pipelined.find("HTTP/1.1 404 Not Found\r\n");
  size_t third = pipelined.find("{\"ApplicationHealthState\":\"Healthy\"}");
  REQUIRE(first != std::string::npos);
  REQUIRE(second != std::string::npos);
  REQUIRE(third != std::string::npos);
  CHECK(first < second);
  CHECK(second < third);

  CHECK(status_line(split_reply) == "HTTP/1.1 200 OK");
  CHECK(closed);
  CHECK(server.stats().connections_accepted == 1);
  CHECK(server.stats().requests == 5);
  server.close();
  CHECK(loop.close() == 0);
}

TEST_CASE("HealthServer cuts slow and idle clients") {
  EventLoop loop;
  ProcessState state(0);
  HealthServerOptions options;
  options.request_timeout_ms = 150;
  options.keep_alive_idle_ms = 150;
  HealthServer server(loop.get(), state, options);
  std::string error;
  REQUIRE_MESSAGE(server.listen({loopback_port_zero()}, &error) == 0, error);
  const uint16_t port = first_port(server);

  bool slow_cut = false;
  bool idle_cut = false;
  bool silent_cut = false;
  std::string idle_reply;
  int64_t slow_elapsed_ms = 0;
  run_with_client(
      loop,
      [&] {
        {
          // Trickles a request slower than the budget allows: the budget is not reset by
          // each byte.
          TestClient client(port);
          auto start = std::chrono::steady_clock::now();
          for (char c : std::string_view("GET /livez HTTP/1.1\r\n")) {
            client.send(std::string_view(&c, 1));
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
          }
          client.read_until_close();
          slow_cut = client.closed_by_server();
          slow_elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::steady_clock::now() - start)
                                .count();
        }
        {
          TestClient client(port);
          client.send("GET /livez HTTP/1.1\r\n\r\n");
          idle_reply = client.read_until_close();  // answer, then cut after the idle time
          idle_cut = client.closed_by_server();
        }
        {
          TestClient client(port);  // connects and never sends
          client.read_until_close();
          silent_cut = client.closed_by_server();
        }
      },
      [&] { server.close(); });

  CHECK(slow_cut);
  CHECK(slow_elapsed_ms < 2000);
  CHECK(idle_cut);
  CHECK(status_line(idle_reply) == "HTTP/1.1 200 OK");
  CHECK(silent_cut);
  CHECK(server.stats().timeouts == 3);
  CHECK(loop.close() == 0);
}

TEST_CASE("HealthServer at its connection cap closes the oldest connection for a new one") {
  // Idle clients holding every slot must not lock the load balancer's probe out.
  EventLoop loop;
  ProcessState state(0);
  HealthServerOptions options;
  options.max_connections = 1;
  HealthServer server(loop.get(), state, options);
  std::string error;
  REQUIRE_MESSAGE(server.listen({loopback_port_zero()}, &error) == 0, error);
  const uint16_t port = first_port(server);

  bool first_cut = false;
  std::string first_reply;
  std::string second_reply;
  run_with_client(
      loop,
      [&] {
        TestClient first(port);
        std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let the server accept it
        TestClient second(port);
        second.send("GET /livez HTTP/1.1\r\nConnection: close\r\n\r\n");
        second_reply = second.read_until_close();
        first_reply = first.read_until_close();
        first_cut = first.closed_by_server();
      },
      [&] { server.close(); });

  CHECK(status_line(second_reply) == "HTTP/1.1 200 OK");
  CHECK(first_cut);
  CHECK(first_reply.empty());
  CHECK(server.stats().connections_evicted == 1);
  CHECK(server.stats().connections_rejected == 0);
  CHECK(loop.close() == 0);
}

TEST_CASE("HealthServer closed or destroyed with connections still open leaks nothing") {
  EventLoop loop;
  ProcessState state(0);
  auto server = std::make_unique<HealthServer>(loop.get(), state);
  std::string error;
  REQUIRE_MESSAGE(server->listen({loopback_port_zero()}, &error) == 0, error);
  const uint16_t port = first_port(*server);

  std::unique_ptr<TestClient> idle;
  std::unique_ptr<TestClient> partial;
  std::unique_ptr<TestClient> unread;
  size_t open_when_destroyed = 0;
  run_with_client(
      loop,
      [&] {
        idle = std::make_unique<TestClient>(port);
        partial = std::make_unique<TestClient>(port);
        partial->send("GET /livez HTTP/1.1\r\nHost:");
        unread = std::make_unique<TestClient>(port);
        // Many pipelined requests whose answers are never read.
        std::string many;
        for (int i = 0; i < 200; ++i) many += "GET /readyz HTTP/1.1\r\n\r\n";
        unread->send(many);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      },
      [&] {
        open_when_destroyed = server->connection_count();
        server.reset();  // destructor closes everything; handles finish closing afterwards
      });

  CHECK(open_when_destroyed == 3);
  CHECK(loop.close() == 0);
}

TEST_CASE("HealthServer::listen binds all addresses or none and names the failing one") {
  EventLoop loop;
  ProcessState state(0);
  HealthServer first(loop.get(), state);
  std::string error;
  REQUIRE(first.listen({loopback_port_zero()}, &error) == 0);
  SocketAddress taken = first.bound_addresses().at(0);

  HealthServer second(loop.get(), state);
  int rc = second.listen({loopback_port_zero(), taken}, &error);
  CHECK(rc == UV_EADDRINUSE);
  CHECK(error.find(taken.to_string()) != std::string::npos);
  CHECK(second.bound_addresses().empty());

  HealthServer twice(loop.get(), state);
  REQUIRE(twice.listen({loopback_port_zero()}, &error) == 0);
  CHECK(twice.listen({loopback_port_zero()}, &error) == UV_EALREADY);

  first.close();
  second.close();
  twice.close();
  loop.run();
  CHECK(loop.close() == 0);
}

TEST_CASE("HealthServer routes: later endpoints are one add_route each") {
  EventLoop loop;
  ProcessState state(0);
  state.set_listeners_bound(true);
  HealthServer server(loop.get(), state);
  server.add_route("GET", "/status", [](const HttpRequest&, const RequestContext& context) {
    return HttpResponse::json(200, std::string("{\"peer_loopback\":") +
                                       (context.peer.is_loopback() ? "true" : "false") + "}");
  });
  server.add_route("POST", "/drain", [](const HttpRequest& request, const RequestContext&) {
    return HttpResponse::text(200, "draining " + request.body + "\n");
  });
  server.add_route("GET", "/drain", [](const HttpRequest&, const RequestContext&) {
    return HttpResponse::text(200, "drain state\n");
  });
  server.add_route("GET", "/throws", [](const HttpRequest&, const RequestContext&) -> HttpResponse {
    throw std::runtime_error("handler bug");
  });
  server.set_readiness_contributor([](ReadinessInputs& inputs) {
    inputs.critical_zones.push_back(
        {".", {{"192.0.2.1:53", UpstreamStatus::down, true, "timeout", 3}}});
  });
  std::string error;
  REQUIRE_MESSAGE(server.listen({loopback_port_zero()}, &error) == 0, error);
  const uint16_t port = first_port(server);

  std::vector<Exchange> results;
  run_with_client(
      loop,
      [&] {
        results.push_back(request_once(port, "GET /status HTTP/1.1\r\nConnection: close\r\n\r\n"));
        results.push_back(request_once(
            port, "POST /drain HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nnow"));
        results.push_back(request_once(port, "PUT /drain HTTP/1.1\r\nConnection: close\r\n\r\n"));
        results.push_back(request_once(port, "GET /readyz HTTP/1.1\r\nConnection: close\r\n\r\n"));
        results.push_back(request_once(port, "GET /throws HTTP/1.1\r\n\r\n"));
      },
      [&] { server.close(); });

  REQUIRE(results.size() == 5);
  CHECK(body_of(results[0].response) == "{\"peer_loopback\":true}");
  CHECK(body_of(results[1].response) == "draining now\n");
  CHECK(status_line(results[2].response) == "HTTP/1.1 405 Method Not Allowed");
  CHECK(has_header(results[2].response, "Allow: POST, GET, HEAD"));
  CHECK(status_line(results[3].response) == "HTTP/1.1 503 Service Unavailable");
  CHECK(body_of(results[3].response) == "zone .: no upstream up (192.0.2.1:53: timeout x3)\n");
  CHECK(status_line(results[4].response) == "HTTP/1.1 500 Internal Server Error");
  CHECK(results[4].closed_by_server);
  CHECK(loop.close() == 0);
}

TEST_CASE("HealthServer liveness reports a silent worker; azure format stays 200") {
  EventLoop loop;
  ProcessState state(2);
  state.worker_heartbeat(0, monotonic_ms());  // worker 1 never beats
  HealthServer server(loop.get(), state);
  CHECK_FALSE(server.liveness().alive);
  std::string error;
  REQUIRE_MESSAGE(server.listen({loopback_port_zero()}, &error) == 0, error);
  const uint16_t port = first_port(server);

  Exchange plain;
  Exchange azure;
  Exchange azure_path;
  run_with_client(
      loop,
      [&] {
        plain = request_once(port, "GET /livez HTTP/1.1\r\nConnection: close\r\n\r\n");
        azure = request_once(port, "GET /livez?format=azure HTTP/1.1\r\nConnection: close\r\n\r\n");
        azure_path = request_once(port, "GET /livez/azure HTTP/1.1\r\nConnection: close\r\n\r\n");
      },
      [&] { server.close(); });

  CHECK(status_line(plain.response) == "HTTP/1.1 503 Service Unavailable");
  CHECK(body_of(plain.response) == "worker 1 event loop has not started\n");
  CHECK(status_line(azure.response) == "HTTP/1.1 200 OK");
  CHECK(body_of(azure.response) == "{\"ApplicationHealthState\":\"Unhealthy\"}\n");
  CHECK(status_line(azure_path.response) == "HTTP/1.1 200 OK");
  CHECK(body_of(azure_path.response) == "{\"ApplicationHealthState\":\"Unhealthy\"}\n");
  CHECK(loop.close() == 0);
}

TEST_CASE("HealthMonitor: readiness reasons from real checks, /status, POST /drain from loopback") {
  EventLoop loop;
  ProcessState state(0);
  state.set_listeners_bound(true);
  HealthServer server(loop.get(), state);
  // An upstream port nothing listens on: every probe ends with ECONNREFUSED at once.
  const std::string upstream = test::closed_loopback_port().to_string();

  auto config = std::make_shared<Config>();
  config->source = "test \"config\".toml";
  config->health.interval = Duration(50);
  config->health.timeout = Duration(40);
  config->health.rise = 1;
  config->health.fall = 2;
  ForwardRule rule;
  rule.zone = ".";
  rule.upstreams = {*SocketAddress::parse(upstream, 53)};
  rule.probe = {".", 6};
  config->forward.push_back(rule);
  auto table = std::make_shared<UpstreamHealthTable>(*config);
  MetricsRegistry metrics;
  HealthMonitor monitor(loop.get(), &server, config, table, &state, {});
  monitor.register_metrics(metrics);
  std::string error;
  REQUIRE_MESSAGE(server.listen({loopback_port_zero()}, &error) == 0, error);
  const uint16_t port = first_port(server);
  CHECK_FALSE(monitor.ready());  // before the first round
  monitor.start();

  std::vector<Exchange> results;
  run_with_client(
      loop,
      [&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(400));  // several rounds
        results.push_back(request_once(port, "GET /readyz HTTP/1.1\r\nConnection: close\r\n\r\n"));
        results.push_back(request_once(port, "GET /status HTTP/1.1\r\nConnection: close\r\n\r\n"));
        results.push_back(request_once(port, "POST /drain HTTP/1.1\r\nConnection: close\r\n\r\n"));
        results.push_back(request_once(port, "GET /readyz HTTP/1.1\r\nConnection: close\r\n\r\n"));
        results.push_back(request_once(port, "GET /drain HTTP/1.1\r\nConnection: close\r\n\r\n"));
        results.push_back(request_once(port, "POST /undrain HTTP/1.1\r\nConnection: close\r\n\r\n"));
      },
      [&] {
        const std::string rendered = metrics.render();
        CHECK(rendered.find("hubdns_upstream_up{zone=\".\",upstream=\"" + upstream + "\"} 0\n") != std::string::npos);
        CHECK(rendered.find("hubdns_upstream_probes_total{zone=\".\",upstream=\"" + upstream +
                            "\",result=\"network_error\"} ") != std::string::npos);
        CHECK(rendered.find("hubdns_ready 0\n") != std::string::npos);
        CHECK(rendered.find("hubdns_config_generation 1\n") != std::string::npos);
        CHECK(rendered.find("hubdns_upstream_latency_seconds_bucket{zone=\".\",upstream=\"" + upstream +
                            "\",le=\"+Inf\"} 0\n") != std::string::npos);
        monitor.close();
        server.close();
      });

  REQUIRE(results.size() == 6);
  CHECK(status_line(results[0].response) == "HTTP/1.1 503 Service Unavailable");
  INFO("readyz said: ", body_of(results[0].response));
  CHECK(body_of(results[0].response).rfind("zone .: no upstream up (" + upstream + ": network: ECONNREFUSED x", 0) == 0);
  CHECK(has_header(results[1].response, "Content-Type: application/json"));
  const std::string status = body_of(results[1].response);
  CHECK(status.find("\"ready\":false") != std::string::npos);
  CHECK(status.find("\"source\":\"test \\\"config\\\".toml\"") != std::string::npos);
  CHECK(status.find("\"status\":\"down\"") != std::string::npos);
  CHECK(status.find("\"last_error\":\"network: ECONNREFUSED\"") != std::string::npos);
  CHECK(status.find("\"first_round_done\":true") != std::string::npos);
  CHECK(status_line(results[2].response) == "HTTP/1.1 200 OK");
  CHECK(body_of(results[3].response).rfind("draining\n", 0) == 0);
  CHECK(status_line(results[4].response) == "HTTP/1.1 405 Method Not Allowed");
  CHECK(has_header(results[4].response, "Allow: POST"));
  CHECK(status_line(results[5].response) == "HTTP/1.1 200 OK");
  CHECK_FALSE(state.draining());
  CHECK(loop.close() == 0);
}
