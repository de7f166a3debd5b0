#include "probe/scheduled_events.h"

#include <algorithm>
#include <exception>
#include <utility>
#include <vector>

#include "common/util/clock.h"

namespace hubdns {
namespace {

std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& name : names) {
    if (!out.empty()) out += ",";
    out += name;
  }
  return out;
}

// Log values come from the network: keep them on one line and out of the quoting.
std::string printable(std::string_view text, size_t max = 200) {
  std::string out;
  for (char c : text.substr(0, max)) {
    const auto u = static_cast<unsigned char>(c);
    out.push_back(u < 0x20 || u == 0x7f || c == '"' || c == '\\' ? '?' : c);
  }
  return out;
}

const char* mode_name(ScheduledEventsMode mode) { return to_string(mode); }

}  // namespace

const char* to_string(ImdsRequestKind kind) {
  switch (kind) {
    case ImdsRequestKind::instance: return "instance";
    case ImdsRequestKind::scheduled_events: return "scheduled_events";
    case ImdsRequestKind::ack: return "ack";
  }
  return "instance";
}

const char* to_string(ImdsResult result) {
  switch (result) {
    case ImdsResult::ok: return "ok";
    case ImdsResult::http_429: return "http_429";
    case ImdsResult::http_5xx: return "http_5xx";
    case ImdsResult::http_other: return "http_other";
    case ImdsResult::timeout: return "timeout";
    case ImdsResult::connect_error: return "connect_error";
    case ImdsResult::too_large: return "too_large";
    case ImdsResult::bad_body: return "bad_body";
    case ImdsResult::error: return "error";
  }
  return "error";
}

ImdsResult classify_imds_answer(const HttpFetchResult& result) {
  switch (result.outcome) {
    case HttpFetchOutcome::answered:
      if (result.status >= 200 && result.status < 300) return ImdsResult::ok;
      if (result.status == 429) return ImdsResult::http_429;
      if (result.status >= 500 && result.status < 600) return ImdsResult::http_5xx;
      return ImdsResult::http_other;
    case HttpFetchOutcome::timeout: return ImdsResult::timeout;
    case HttpFetchOutcome::connect_error: return ImdsResult::connect_error;
    case HttpFetchOutcome::too_large: return ImdsResult::too_large;
    case HttpFetchOutcome::error: return ImdsResult::error;
  }
  return ImdsResult::error;
}

uint64_t imds_backoff_ms(uint32_t failures, uint64_t base_ms, uint64_t cap_ms, uint32_t random) {
  if (failures == 0) return base_ms;
  uint64_t delay = base_ms;
  for (uint32_t i = 1; i < failures && delay < cap_ms; ++i) delay *= 2;
  delay = std::min(delay, cap_ms);
  const uint64_t half = delay / 2;
  return delay - half + ((half * random) >> 32);
}

ScheduledEventsWatcher::ScheduledEventsWatcher(uv_loop_t* loop, CurlMulti* http, LifecycleConfig config,
                                               DrainChange drain, ScheduledEventsOptions options)
    : loop_(loop),
      http_(http),
      config_(std::move(config)),
      drain_(std::move(drain)),
      options_(options),
      instance_warn_(options.warn_interval_ms),
      poll_warn_(options.warn_interval_ms),
      unknown_name_warn_(options.warn_interval_ms),
      random_(std::random_device{}()) {}

ScheduledEventsWatcher::~ScheduledEventsWatcher() { close(); }

void ScheduledEventsWatcher::start() {
  if (closed_ || started_) return;
  started_ = true;
  if (config_.scheduled_events == ScheduledEventsMode::off) return;  // never contacts IMDS
  for (UvTimer* timer : {&instance_timer_, &poll_timer_, &ack_timer_}) {
    timer->init(uv_timer_init, loop_);
    (*timer)->data = this;
  }
  instance_state_ = InstanceState::pending;
  LOG_INFO("msg=\"watching the instance metadata service\" scheduled_events=%s metadata_url=%s ack=%s",
           mode_name(config_.scheduled_events), config_.metadata_url.c_str(),
           config_.ack_scheduled_events ? "true" : "false");
  // From a timer: requests start from the loop, not from the caller's frame.
  uv_timer_start(instance_timer_.get(), on_instance_timer, 0, 0);
  uv_unref(instance_timer_.as_handle());
  if (config_.scheduled_events == ScheduledEventsMode::on) start_polling();
}

void ScheduledEventsWatcher::close() {
  if (closed_) return;
  closed_ = true;
  if (instance_request_ != 0) http_->cancel(instance_request_);
  if (poll_request_ != 0) http_->cancel(poll_request_);
  for (const auto& [id, event_id] : ack_requests_) http_->cancel(id);
  instance_request_ = poll_request_ = 0;
  ack_requests_.clear();
  instance_timer_.close();
  poll_timer_.close();
  ack_timer_.close();
  polling_ = false;
}

HttpFetchRequest ScheduledEventsWatcher::request_for(std::string_view path) const {
  HttpFetchRequest request;
  request.url = config_.metadata_url + std::string(path);
  request.headers = {"Metadata: true"};
  request.connect_timeout_ms = options_.connect_timeout_ms;
  request.timeout_ms = options_.request_timeout_ms;
  request.max_body_bytes = kImdsMaxBodyBytes;
  return request;
}

ImdsResult ScheduledEventsWatcher::count(ImdsRequestKind kind, ImdsResult result) {
  ++requests_[static_cast<size_t>(kind)][static_cast<size_t>(result)];
  return result;
}

uint64_t ScheduledEventsWatcher::backoff(uint32_t failures) {
  return imds_backoff_ms(failures, options_.poll_interval_ms, options_.backoff_cap_ms,
                         static_cast<uint32_t>(random_()));
}

bool ScheduledEventsWatcher::warn_allowed(LogRateLimit& limit, uint64_t* suppressed) {
  return limit.allow(monotonic_ms(), suppressed);
}

// ---------------------------------------------------------------------------------------
// Instance metadata

void ScheduledEventsWatcher::on_instance_timer(uv_timer_t* timer) {
  auto* self = static_cast<ScheduledEventsWatcher*>(timer->data);
  if (self != nullptr) self->fetch_instance();
}

void ScheduledEventsWatcher::fetch_instance() {
  if (closed_ || instance_request_ != 0 || instance_state_ == InstanceState::known) return;
  std::string error;
  instance_request_ = http_->start(
      request_for(kImdsInstancePath),
      [this](HttpFetchResult&& result) {
        instance_request_ = 0;
        on_instance(result);
      },
      &error);
  if (instance_request_ == 0) {
    HttpFetchResult failed;
    failed.error = error;
    on_instance(failed);
  }
}

void ScheduledEventsWatcher::on_instance(const HttpFetchResult& result) {
  ImdsResult outcome = classify_imds_answer(result);
  std::string detail = result.outcome == HttpFetchOutcome::answered ? "HTTP " + std::to_string(result.status)
                                                                    : result.error;
  if (outcome == ImdsResult::ok) {
    InstanceMetadata metadata;
    std::string error;
    if (parse_instance_metadata(result.body, &metadata, &error)) {
      count(ImdsRequestKind::instance, ImdsResult::ok);
      instance_ = std::move(metadata);
      instance_state_ = InstanceState::known;
      LOG_INFO("msg=\"instance metadata\" name=\"%s\" vm_scale_set=\"%s\" zone=\"%s\" location=\"%s\"",
               printable(instance_.name).c_str(), printable(instance_.vm_scale_set).c_str(),
               printable(instance_.zone).c_str(), printable(instance_.location).c_str());
      if (config_.scheduled_events == ScheduledEventsMode::automatic) start_polling();
      return;
    }
    outcome = ImdsResult::bad_body;
    detail = "malformed instance document: " + error;
  }
  count(ImdsRequestKind::instance, outcome);
  ++instance_failures_;
  if (config_.scheduled_events == ScheduledEventsMode::automatic &&
      instance_failures_ >= options_.instance_attempts_auto) {
    instance_state_ = InstanceState::unreachable;
    LOG_INFO("msg=\"instance metadata service not reachable; scheduled events are not watched\" "
             "scheduled_events=auto attempts=%u result=%s detail=\"%s\"",
             instance_failures_, to_string(outcome), printable(detail).c_str());
    return;
  }
  if (instance_failures_ >= 2) instance_state_ = InstanceState::unreachable;  // still retrying
  const uint64_t delay = backoff(instance_failures_);
  uint64_t suppressed = 0;
  if (warn_allowed(instance_warn_, &suppressed)) {
    LOG_WARN("msg=\"instance metadata request failed\" result=%s detail=\"%s\" failures=%u retry_in_ms=%llu suppressed=%llu",
             to_string(outcome), printable(detail).c_str(), instance_failures_,
             static_cast<unsigned long long>(delay), static_cast<unsigned long long>(suppressed));
  }
  uv_timer_start(instance_timer_.get(), on_instance_timer, delay, 0);
}

// ---------------------------------------------------------------------------------------
// Scheduled events

void ScheduledEventsWatcher::start_polling() {
  if (closed_ || polling_) return;
  polling_ = true;
  uv_timer_start(poll_timer_.get(), on_poll_timer, 0, 0);
  uv_unref(poll_timer_.as_handle());
}

void ScheduledEventsWatcher::on_poll_timer(uv_timer_t* timer) {
  auto* self = static_cast<ScheduledEventsWatcher*>(timer->data);
  if (self != nullptr) self->poll();
}

void ScheduledEventsWatcher::poll() {
  if (closed_ || poll_request_ != 0) return;
  HttpFetchRequest request = request_for(kImdsScheduledEventsPath);
  if (!first_poll_done_) request.timeout_ms = std::max(request.timeout_ms, options_.first_poll_timeout_ms);
  std::string error;
  poll_request_ = http_->start(
      std::move(request),
      [this](HttpFetchResult&& result) {
        poll_request_ = 0;
        on_poll(result);
      },
      &error);
  if (poll_request_ == 0) {
    HttpFetchResult failed;
    failed.error = error;
    on_poll(failed);
  }
}

void ScheduledEventsWatcher::on_poll(const HttpFetchResult& result) {
  ImdsResult outcome = classify_imds_answer(result);
  std::string detail = result.outcome == HttpFetchOutcome::answered ? "HTTP " + std::to_string(result.status)
                                                                    : result.error;
  if (outcome == ImdsResult::ok) {
    ScheduledEventsDocument document;
    std::string error;
    if (parse_scheduled_events(result.body, &document, &error)) {
      count(ImdsRequestKind::scheduled_events, ImdsResult::ok);
      if (poll_failures_ > 0) {
        LOG_INFO("msg=\"scheduled events answered again\" after_failures=%u", poll_failures_);
        // IMDS is back: ask who this VM is now rather than at the end of a long backoff.
        if (instance_state_ != InstanceState::known && instance_request_ == 0) {
          uv_timer_start(instance_timer_.get(), on_instance_timer, 0, 0);
        }
      }
      poll_failures_ = 0;
      first_poll_done_ = true;
      ++polls_ok_;
      last_poll_result_ = "ok";
      on_document(document);
      uv_timer_start(poll_timer_.get(), on_poll_timer, options_.poll_interval_ms, 0);
      return;
    }
    outcome = ImdsResult::bad_body;
    detail = "malformed scheduled events document: " + error;
  }
  count(ImdsRequestKind::scheduled_events, outcome);
  ++poll_failures_;
  last_poll_result_ = to_string(outcome);
  const uint64_t delay = backoff(poll_failures_);
  uint64_t suppressed = 0;
  if (warn_allowed(poll_warn_, &suppressed)) {
    LOG_WARN("msg=\"scheduled events request failed\" result=%s detail=\"%s\" failures=%u retry_in_ms=%llu suppressed=%llu",
             to_string(outcome), printable(detail).c_str(), poll_failures_, static_cast<unsigned long long>(delay),
             static_cast<unsigned long long>(suppressed));
  }
  uv_timer_start(poll_timer_.get(), on_poll_timer, delay, 0);
}

namespace {

// EventStatus is "Scheduled" or "Started" while an event is pending or under way; an event
// that is done disappears from the document, or (newer API versions) shows as Completed
// or Canceled for a while.
bool event_in_progress(const std::string& status) {
  return status != "Completed" && status != "Canceled" && status != "Cancelled";
}

}  // namespace

void ScheduledEventsWatcher::on_document(const ScheduledEventsDocument& document) {
  const uint64_t now = monotonic_ms();
  for (auto& [id, tracked] : events_) tracked.listed = false;
  for (const ScheduledEvent& event : document.events) {
    auto [it, inserted] = events_.try_emplace(event.id);
    TrackedEvent& tracked = it->second;
    tracked.event = event;
    tracked.listed = true;
    const bool known_name = instance_state_ == InstanceState::known;
    tracked.for_this_instance = known_name && event_names_instance(event, instance_.name);
    if (inserted) {
      ++events_seen_;
      tracked.first_seen_ms = now;
      if (tracked.for_this_instance) {
        LOG_INFO("msg=\"scheduled event for this instance\" event_id=\"%s\" event_type=\"%s\" status=\"%s\" "
                 "not_before=\"%s\" source=\"%s\" resources=\"%s\"",
                 printable(event.id).c_str(), printable(event.type).c_str(), printable(event.status).c_str(),
                 printable(event.not_before).c_str(), printable(event.source).c_str(),
                 printable(join_names(event.resources)).c_str());
      } else {
        LOG_DEBUG("msg=\"scheduled event for other resources\" event_id=\"%s\" event_type=\"%s\" not_before=\"%s\" "
                  "resources=\"%s\"",
                  printable(event.id).c_str(), printable(event.type).c_str(), printable(event.not_before).c_str(),
                  printable(join_names(event.resources)).c_str());
      }
    }
    // An event already over (first seen as Completed, say) is not worth a drain; one whose
    // drain ended and that is listed as pending again (withdrawn, then reissued) drains again.
    if (!event_type_requires_drain(event.type) || tracked.drain_requested || !event_in_progress(event.status)) continue;
    if (tracked.for_this_instance) {
      request_drain(tracked);
    } else if (!known_name) {
      uint64_t suppressed = 0;
      if (warn_allowed(unknown_name_warn_, &suppressed)) {
        LOG_WARN("msg=\"scheduled event seen, but this instance's name is not known yet (no instance metadata): "
                 "cannot tell whether it is for this VM\" event_id=\"%s\" event_type=\"%s\" resources=\"%s\"",
                 printable(event.id).c_str(), printable(event.type).c_str(),
                 printable(join_names(event.resources)).c_str());
      }
    }
  }
  end_drain_if_over();
  prune_events();
}

void ScheduledEventsWatcher::end_drain_if_over() {
  if (drain_started_ms_ == 0) return;
  const TrackedEvent* last = nullptr;
  for (const auto& [id, tracked] : events_) {
    if (!tracked.drain_requested) continue;
    if (tracked.listed && event_in_progress(tracked.event.status)) return;  // still draining for it
    if (last == nullptr || tracked.first_seen_ms >= last->first_seen_ms) last = &tracked;
  }
  if (last == nullptr) return;
  // Every event we drained for is over, and this process is still here: a Freeze (the VM
  // was paused and carries on), or an event withdrawn before it happened. Staying drained
  // would keep a healthy instance out of the pool until someone restarts it.
  for (auto& [id, tracked] : events_) {
    if (!tracked.drain_requested) continue;
    // Over: should the same EventId be listed as pending again, it drains (and is
    // approved) again.
    tracked.drain_requested = false;
    if (tracked.ack == AckState::pending) tracked.ack = AckState::skipped;
  }
  drain_started_ms_ = 0;
  ++drains_ended_;
  LOG_WARN("msg=\"scheduled event over: drain ended, taking traffic again\" event_id=\"%s\" event_type=\"%s\" "
           "status=\"%s\"",
           printable(last->event.id).c_str(), printable(last->event.type).c_str(),
           printable(last->listed ? last->event.status : std::string("gone")).c_str());
  if (drain_) {
    try {
      drain_(last->event, false);
    } catch (const std::exception& e) {
      LOG_ERROR("msg=\"drain end failed\" error=\"%s\"", e.what());
    }
  }
}

void ScheduledEventsWatcher::request_drain(TrackedEvent& tracked) {
  const uint64_t now = monotonic_ms();
  tracked.drain_requested = true;
  ++drains_requested_;
  if (drain_started_ms_ == 0) drain_started_ms_ = now;
  const ScheduledEvent& event = tracked.event;
  LOG_WARN("msg=\"draining for a scheduled event\" event_id=\"%s\" event_type=\"%s\" not_before=\"%s\" "
           "drain_grace_ms=%lld ack=%s",
           printable(event.id).c_str(), printable(event.type).c_str(), printable(event.not_before).c_str(),
           static_cast<long long>(config_.drain_grace.count()), config_.ack_scheduled_events ? "true" : "false");
  if (drain_) {
    try {
      drain_(event, true);
    } catch (const std::exception& e) {
      LOG_ERROR("msg=\"drain request failed\" error=\"%s\"", e.what());
    }
  }
  if (config_.ack_scheduled_events && tracked.ack != AckState::sent && tracked.ack != AckState::in_flight) {
    tracked.ack = AckState::pending;
    tracked.ack_attempts = 0;
    const uint64_t due = drain_started_ms_ + static_cast<uint64_t>(config_.drain_grace.count());
    arm_ack_timer(due > now ? due - now : 0);
  }
}

// ---------------------------------------------------------------------------------------
// Approvals (StartRequests)

void ScheduledEventsWatcher::arm_ack_timer(uint64_t delay_ms) {
  if (closed_) return;
  // An earlier due time wins over a later one already armed.
  if (uv_is_active(ack_timer_.as_handle()) && uv_timer_get_due_in(ack_timer_.get()) <= delay_ms) return;
  uv_timer_start(ack_timer_.get(), on_ack_timer, delay_ms, 0);
  uv_unref(ack_timer_.as_handle());
}

void ScheduledEventsWatcher::on_ack_timer(uv_timer_t* timer) {
  auto* self = static_cast<ScheduledEventsWatcher*>(timer->data);
  if (self != nullptr) self->send_acks();
}

void ScheduledEventsWatcher::send_acks() {
  if (closed_ || drain_started_ms_ == 0) return;
  const uint64_t now = monotonic_ms();
  const uint64_t due = drain_started_ms_ + static_cast<uint64_t>(config_.drain_grace.count());
  if (now < due) {
    arm_ack_timer(due - now);
    return;
  }
  for (auto& [id, tracked] : events_) {
    if (tracked.ack != AckState::pending) continue;
    if (!tracked.listed) {
      tracked.ack = AckState::skipped;
      LOG_INFO("msg=\"scheduled event gone before its approval; not approving\" event_id=\"%s\"",
               printable(id).c_str());
      continue;
    }
    HttpFetchRequest request = request_for(kImdsScheduledEventsPath);
    request.method = "POST";
    request.headers.push_back("Content-Type: application/json");
    request.headers.push_back("Expect:");
    request.body = start_requests_body(id);
    std::string error;
    const std::string event_id = id;
    const uint64_t request_id = http_->start(
        std::move(request),
        [this, event_id](HttpFetchResult&& result) { on_ack(event_id, result); }, &error);
    if (request_id == 0) {
      HttpFetchResult failed;
      failed.error = error;
      tracked.ack = AckState::in_flight;
      on_ack(event_id, failed);
      continue;
    }
    tracked.ack = AckState::in_flight;
    ack_requests_.emplace(request_id, event_id);
  }
}

void ScheduledEventsWatcher::on_ack(const std::string& event_id, const HttpFetchResult& result) {
  for (auto it = ack_requests_.begin(); it != ack_requests_.end(); ++it) {
    if (it->second == event_id) {
      ack_requests_.erase(it);
      break;
    }
  }
  auto found = events_.find(event_id);
  if (found == events_.end()) return;
  TrackedEvent& tracked = found->second;
  const ImdsResult outcome = count(ImdsRequestKind::ack, classify_imds_answer(result));
  if (outcome == ImdsResult::ok) {
    tracked.ack = AckState::sent;
    ++acks_sent_;
    LOG_INFO("msg=\"scheduled event approved (StartRequests)\" event_id=\"%s\" event_type=\"%s\"",
             printable(event_id).c_str(), printable(tracked.event.type).c_str());
    return;
  }
  if (drain_started_ms_ == 0 || !tracked.listed || !event_in_progress(tracked.event.status)) {
    // The drain ended meanwhile (the event is over): nothing left to approve.
    tracked.ack = AckState::skipped;
    return;
  }
  ++tracked.ack_attempts;
  const std::string detail = result.outcome == HttpFetchOutcome::answered ? "HTTP " + std::to_string(result.status)
                                                                          : result.error;
  if (tracked.ack_attempts >= options_.max_ack_attempts) {
    tracked.ack = AckState::failed;
    LOG_WARN("msg=\"could not approve scheduled event; giving up\" event_id=\"%s\" result=%s detail=\"%s\" attempts=%u",
             printable(event_id).c_str(), to_string(outcome), printable(detail).c_str(), tracked.ack_attempts);
    return;
  }
  tracked.ack = AckState::pending;
  const uint64_t delay = backoff(tracked.ack_attempts);
  LOG_WARN("msg=\"scheduled event approval failed; retrying\" event_id=\"%s\" result=%s detail=\"%s\" retry_in_ms=%llu",
           printable(event_id).c_str(), to_string(outcome), printable(detail).c_str(),
           static_cast<unsigned long long>(delay));
  arm_ack_timer(delay);
}

void ScheduledEventsWatcher::prune_events() {
  // Events no longer listed are kept (so an EventId is never drained for or approved
  // twice) up to a bound; the oldest unlisted ones that are done go first.
  constexpr size_t kMaxTracked = 256;
  while (events_.size() > kMaxTracked) {
    auto oldest = events_.end();
    for (auto it = events_.begin(); it != events_.end(); ++it) {
      if (it->second.listed || it->second.ack == AckState::pending || it->second.ack == AckState::in_flight) continue;
      if (oldest == events_.end() || it->second.first_seen_ms < oldest->second.first_seen_ms) oldest = it;
    }
    if (oldest == events_.end()) break;
    events_.erase(oldest);
  }
}

// ---------------------------------------------------------------------------------------
// /status and /metrics

void ScheduledEventsWatcher::fill_status(StatusView* view) const {
  InstanceStatusView& instance = view->instance;
  switch (instance_state_) {
    case InstanceState::off: instance.state = "off"; break;
    case InstanceState::pending: instance.state = "pending"; break;
    case InstanceState::known: instance.state = "known"; break;
    case InstanceState::unreachable: instance.state = "unreachable"; break;
  }
  if (instance_state_ == InstanceState::known) {
    instance.name = instance_.name;
    instance.vm_scale_set = instance_.vm_scale_set;
    instance.zone = instance_.zone;
    instance.location = instance_.location;
  }
  ScheduledEventsStatusView& events = view->scheduled_events;
  events.mode = mode_name(config_.scheduled_events);
  events.polling = polling_;
  events.last_result = last_poll_result_;
  events.consecutive_failures = poll_failures_;
  events.polls_ok = polls_ok_;
  events.events.clear();
  for (const auto& [id, tracked] : events_) {
    if (!tracked.listed) continue;
    ScheduledEventStatusView out;
    out.id = id;
    out.type = tracked.event.type;
    out.status = tracked.event.status;
    out.not_before = tracked.event.not_before;
    out.resources = tracked.event.resources;
    out.for_this_instance = tracked.for_this_instance;
    out.drain_requested = tracked.drain_requested;
    switch (tracked.ack) {
      case AckState::none: out.ack = "none"; break;
      case AckState::pending: out.ack = "pending"; break;
      case AckState::in_flight: out.ack = "in_flight"; break;
      case AckState::sent: out.ack = "sent"; break;
      case AckState::skipped: out.ack = "skipped"; break;
      case AckState::failed: out.ack = "failed"; break;
    }
    events.events.push_back(std::move(out));
  }
}

void ScheduledEventsWatcher::register_metrics(MetricsRegistry& registry) {
  const ScheduledEventsWatcher* self = this;
  registry.add_family({.name = "hubdns_imds_requests_total",
                       .type = MetricType::counter,
                       .help = "Requests to the instance metadata service that ended, by request (instance, scheduled_events, ack) and result.",
                       .label_names = {"request", "result"}},
                      [self](MetricSink& sink) {
                        for (size_t kind = 0; kind < kImdsRequestKindCount; ++kind) {
                          for (size_t result = 0; result < kImdsResultCount; ++result) {
                            sink.add({to_string(static_cast<ImdsRequestKind>(kind)),
                                      to_string(static_cast<ImdsResult>(result))},
                                     self->requests_[kind][result]);
                          }
                        }
                      });
  registry.add_family({.name = "hubdns_scheduled_events_seen_total",
                       .type = MetricType::counter,
                       .help = "Distinct Azure scheduled events (EventId) seen, for this instance or others."},
                      [self](MetricSink& sink) { sink.add({}, self->events_seen_); });
  registry.add_family({.name = "hubdns_scheduled_event_drains_total",
                       .type = MetricType::counter,
                       .help = "Scheduled events for this instance (Reboot, Redeploy, Freeze, Preempt, Terminate) that started a drain."},
                      [self](MetricSink& sink) { sink.add({}, self->drains_requested_); });
  registry.add_family({.name = "hubdns_scheduled_event_drains_ended_total",
                       .type = MetricType::counter,
                       .help = "Event-driven drains that ended because every event behind them was over while this process kept running (a Freeze, or a withdrawn event)."},
                      [self](MetricSink& sink) { sink.add({}, self->drains_ended_); });
  registry.add_family({.name = "hubdns_scheduled_event_acks_total",
                       .type = MetricType::counter,
                       .help = "Scheduled events approved (StartRequests accepted by the metadata service) after the drain grace."},
                      [self](MetricSink& sink) { sink.add({}, self->acks_sent_); });
}

}  // namespace hubdns
