#include "probe/self_check.h"

#include <utility>

#include "common/log/log.h"
#include "probe/probe_query.h"

namespace hubdns {
namespace {

SocketAddress loopback_like(const SocketAddress& address, uint16_t port) {
  std::optional<SocketAddress> loopback = SocketAddress::parse(address.is_ipv6() ? "::1" : "127.0.0.1", port);
  return *loopback;  // a literal: always parses
}

}  // namespace

DataPathSelfCheck::DataPathSelfCheck(uv_loop_t* loop, const std::vector<SocketAddress>& dns_listeners,
                                     uint64_t timeout_ms, uint32_t fall)
    : loop_(loop), timeout_ms_(timeout_ms), fall_(fall), targets_(make_targets(dns_listeners)) {}

std::vector<DataPathSelfCheck::Target> DataPathSelfCheck::make_targets(const std::vector<SocketAddress>& dns_listeners) {
  std::vector<Target> targets;
  targets.reserve(dns_listeners.size() * 2);
  for (const SocketAddress& listener : dns_listeners) {
    for (DnsTransport transport : {DnsTransport::udp, DnsTransport::tcp}) {
      Target target;
      target.listener = listener;
      target.transport = transport;
      if (listener.is_unspecified()) {
        target.address = loopback_like(listener, listener.port());
      } else {
        target.address = listener;
        if (!listener.is_loopback()) target.source = loopback_like(listener, 0);
      }
      target.name = target.address.to_string() + "/" + to_string(transport);
      targets.push_back(std::move(target));
    }
  }
  return targets;
}

void DataPathSelfCheck::reconfigure(const std::vector<SocketAddress>& dns_listeners, uint64_t timeout_ms,
                                    uint32_t fall) {
  if (closed_) return;
  for (Target& target : targets_) {
    if (target.in_flight != nullptr) {
      target.in_flight->cancel();
      target.in_flight = nullptr;
    }
  }
  std::vector<Target> fresh = make_targets(dns_listeners);
  for (Target& target : fresh) {
    for (Target& old : targets_) {
      if (old.listener == target.listener && old.transport == target.transport) {
        target.tracker = old.tracker;
        target.answered_by = old.answered_by;
        target.last_latency_us = old.last_latency_us;
      }
    }
  }
  targets_ = std::move(fresh);
  timeout_ms_ = timeout_ms;
  fall_ = fall;
}

DataPathSelfCheck::~DataPathSelfCheck() { close(); }

void DataPathSelfCheck::close() {
  if (closed_) return;
  closed_ = true;
  for (Target& target : targets_) {
    if (target.in_flight != nullptr) {
      target.in_flight->cancel();
      target.in_flight = nullptr;
    }
  }
}

void DataPathSelfCheck::run_round() {
  if (closed_) return;
  for (Target& target : targets_) {
    if (target.in_flight == nullptr) start_check(target);
  }
}

void DataPathSelfCheck::start_check(Target& target) {
  std::vector<uint8_t> query = build_dns_query(random_dns_id(), kSelfCheckName, kTypeTxt, true);
  Target* self_target = &target;  // targets_ never changes size after construction
  target.in_flight = DnsExchange::start(
      loop_, target.transport, target.address, target.source, std::move(query), timeout_ms_,
      [this, self_target](DnsExchangeResult&& result) {
        Target& t = *self_target;
        t.in_flight = nullptr;
        ProbeOutcome outcome;
        if (result.error == 0) {
          t.last_latency_us = static_cast<int64_t>(result.latency_us);
          t.answered_by = first_txt_string(result.answer.data(), result.answer.size()).value_or("");
        } else {
          outcome = outcome_for_failure(result.error, result.mismatched, result.garbled);
        }
        const SelfCheckState before = t.tracker.state;
        if (!t.tracker.apply(outcome, fall_)) return;
        if (t.tracker.state == SelfCheckState::failing) {
          LOG_WARN("msg=\"DNS listener failed the self-check\" listener=%s reason=\"%s\" consecutive_failures=%u",
                   t.name.c_str(), outcome.error.c_str(), t.tracker.consecutive_failures);
        } else if (t.tracker.state == SelfCheckState::passing && before == SelfCheckState::failing) {
          LOG_INFO("msg=\"DNS listener passes the self-check again\" listener=%s", t.name.c_str());
        }
        if (listener_) listener_();
      });
}

}  // namespace hubdns
