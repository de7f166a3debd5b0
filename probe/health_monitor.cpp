#include "probe/health_monitor.h"

#include <exception>
#include <utility>

#include "common/log/log.h"
#include "common/util/clock.h"
#include "probe/admin_auth.h"
#include "probe/probe_query.h"

namespace hubdns {
namespace {

std::string join(const std::vector<std::string>& items, const char* separator) {
  std::string out;
  for (const std::string& item : items) {
    if (!out.empty()) out += separator;
    out += item;
  }
  return out;
}

std::vector<std::string> address_texts(const std::vector<SocketAddress>& addresses) {
  std::vector<std::string> texts;
  texts.reserve(addresses.size());
  for (const SocketAddress& address : addresses) texts.push_back(address.to_string());
  return texts;
}

int64_t age_ms(uint64_t now_ms, uint64_t then_ms) {
  if (then_ms == 0) return -1;
  return now_ms > then_ms ? static_cast<int64_t>(now_ms - then_ms) : 0;
}

}  // namespace

HealthMonitor::HealthMonitor(uv_loop_t* loop, HealthServer* server, ConfigSnapshot config,
                             SharedUpstreamHealth table, ProcessState* state,
                             std::vector<SocketAddress> dns_listeners, HealthMonitorOptions options)
    : loop_(loop),
      server_(server),
      config_(std::move(config)),
      table_(std::move(table)),
      state_(state),
      options_(options),
      dns_listeners_(std::move(dns_listeners)),
      checker_(loop, config_, table_),
      loop_detector_(loop, config_, &state->loop_probes()),
      self_check_(loop, dns_listeners_, static_cast<uint64_t>(config_->health.timeout.count()), config_->health.fall),
      tcp_probe_(loop, config_->health.tcp_listen),
      started_ms_(monotonic_ms()) {
  checker_.set_change_listener([this] { readiness_may_have_changed(); });
  loop_detector_.set_verdict_listener([this](const LoopDetector::Upstream& upstream, bool in_loop) {
    checker_.set_loop(upstream.rule, upstream.index, upstream.address, in_loop);
  });
  self_check_.set_change_listener([this] { readiness_may_have_changed(); });
  server_->set_readiness_contributor([this](ReadinessInputs& inputs) { contribute(inputs); });
  server_->add_route("GET", "/status",
                     [this](const HttpRequest&, const RequestContext&) { return status_response(); });
  server_->add_route("POST", "/drain", [this](const HttpRequest& request, const RequestContext& context) {
    return admin(request, context, true);
  });
  server_->add_route("POST", "/undrain", [this](const HttpRequest& request, const RequestContext& context) {
    return admin(request, context, false);
  });
}

HealthMonitor::~HealthMonitor() { close(); }

void HealthMonitor::start() {
  if (closed_) return;
  round_timer_.init(uv_timer_init, loop_);
  watch_timer_.init(uv_timer_init, loop_);
  round_timer_->data = this;
  watch_timer_->data = this;
  const auto interval = static_cast<uint64_t>(config_->health.interval.count());
  uv_timer_start(round_timer_.get(), on_round, 0, interval);
  uv_timer_start(watch_timer_.get(), on_watch, options_.readiness_watch_ms, options_.readiness_watch_ms);
  // The health listeners keep the loop running; these timers alone must not.
  uv_unref(round_timer_.as_handle());
  uv_unref(watch_timer_.as_handle());
  // At once too: the workers already run, and a loop found before traffic arrives saves
  // the first clients' queries from circling.
  loop_detector_.run_all();
}

void HealthMonitor::reconfigure(ConfigSnapshot config, SharedUpstreamHealth table, uint64_t generation,
                                std::vector<SocketAddress> dns_listeners) {
  if (closed_) return;
  first_round_done_before_ = first_round_done();
  config_ = std::move(config);
  table_ = std::move(table);
  options_.config_generation = generation;
  checker_.reconfigure(config_, table_);
  dns_listeners_ = std::move(dns_listeners);
  self_check_.reconfigure(dns_listeners_, static_cast<uint64_t>(config_->health.timeout.count()), config_->health.fall);
  // Upstreams that stay keep a loop verdict (in their tracker) until this check decides.
  loop_detector_.reconfigure(config_);
  if (round_timer_.initialized() && uv_is_active(round_timer_.as_handle())) {
    // A round at once: new upstreams get their first result without waiting an interval.
    const auto interval = static_cast<uint64_t>(config_->health.interval.count());
    uv_timer_start(round_timer_.get(), on_round, 0, interval);
  }
  readiness_may_have_changed();
}

void HealthMonitor::close() {
  if (closed_) return;
  closed_ = true;
  round_timer_.close();
  watch_timer_.close();
  loop_detector_.close();
  checker_.close();
  self_check_.close();
  tcp_probe_.close();
  // The server may answer a little longer than this object lives: leave it routes and a
  // readiness that no longer reach here.
  server_->set_readiness_contributor(nullptr);
  status_contributors_.clear();
  auto gone = [](const HttpRequest&, const RequestContext&) {
    HttpResponse response = HttpResponse::text(503, "shutting down\n");
    response.close_connection = true;
    return response;
  };
  server_->add_route("GET", "/status", gone);
  server_->add_route("POST", "/drain", gone);
  server_->add_route("POST", "/undrain", gone);
}

void HealthMonitor::on_round(uv_timer_t* timer) {
  auto* self = static_cast<HealthMonitor*>(timer->data);
  if (self == nullptr) return;
  try {
    self->checker_.run_round();
    self->self_check_.run_round();
  } catch (const std::exception& e) {
    // Only allocation can fail here; the next round tries again.
    LOG_ERROR("msg=\"health check round failed\" error=\"%s\"", e.what());
  }
  self->readiness_may_have_changed();
}

void HealthMonitor::on_watch(uv_timer_t* timer) {
  auto* self = static_cast<HealthMonitor*>(timer->data);
  if (self != nullptr) self->readiness_may_have_changed();
}

void HealthMonitor::readiness_may_have_changed() {
  if (closed_) return;
  try {
    ReadinessReport report = server_->readiness();
    tcp_probe_.set_ready(report.ready);
    // Not ready while the first round runs is expected, not news: say nothing until then.
    if (!report.ready && !logged_ready_ && !first_round_done()) return;
    if (logged_ready_ == report.ready) return;
    logged_ready_ = report.ready;
    if (report.ready) {
      LOG_INFO("msg=\"ready\"");
    } else {
      LOG_WARN("msg=\"not ready\" reasons=\"%s\"", join(report.reasons, "; ").c_str());
    }
  } catch (const std::exception& e) {
    LOG_ERROR("msg=\"readiness evaluation failed\" error=\"%s\"", e.what());
  }
}

void HealthMonitor::contribute(ReadinessInputs& inputs) const {
  inputs.first_probe_round_done = first_round_done();
  inputs.upstreams_unchecked = checker_.unchecked();
  const auto& rules = checker_.upstreams();
  for (size_t rule = 0; rule < rules.size(); ++rule) {
    const ForwardRule& forward = config_->forward[rule];
    if (!forward.critical) continue;
    CriticalZoneHealth zone;
    zone.zone = display_zone(forward.zone);
    zone.upstreams.reserve(rules[rule].size());
    for (const UpstreamChecker::Upstream& upstream : rules[rule]) {
      const UpstreamTracker& tracker = upstream.tracker;
      zone.upstreams.push_back({upstream.address_text, tracker.status(), tracker.checked(), tracker.last_error(),
                                tracker.last_error_streak()});
    }
    inputs.critical_zones.push_back(std::move(zone));
  }
  for (const DataPathSelfCheck::Target& target : self_check_.targets()) {
    const SelfCheckTracker& tracker = target.tracker;
    inputs.data_path.push_back({target.name, tracker.checks > tracker.failures,
                                tracker.state == SelfCheckState::failing,
                                tracker.consecutive_failures > 0 ? tracker.last_error : std::string(),
                                tracker.consecutive_failures});
  }
}

HttpResponse HealthMonitor::admin(const HttpRequest& request, const RequestContext& context, bool drain) {
  if (auto refusal = admin_refusal(request, context.peer, config_->health.admin_token)) return std::move(*refusal);
  if (!drain && state_->stopping()) {
    return HttpResponse::text(409, "stopping: the drain leads to the exit and cannot be undone\n");
  }
  const bool was = state_->draining();
  state_->set_draining(drain);
  // The operator's word also ends a drain a scheduled event started.
  if (!drain) state_->set_event_draining(false);
  if (was != drain) {
    LOG_INFO("msg=\"%s\" peer=%s", drain ? "drain started (readiness 503, DNS still served)" : "drain ended",
             context.peer.to_string().c_str());
  }
  readiness_may_have_changed();
  return HttpResponse::text(200, drain ? "draining: /readyz answers 503, DNS is still served\n" : "not draining\n");
}

HttpResponse HealthMonitor::status_response() const { return HttpResponse::json(200, render_status_json(status_view())); }

StatusView HealthMonitor::status_view() const {
  const uint64_t now = monotonic_ms();
  StatusView view;
  view.version = HUBDNS_VERSION;
  view.uptime_seconds = static_cast<double>(now - started_ms_) / 1000.0;
  ReadinessReport readiness = server_->readiness();
  view.ready = readiness.ready;
  view.reasons = std::move(readiness.reasons);
  view.draining = state_->draining();
  view.listeners_bound = state_->listeners_bound();
  view.config_source = config_->source;
  view.config_generation = options_.config_generation;
  view.interval_ms = static_cast<uint64_t>(config_->health.interval.count());
  view.timeout_ms = static_cast<uint64_t>(config_->health.timeout.count());
  view.rise = config_->health.rise;
  view.fall = config_->health.fall;
  view.first_round_done = first_round_done();

  for (unsigned i = 0; i < state_->worker_count(); ++i) {
    WorkerView worker;
    worker.index = i;
    worker.heartbeat_age_ms = age_ms(now, state_->last_worker_heartbeat(i));
    // Same rule as readiness: silent longer than the liveness limit is not alive.
    worker.alive = worker.heartbeat_age_ms >= 0 &&
                   static_cast<uint64_t>(worker.heartbeat_age_ms) <= server_->options().max_loop_silence_ms;
    view.workers.push_back(worker);
  }

  view.dns_listeners = address_texts(dns_listeners_);
  view.health_listeners = address_texts(server_->bound_addresses());
  view.tcp_probe_addresses = address_texts(tcp_probe_.addresses());
  view.tcp_probe_listening = tcp_probe_.listening();
  view.tcp_probe_accepted = tcp_probe_.accepted();

  for (const DataPathSelfCheck::Target& target : self_check_.targets()) {
    SelfCheckView check;
    check.listener = target.name;
    check.state = target.tracker.state;
    check.consecutive_failures = target.tracker.consecutive_failures;
    check.last_error = target.tracker.last_error;
    check.last_latency_us = target.last_latency_us;
    check.answered_by = target.answered_by;
    check.checks = target.tracker.checks;
    check.failures = target.tracker.failures;
    view.self_checks.push_back(std::move(check));
  }

  const auto& rules = checker_.upstreams();
  for (size_t rule = 0; rule < rules.size(); ++rule) {
    const ForwardRule& forward = config_->forward[rule];
    ZoneStatusView zone;
    zone.zone = display_zone(forward.zone);
    zone.critical = forward.critical;
    zone.policy = to_string(forward.policy);
    zone.probe_name = forward.probe.name;
    zone.probe_type = dns_type_name(forward.probe.qtype);
    for (const UpstreamChecker::Upstream& upstream : rules[rule]) {
      const UpstreamTracker& tracker = upstream.tracker;
      const UpstreamHealthEntry& entry = table_->entry(upstream.rule, upstream.index);
      UpstreamStatusView out;
      out.address = upstream.address_text;
      out.status = tracker.status();
      out.status_age_ms = age_ms(now, tracker.last_change_ms());
      out.consecutive_successes = tracker.consecutive_successes();
      out.consecutive_failures = tracker.consecutive_failures();
      out.last_error = tracker.last_error();
      out.last_error_age_ms = tracker.last_error().empty() ? -1 : age_ms(now, tracker.last_error_ms());
      out.last_probe_latency_us = upstream.last_probe_latency_us;
      out.probe_results = upstream.probe_results;
      out.probes_in_flight = upstream.in_flight != nullptr ? 1 : 0;
      out.traffic_checks = upstream.traffic_checks;
      out.answers = entry.answers.load(std::memory_order_relaxed);
      out.failures = entry.failures.load(std::memory_order_relaxed);
      const uint64_t latency_total = entry.answer_latency_us_total.load(std::memory_order_relaxed);
      out.average_latency_us = out.answers > 0 ? static_cast<int64_t>(latency_total / out.answers) : -1;
      const auto& loop_checks = loop_detector_.upstreams();
      if (rule < loop_checks.size() && upstream.index < loop_checks[rule].size()) {
        const LoopDetector::Upstream& check = loop_checks[rule][upstream.index];
        out.loop_check = to_string(check.state);
        out.loop_check_result = check.last_result;
        out.loop_probes = check.probes_sent;
      }
      zone.upstreams.push_back(std::move(out));
    }
    view.zones.push_back(std::move(zone));
  }
  for (const auto& contribute : status_contributors_) contribute(view);
  return view;
}

std::string HealthMonitor::display_zone_of(size_t rule) const { return display_zone(config_->forward[rule].zone); }

void HealthMonitor::register_metrics(MetricsRegistry& registry) {
  const HealthMonitor* self = this;
  registry.add_family({.name = "hubdns_build_info",
                       .type = MetricType::gauge,
                       .help = "Always 1; the version of the running binary is in the label.",
                       .label_names = {"version"}},
                      [](MetricSink& sink) { sink.add({HUBDNS_VERSION}, 1); });
  registry.add_family({.name = "hubdns_ready",
                       .type = MetricType::gauge,
                       .help = "1 when /readyz answers 200 (this instance should get DNS traffic), else 0."},
                      [self](MetricSink& sink) { sink.add({}, self->ready() ? 1 : 0); });
  registry.add_family({.name = "hubdns_draining",
                       .type = MetricType::gauge,
                       .help = "1 while draining (POST /drain or a stop signal): readiness 503, DNS still served."},
                      [self](MetricSink& sink) { sink.add({}, self->state_->draining() ? 1 : 0); });
  registry.add_family({.name = "hubdns_config_generation",
                       .type = MetricType::gauge,
                       .help = "Generation of the running configuration: 1 at start, one more per accepted reload."},
                      [self](MetricSink& sink) { sink.add({}, self->options_.config_generation); });
  registry.add_family({.name = "hubdns_upstream_up",
                       .type = MetricType::gauge,
                       .help = "1 when the health checks consider the upstream up, 0 when down, loop or not decided yet.",
                       .label_names = {"zone", "upstream"}},
                      [self](MetricSink& sink) {
                        self->for_each_upstream([&](const std::string& zone, const UpstreamChecker::Upstream& upstream) {
                            sink.add({zone, upstream.address_text},
                                     upstream.tracker.status() == UpstreamStatus::up ? 1 : 0);
                        });
                      });
  registry.add_family({.name = "hubdns_upstream_loop",
                       .type = MetricType::gauge,
                       .help = "1 while the upstream is known to lead back to this instance (a forwarding loop: it gets no queries until a reload or restart checks again), else 0.",
                       .label_names = {"zone", "upstream"}},
                      [self](MetricSink& sink) {
                        self->for_each_upstream([&](const std::string& zone, const UpstreamChecker::Upstream& upstream) {
                            sink.add({zone, upstream.address_text}, upstream.tracker.loop() ? 1 : 0);
                        });
                      });
  registry.add_family({.name = "hubdns_loop_probes_total",
                       .type = MetricType::counter,
                       .help = "Forwarding-loop probes judged, by result: loop (came back to this instance), clear (answered elsewhere), no_verdict (timeout, network error or SERVFAIL: asked again later).",
                       .label_names = {"result"}},
                      [self](MetricSink& sink) {
                        const auto& results = self->loop_detector_.results();
                        for (size_t i = 0; i < kLoopProbeResultCount; ++i) {
                          sink.add({loop_probe_result_label(static_cast<LoopProbeResult>(i))}, results[i]);
                        }
                      });
  registry.add_family({.name = "hubdns_upstream_probes_total",
                       .type = MetricType::counter,
                       .help = "Active health probes that ended, by result (ok counts NOERROR and NXDOMAIN).",
                       .label_names = {"zone", "upstream", "result"}},
                      [self](MetricSink& sink) {
                        self->for_each_upstream([&](const std::string& zone, const UpstreamChecker::Upstream& upstream) {
                            for (size_t i = 0; i < kProbeResultCount; ++i) {
                              sink.add({zone, upstream.address_text, probe_result_label(static_cast<ProbeResult>(i))},
                                       upstream.probe_results[i]);
                            }
                        });
                      });
  registry.add_family({.name = "hubdns_upstream_probes_skipped_total",
                       .type = MetricType::counter,
                       .help = "Health check rounds that sent no probe because real answers since the previous round proved the upstream works.",
                       .label_names = {"zone", "upstream"}},
                      [self](MetricSink& sink) {
                        self->for_each_upstream([&](const std::string& zone, const UpstreamChecker::Upstream& upstream) {
                            sink.add({zone, upstream.address_text}, upstream.traffic_checks);
                        });
                      });
  registry.add_family({.name = "hubdns_upstream_attempts_total",
                       .type = MetricType::counter,
                       .help = "Finished attempts of client queries at an upstream, by result: answer, or failure (timeout, network error, SERVFAIL, REFUSED).",
                       .label_names = {"zone", "upstream", "result"}},
                      [self](MetricSink& sink) {
                        self->for_each_upstream([&](const std::string& zone, const UpstreamChecker::Upstream& upstream) {
                            const UpstreamHealthEntry& entry = self->table_->entry(upstream.rule, upstream.index);
                            sink.add({zone, upstream.address_text, "answer"}, entry.answers);
                            sink.add({zone, upstream.address_text, "failure"}, entry.failures);
                        });
                      });
  registry.add_family({.name = "hubdns_upstream_latency_seconds",
                       .type = MetricType::histogram,
                       .help = "Time from sending a client query's attempt to an upstream to its answer (answers other than SERVFAIL and REFUSED).",
                       .label_names = {"zone", "upstream"}},
                      [self](MetricSink& sink) {
                        self->for_each_upstream([&](const std::string& zone, const UpstreamChecker::Upstream& upstream) {
                            sink.add({zone, upstream.address_text},
                                     self->table_->entry(upstream.rule, upstream.index).latency);
                        });
                      });
  registry.add_family({.name = "hubdns_self_check_up",
                       .type = MetricType::gauge,
                       .help = "1 while the DNS listener answers the data-path self-check, 0 when failing or not answered yet.",
                       .label_names = {"listener", "proto"}},
                      [self](MetricSink& sink) {
                        for (const DataPathSelfCheck::Target& target : self->self_check_.targets()) {
                          sink.add({target.address.to_string(), to_string(target.transport)},
                                   target.tracker.state == SelfCheckState::passing ? 1 : 0);
                        }
                      });
  registry.add_family({.name = "hubdns_tcp_probe_listening",
                       .type = MetricType::gauge,
                       .help = "Addresses of health.tcp_listen accepting connections now (they close while not ready)."},
                      [self](MetricSink& sink) { sink.add({}, self->tcp_probe_.listening_count()); });
  registry.add_family({.name = "hubdns_health_http_requests_total",
                       .type = MetricType::counter,
                       .help = "Requests answered by the health listener, malformed ones included."},
                      [self](MetricSink& sink) { sink.add({}, self->server_->stats().requests); });
  registry.add_family({.name = "hubdns_health_http_bad_requests_total",
                       .type = MetricType::counter,
                       .help = "Health listener requests rejected as malformed or too large (400, 413, 431, 501, 505)."},
                      [self](MetricSink& sink) { sink.add({}, self->server_->stats().bad_requests); });
  registry.add_family({.name = "hubdns_health_http_connections_total",
                       .type = MetricType::counter,
                       .help = "Health listener connections: accepted, evicted (oldest closed at the connection cap), rejected (closed at once at the cap).",
                       .label_names = {"result"}},
                      [self](MetricSink& sink) {
                        const HealthServerStats& stats = self->server_->stats();
                        sink.add({"accepted"}, stats.connections_accepted);
                        sink.add({"evicted"}, stats.connections_evicted);
                        sink.add({"rejected"}, stats.connections_rejected);
                      });
  registry.add_family({.name = "hubdns_health_http_timeouts_total",
                       .type = MetricType::counter,
                       .help = "Health listener connections closed because the client was too slow or idle too long."},
                      [self](MetricSink& sink) { sink.add({}, self->server_->stats().timeouts); });
}

}  // namespace hubdns
