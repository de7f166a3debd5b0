#include "probe/check_logic.h"

#include <uv.h>

#include <algorithm>

#include "common/dns/message.h"
#include "probe/probe_query.h"

namespace hubdns {

const char* probe_result_label(ProbeResult result) {
  switch (result) {
    case ProbeResult::ok: return "ok";
    case ProbeResult::timeout: return "timeout";
    case ProbeResult::servfail: return "servfail";
    case ProbeResult::refused: return "refused";
    case ProbeResult::formerr: return "formerr";
    case ProbeResult::other_rcode: return "other_rcode";
    case ProbeResult::bad_answer: return "bad_answer";
    case ProbeResult::network_error: return "network_error";
  }
  return "unknown";
}

ProbeOutcome outcome_for_rcode(uint8_t rcode) {
  switch (rcode) {
    case dns::kNoError:
    case dns::kNxDomain:
      // NXDOMAIN is a resolved answer: the upstream reached the authority and got a "no".
      return {};
    case dns::kServFail: return ProbeOutcome::failure(ProbeResult::servfail, "SERVFAIL");
    case dns::kRefused: return ProbeOutcome::failure(ProbeResult::refused, "REFUSED");
    case dns::kFormErr: return ProbeOutcome::failure(ProbeResult::formerr, "FORMERR");
    default: return ProbeOutcome::failure(ProbeResult::other_rcode, rcode_name(rcode));
  }
}

ProbeOutcome outcome_for_failure(int error, unsigned mismatched, unsigned garbled) {
  if (error == 0 || error == UV_ETIMEDOUT) {
    // Something came back but never the answer: say so, it points at a different problem
    // (a NAT rewriting ports, a middlebox, a spoofer) than silence does.
    if (mismatched > 0) return ProbeOutcome::failure(ProbeResult::bad_answer, "mismatched answer");
    if (garbled > 0) return ProbeOutcome::failure(ProbeResult::bad_answer, "garbled answer");
    return ProbeOutcome::failure(ProbeResult::timeout, "timeout");
  }
  if (error == UV_EOF) {
    return ProbeOutcome::failure(ProbeResult::network_error, "network: connection closed before the answer");
  }
  return ProbeOutcome::failure(ProbeResult::network_error, std::string("network: ") + uv_err_name(error));
}

UpstreamTracker::UpstreamTracker(uint32_t rise, uint32_t fall)
    : rise_(std::max<uint32_t>(rise, 1)), fall_(std::max<uint32_t>(fall, 1)) {}

bool UpstreamTracker::apply(const ProbeOutcome& outcome, uint64_t now_ms) {
  ++results_;
  const UpstreamStatus before = status_;
  if (outcome.success()) {
    consecutive_failures_ = 0;
    last_error_streak_ = 0;
    if (consecutive_successes_ < UINT32_MAX) ++consecutive_successes_;
    if (status_ == UpstreamStatus::unknown ||
        (status_ == UpstreamStatus::down && consecutive_successes_ >= rise_)) {
      status_ = UpstreamStatus::up;
    }
  } else {
    consecutive_successes_ = 0;
    if (consecutive_failures_ < UINT32_MAX) ++consecutive_failures_;
    if (outcome.error == last_error_ && last_error_streak_ > 0) {
      if (last_error_streak_ < UINT32_MAX) ++last_error_streak_;
    } else {
      last_error_ = outcome.error;
      last_error_streak_ = 1;
    }
    last_error_ms_ = now_ms;
    if (status_ != UpstreamStatus::down && consecutive_failures_ >= fall_) status_ = UpstreamStatus::down;
  }
  // Under a loop the visible status stays `loop` whatever happens underneath.
  if (status_ == before || loop_) return false;
  last_change_ms_ = now_ms;
  return true;
}

bool UpstreamTracker::set_loop(bool loop, uint64_t now_ms) {
  if (loop == loop_) return false;
  const UpstreamStatus before = status();
  loop_ = loop;
  if (status() == before) return false;
  last_change_ms_ = now_ms;
  return true;
}

CheckPlan plan_check(UpstreamStatus status, uint64_t answers_since_last_check) {
  if (status == UpstreamStatus::down) return CheckPlan::probe;
  return answers_since_last_check > 0 ? CheckPlan::traffic_success : CheckPlan::probe;
}

const char* to_string(SelfCheckState state) {
  switch (state) {
    case SelfCheckState::pending: return "pending";
    case SelfCheckState::passing: return "passing";
    case SelfCheckState::failing: return "failing";
  }
  return "pending";
}

bool SelfCheckTracker::apply(const ProbeOutcome& outcome, uint32_t fall) {
  const SelfCheckState before = state;
  ++checks;
  if (outcome.success()) {
    consecutive_failures = 0;
    state = SelfCheckState::passing;
  } else {
    ++failures;
    if (consecutive_failures < UINT32_MAX) ++consecutive_failures;
    last_error = outcome.error;
    if (consecutive_failures >= std::max<uint32_t>(fall, 1)) state = SelfCheckState::failing;
  }
  return state != before;
}

}  // namespace hubdns
