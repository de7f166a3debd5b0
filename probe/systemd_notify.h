// systemd's service notification protocol (sd_notify(3)) spoken directly, without
// libsystemd: newline-separated "KEY=value" assignments in one datagram to the AF_UNIX
// SOCK_DGRAM socket named by $NOTIFY_SOCKET (a path, or "@name" for the abstract
// namespace). SystemdNotifier sends them; SystemdService drives them from the control
// loop for a Type=notify unit: READY=1 (with a STATUS= line) once the control loop runs
// and every event loop is alive (the DNS workers have started),
// STATUS= again when the state line changes (checked once a second), WATCHDOG=1 every
// WATCHDOG_USEC/2 while liveness holds (every event loop answered recently: a stuck DNS
// worker stops the pings, so systemd restarts the service), STOPPING=1 when the stop
// begins, and RELOADING=1 / READY=1 around a reload. Without $NOTIFY_SOCKET everything is
// a no-op. A send error is logged once and never fatal.
//
// Thread: the control loop only (construction, sends, timers, destruction).
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/uv/handle.h"
#include "probe/status_json.h"

namespace hubdns {

// Where $NOTIFY_SOCKET points: a ready-to-use sockaddr_un and its length.
struct NotifyAddress {
  sockaddr_un address{};
  socklen_t length = 0;
  bool abstract = false;
};

// Parses $NOTIFY_SOCKET: an absolute path, or "@name" (abstract namespace: the '@' becomes
// a NUL byte). Empty, relative, too long, or other schemes ("vsock:..."): nullopt and
// *error says why.
std::optional<NotifyAddress> parse_notify_socket(std::string_view value, std::string* error);

// The watchdog period systemd asks for, in microseconds, from $WATCHDOG_USEC and
// $WATCHDOG_PID (nullptr when unset): the watchdog applies when WATCHDOG_USEC is a
// positive integer and WATCHDOG_PID is unset or equal to `self_pid`. nullopt otherwise.
std::optional<uint64_t> parse_watchdog_usec(const char* watchdog_usec, const char* watchdog_pid, pid_t self_pid);

// "RELOADING=1\nMONOTONIC_USEC=<n>" (systemd's Type=notify-reload wants the time of the
// reload request, CLOCK_MONOTONIC, in microseconds).
std::string reloading_message(uint64_t monotonic_usec);

// A one-line state for `systemctl status`: "ready; 2 workers; 3 zones, 5/5 upstreams up",
// "draining; ...", or "not ready: <first reason> (+N more)". At most ~200 bytes, no newline.
std::string service_status_line(const StatusView& view);

class SystemdNotifier {
 public:
  // Reads $NOTIFY_SOCKET now; a missing one disables the notifier (no log), an invalid
  // one is logged once and disables it.
  SystemdNotifier();
  explicit SystemdNotifier(std::optional<NotifyAddress> address);
  ~SystemdNotifier();
  SystemdNotifier(const SystemdNotifier&) = delete;
  SystemdNotifier& operator=(const SystemdNotifier&) = delete;

  bool enabled() const { return address_.has_value(); }
  // Sends one datagram with `message` (assignments separated by '\n'). False if disabled
  // or the send failed (the first failure is logged at warn, later ones at debug).
  bool send(std::string_view message);

 private:
  std::optional<NotifyAddress> address_;
  int fd_ = -1;
  bool error_logged_ = false;
};

struct SystemdServiceHooks {
  std::function<bool()> alive;               // liveness: every event loop answered recently
  std::function<std::string()> status_line;  // service_status_line(...) of the current state
};

class SystemdService {
 public:
  // Reads $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID now.
  SystemdService(uv_loop_t* loop, SystemdServiceHooks hooks);
  // For tests: explicit notifier target and watchdog period (0: no watchdog).
  SystemdService(uv_loop_t* loop, SystemdServiceHooks hooks, std::optional<NotifyAddress> address,
                 uint64_t watchdog_usec);
  ~SystemdService();
  SystemdService(const SystemdService&) = delete;
  SystemdService& operator=(const SystemdService&) = delete;

  // Sends READY=1 and the status as soon as liveness holds (from the loop's next iteration;
  // until every DNS worker's loop has started, it checks again every few milliseconds),
  // then runs the watchdog and status timers. Call once everything is bound and started,
  // just before the loop runs. Never alive: never READY, so systemd's start timeout acts.
  void start();
  // STOPPING=1 (once). Safe to call from a signal watcher on the loop.
  void stopping();
  // RELOADING=1 with MONOTONIC_USEC, then reloaded() sends READY=1 and the status again.
  void reloading();
  void reloaded();
  // Stops the timers. Idempotent.
  void close();

  bool enabled() const { return notifier_.enabled(); }
  uint64_t watchdog_interval_ms() const { return watchdog_interval_ms_; }
  uint64_t watchdog_pings() const { return watchdog_pings_; }
  uint64_t watchdog_withheld() const { return watchdog_withheld_; }

 private:
  static void on_ready_timer(uv_timer_t* timer);
  static void on_watchdog_timer(uv_timer_t* timer);
  static void on_status_timer(uv_timer_t* timer);
  void send_ready();
  void watchdog();
  void update_status(bool force);

  uv_loop_t* loop_;
  SystemdServiceHooks hooks_;
  SystemdNotifier notifier_;
  uint64_t watchdog_interval_ms_ = 0;
  UvTimer ready_timer_;
  UvTimer watchdog_timer_;
  UvTimer status_timer_;
  std::string last_status_;
  bool started_ = false;
  bool stopping_sent_ = false;
  bool closed_ = false;
  bool withheld_logged_ = false;
  uint64_t watchdog_pings_ = 0;
  uint64_t watchdog_withheld_ = 0;
};

}  // namespace hubdns
