#include "probe/loop_detector.h"

#include <algorithm>
#include <utility>

#include "common/dns/message.h"
#include "common/log/log.h"
#include "probe/check_logic.h"
#include "probe/probe_query.h"
#include "probe/upstream_checker.h"

namespace hubdns {

const char* to_string(LoopCheckState state) {
  switch (state) {
    case LoopCheckState::pending: return "pending";
    case LoopCheckState::clear: return "clear";
    case LoopCheckState::loop: return "loop";
    case LoopCheckState::retrying: return "retrying";
    case LoopCheckState::not_checked: return "not_checked";
  }
  return "pending";
}

const char* loop_probe_result_label(LoopProbeResult result) {
  switch (result) {
    case LoopProbeResult::loop: return "loop";
    case LoopProbeResult::clear: return "clear";
    case LoopProbeResult::no_verdict: return "no_verdict";
  }
  return "no_verdict";
}

LoopDetector::Upstream::Upstream(size_t rule_index, size_t upstream_index, const SocketAddress& upstream)
    : rule(rule_index), index(upstream_index), address(upstream), address_text(upstream.to_string()) {}

LoopDetector::LoopDetector(uv_loop_t* loop, ConfigSnapshot config, LoopProbeRegistry* registry,
                           LoopDetectorOptions options)
    : loop_(loop), config_(std::move(config)), registry_(registry), options_(options) {
  build_upstreams();
}

LoopDetector::~LoopDetector() { close(); }

void LoopDetector::build_upstreams() {
  upstreams_.clear();
  upstreams_.resize(config_->forward.size());
  for (size_t rule = 0; rule < config_->forward.size(); ++rule) {
    const ForwardRule& forward = config_->forward[rule];
    upstreams_[rule].reserve(forward.upstreams.size());
    for (size_t i = 0; i < forward.upstreams.size(); ++i) upstreams_[rule].emplace_back(rule, i, forward.upstreams[i]);
  }
}

void LoopDetector::close() {
  if (closed_) return;
  closed_ = true;
  retry_timer_.close();
  cancel_all();
}

void LoopDetector::cancel_all() {
  for (auto& rule : upstreams_) {
    for (Upstream& upstream : rule) {
      if (upstream.in_flight != nullptr) {
        upstream.in_flight->cancel();
        upstream.in_flight = nullptr;
      }
      forget_tokens(upstream, 0);
      upstream.retry_at_ms = 0;
      upstream.retry_delay_ms = 0;
    }
  }
}

void LoopDetector::reconfigure(ConfigSnapshot config) {
  if (closed_) return;
  // The old upstreams' probes go first: their completions point into upstreams_.
  cancel_all();
  config_ = std::move(config);
  build_upstreams();
  run_all();
}

void LoopDetector::run_all() {
  if (closed_) return;
  if (retry_timer_.initialized()) uv_timer_stop(retry_timer_.get());
  cancel_all();
  for (auto& rule : upstreams_) {
    for (Upstream& upstream : rule) {
      upstream.state = LoopCheckState::pending;
      start_probe(upstream);
    }
  }
}

void LoopDetector::forget_tokens(Upstream& upstream, size_t keep_last) {
  while (upstream.tokens.size() > keep_last) {
    registry_->remove(upstream.tokens.front());
    upstream.tokens.erase(upstream.tokens.begin());
  }
}

void LoopDetector::start_probe(Upstream& upstream) {
  const ForwardRule& rule = config_->forward[upstream.rule];
  const uint64_t token = random_u64();
  std::vector<uint8_t> query = build_dns_query(random_dns_id(), loop_probe_name(token, rule.zone), kTypeTxt, true);
  if (query.empty()) {
    // A zone within a few octets of the 255-octet limit leaves no room for the labels.
    upstream.state = LoopCheckState::not_checked;
    upstream.last_result = "zone name too long for a probe name";
    LOG_WARN("msg=\"cannot check for a forwarding loop: zone name too long\" zone=%s upstream=%s",
             display_zone(rule.zone).c_str(), upstream.address_text.c_str());
    return;
  }
  // Registered before it leaves: a worker may see it come back within microseconds.
  registry_->add(token);
  upstream.tokens.push_back(token);
  ++upstream.probes_sent;
  const uint64_t wait_ms = std::min<uint64_t>(static_cast<uint64_t>(rule.attempt_timeout.count()), options_.max_wait_ms);
  Upstream* target = &upstream;  // elements of upstreams_ do not move while a probe is in flight
  upstream.in_flight = DnsExchange::start(loop_, DnsTransport::udp, upstream.address, std::nullopt, std::move(query),
                                          wait_ms, [this, target](DnsExchangeResult&& result) {
                                            target->in_flight = nullptr;
                                            judge(*target, result);
                                          });
}

void LoopDetector::judge(Upstream& upstream, const DnsExchangeResult& result) {
  // A worker notes the arrival before it answers, so an answer that came back through the
  // loop always finds the note here.
  bool arrived = false;
  for (uint64_t token : upstream.tokens) arrived = registry_->arrived(token) || arrived;
  const bool answered = result.error == 0 && dns::message_rcode(result.answer.data()) != dns::kServFail;
  LoopProbeResult verdict = LoopProbeResult::no_verdict;
  if (arrived) {
    verdict = LoopProbeResult::loop;
    upstream.state = LoopCheckState::loop;
    upstream.last_result = "came back to this instance";
  } else if (answered) {
    verdict = LoopProbeResult::clear;
    upstream.state = LoopCheckState::clear;
    upstream.last_result = rcode_name(dns::message_rcode(result.answer.data()));
  } else {
    upstream.state = LoopCheckState::retrying;
    upstream.last_result = result.error == 0 ? std::string("SERVFAIL")
                                             : outcome_for_failure(result.error, result.mismatched, result.garbled).error;
  }
  ++results_[static_cast<size_t>(verdict)];
  const std::string zone = display_zone(config_->forward[upstream.rule].zone);
  if (verdict == LoopProbeResult::no_verdict) {
    forget_tokens(upstream, 1);  // this attempt's token may still come back
    upstream.retry_delay_ms =
        upstream.retry_delay_ms == 0
            ? (options_.first_retry_ms != 0 ? options_.first_retry_ms
                                            : static_cast<uint64_t>(config_->health.interval.count()))
            : std::min(upstream.retry_delay_ms * 2, options_.max_retry_ms);
    upstream.retry_at_ms = uv_now(loop_) + upstream.retry_delay_ms;
    LOG_DEBUG("msg=\"forwarding loop check without verdict; asking again later\" zone=%s upstream=%s reason=\"%s\" retry_ms=%llu",
              zone.c_str(), upstream.address_text.c_str(), upstream.last_result.c_str(),
              static_cast<unsigned long long>(upstream.retry_delay_ms));
    arm_retry_timer();
    return;
  }
  forget_tokens(upstream, 0);
  upstream.retry_at_ms = 0;
  upstream.retry_delay_ms = 0;
  if (verdict == LoopProbeResult::loop) {
    LOG_ERROR("msg=\"forwarding loop detected\" zone=%s upstream=%s detail=\"a query sent to this upstream came back "
              "to this instance; no query goes there until a reload or restart checks again\"",
              zone.c_str(), upstream.address_text.c_str());
  } else {
    LOG_DEBUG("msg=\"no forwarding loop\" zone=%s upstream=%s answer=%s", zone.c_str(), upstream.address_text.c_str(),
              upstream.last_result.c_str());
  }
  if (listener_) listener_(upstream, verdict == LoopProbeResult::loop);
}

void LoopDetector::arm_retry_timer() {
  uint64_t next = 0;
  for (const auto& rule : upstreams_) {
    for (const Upstream& upstream : rule) {
      if (upstream.retry_at_ms != 0 && (next == 0 || upstream.retry_at_ms < next)) next = upstream.retry_at_ms;
    }
  }
  if (next == 0) {
    if (retry_timer_.initialized()) uv_timer_stop(retry_timer_.get());
    return;
  }
  if (!retry_timer_.initialized()) {
    retry_timer_.init(uv_timer_init, loop_);
    retry_timer_->data = this;
    // Whatever keeps the control loop running (the health listeners) keeps this going;
    // a planned retry alone must not.
    uv_unref(retry_timer_.as_handle());
  }
  const uint64_t now = uv_now(loop_);
  uv_timer_start(retry_timer_.get(), on_retry_timer, next > now ? next - now : 0, 0);
}

void LoopDetector::on_retry_timer(uv_timer_t* timer) {
  auto* self = static_cast<LoopDetector*>(timer->data);
  if (self == nullptr || self->closed_) return;
  const uint64_t now = uv_now(self->loop_);
  for (auto& rule : self->upstreams_) {
    for (Upstream& upstream : rule) {
      if (upstream.retry_at_ms == 0 || upstream.retry_at_ms > now || upstream.in_flight != nullptr) continue;
      upstream.retry_at_ms = 0;
      self->start_probe(upstream);
    }
  }
  self->arm_retry_timer();
}

}  // namespace hubdns
