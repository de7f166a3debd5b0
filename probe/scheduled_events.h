// ScheduledEventsWatcher: this instance's view of the Azure Instance Metadata Service
// (SPEC [lifecycle]). With scheduled_events = "off" (the default) it never contacts IMDS.
// Otherwise it asks GET /metadata/instance once at start (retried with backoff: a few
// times for "auto", until it answers for "on") to learn compute.name and friends, shown in
// /status. It then polls GET /metadata/scheduledevents about once a second ("on": from the
// start; "auto": only once the instance document arrived), backing off exponentially with
// jitter (capped) on 429, 5xx, timeouts, refused connections and malformed bodies, with
// rate-limited warnings. An event of type Reboot, Redeploy, Freeze, Preempt or Terminate
// whose Resources name this instance asks for a drain (the DrainChange given by main(),
// once per event) and is logged; events for other VMs are logged at debug only. When no
// such event is in progress any more (each is gone from the document, or Completed or
// Canceled: after a Freeze the VM carries on, and an event may be withdrawn), the drain
// ends (DrainChange with false), so the instance takes traffic again. With
// ack_scheduled_events, once drain_grace has passed since the drain began, each such event
// that is still listed is approved (POST StartRequests), once per EventId (retried a few
// times on failure).
//
// Every request carries "Metadata: true", goes direct (no proxy), and is bounded by short
// timeouts and a body size cap (CurlMulti). The very first scheduled-events request may
// wait longer (Azure enables the service on that request, which can take up to two
// minutes).
//
// Thread: constructed, used and destroyed on the control loop; its requests and timers run
// there. register_metrics() before any other thread starts; this object must outlive the
// registry's last render(). close() (also the destructor) cancels requests and timers; it
// must run before the CurlMulti is closed.
#pragma once

#include <uv.h>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <string_view>

#include "common/config/config.h"
#include "common/log/log.h"
#include "common/metrics/registry.h"
#include "common/uv/handle.h"
#include "probe/azure_metadata.h"
#include "probe/curl_multi.h"
#include "probe/status_json.h"

namespace hubdns {

struct ScheduledEventsOptions {
  uint64_t poll_interval_ms = 1000;        // between scheduled-events polls while IMDS answers
  uint64_t backoff_cap_ms = 60000;         // longest wait after failures
  uint64_t connect_timeout_ms = 2000;
  uint64_t request_timeout_ms = 2000;
  uint64_t first_poll_timeout_ms = 120000; // the first scheduled-events request (see above)
  unsigned instance_attempts_auto = 4;     // "auto" gives up on IMDS after this many failures
  unsigned max_ack_attempts = 5;
  uint64_t warn_interval_ms = 60000;       // at most one warning per kind per interval
};

enum class ImdsRequestKind : uint8_t { instance, scheduled_events, ack };
inline constexpr size_t kImdsRequestKindCount = 3;
const char* to_string(ImdsRequestKind kind);

enum class ImdsResult : uint8_t { ok, http_429, http_5xx, http_other, timeout, connect_error, too_large, bad_body, error };
inline constexpr size_t kImdsResultCount = 9;
const char* to_string(ImdsResult result);

// The result of an HTTP exchange before its body is read: ok for 2xx, else the kind of failure.
ImdsResult classify_imds_answer(const HttpFetchResult& result);

// How long to wait after `failures` consecutive failures (>= 1): base_ms * 2^(failures-1),
// at most cap_ms, then "equal jitter": half of it fixed, the other half scaled by
// random / 2^32 (random in [0, 2^32)).
uint64_t imds_backoff_ms(uint32_t failures, uint64_t base_ms, uint64_t cap_ms, uint32_t random);

class ScheduledEventsWatcher {
 public:
  // On the control loop: drain = true once per event that asks this instance to drain;
  // drain = false (with the last such event) once none of them is in progress any more.
  using DrainChange = std::function<void(const ScheduledEvent& event, bool drain)>;

  ScheduledEventsWatcher(uv_loop_t* loop, CurlMulti* http, LifecycleConfig config, DrainChange drain,
                         ScheduledEventsOptions options = {});
  ~ScheduledEventsWatcher();
  ScheduledEventsWatcher(const ScheduledEventsWatcher&) = delete;
  ScheduledEventsWatcher& operator=(const ScheduledEventsWatcher&) = delete;

  void register_metrics(MetricsRegistry& registry);
  // First requests go out on the next loop iteration; nothing at all with "off".
  void start();
  void close();

  // The "instance" and "scheduled_events" parts of /status.
  void fill_status(StatusView* view) const;

  const InstanceMetadata& instance() const { return instance_; }
  bool instance_known() const { return instance_state_ == InstanceState::known; }
  bool polling() const { return polling_; }
  uint64_t requests(ImdsRequestKind kind, ImdsResult result) const {
    return requests_[static_cast<size_t>(kind)][static_cast<size_t>(result)];
  }
  uint64_t events_seen() const { return events_seen_; }
  uint64_t drains_requested() const { return drains_requested_; }
  uint64_t drains_ended() const { return drains_ended_; }
  uint64_t acks_sent() const { return acks_sent_; }

 private:
  enum class InstanceState : uint8_t { off, pending, known, unreachable };
  enum class AckState : uint8_t { none, pending, in_flight, sent, skipped, failed };
  struct TrackedEvent {
    ScheduledEvent event;
    bool listed = false;            // in the latest document
    bool for_this_instance = false;
    bool drain_requested = false;
    AckState ack = AckState::none;
    unsigned ack_attempts = 0;
    uint64_t first_seen_ms = 0;
  };

  static void on_instance_timer(uv_timer_t* timer);
  static void on_poll_timer(uv_timer_t* timer);
  static void on_ack_timer(uv_timer_t* timer);
  HttpFetchRequest request_for(std::string_view path) const;
  void fetch_instance();
  void on_instance(const HttpFetchResult& result);
  void start_polling();
  void poll();
  void on_poll(const HttpFetchResult& result);
  void on_document(const ScheduledEventsDocument& document);
  void request_drain(TrackedEvent& tracked);
  void end_drain_if_over();
  void arm_ack_timer(uint64_t delay_ms);
  void send_acks();
  void on_ack(const std::string& event_id, const HttpFetchResult& result);
  void prune_events();
  ImdsResult count(ImdsRequestKind kind, ImdsResult result);
  uint64_t backoff(uint32_t failures);
  bool warn_allowed(LogRateLimit& limit, uint64_t* suppressed);

  uv_loop_t* loop_;
  CurlMulti* http_;
  LifecycleConfig config_;
  DrainChange drain_;
  ScheduledEventsOptions options_;
  UvTimer instance_timer_;
  UvTimer poll_timer_;
  UvTimer ack_timer_;
  bool started_ = false;
  bool closed_ = false;

  InstanceState instance_state_ = InstanceState::off;
  InstanceMetadata instance_;
  uint32_t instance_failures_ = 0;
  uint64_t instance_request_ = 0;

  bool polling_ = false;
  bool first_poll_done_ = false;
  uint64_t poll_request_ = 0;
  uint32_t poll_failures_ = 0;
  std::string last_poll_result_;
  uint64_t polls_ok_ = 0;

  std::map<std::string, TrackedEvent> events_;  // by EventId
  uint64_t drains_ended_ = 0;
  uint64_t drain_started_ms_ = 0;               // when the current event-driven drain began (0: none)
  std::map<uint64_t, std::string> ack_requests_;  // request id -> EventId

  std::array<std::array<uint64_t, kImdsResultCount>, kImdsRequestKindCount> requests_{};
  uint64_t events_seen_ = 0;
  uint64_t drains_requested_ = 0;
  uint64_t acks_sent_ = 0;

  LogRateLimit instance_warn_;
  LogRateLimit poll_warn_;
  LogRateLimit unknown_name_warn_;
  std::minstd_rand random_;
};

}  // namespace hubdns
