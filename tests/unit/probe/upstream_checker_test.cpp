// The control-loop parts of the health checks against a scripted DNS server on 127.0.0.1:
// DnsExchange (UDP and TCP: answers, timeouts, mismatches, ICMP errors, cancel),
// UpstreamChecker (rise/fall through real probes, passive evidence, the shared status),
// DataPathSelfCheck and TcpProbePort. The loop runs on the test thread; the fake server on
// its own. Every test ends with EventLoop::close() == 0: no handle leaked.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/dns/message.h"
#include "common/health/loop_probes.h"
#include "common/health/upstream_health.h"
#include "common/uv/handle.h"
#include "probe/dns_exchange.h"
#include "probe/loop_detector.h"
#include "probe/probe_query.h"
#include "tests/unit/probe/probe_test_support.h"
#include "probe/self_check.h"
#include "probe/tcp_probe_port.h"
#include "probe/upstream_checker.h"

using namespace hubdns;

namespace {

enum class Mode { answer, servfail, drop, wrong_id, txt };

// A DNS server on 127.0.0.1 (UDP and TCP, same port) answering as `mode` says.
class FakeDnsServer {
 public:
  FakeDnsServer() {
    // The kernel picks a free UDP port; the same TCP port may be taken: try again then.
    for (int attempt = 0; attempt < 50 && tcp_ < 0; ++attempt) {
      if (udp_ >= 0) ::close(udp_);
      udp_ = ::socket(AF_INET, SOCK_DGRAM, 0);
      sockaddr_in sin{};
      sin.sin_family = AF_INET;
      sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      REQUIRE(::bind(udp_, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0);
      socklen_t length = sizeof sin;
      ::getsockname(udp_, reinterpret_cast<sockaddr*>(&sin), &length);
      port_ = ntohs(sin.sin_port);
      int tcp = ::socket(AF_INET, SOCK_STREAM, 0);
      int one = 1;
      ::setsockopt(tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (::bind(tcp, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0 && ::listen(tcp, 16) == 0) {
        tcp_ = tcp;
      } else {
        ::close(tcp);
      }
    }
    REQUIRE(tcp_ >= 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeDnsServer() {
    stop_ = true;
    thread_.join();
    ::close(udp_);
    ::close(tcp_);
  }
  FakeDnsServer(const FakeDnsServer&) = delete;
  FakeDnsServer& operator=(const FakeDnsServer&) = delete;

  SocketAddress address() const { return *SocketAddress::parse("127.0.0.1", port_); }
  std::atomic<Mode> mode{Mode::answer};
  std::atomic<int> queries{0};
  // When set, a loop probe's token is noted there before `mode` applies, as a DNS worker of
  // ours does when a forwarding loop brings the probe back.
  std::atomic<LoopProbeRegistry*> loops_back_to{nullptr};

 private:
  std::optional<std::vector<uint8_t>> answer(const uint8_t* query, size_t length) {
    ++queries;
    dns::QueryInfo info;
    if (dns::parse_query(query, length, &info) != dns::QueryCheck::ok) return std::nullopt;
    uint64_t token = 0;
    if (LoopProbeRegistry* registry = loops_back_to.load();
        registry != nullptr && parse_loop_probe_name(query + info.qname_offset, info.qname_length, &token)) {
      registry->note_arrival(token);
    }
    uint8_t out[512];
    size_t size = 0;
    switch (mode.load()) {
      case Mode::drop: return std::nullopt;
      case Mode::txt: size = dns::build_txt_answer(query, info, "worker 7", 1232, out, sizeof out); break;
      case Mode::servfail:
        size = dns::build_error_response(query, info, dns::kServFail, dns::ExtendedError::none, 1232, out, sizeof out);
        break;
      case Mode::answer:
      case Mode::wrong_id:
        size = dns::build_error_response(query, info, dns::kNoError, dns::ExtendedError::none, 1232, out, sizeof out);
        break;
    }
    if (mode.load() == Mode::wrong_id) out[0] ^= 0x5A;
    return std::vector<uint8_t>(out, out + size);
  }

  void serve() {
    std::vector<int> clients;
    while (!stop_) {
      std::vector<pollfd> fds{{udp_, POLLIN, 0}, {tcp_, POLLIN, 0}};
      for (int client : clients) fds.push_back({client, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
      uint8_t buffer[4096];
      if (fds[0].revents & POLLIN) {
        sockaddr_storage from{};
        socklen_t from_length = sizeof from;
        ssize_t n = ::recvfrom(udp_, buffer, sizeof buffer, 0, reinterpret_cast<sockaddr*>(&from), &from_length);
        if (n > 0) {
          if (auto reply = answer(buffer, static_cast<size_t>(n))) {
            ::sendto(udp_, reply->data(), reply->size(), 0, reinterpret_cast<sockaddr*>(&from), from_length);
          }
        }
      }
      if (fds[1].revents & POLLIN) {
        int client = ::accept(tcp_, nullptr, nullptr);
        if (client >= 0) clients.push_back(client);
      }
      for (size_t i = 2; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP))) continue;
        // One query per connection is all the health checks send; read it whole.
        ssize_t n = ::recv(fds[i].fd, buffer, sizeof buffer, 0);
        if (n > 2) {
          if (auto reply = answer(buffer + 2, static_cast<size_t>(n) - 2)) {
            uint8_t prefix[2];
            dns::write_u16(prefix, static_cast<uint16_t>(reply->size()));
            ::send(fds[i].fd, prefix, 2, MSG_NOSIGNAL);
            ::send(fds[i].fd, reply->data(), reply->size(), MSG_NOSIGNAL);
          }
        } else {
          ::close(fds[i].fd);
          clients.erase(std::find(clients.begin(), clients.end(), fds[i].fd));
        }
      }
    }
    for (int client : clients) ::close(client);
  }

  int udp_ = -1;
  int tcp_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

SocketAddress closed_port() { return test::closed_loopback_port(); }

// Runs the loop until done() is true or timeout_ms passed; returns done().
bool run_until(EventLoop& loop, const std::function<bool()>& done, uint64_t timeout_ms = 3000) {
  struct State {
    const std::function<bool()>* done;
    uint64_t deadline;
  } state{&done, uv_now(loop.get()) + timeout_ms};
  UvTimer timer;
  timer.init(uv_timer_init, loop.get());
  timer->data = &state;
  uv_timer_start(timer.get(), [](uv_timer_t* t) {
    auto* s = static_cast<State*>(t->data);
    if ((*s->done)() || uv_now(t->loop) >= s->deadline) uv_stop(t->loop);
  }, 2, 2);
  loop.run();
  timer.close();
  return done();
}

std::vector<uint8_t> probe_question(uint16_t id = 0x1111) { return build_dns_query(id, ".", 6, true); }

ConfigSnapshot config_with(std::vector<std::vector<SocketAddress>> rules) {
  auto config = std::make_shared<Config>();
  config->health.timeout = Duration(150);
  config->health.interval = Duration(300);
  config->health.rise = 2;
  config->health.fall = 2;
  const char* zones[] = {".", "corp.example.", "spoke.example."};
  for (size_t i = 0; i < rules.size(); ++i) {
    ForwardRule rule;
    rule.zone = zones[i];
    rule.upstreams = rules[i];
    rule.probe.name = zones[i];
    rule.probe.qtype = 6;
    config->forward.push_back(rule);
  }
  return config;
}

}  // namespace

TEST_CASE("DnsExchange: UDP and TCP answers, timeouts, mismatches, refusals") {
  FakeDnsServer server;
  EventLoop loop;

  for (DnsTransport transport : {DnsTransport::udp, DnsTransport::tcp}) {
    CAPTURE(to_string(transport));
    std::optional<DnsExchangeResult> result;
    DnsExchange::start(loop.get(), transport, server.address(), std::nullopt, probe_question(), 1000,
                       [&](DnsExchangeResult&& r) { result = std::move(r); });
    REQUIRE(run_until(loop, [&] { return result.has_value(); }));
    CHECK(result->error == 0);
    CHECK(dns::message_id(result->answer.data()) == 0x1111);
    CHECK(result->latency_us > 0);
  }

  SUBCASE("no answer: a timeout") {
    server.mode = Mode::drop;
    std::optional<DnsExchangeResult> result;
    const uint64_t started = uv_now(loop.get());
    DnsExchange::start(loop.get(), DnsTransport::udp, server.address(), std::nullopt, probe_question(), 100,
                       [&](DnsExchangeResult&& r) { result = std::move(r); });
    REQUIRE(run_until(loop, [&] { return result.has_value(); }));
    CHECK(result->error == UV_ETIMEDOUT);
    CHECK(uv_now(loop.get()) - started >= 90);
    CHECK(result->mismatched == 0);
  }
  SUBCASE("only a wrong ID: a timeout that saw a mismatch") {
    server.mode = Mode::wrong_id;
    std::optional<DnsExchangeResult> result;
    DnsExchange::start(loop.get(), DnsTransport::udp, server.address(), std::nullopt, probe_question(), 100,
                       [&](DnsExchangeResult&& r) { result = std::move(r); });
    REQUIRE(run_until(loop, [&] { return result.has_value(); }));
    CHECK(result->error == UV_ETIMEDOUT);
    CHECK(result->mismatched == 1);
  }
  SUBCASE("nothing listening: the ICMP error reaches the connected UDP socket; TCP is refused") {
    for (DnsTransport transport : {DnsTransport::udp, DnsTransport::tcp}) {
      std::optional<DnsExchangeResult> result;
      DnsExchange::start(loop.get(), transport, closed_port(), std::nullopt, probe_question(), 1000,
                         [&](DnsExchangeResult&& r) { result = std::move(r); });
      REQUIRE(run_until(loop, [&] { return result.has_value(); }));
      CHECK(result->error == UV_ECONNREFUSED);
    }
  }
  SUBCASE("a setup failure is reported from the loop, never from inside start()") {
    bool called = false;
    SocketAddress bad_source = *SocketAddress::parse("192.0.2.77", 0);  // not an address of this host
    DnsExchange::start(loop.get(), DnsTransport::udp, server.address(), bad_source, probe_question(), 1000,
                       [&](DnsExchangeResult&& r) {
                         called = true;
                         CHECK(r.error == UV_EADDRNOTAVAIL);
                       });
    CHECK_FALSE(called);
    REQUIRE(run_until(loop, [&] { return called; }));
  }
  SUBCASE("cancel: no completion, nothing leaks") {
    server.mode = Mode::drop;
    int calls = 0;
    DnsExchange* udp = DnsExchange::start(loop.get(), DnsTransport::udp, server.address(), std::nullopt,
                                          probe_question(), 1000, [&](DnsExchangeResult&&) { ++calls; });
    DnsExchange* tcp = DnsExchange::start(loop.get(), DnsTransport::tcp, server.address(), std::nullopt,
                                          probe_question(), 1000, [&](DnsExchangeResult&&) { ++calls; });
    udp->cancel();
    tcp->cancel();
    run_until(loop, [] { return false; }, 50);
    CHECK(calls == 0);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("UpstreamChecker: first round, fall, rise, passive evidence, the shared status") {
  FakeDnsServer root;
  FakeDnsServer corp;
  EventLoop loop;
  ConfigSnapshot config = config_with({{root.address()}, {corp.address(), closed_port()}});
  auto table = std::make_shared<UpstreamHealthTable>(*config);
  UpstreamChecker checker(loop.get(), config, table);
  int changes = 0;
  checker.set_change_listener([&] { ++changes; });
  auto idle = [&] {
    for (const auto& rule : checker.upstreams())
      for (const auto& upstream : rule)
        if (upstream.in_flight != nullptr) return false;
    return true;
  };
  auto round = [&] {
    checker.run_round();
    REQUIRE(run_until(loop, idle));
  };

  CHECK_FALSE(checker.first_round_done());
  CHECK(checker.unchecked() == 3);
  round();
  CHECK(checker.first_round_done());
  const auto& upstreams = checker.upstreams();
  CHECK(upstreams[0][0].tracker.status() == UpstreamStatus::up);
  CHECK(table->entry(0, 0).status.load() == UpstreamStatus::up);
  CHECK(upstreams[1][0].tracker.status() == UpstreamStatus::up);
  // The closed port failed once: not down yet (fall = 2), not up either.
  CHECK(upstreams[1][1].tracker.status() == UpstreamStatus::unknown);
  CHECK(upstreams[1][1].tracker.last_error() == "network: ECONNREFUSED");
  CHECK(upstreams[0][0].probe_results[static_cast<size_t>(ProbeResult::ok)] == 1);
  CHECK(upstreams[0][0].last_probe_latency_us > 0);

  round();
  CHECK(upstreams[1][1].tracker.status() == UpstreamStatus::down);
  CHECK(table->entry(1, 1).is_down());
  CHECK(upstreams[1][1].probe_results[static_cast<size_t>(ProbeResult::network_error)] == 2);

  // Root starts failing: down after `fall` rounds, then back after `rise`.
  root.mode = Mode::servfail;
  round();
  CHECK(upstreams[0][0].tracker.status() == UpstreamStatus::up);
  round();
  CHECK(upstreams[0][0].tracker.status() == UpstreamStatus::down);
  CHECK(table->entry(0, 0).is_down());
  CHECK(upstreams[0][0].tracker.last_error() == "SERVFAIL");
  CHECK(upstreams[0][0].tracker.last_error_streak() == 2);
  root.mode = Mode::answer;
  round();
  CHECK(upstreams[0][0].tracker.status() == UpstreamStatus::down);
  round();
  CHECK(upstreams[0][0].tracker.status() == UpstreamStatus::up);
  CHECK(table->entry(0, 0).status.load() == UpstreamStatus::up);

  // Real answers since the last round: no probe for that upstream, and it counts as success.
  const int corp_queries = corp.queries.load();
  table->entry(1, 0).record_answer(1500);
  round();
  CHECK(corp.queries.load() == corp_queries);
  CHECK(upstreams[1][0].traffic_checks == 1);
  round();  // no new answers: probed again
  CHECK(corp.queries.load() == corp_queries + 1);
  // Failures from traffic alone never decide: the probe still succeeds, the upstream stays up.
  table->entry(1, 0).record_failure();
  table->entry(1, 0).record_failure();
  round();
  round();
  CHECK(upstreams[1][0].tracker.status() == UpstreamStatus::up);
  // A down upstream is probed even with traffic answers (workers skip it; only a probe proves it back).
  const uint64_t probes_before = upstreams[1][1].probes_sent();
  table->entry(1, 1).record_answer(100);
  round();
  CHECK(upstreams[1][1].probes_sent() == probes_before + 1);
  CHECK(upstreams[1][1].tracker.status() == UpstreamStatus::down);

  CHECK(changes >= 5);
  checker.close();
  CHECK(loop.close() == 0);
}

TEST_CASE("UpstreamChecker: close() cancels probes in flight") {
  FakeDnsServer server;
  server.mode = Mode::drop;
  EventLoop loop;
  ConfigSnapshot config = config_with({{server.address()}});
  auto table = std::make_shared<UpstreamHealthTable>(*config);
  {
    UpstreamChecker checker(loop.get(), config, table);
    checker.run_round();
    CHECK(checker.upstreams()[0][0].in_flight != nullptr);
  }  // destroyed with a probe outstanding
  run_until(loop, [] { return false; }, 20);
  CHECK(loop.close() == 0);
}

TEST_CASE("DataPathSelfCheck: UDP and TCP answered by a worker, failing after `fall` misses") {
  FakeDnsServer listener;
  listener.mode = Mode::txt;
  EventLoop loop;
  // A wildcard listener is asked on loopback, with the listener's port.
  SocketAddress wildcard = *SocketAddress::parse("0.0.0.0", listener.address().port());
  DataPathSelfCheck check(loop.get(), {wildcard}, 100, 2);
  int changes = 0;
  check.set_change_listener([&] { ++changes; });
  auto idle = [&] {
    for (const auto& target : check.targets())
      if (target.in_flight != nullptr) return false;
    return true;
  };
  REQUIRE(check.targets().size() == 2);
  const std::string port = std::to_string(listener.address().port());
  CHECK(check.targets()[0].name == "127.0.0.1:" + port + "/udp");
  CHECK(check.targets()[1].name == "127.0.0.1:" + port + "/tcp");

  check.run_round();
  REQUIRE(run_until(loop, idle));
  for (const auto& target : check.targets()) {
    CHECK(target.tracker.state == SelfCheckState::passing);
    CHECK(target.answered_by == "worker 7");
    CHECK(target.last_latency_us > 0);
  }
  CHECK(changes == 2);

  listener.mode = Mode::drop;
  check.run_round();
  REQUIRE(run_until(loop, idle));
  CHECK(check.targets()[0].tracker.state == SelfCheckState::passing);
  check.run_round();
  REQUIRE(run_until(loop, idle));
  for (const auto& target : check.targets()) {
    CHECK(target.tracker.state == SelfCheckState::failing);
    CHECK(target.tracker.last_error == "timeout");
  }
  listener.mode = Mode::txt;
  check.run_round();
  REQUIRE(run_until(loop, idle));
  CHECK(check.targets()[0].tracker.state == SelfCheckState::passing);
  check.close();
  CHECK(loop.close() == 0);
}

TEST_CASE("TcpProbePort: accepts while ready, refuses while not, listens again when ready") {
  EventLoop loop;
  // A closed port can be taken by another process (tests run in parallel) before the probe
  // port listens on it: then try another one.
  SocketAddress address;
  std::unique_ptr<TcpProbePort> holder;
  for (int attempt = 0; attempt < 10; ++attempt) {
    address = closed_port();
    holder = std::make_unique<TcpProbePort>(loop.get(), std::vector<SocketAddress>{address});
    holder->set_ready(true);
    if (holder->listening()) break;
    holder->close();
  }
  REQUIRE(holder->listening());
  holder->set_ready(false);
  TcpProbePort& port = *holder;
  auto connects = [&] {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    bool ok = ::connect(fd, address.sockaddr_ptr(), address.sockaddr_len()) == 0;
    int error = errno;
    ::close(fd);
    if (!ok) CHECK(error == ECONNREFUSED);
    return ok;
  };
  CHECK_FALSE(port.listening());
  CHECK_FALSE(connects());
  port.set_ready(true);
  CHECK(port.listening());
  CHECK(connects());
  run_until(loop, [&] { return port.accepted() >= 1; });
  CHECK(port.accepted() == 1);
  port.set_ready(false);
  CHECK_FALSE(port.listening());
  CHECK_FALSE(connects());
  run_until(loop, [] { return false; }, 20);
  port.set_ready(true);
  CHECK(connects());
  port.set_ready(true);  // no change: nothing reopened
  CHECK(port.listening_count() == 1);
  port.close();
  port.set_ready(true);  // closed for good
  CHECK_FALSE(port.listening());
  CHECK(loop.close() == 0);
}

TEST_CASE("TcpProbePort: an address that cannot be bound is logged and retried, never fatal") {
  EventLoop loop;
  SocketAddress foreign = *SocketAddress::parse("192.0.2.77", 9);  // not an address of this host
  TcpProbePort port(loop.get(), {foreign});
  port.set_ready(true);
  CHECK_FALSE(port.listening());
  port.set_ready(true);
  CHECK_FALSE(port.listening());
  port.close();
  CHECK(loop.close() == 0);
}

TEST_CASE("UpstreamChecker: a loop verdict is the shared status until cleared; the checks never lift it") {
  FakeDnsServer server;
  EventLoop loop;
  ConfigSnapshot config = config_with({{server.address()}});
  auto table = std::make_shared<UpstreamHealthTable>(*config);
  UpstreamChecker checker(loop.get(), config, table);
  int changes = 0;
  checker.set_change_listener([&] { ++changes; });
  auto round = [&] {
    checker.run_round();
    REQUIRE(run_until(loop, [&] { return checker.upstreams()[0][0].in_flight == nullptr; }));
  };
  round();
  REQUIRE(table->entry(0, 0).status.load() == UpstreamStatus::up);
  const int before = changes;

  CHECK(checker.set_loop(0, 0, server.address(), true));
  CHECK(changes == before + 1);
  CHECK(table->entry(0, 0).status.load() == UpstreamStatus::loop);
  CHECK_FALSE(table->entry(0, 0).is_usable());
  CHECK(checker.upstreams()[0][0].tracker.status() == UpstreamStatus::loop);
  // Verdicts for an upstream that is not (or no longer) there change nothing.
  CHECK_FALSE(checker.set_loop(0, 0, closed_port(), false));
  CHECK_FALSE(checker.set_loop(3, 0, server.address(), false));
  // Successful checks go on, and the workers still must not use it.
  round();
  round();
  CHECK(table->entry(0, 0).status.load() == UpstreamStatus::loop);
  CHECK(checker.upstreams()[0][0].tracker.health_status() == UpstreamStatus::up);

  CHECK(checker.set_loop(0, 0, server.address(), false));
  CHECK(table->entry(0, 0).status.load() == UpstreamStatus::up);
  CHECK(table->entry(0, 0).is_usable());
  checker.close();
  CHECK(loop.close() == 0);
}

TEST_CASE("LoopDetector: back to us is a loop, an answer without it is clear, no answer is asked again") {
  FakeDnsServer root;         // answers: clear
  FakeDnsServer looping;      // the probe comes back to us, and it answers
  FakeDnsServer silent_loop;  // the probe comes back to us, no answer: judged at the end of the wait
  FakeDnsServer failing;      // SERVFAIL decides nothing
  LoopProbeRegistry registry;
  looping.loops_back_to = &registry;
  silent_loop.loops_back_to = &registry;
  silent_loop.mode = Mode::drop;
  failing.mode = Mode::servfail;
  EventLoop loop;
  const SocketAddress closed = closed_port();
  ConfigSnapshot config = config_with(
      {{root.address()}, {looping.address(), silent_loop.address(), closed}, {failing.address()}});
  LoopDetector detector(loop.get(), config, &registry, {.max_wait_ms = 150, .first_retry_ms = 20, .max_retry_ms = 40});
  std::vector<std::pair<std::string, bool>> verdicts;
  detector.set_verdict_listener(
      [&](const LoopDetector::Upstream& upstream, bool in_loop) { verdicts.emplace_back(upstream.address_text, in_loop); });
  const auto& upstreams = detector.upstreams();

  detector.run_all();
  CHECK(registry.outstanding() == 5);  // every token registered before its probe left
  REQUIRE(run_until(loop, [&] {
    return upstreams[0][0].state == LoopCheckState::clear && upstreams[1][0].state == LoopCheckState::loop &&
           upstreams[1][1].state == LoopCheckState::loop && upstreams[1][2].probes_sent >= 3 &&
           upstreams[2][0].probes_sent >= 3;
  }));
  CHECK(upstreams[0][0].last_result == "NOERROR");
  CHECK(upstreams[1][0].last_result == "came back to this instance");
  CHECK(upstreams[1][2].state == LoopCheckState::retrying);
  CHECK(upstreams[1][2].last_result == "network: ECONNREFUSED");
  CHECK(upstreams[2][0].state == LoopCheckState::retrying);
  CHECK(upstreams[2][0].last_result == "SERVFAIL");
  // One verdict each for the three that got one; none for the others.
  std::sort(verdicts.begin(), verdicts.end());
  std::vector<std::pair<std::string, bool>> expected{{root.address().to_string(), false},
                                                     {looping.address().to_string(), true},
                                                     {silent_loop.address().to_string(), true}};
  std::sort(expected.begin(), expected.end());
  CHECK(verdicts == expected);
  // A verdict is not asked again; only the undecided are.
  CHECK(root.queries.load() == 1);
  CHECK(looping.queries.load() == 1);
  CHECK(silent_loop.queries.load() == 1);
  CHECK(detector.results()[static_cast<size_t>(LoopProbeResult::loop)] == 2);
  CHECK(detector.results()[static_cast<size_t>(LoopProbeResult::clear)] == 1);
  CHECK(detector.results()[static_cast<size_t>(LoopProbeResult::no_verdict)] >= 4);
  // The undecided keep at most their last token (and the one in flight).
  CHECK(registry.outstanding() <= 4);

  detector.close();
  CHECK(registry.outstanding() == 0);
  const uint64_t sent = upstreams[1][2].probes_sent;
  run_until(loop, [] { return false; }, 100);
  CHECK(upstreams[1][2].probes_sent == sent);  // no retry after close()
  CHECK(loop.close() == 0);
}

TEST_CASE("LoopDetector: run_all() and reconfigure() while probes are in flight start over cleanly") {
  FakeDnsServer server;
  server.mode = Mode::drop;
  LoopProbeRegistry registry;
  EventLoop loop;
  LoopDetector detector(loop.get(), config_with({{server.address()}}), &registry, {.max_wait_ms = 1000});
  detector.run_all();
  CHECK(registry.outstanding() == 1);
  CHECK(detector.upstreams()[0][0].in_flight != nullptr);
  detector.run_all();  // the first probe is cancelled and its token forgotten
  CHECK(registry.outstanding() == 1);
  CHECK(detector.upstreams()[0][0].probes_sent == 2);
  CHECK(detector.upstreams()[0][0].state == LoopCheckState::pending);

  detector.reconfigure(config_with({{server.address(), closed_port()}}));
  REQUIRE(detector.upstreams()[0].size() == 2);
  CHECK(registry.outstanding() == 2);
  REQUIRE(run_until(loop, [&] { return detector.upstreams()[0][1].state == LoopCheckState::retrying; }));
  CHECK(detector.upstreams()[0][0].state == LoopCheckState::pending);
  {
    // Destroyed with a probe in flight and a retry planned.
    LoopDetector other(loop.get(), config_with({{closed_port()}}), &registry, {.first_retry_ms = 1000});
    other.run_all();
    REQUIRE(run_until(loop, [&] { return other.upstreams()[0][0].state == LoopCheckState::retrying; }));
  }
  detector.close();
  CHECK(registry.outstanding() == 0);
  run_until(loop, [] { return false; }, 20);
  CHECK(loop.close() == 0);
}
