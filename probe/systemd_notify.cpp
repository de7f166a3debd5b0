#include "probe/systemd_notify.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <utility>

#include "common/log/log.h"

namespace hubdns {
namespace {

constexpr uint64_t kStatusCheckMs = 1000;
// Before READY=1: how often liveness is checked while the DNS workers' loops start.
constexpr uint64_t kReadyCheckMs = 5;
constexpr size_t kMaxStatusLine = 200;

std::optional<uint64_t> watchdog_from_environment() {
  return parse_watchdog_usec(std::getenv("WATCHDOG_USEC"), std::getenv("WATCHDOG_PID"), getpid());
}

std::optional<NotifyAddress> address_from_environment() {
  const char* value = std::getenv("NOTIFY_SOCKET");
  if (value == nullptr || *value == '\0') return std::nullopt;
  std::string error;
  std::optional<NotifyAddress> address = parse_notify_socket(value, &error);
  if (!address) {
    LOG_WARN("msg=\"NOTIFY_SOCKET not usable; not notifying systemd\" error=\"%s\"", error.c_str());
  }
  return address;
}

uint64_t monotonic_usec() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1000000u + static_cast<uint64_t>(now.tv_nsec) / 1000u;
}

// One line, without the characters that would end an assignment or the datagram's sense.
std::string one_line(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r' || c == '\0') c = ' ';
  }
  if (text.size() > kMaxStatusLine) {
    text.resize(kMaxStatusLine - 3);
    text += "...";
  }
  return text;
}

}  // namespace

std::optional<NotifyAddress> parse_notify_socket(std::string_view value, std::string* error) {
  NotifyAddress out;
  out.address.sun_family = AF_UNIX;
  if (value.empty()) {
    *error = "empty";
    return std::nullopt;
  }
  if (value[0] != '/' && value[0] != '@') {
    *error = "neither an absolute path nor an abstract socket name ('@...'): " + std::string(value);
    return std::nullopt;
  }
  if (value.size() < 2) {
    *error = "no socket name";
    return std::nullopt;
  }
  // A path needs its terminating NUL inside sun_path; an abstract name does not.
  const size_t capacity = sizeof(out.address.sun_path) - (value[0] == '/' ? 1 : 0);
  if (value.size() > capacity) {
    *error = "longer than a unix socket address allows";
    return std::nullopt;
  }
  std::memcpy(out.address.sun_path, value.data(), value.size());
  if (value[0] == '@') {
    out.abstract = true;
    out.address.sun_path[0] = '\0';
    out.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + value.size());
  } else {
    out.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + value.size() + 1);
  }
  return out;
}

std::optional<uint64_t> parse_watchdog_usec(const char* watchdog_usec, const char* watchdog_pid, pid_t self_pid) {
  if (watchdog_usec == nullptr) return std::nullopt;
  const std::string_view text(watchdog_usec);
  uint64_t usec = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), usec);
  if (ec != std::errc() || end != text.data() + text.size() || usec == 0) return std::nullopt;
  if (watchdog_pid != nullptr && *watchdog_pid != '\0') {
    const std::string_view pid_text(watchdog_pid);
    long long pid = 0;
    auto [pid_end, pid_ec] = std::from_chars(pid_text.data(), pid_text.data() + pid_text.size(), pid);
    if (pid_ec != std::errc() || pid_end != pid_text.data() + pid_text.size() || pid != self_pid) {
      return std::nullopt;  // meant for another process
    }
  }
  return usec;
}

std::string reloading_message(uint64_t monotonic_usec_now) {
  return "RELOADING=1\nMONOTONIC_USEC=" + std::to_string(monotonic_usec_now);
}

std::string service_status_line(const StatusView& view) {
  size_t upstreams = 0;
  size_t up = 0;
  for (const ZoneStatusView& zone : view.zones) {
    for (const UpstreamStatusView& upstream : zone.upstreams) {
      ++upstreams;
      if (upstream.status == UpstreamStatus::up) ++up;
    }
  }
  const std::string facts = std::to_string(view.workers.size()) + (view.workers.size() == 1 ? " worker; " : " workers; ") +
                            std::to_string(view.zones.size()) + (view.zones.size() == 1 ? " zone, " : " zones, ") +
                            std::to_string(up) + "/" + std::to_string(upstreams) + " upstreams up";
  if (view.ready) return one_line("ready; " + facts);
  if (view.draining) return one_line("draining; " + facts);
  std::string line = "not ready: ";
  line += view.reasons.empty() ? std::string("unknown") : view.reasons.front();
  if (view.reasons.size() > 1) line += " (+" + std::to_string(view.reasons.size() - 1) + " more)";
  return one_line(line);
}

// ---------------------------------------------------------------------------------------

SystemdNotifier::SystemdNotifier() : SystemdNotifier(address_from_environment()) {}

SystemdNotifier::SystemdNotifier(std::optional<NotifyAddress> address) : address_(std::move(address)) {
  if (!address_) return;
  fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) {
    LOG_WARN("msg=\"cannot open a socket to notify systemd\" error=\"%s\"", std::strerror(errno));
    address_.reset();
  }
}

SystemdNotifier::~SystemdNotifier() {
  if (fd_ >= 0) ::close(fd_);
}

bool SystemdNotifier::send(std::string_view message) {
  if (!address_ || fd_ < 0) return false;
  const ssize_t sent = sendto(fd_, message.data(), message.size(), MSG_NOSIGNAL,
                              reinterpret_cast<const sockaddr*>(&address_->address), address_->length);
  if (sent == static_cast<ssize_t>(message.size())) return true;
  const int error = sent < 0 ? errno : EMSGSIZE;
  if (!error_logged_) {
    error_logged_ = true;
    LOG_WARN("msg=\"cannot notify systemd (further failures are logged at debug)\" error=\"%s\"",
             std::strerror(error));
  } else {
    LOG_DEBUG("msg=\"cannot notify systemd\" error=\"%s\"", std::strerror(error));
  }
  return false;
}

// ---------------------------------------------------------------------------------------

SystemdService::SystemdService(uv_loop_t* loop, SystemdServiceHooks hooks)
    : SystemdService(loop, std::move(hooks), address_from_environment(), watchdog_from_environment().value_or(0)) {}

SystemdService::SystemdService(uv_loop_t* loop, SystemdServiceHooks hooks, std::optional<NotifyAddress> address,
                               uint64_t watchdog_usec)
    : loop_(loop), hooks_(std::move(hooks)), notifier_(std::move(address)) {
  if (notifier_.enabled() && watchdog_usec > 0) {
    // Half the period, as sd_watchdog_enabled(3) recommends; at least 1 ms.
    watchdog_interval_ms_ = std::max<uint64_t>(1, watchdog_usec / 2000);
  }
}

SystemdService::~SystemdService() { close(); }

void SystemdService::start() {
  if (started_ || closed_ || !notifier_.enabled()) return;
  started_ = true;
  ready_timer_.init(uv_timer_init, loop_);
  ready_timer_->data = this;
  uv_timer_start(ready_timer_.get(), on_ready_timer, 0, 0);
  uv_unref(ready_timer_.as_handle());
  if (watchdog_interval_ms_ > 0) {
    LOG_INFO("msg=\"systemd watchdog enabled\" ping_interval_ms=%llu",
             static_cast<unsigned long long>(watchdog_interval_ms_));
  }
}

void SystemdService::on_ready_timer(uv_timer_t* timer) {
  auto* self = static_cast<SystemdService*>(timer->data);
  if (self == nullptr) return;
  // READY=1 promises a working service, and the first watchdog ping follows it at once:
  // both wait until every event loop runs (the workers start a moment after the control
  // loop), so the first status line is not "worker 0 event loop has not started".
  bool alive = true;
  try {
    alive = !self->hooks_.alive || self->hooks_.alive();
  } catch (const std::exception& e) {
    LOG_ERROR("msg=\"liveness evaluation failed\" error=\"%s\"", e.what());
    alive = false;
  }
  if (!alive) {
    uv_timer_start(timer, on_ready_timer, kReadyCheckMs, 0);
    return;
  }
  self->send_ready();
}

void SystemdService::send_ready() {
  if (closed_ || stopping_sent_) return;
  std::string status;
  try {
    status = hooks_.status_line ? one_line(hooks_.status_line()) : std::string();
  } catch (const std::exception& e) {
    LOG_ERROR("msg=\"service status line failed\" error=\"%s\"", e.what());
  }
  std::string message = "READY=1";
  if (!status.empty()) message += "\nSTATUS=" + status;
  notifier_.send(message);
  last_status_ = status;
  if (!status_timer_.initialized()) {
    status_timer_.init(uv_timer_init, loop_);
    status_timer_->data = this;
    uv_timer_start(status_timer_.get(), on_status_timer, kStatusCheckMs, kStatusCheckMs);
    uv_unref(status_timer_.as_handle());
  }
  if (watchdog_interval_ms_ > 0 && !watchdog_timer_.initialized()) {
    watchdog_timer_.init(uv_timer_init, loop_);
    watchdog_timer_->data = this;
    uv_timer_start(watchdog_timer_.get(), on_watchdog_timer, 0, watchdog_interval_ms_);
    uv_unref(watchdog_timer_.as_handle());
  }
}

void SystemdService::on_watchdog_timer(uv_timer_t* timer) {
  auto* self = static_cast<SystemdService*>(timer->data);
  if (self != nullptr) self->watchdog();
}

void SystemdService::watchdog() {
  bool alive = true;
  try {
    alive = !hooks_.alive || hooks_.alive();
  } catch (const std::exception& e) {
    LOG_ERROR("msg=\"liveness evaluation failed\" error=\"%s\"", e.what());
    alive = false;
  }
  if (!alive) {
    // No ping: if this lasts WatchdogSec, systemd restarts the service, which is the point.
    ++watchdog_withheld_;
    if (!withheld_logged_) {
      withheld_logged_ = true;
      LOG_WARN("msg=\"not alive: withholding the systemd watchdog ping\"");
    }
    return;
  }
  if (withheld_logged_) {
    withheld_logged_ = false;
    LOG_INFO("msg=\"alive again: systemd watchdog pings resumed\"");
  }
  if (notifier_.send("WATCHDOG=1")) ++watchdog_pings_;
}

void SystemdService::on_status_timer(uv_timer_t* timer) {
  auto* self = static_cast<SystemdService*>(timer->data);
  if (self != nullptr) self->update_status(false);
}

void SystemdService::update_status(bool force) {
  if (closed_ || !hooks_.status_line) return;
  std::string status;
  try {
    status = one_line(hooks_.status_line());
  } catch (const std::exception& e) {
    LOG_ERROR("msg=\"service status line failed\" error=\"%s\"", e.what());
    return;
  }
  if (!force && status == last_status_) return;
  last_status_ = status;
  notifier_.send("STATUS=" + status);
}

void SystemdService::stopping() {
  if (stopping_sent_ || !notifier_.enabled()) return;
  stopping_sent_ = true;
  notifier_.send("STOPPING=1\nSTATUS=stopping");
  last_status_ = "stopping";
  // The status line would otherwise overwrite "stopping" with the draining state.
  status_timer_.close();
}

void SystemdService::reloading() {
  if (!notifier_.enabled()) return;
  notifier_.send(reloading_message(monotonic_usec()) + "\nSTATUS=reloading");
}

void SystemdService::reloaded() {
  if (!notifier_.enabled() || stopping_sent_) return;
  send_ready();
}

void SystemdService::close() {
  if (closed_) return;
  closed_ = true;
  ready_timer_.close();
  watchdog_timer_.close();
  status_timer_.close();
}

}  // namespace hubdns
