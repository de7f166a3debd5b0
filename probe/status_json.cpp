#include "probe/status_json.h"

#include "probe/json_writer.h"

namespace hubdns {
namespace {

// Milliseconds as a JSON number, or null when unknown (negative).
void ms_or_null(JsonWriter& json, std::string_view key, int64_t value) {
  json.key(key);
  if (value < 0) {
    json.null();
  } else {
    json.value(value);
  }
}

// Microseconds shown as milliseconds with three decimals (0.123), or null.
void us_as_ms_or_null(JsonWriter& json, std::string_view key, int64_t microseconds) {
  json.key(key);
  if (microseconds < 0) {
    json.null();
  } else {
    json.value(static_cast<double>(microseconds) / 1000.0);
  }
}

void string_or_null(JsonWriter& json, std::string_view key, const std::string& text) {
  json.key(key);
  if (text.empty()) {
    json.null();
  } else {
    json.value(text);
  }
}

void string_array(JsonWriter& json, std::string_view key, const std::vector<std::string>& items) {
  json.key(key).begin_array();
  for (const std::string& item : items) json.value(item);
  json.end_array();
}

void write_upstream(JsonWriter& json, const UpstreamStatusView& upstream) {
  json.begin_object();
  json.member("address", upstream.address);
  json.member("status", to_string(upstream.status));
  ms_or_null(json, "status_age_ms", upstream.status_age_ms);
  json.member("consecutive_successes", upstream.consecutive_successes);
  json.member("consecutive_failures", upstream.consecutive_failures);
  string_or_null(json, "last_error", upstream.last_error);
  ms_or_null(json, "last_error_age_ms", upstream.last_error_age_ms);
  us_as_ms_or_null(json, "last_probe_latency_ms", upstream.last_probe_latency_us);
  uint64_t sent = upstream.probes_in_flight;
  for (uint64_t count : upstream.probe_results) sent += count;
  json.key("probes").begin_object();
  json.member("sent", sent);
  json.member("in_flight", upstream.probes_in_flight);
  for (size_t i = 0; i < kProbeResultCount; ++i) {
    json.member(probe_result_label(static_cast<ProbeResult>(i)), upstream.probe_results[i]);
  }
  json.member("skipped_busy", upstream.traffic_checks);
  json.end_object();
  json.key("traffic").begin_object();
  json.member("answers", upstream.answers);
  json.member("failures", upstream.failures);
  us_as_ms_or_null(json, "average_latency_ms", upstream.average_latency_us);
  json.end_object();
  if (upstream.loop_check.empty()) {
    json.key("loop_check").null();
  } else {
    json.key("loop_check").begin_object();
    json.member("state", upstream.loop_check);
    string_or_null(json, "last_result", upstream.loop_check_result);
    json.member("probes", upstream.loop_probes);
    json.end_object();
  }
  json.end_object();
}

}  // namespace

std::string render_status_json(const StatusView& view) {
  JsonWriter json;
  json.begin_object();
  json.member("version", view.version);
  json.member("uptime_seconds", view.uptime_seconds);
  json.member("ready", view.ready);
  string_array(json, "reasons", view.reasons);
  json.member("draining", view.draining);
  json.member("listeners_bound", view.listeners_bound);

  json.key("config").begin_object();
  json.member("source", view.config_source);
  json.member("generation", view.config_generation);
  json.key("reloads").begin_object();
  json.member("ok", view.reload.ok);
  json.member("failed", view.reload.failed);
  json.member("last_ok", view.reload.last_ok);
  string_or_null(json, "last_error", view.reload.last_error);
  json.member("retiring_workers", static_cast<uint64_t>(view.reload.retiring_workers));
  json.end_object();
  json.end_object();

  json.key("health_check").begin_object();
  json.member("interval_ms", view.interval_ms);
  json.member("timeout_ms", view.timeout_ms);
  json.member("rise", view.rise);
  json.member("fall", view.fall);
  json.member("first_round_done", view.first_round_done);
  json.end_object();

  json.key("workers").begin_array();
  for (const WorkerView& worker : view.workers) {
    json.begin_object();
    json.member("index", worker.index);
    json.member("alive", worker.alive);
    ms_or_null(json, "heartbeat_age_ms", worker.heartbeat_age_ms);
    json.end_object();
  }
  json.end_array();

  json.key("listeners").begin_object();
  string_array(json, "dns", view.dns_listeners);
  string_array(json, "health", view.health_listeners);
  json.key("tcp_probe").begin_object();
  string_array(json, "addresses", view.tcp_probe_addresses);
  json.member("listening", view.tcp_probe_listening);
  json.member("accepted", view.tcp_probe_accepted);
  json.end_object();
  json.end_object();

  json.key("self_check").begin_array();
  for (const SelfCheckView& check : view.self_checks) {
    json.begin_object();
    json.member("listener", check.listener);
    json.member("state", to_string(check.state));
    json.member("consecutive_failures", check.consecutive_failures);
    string_or_null(json, "last_error", check.last_error);
    us_as_ms_or_null(json, "last_latency_ms", check.last_latency_us);
    string_or_null(json, "answered_by", check.answered_by);
    json.member("checks", check.checks);
    json.member("failures", check.failures);
    json.end_object();
  }
  json.end_array();

  json.key("zones").begin_array();
  for (const ZoneStatusView& zone : view.zones) {
    json.begin_object();
    json.member("zone", zone.zone);
    json.member("critical", zone.critical);
    json.member("policy", zone.policy);
    json.key("probe").begin_object();
    json.member("name", zone.probe_name);
    json.member("type", zone.probe_type);
    json.end_object();
    unsigned up = 0;
    for (const UpstreamStatusView& upstream : zone.upstreams) up += upstream.status == UpstreamStatus::up ? 1 : 0;
    json.member("upstreams_up", up);
    json.key("upstreams").begin_array();
    for (const UpstreamStatusView& upstream : zone.upstreams) write_upstream(json, upstream);
    json.end_array();
    json.end_object();
  }
  json.end_array();

  json.key("cache").begin_object();
  json.member("enabled", view.cache.enabled);
  if (view.cache.enabled) {
    json.member("max_entries", view.cache.max_entries);
    json.member("entries", view.cache.entries);
    json.member("bytes", view.cache.bytes);
    json.member("hits", view.cache.hits);
    json.member("misses", view.cache.misses);
    json.member("stale_hits", view.cache.stale_hits);
    json.member("insertions", view.cache.insertions);
    json.member("evictions", view.cache.evictions);
  }
  json.end_object();

  json.key("instance").begin_object();
  json.member("state", view.instance.state);
  string_or_null(json, "name", view.instance.name);
  string_or_null(json, "vm_scale_set", view.instance.vm_scale_set);
  string_or_null(json, "zone", view.instance.zone);
  string_or_null(json, "location", view.instance.location);
  json.end_object();

  const ScheduledEventsStatusView& events = view.scheduled_events;
  json.key("scheduled_events").begin_object();
  json.member("mode", events.mode);
  json.member("polling", events.polling);
  string_or_null(json, "last_result", events.last_result);
  json.member("consecutive_failures", events.consecutive_failures);
  json.member("polls_ok", events.polls_ok);
  json.key("events").begin_array();
  for (const ScheduledEventStatusView& event : events.events) {
    json.begin_object();
    json.member("id", event.id);
    json.member("type", event.type);
    json.member("status", event.status);
    string_or_null(json, "not_before", event.not_before);
    string_array(json, "resources", event.resources);
    json.member("for_this_instance", event.for_this_instance);
    json.member("drain_requested", event.drain_requested);
    json.member("ack", event.ack);
    json.end_object();
  }
  json.end_array();
  json.end_object();

  json.end_object();
  std::string text = json.str();
  text += '\n';
  return text;
}

}  // namespace hubdns
