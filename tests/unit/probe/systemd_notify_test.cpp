// The sd_notify protocol without libsystemd (probe/systemd_notify.h): $NOTIFY_SOCKET and
// $WATCHDOG_* parsing, the status line, and SystemdService on a real loop sending to a
// datagram socket the test reads (a path and an abstract name). Ends with
// EventLoop::close() == 0.
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/uv/handle.h"
#include "common/util/clock.h"
#include "probe/systemd_notify.h"

using namespace hubdns;

namespace {

// A datagram socket standing in for systemd's notification socket.
class FakeNotifySocket {
 public:
  explicit FakeNotifySocket(bool abstract) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    REQUIRE(fd_ >= 0);
    if (abstract) {
      name_ = "@hubdns-unit-" + std::to_string(::getpid()) + "-" + std::to_string(monotonic_ms());
    } else {
      char pattern[] = "/tmp/hubdns-notify-XXXXXX";
      REQUIRE(::mkdtemp(pattern) != nullptr);
      directory_ = pattern;
      name_ = directory_ + "/notify.sock";
    }
    std::string error;
    std::optional<NotifyAddress> address = parse_notify_socket(name_, &error);
    REQUIRE_MESSAGE(address.has_value(), error);
    REQUIRE(::bind(fd_, reinterpret_cast<const sockaddr*>(&address->address), address->length) == 0);
    address_ = *address;
  }
  ~FakeNotifySocket() {
    ::close(fd_);
    if (!directory_.empty()) {
      ::unlink(name_.c_str());
      ::rmdir(directory_.c_str());
    }
  }

  const NotifyAddress& address() const { return address_; }
  const std::string& name() const { return name_; }

  std::vector<std::string> receive_all() {
    std::vector<std::string> messages;
    char buffer[4096];
    while (true) {
      ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
      if (n < 0) break;
      messages.emplace_back(buffer, static_cast<size_t>(n));
    }
    return messages;
  }

 private:
  int fd_ = -1;
  std::string name_;
  std::string directory_;
  NotifyAddress address_;
};

// Runs the loop for `ms`, reading the fake socket as it goes (a unix datagram queue holds
// only a few messages: net.unix.max_dgram_qlen).
std::vector<std::string> run_for(EventLoop& loop, uint64_t ms, FakeNotifySocket* fake = nullptr) {
  UvTimer guard;
  guard.init(uv_timer_init, loop.get());
  uv_timer_start(guard.get(), [](uv_timer_t*) {}, 5, 5);
  std::vector<std::string> messages;
  const uint64_t deadline = monotonic_ms() + ms;
  while (monotonic_ms() < deadline) {
    loop.run(UV_RUN_ONCE);
    if (fake != nullptr) {
      for (std::string& message : fake->receive_all()) messages.push_back(std::move(message));
    }
  }
  guard.close();
  return messages;
}

size_t count(const std::vector<std::string>& messages, const std::string& text) {
  size_t n = 0;
  for (const std::string& message : messages) n += message == text ? 1u : 0u;
  return n;
}

}  // namespace

TEST_CASE("NOTIFY_SOCKET: absolute path or abstract name") {
  std::string error;
  std::optional<NotifyAddress> path = parse_notify_socket("/run/systemd/notify", &error);
  REQUIRE(path.has_value());
  CHECK_FALSE(path->abstract);
  CHECK(std::string(path->address.sun_path) == "/run/systemd/notify");
  CHECK(path->length == offsetof(sockaddr_un, sun_path) + 20);
  CHECK(path->address.sun_family == AF_UNIX);

  std::optional<NotifyAddress> abstract = parse_notify_socket("@/org/freedesktop/systemd1/notify/42", &error);
  REQUIRE(abstract.has_value());
  CHECK(abstract->abstract);
  CHECK(abstract->address.sun_path[0] == '\0');
  CHECK(std::string(abstract->address.sun_path + 1, 35) == "/org/freedesktop/systemd1/notify/42");
  CHECK(abstract->length == offsetof(sockaddr_un, sun_path) + 36);

  CHECK_FALSE(parse_notify_socket("", &error));
  CHECK_FALSE(parse_notify_socket("relative/path", &error));
  CHECK_FALSE(parse_notify_socket("vsock:2:1234", &error));
  CHECK_FALSE(parse_notify_socket("@", &error));
  CHECK_FALSE(parse_notify_socket("/" + std::string(sizeof(sockaddr_un::sun_path), 'x'), &error));
  CHECK(parse_notify_socket("/" + std::string(sizeof(sockaddr_un::sun_path) - 2, 'x'), &error));
  CHECK(parse_notify_socket("@" + std::string(sizeof(sockaddr_un::sun_path) - 1, 'x'), &error));
}

TEST_CASE("WATCHDOG_USEC applies unless WATCHDOG_PID names another process") {
  CHECK(parse_watchdog_usec("30000000", nullptr, 42) == 30000000u);
  CHECK(parse_watchdog_usec("200000", "42", 42) == 200000u);
  CHECK(parse_watchdog_usec("200000", "", 42) == 200000u);
  CHECK_FALSE(parse_watchdog_usec("200000", "43", 42));
  CHECK_FALSE(parse_watchdog_usec("200000", "x", 42));
  CHECK_FALSE(parse_watchdog_usec(nullptr, nullptr, 42));
  CHECK_FALSE(parse_watchdog_usec("0", nullptr, 42));
  CHECK_FALSE(parse_watchdog_usec("-5", nullptr, 42));
  CHECK_FALSE(parse_watchdog_usec("10s", nullptr, 42));
  CHECK_FALSE(parse_watchdog_usec("", nullptr, 42));
}

TEST_CASE("Messages: RELOADING with MONOTONIC_USEC, and the status line") {
  CHECK(reloading_message(123456789) == "RELOADING=1\nMONOTONIC_USEC=123456789");

  StatusView view;
  view.workers.resize(2);
  ZoneStatusView root;
  root.upstreams.resize(3);
  root.upstreams[0].status = UpstreamStatus::up;
  root.upstreams[1].status = UpstreamStatus::up;
  ZoneStatusView corp;
  corp.upstreams.resize(2);
  corp.upstreams[0].status = UpstreamStatus::down;
  view.zones = {root, corp};
  view.ready = true;
  CHECK(service_status_line(view) == "ready; 2 workers; 2 zones, 2/5 upstreams up");
  view.ready = false;
  view.draining = true;
  view.reasons = {"draining"};
  CHECK(service_status_line(view) == "draining; 2 workers; 2 zones, 2/5 upstreams up");
  view.draining = false;
  view.reasons = {"zone .: no upstream up (10.0.0.1:53: timeout x3)", "first upstream check round not finished"};
  CHECK(service_status_line(view) == "not ready: zone .: no upstream up (10.0.0.1:53: timeout x3) (+1 more)");
  view.reasons = {std::string(500, 'r') + "\nsecond line"};
  const std::string line = service_status_line(view);
  CHECK(line.size() <= 200);
  CHECK(line.find('\n') == std::string::npos);
}

TEST_CASE("SystemdService: READY with STATUS, watchdog pings only while alive, STOPPING once") {
  for (bool abstract : {false, true}) {
    CAPTURE(abstract);
    FakeNotifySocket fake(abstract);
    EventLoop loop;
    bool alive = true;
    std::string status = "ready; 1 worker; 1 zone, 1/1 upstreams up";
    {
      SystemdService service(loop.get(), {.alive = [&] { return alive; }, .status_line = [&] { return status; }},
                             fake.address(), 40000);  // WATCHDOG_USEC 40 ms: a ping every 20 ms
      CHECK(service.enabled());
      CHECK(service.watchdog_interval_ms() == 20);
      service.start();
      CHECK(fake.receive_all().empty());  // nothing before the loop runs
      std::vector<std::string> messages = run_for(loop, 130, &fake);
      REQUIRE_FALSE(messages.empty());
      CHECK(messages.front() == "READY=1\nSTATUS=ready; 1 worker; 1 zone, 1/1 upstreams up");
      CHECK(count(messages, "WATCHDOG=1") >= 4);
      CHECK(count(messages, "WATCHDOG=1") <= 8);

      alive = false;  // a stuck worker: no more pings, so systemd restarts us
      messages = run_for(loop, 100, &fake);
      CHECK(count(messages, "WATCHDOG=1") <= 1);  // at most one already due
      CHECK(service.watchdog_withheld() >= 3);
      alive = true;
      status = "not ready: draining";
      messages = run_for(loop, 1100, &fake);  // the status is checked once a second
      CHECK(count(messages, "WATCHDOG=1") >= 20);
      CHECK(count(messages, "STATUS=not ready: draining") == 1);

      service.reloading();
      service.reloaded();
      messages = fake.receive_all();
      REQUIRE(messages.size() == 2);
      CHECK(messages[0].rfind("RELOADING=1\nMONOTONIC_USEC=", 0) == 0);
      CHECK(messages[1] == "READY=1\nSTATUS=not ready: draining");

      service.stopping();
      service.stopping();
      messages = fake.receive_all();
      CHECK(count(messages, "STOPPING=1\nSTATUS=stopping") == 1);
      service.close();
    }
    CHECK(loop.close() == 0);
  }
}

TEST_CASE("SystemdService: READY=1 and the first watchdog ping wait until every loop is alive") {
  FakeNotifySocket fake(false);
  EventLoop loop;
  bool alive = false;  // the DNS workers' loops have not started yet
  {
    SystemdService service(loop.get(), {.alive = [&] { return alive; }, .status_line = [] { return "ready"; }},
                           fake.address(), 40000);
    service.start();
    CHECK(run_for(loop, 60, &fake).empty());  // neither READY nor WATCHDOG while not alive
    CHECK(service.watchdog_withheld() == 0);   // and no "withholding the ping" either
    alive = true;
    std::vector<std::string> messages = run_for(loop, 50, &fake);
    REQUIRE_FALSE(messages.empty());
    CHECK(messages.front() == "READY=1\nSTATUS=ready");
    CHECK(count(messages, "WATCHDOG=1") >= 1);
    service.close();
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("SystemdService without NOTIFY_SOCKET does nothing") {
  ::unsetenv("NOTIFY_SOCKET");
  EventLoop loop;
  {
    SystemdService service(loop.get(), {});
    CHECK_FALSE(service.enabled());
    CHECK(service.watchdog_interval_ms() == 0);
    service.start();
    service.stopping();
    run_for(loop, 20);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("SystemdNotifier: a socket nobody listens on is not fatal") {
  std::string error;
  std::optional<NotifyAddress> address = parse_notify_socket("/tmp/hubdns-no-such-dir/notify.sock", &error);
  REQUIRE(address.has_value());
  SystemdNotifier notifier(address);
  CHECK(notifier.enabled());
  CHECK_FALSE(notifier.send("READY=1"));
  CHECK_FALSE(notifier.send("READY=1"));  // logged once, then at debug
}
