// Unit tests for the health-check decisions (probe/check_logic.h): result classification,
// rise/fall hysteresis, passive evidence, the self-check's pass/fail rule.
#include <doctest/doctest.h>

#include <uv.h>

#include "probe/check_logic.h"

using namespace hubdns;

namespace {

const ProbeOutcome kOk{};
const ProbeOutcome kTimeout = ProbeOutcome::failure(ProbeResult::timeout, "timeout");
const ProbeOutcome kRefused = ProbeOutcome::failure(ProbeResult::refused, "REFUSED");

}  // namespace

TEST_CASE("rcodes: NOERROR and NXDOMAIN are success, the rest named failures") {
  CHECK(outcome_for_rcode(0).success());
  CHECK(outcome_for_rcode(3).success());
  CHECK(outcome_for_rcode(2).result == ProbeResult::servfail);
  CHECK(outcome_for_rcode(2).error == "SERVFAIL");
  CHECK(outcome_for_rcode(5).error == "REFUSED");
  CHECK(outcome_for_rcode(1).error == "FORMERR");
  CHECK(outcome_for_rcode(4).result == ProbeResult::other_rcode);
  CHECK(outcome_for_rcode(4).error == "NOTIMP");
  CHECK(outcome_for_rcode(15).error == "RCODE15");
}

TEST_CASE("no matching answer: timeout, unless something wrong came back, or the network said why") {
  CHECK(outcome_for_failure(UV_ETIMEDOUT, 0, 0).error == "timeout");
  CHECK(outcome_for_failure(UV_ETIMEDOUT, 0, 0).result == ProbeResult::timeout);
  CHECK(outcome_for_failure(UV_ETIMEDOUT, 2, 1).error == "mismatched answer");
  CHECK(outcome_for_failure(UV_ETIMEDOUT, 0, 1).error == "garbled answer");
  CHECK(outcome_for_failure(UV_ETIMEDOUT, 0, 1).result == ProbeResult::bad_answer);
  CHECK(outcome_for_failure(UV_ECONNREFUSED, 0, 0).error == "network: ECONNREFUSED");
  CHECK(outcome_for_failure(UV_ECONNREFUSED, 0, 0).result == ProbeResult::network_error);
  CHECK(outcome_for_failure(UV_EOF, 0, 0).error == "network: connection closed before the answer");
  CHECK(std::string(probe_result_label(ProbeResult::bad_answer)) == "bad_answer");
}

TEST_CASE("a loop verdict hides the checks' status until it is cleared; the checks cannot lift it") {
  UpstreamTracker tracker(2, 2);
  tracker.apply(kOk, 1);
  CHECK(tracker.set_loop(true, 5));
  CHECK(tracker.status() == UpstreamStatus::loop);
  CHECK(tracker.loop());
  CHECK(tracker.last_change_ms() == 5);
  CHECK_FALSE(tracker.set_loop(true, 6));  // the same verdict again: no change
  // Underneath, the checks go on: down after `fall` failures, up after `rise` successes,
  // and none of it shows (no change reported).
  CHECK_FALSE(tracker.apply(kTimeout, 7));
  CHECK_FALSE(tracker.apply(kTimeout, 8));
  CHECK(tracker.health_status() == UpstreamStatus::down);
  CHECK_FALSE(tracker.apply(kOk, 9));
  CHECK_FALSE(tracker.apply(kOk, 10));
  CHECK(tracker.health_status() == UpstreamStatus::up);
  CHECK(tracker.status() == UpstreamStatus::loop);
  CHECK(tracker.last_change_ms() == 5);
  // Cleared: what the checks decided shows again.
  CHECK(tracker.set_loop(false, 11));
  CHECK(tracker.status() == UpstreamStatus::up);
  CHECK(tracker.last_change_ms() == 11);
}

TEST_CASE("unknown: up on the first success") {
  UpstreamTracker tracker(3, 3);
  CHECK(tracker.status() == UpstreamStatus::unknown);
  CHECK_FALSE(tracker.checked());
  CHECK(tracker.apply(kOk, 100));
  CHECK(tracker.status() == UpstreamStatus::up);
  CHECK(tracker.checked());
  CHECK(tracker.last_change_ms() == 100);
}

TEST_CASE("unknown: down only after `fall` failures, one lost packet at start changes nothing") {
  UpstreamTracker tracker(2, 3);
  CHECK_FALSE(tracker.apply(kTimeout, 1));
  CHECK(tracker.status() == UpstreamStatus::unknown);
  CHECK(tracker.checked());
  CHECK_FALSE(tracker.apply(kTimeout, 2));
  CHECK(tracker.apply(kTimeout, 3));
  CHECK(tracker.status() == UpstreamStatus::down);
  CHECK(tracker.last_error() == "timeout");
  CHECK(tracker.last_error_streak() == 3);
}

TEST_CASE("up -> down needs `fall` consecutive failures; a success in between resets the count") {
  UpstreamTracker tracker(2, 3);
  tracker.apply(kOk, 1);
  tracker.apply(kTimeout, 2);
  tracker.apply(kTimeout, 3);
  CHECK(tracker.status() == UpstreamStatus::up);
  tracker.apply(kOk, 4);  // no flapping on lost packets
  CHECK(tracker.consecutive_failures() == 0);
  tracker.apply(kTimeout, 5);
  tracker.apply(kTimeout, 6);
  CHECK(tracker.status() == UpstreamStatus::up);
  CHECK(tracker.apply(kTimeout, 7));
  CHECK(tracker.status() == UpstreamStatus::down);
  CHECK(tracker.last_change_ms() == 7);
  CHECK(tracker.consecutive_failures() == 3);
}

TEST_CASE("down -> up needs `rise` consecutive successes; a failure in between resets the count") {
  UpstreamTracker tracker(3, 1);
  tracker.apply(kOk, 1);
  CHECK(tracker.apply(kTimeout, 2));  // fall = 1
  CHECK(tracker.status() == UpstreamStatus::down);
  tracker.apply(kOk, 3);
  tracker.apply(kOk, 4);
  tracker.apply(kRefused, 5);
  CHECK(tracker.status() == UpstreamStatus::down);
  CHECK_FALSE(tracker.apply(kOk, 6));
  CHECK_FALSE(tracker.apply(kOk, 7));
  CHECK(tracker.apply(kOk, 8));
  CHECK(tracker.status() == UpstreamStatus::up);
  CHECK(tracker.consecutive_successes() == 3);
  // The last error stays visible for /status, but its streak is over.
  CHECK(tracker.last_error() == "REFUSED");
  CHECK(tracker.last_error_streak() == 0);
  CHECK(tracker.last_error_ms() == 5);
}

TEST_CASE("the error streak counts the same error in a row and restarts on a different one") {
  UpstreamTracker tracker(1, 10);
  tracker.apply(kTimeout, 1);
  tracker.apply(kTimeout, 2);
  CHECK(tracker.last_error_streak() == 2);
  tracker.apply(kRefused, 3);
  CHECK(tracker.last_error() == "REFUSED");
  CHECK(tracker.last_error_streak() == 1);
  CHECK(tracker.consecutive_failures() == 3);
}

TEST_CASE("rise and fall of 0 behave as 1") {
  UpstreamTracker tracker(0, 0);
  tracker.apply(kOk, 1);
  CHECK(tracker.apply(kTimeout, 2));
  CHECK(tracker.status() == UpstreamStatus::down);
  CHECK(tracker.apply(kOk, 3));
  CHECK(tracker.status() == UpstreamStatus::up);
}

TEST_CASE("passive evidence: answers replace the probe unless the upstream is down") {
  CHECK(plan_check(UpstreamStatus::unknown, 0) == CheckPlan::probe);
  CHECK(plan_check(UpstreamStatus::up, 0) == CheckPlan::probe);
  CHECK(plan_check(UpstreamStatus::up, 5) == CheckPlan::traffic_success);
  CHECK(plan_check(UpstreamStatus::unknown, 1) == CheckPlan::traffic_success);
  // Down: only our own question proves it is back.
  CHECK(plan_check(UpstreamStatus::down, 5) == CheckPlan::probe);
}

TEST_CASE("self-check: fails after `fall` failures, passes on the first answer") {
  SelfCheckTracker tracker;
  CHECK(tracker.state == SelfCheckState::pending);
  CHECK_FALSE(tracker.apply(kTimeout, 2));
  CHECK(tracker.state == SelfCheckState::pending);
  CHECK(tracker.apply(kTimeout, 2));
  CHECK(tracker.state == SelfCheckState::failing);
  CHECK(tracker.consecutive_failures == 2);
  CHECK(tracker.apply(kOk, 2));
  CHECK(tracker.state == SelfCheckState::passing);
  CHECK(tracker.consecutive_failures == 0);
  CHECK_FALSE(tracker.apply(kTimeout, 2));
  CHECK(tracker.state == SelfCheckState::passing);
  CHECK(tracker.checks == 4);
  CHECK(tracker.failures == 3);
  CHECK(tracker.last_error == "timeout");
  CHECK(std::string(to_string(SelfCheckState::failing)) == "failing");
}
