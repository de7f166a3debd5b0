#include "probe/upstream_checker.h"

#include <exception>
#include <utility>

#include "common/dns/message.h"
#include "common/log/log.h"
#include "common/util/clock.h"
#include "probe/probe_query.h"

namespace hubdns {

std::string display_zone(const std::string& zone) {
  if (zone.size() > 1 && zone.back() == '.') return zone.substr(0, zone.size() - 1);
  return zone;
}

UpstreamChecker::Upstream::Upstream(size_t rule_index, size_t upstream_index, const SocketAddress& upstream,
                                    uint32_t rise, uint32_t fall)
    : rule(rule_index),
      index(upstream_index),
      address(upstream),
      address_text(upstream.to_string()),
      tracker(rise, fall) {}

uint64_t UpstreamChecker::Upstream::probes_sent() const {
  uint64_t total = in_flight != nullptr ? 1 : 0;
  for (uint64_t count : probe_results) total += count;
  return total;
}

UpstreamChecker::UpstreamChecker(uv_loop_t* loop, ConfigSnapshot config, SharedUpstreamHealth table)
    : loop_(loop), config_(std::move(config)), table_(std::move(table)) {
  const HealthConfig& health = config_->health;
  upstreams_.resize(config_->forward.size());
  for (size_t rule = 0; rule < config_->forward.size(); ++rule) {
    const ForwardRule& forward = config_->forward[rule];
    upstreams_[rule].reserve(forward.upstreams.size());
    for (size_t i = 0; i < forward.upstreams.size(); ++i) {
      upstreams_[rule].emplace_back(rule, i, forward.upstreams[i], health.rise, health.fall);
      ++unchecked_;
    }
  }
}

UpstreamChecker::~UpstreamChecker() { close(); }

void UpstreamChecker::reconfigure(ConfigSnapshot config, SharedUpstreamHealth table) {
  if (closed_) return;
  for (auto& rule : upstreams_) {
    for (Upstream& upstream : rule) {
      if (upstream.in_flight != nullptr) {
        upstream.in_flight->cancel();
        upstream.in_flight = nullptr;
      }
    }
  }
  std::vector<std::vector<Upstream>> previous = std::move(upstreams_);
  ConfigSnapshot previous_config = std::move(config_);
  config_ = std::move(config);
  table_ = std::move(table);
  const HealthConfig& health = config_->health;
  upstreams_.clear();
  upstreams_.resize(config_->forward.size());
  unchecked_ = 0;
  for (size_t rule = 0; rule < config_->forward.size(); ++rule) {
    const ForwardRule& forward = config_->forward[rule];
    upstreams_[rule].reserve(forward.upstreams.size());
    for (size_t i = 0; i < forward.upstreams.size(); ++i) {
      Upstream& fresh = upstreams_[rule].emplace_back(rule, i, forward.upstreams[i], health.rise, health.fall);
      for (auto& old_rule : previous) {
        for (Upstream& old : old_rule) {
          if (old.address == fresh.address && previous_config->forward[old.rule].zone == forward.zone) {
            fresh.tracker = old.tracker;
            fresh.tracker.set_thresholds(health.rise, health.fall);
            fresh.probe_results = old.probe_results;
            fresh.traffic_checks = old.traffic_checks;
            fresh.seen_answers = old.seen_answers;
            fresh.last_probe_latency_us = old.last_probe_latency_us;
          }
        }
      }
      if (!fresh.tracker.checked()) ++unchecked_;
    }
  }
}

void UpstreamChecker::close() {
  if (closed_) return;
  closed_ = true;
  for (auto& rule : upstreams_) {
    for (Upstream& upstream : rule) {
      if (upstream.in_flight != nullptr) {
        upstream.in_flight->cancel();
        upstream.in_flight = nullptr;
      }
    }
  }
}

void UpstreamChecker::run_round() {
  if (closed_) return;
  for (auto& rule : upstreams_) {
    for (Upstream& upstream : rule) {
      UpstreamHealthEntry& entry = table_->entry(upstream.rule, upstream.index);
      const uint64_t answers = entry.answers.load(std::memory_order_relaxed);
      const uint64_t new_answers = answers - upstream.seen_answers;
      upstream.seen_answers = answers;
      if (upstream.in_flight != nullptr) continue;
      if (plan_check(upstream.tracker.status(), new_answers) == CheckPlan::traffic_success) {
        ++upstream.traffic_checks;
        apply(upstream, ProbeOutcome{});
      } else {
        start_probe(upstream);
      }
    }
  }
}

void UpstreamChecker::start_probe(Upstream& upstream) {
  const ForwardRule& rule = config_->forward[upstream.rule];
  std::vector<uint8_t> query = build_dns_query(random_dns_id(), rule.probe.name, rule.probe.qtype, true);
  if (query.empty()) {
    // conf/ validated the name; this would be a bug, and must not look like a dead upstream.
    LOG_ERROR("msg=\"cannot build the probe question\" zone=%s name=\"%s\"", display_zone(rule.zone).c_str(),
              rule.probe.name.c_str());
    return;
  }
  Upstream* target = &upstream;  // elements of upstreams_ never move after construction
  upstream.in_flight = DnsExchange::start(
      loop_, DnsTransport::udp, upstream.address, std::nullopt, std::move(query),
      static_cast<uint64_t>(config_->health.timeout.count()), [this, target](DnsExchangeResult&& result) {
        target->in_flight = nullptr;
        ProbeOutcome outcome;
        if (result.error == 0) {
          outcome = outcome_for_rcode(dns::message_rcode(result.answer.data()));
          target->last_probe_latency_us = static_cast<int64_t>(result.latency_us);
        } else {
          outcome = outcome_for_failure(result.error, result.mismatched, result.garbled);
        }
        ++target->probe_results[static_cast<size_t>(outcome.result)];
        apply(*target, outcome);
      });
}

void UpstreamChecker::apply(Upstream& upstream, const ProbeOutcome& outcome) {
  const bool was_checked = upstream.tracker.checked();
  const UpstreamStatus before = upstream.tracker.status();
  const bool changed = upstream.tracker.apply(outcome, monotonic_ms());
  const ForwardRule& rule = config_->forward[upstream.rule];
  const std::string zone = display_zone(rule.zone);
  if (!outcome.success()) {
    LOG_DEBUG("msg=\"upstream check failed\" zone=%s upstream=%s reason=\"%s\" consecutive_failures=%u",
              zone.c_str(), upstream.address_text.c_str(), outcome.error.c_str(),
              upstream.tracker.consecutive_failures());
  }
  bool notify = false;
  if (changed) {
    const UpstreamStatus now = upstream.tracker.status();
    table_->entry(upstream.rule, upstream.index).status.store(now, std::memory_order_relaxed);
    if (now == UpstreamStatus::down) {
      LOG_WARN("msg=\"upstream down\" zone=%s upstream=%s reason=\"%s\" consecutive_failures=%u previous=%s",
               zone.c_str(), upstream.address_text.c_str(), outcome.error.c_str(),
               upstream.tracker.consecutive_failures(), to_string(before));
    } else {
      LOG_INFO("msg=\"upstream up\" zone=%s upstream=%s consecutive_successes=%u previous=%s", zone.c_str(),
               upstream.address_text.c_str(), upstream.tracker.consecutive_successes(), to_string(before));
    }
    notify = true;
  }
  if (!was_checked) {
    --unchecked_;
    if (unchecked_ == 0) {
      size_t up = 0, total = 0;
      for (const auto& each_rule : upstreams_) {
        for (const Upstream& each : each_rule) {
          ++total;
          if (each.tracker.status() == UpstreamStatus::up) ++up;
        }
      }
      LOG_INFO("msg=\"first upstream check round finished\" upstreams=%zu up=%zu", total, up);
      notify = true;
    }
  }
  if (notify && listener_) listener_();
}

bool UpstreamChecker::set_loop(size_t rule, size_t index, const SocketAddress& address, bool loop) {
  if (rule >= upstreams_.size() || index >= upstreams_[rule].size()) return false;
  Upstream& upstream = upstreams_[rule][index];
  if (!(upstream.address == address) || !upstream.tracker.set_loop(loop, monotonic_ms())) return false;
  table_->entry(rule, index).status.store(upstream.tracker.status(), std::memory_order_relaxed);
  if (!loop) {
    LOG_INFO("msg=\"forwarding loop no longer detected\" zone=%s upstream=%s status=%s",
             display_zone(config_->forward[rule].zone).c_str(), upstream.address_text.c_str(),
             to_string(upstream.tracker.status()));
  }
  if (listener_) listener_();
  return true;
}

}  // namespace hubdns
