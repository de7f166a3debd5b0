// Unit tests for the pure readiness / liveness evaluation (probe/readiness.h).
#include <doctest/doctest.h>

#include "probe/readiness.h"

using namespace hubdns;

namespace {

// Every loop beat 100 ms ago.
LoopHeartbeats healthy_loops(unsigned workers) {
  LoopHeartbeats loops;
  loops.now_ms = 1'000'000;
  loops.max_silence_ms = 5000;
  loops.control_loop_last_ms = loops.now_ms - 100;
  loops.worker_last_ms.assign(workers, loops.now_ms - 100);
  return loops;
}

ReadinessInputs ready_inputs() {
  ReadinessInputs inputs;
  inputs.listeners_bound = true;
  inputs.draining = false;
  inputs.loops = healthy_loops(2);
  return inputs;
}

}  // namespace

TEST_CASE("ready when bound, not draining and every loop beats") {
  ReadinessReport report = evaluate_readiness(ready_inputs());
  CHECK(report.ready);
  CHECK(report.reasons.empty());
  CHECK(reasons_body(report.reasons) == "ok\n");
}

TEST_CASE("each failed condition is one reason, in a stable order") {
  ReadinessInputs inputs = ready_inputs();
  inputs.listeners_bound = false;
  inputs.draining = true;
  ReadinessReport report = evaluate_readiness(inputs);
  CHECK_FALSE(report.ready);
  REQUIRE(report.reasons.size() == 2);
  CHECK(report.reasons[0] == "listeners not bound");
  CHECK(report.reasons[1] == "draining");
  CHECK(reasons_body(report.reasons) == "listeners not bound\ndraining\n");
}

TEST_CASE("a worker that never beat or went silent makes the process unready") {
  ReadinessInputs inputs = ready_inputs();
  inputs.loops.worker_last_ms[0] = 0;
  inputs.loops.worker_last_ms[1] = inputs.loops.now_ms - 6000;
  ReadinessReport report = evaluate_readiness(inputs);
  CHECK_FALSE(report.ready);
  REQUIRE(report.reasons.size() == 2);
  CHECK(report.reasons[0] == "worker 0 event loop has not started");
  CHECK(report.reasons[1] == "worker 1 event loop silent for 6000 ms");
}

TEST_CASE("silence threshold is inclusive, and a beat newer than 'now' is fine") {
  LoopHeartbeats loops = healthy_loops(2);
  loops.worker_last_ms[0] = loops.now_ms - loops.max_silence_ms;  // exactly at the limit
  loops.worker_last_ms[1] = loops.now_ms + 3;  // written after the snapshot took 'now'
  CHECK(evaluate_liveness(loops).alive);
  loops.worker_last_ms[0] = loops.now_ms - loops.max_silence_ms - 1;
  CHECK_FALSE(evaluate_liveness(loops).alive);
}

TEST_CASE("liveness looks only at loops") {
  LoopHeartbeats loops = healthy_loops(1);
  LivenessReport report = evaluate_liveness(loops);
  CHECK(report.alive);
  CHECK(report.reasons.empty());

  loops.control_loop_last_ms = loops.now_ms - 7250;
  report = evaluate_liveness(loops);
  CHECK_FALSE(report.alive);
  REQUIRE(report.reasons.size() == 1);
  CHECK(report.reasons[0] == "control event loop silent for 7250 ms");

  // No workers at all (tests, or a control-only process) is alive if the control loop is.
  LoopHeartbeats control_only = healthy_loops(0);
  CHECK(evaluate_liveness(control_only).alive);
}

namespace {

UpstreamHealthSummary upstream(const char* address, UpstreamStatus status, const char* error = "",
                               uint32_t streak = 0, bool checked = true) {
  return {address, status, checked, error, streak};
}

}  // namespace

TEST_CASE("a critical zone without an upstream up gives one line naming each upstream's problem") {
  ReadinessInputs inputs = ready_inputs();
  inputs.critical_zones.push_back({".", {upstream("168.63.129.16:53", UpstreamStatus::up),
                                         upstream("10.0.0.4:53", UpstreamStatus::down, "timeout", 3)}});
  inputs.critical_zones.push_back(
      {"corp.contoso.com", {upstream("192.168.1.10:53", UpstreamStatus::down, "timeout", 3),
                            upstream("192.168.1.11:53", UpstreamStatus::down, "REFUSED", 1)}});
  ReadinessReport report = evaluate_readiness(inputs);
  CHECK_FALSE(report.ready);
  REQUIRE(report.reasons.size() == 1);
  CHECK(report.reasons[0] == "zone corp.contoso.com: no upstream up (192.168.1.10:53: timeout x3; 192.168.1.11:53: REFUSED)");
}

TEST_CASE("a loop upstream counts as not up, and the line says where the queries would go") {
  ReadinessInputs inputs = ready_inputs();
  inputs.critical_zones.push_back({"corp.example", {upstream("10.1.0.4:53", UpstreamStatus::loop, "SERVFAIL", 2),
                                                    upstream("10.1.0.5:53", UpstreamStatus::loop, "", 0, false)}});
  ReadinessReport report = evaluate_readiness(inputs);
  CHECK_FALSE(report.ready);
  REQUIRE(report.reasons.size() == 1);
  CHECK(report.reasons[0] ==
        "zone corp.example: no upstream up (10.1.0.4:53: forwards back to this instance (loop); "
        "10.1.0.5:53: forwards back to this instance (loop))");
  // Another upstream of the zone up: ready (a loop is treated like down).
  inputs.critical_zones[0].upstreams.push_back(upstream("10.1.0.6:53", UpstreamStatus::up));
  CHECK(evaluate_readiness(inputs).ready);
}

TEST_CASE("unknown does not count as up") {
  ReadinessInputs inputs = ready_inputs();
  inputs.critical_zones.push_back({".", {upstream("192.0.2.1:53", UpstreamStatus::unknown, "timeout", 1),
                                         upstream("192.0.2.2:53", UpstreamStatus::unknown, "", 0, false)}});
  ReadinessReport report = evaluate_readiness(inputs);
  CHECK_FALSE(report.ready);
  REQUIRE(report.reasons.size() == 1);
  CHECK(report.reasons[0] ==
        "zone .: no upstream up (192.0.2.1:53: timeout (not up yet); 192.0.2.2:53: not checked yet)");
}

TEST_CASE("before the first round: one line, not one per zone") {
  ReadinessInputs inputs = ready_inputs();
  inputs.first_probe_round_done = false;
  inputs.upstreams_unchecked = 2;
  inputs.critical_zones.push_back({".", {upstream("192.0.2.1:53", UpstreamStatus::unknown, "", 0, false)}});
  inputs.critical_zones.push_back({"contoso.com", {upstream("192.0.2.2:53", UpstreamStatus::unknown, "", 0, false)}});
  ReadinessReport report = evaluate_readiness(inputs);
  CHECK_FALSE(report.ready);
  REQUIRE(report.reasons.size() == 1);
  CHECK(report.reasons[0] == "first upstream check round not finished (2 upstreams not checked yet)");

  // A zone whose upstreams already failed is named even while others are still waiting.
  inputs.critical_zones[1].upstreams[0] = upstream("192.0.2.2:53", UpstreamStatus::down, "SERVFAIL", 2);
  report = evaluate_readiness(inputs);
  REQUIRE(report.reasons.size() == 2);
  CHECK(report.reasons[1] == "zone contoso.com: no upstream up (192.0.2.2:53: SERVFAIL x2)");
}

TEST_CASE("data-path self-check: pending and failing listeners are reasons, passing ones are not") {
  ReadinessInputs inputs = ready_inputs();
  inputs.data_path.push_back({"127.0.0.1:53/udp", true, false, "", 0});
  inputs.data_path.push_back({"127.0.0.1:53/tcp", true, true, "timeout", 3});
  inputs.data_path.push_back({"[::1]:53/udp", false, false, "timeout", 1});
  inputs.data_path.push_back({"[::1]:53/tcp", false, false, "", 0});
  ReadinessReport report = evaluate_readiness(inputs);
  CHECK_FALSE(report.ready);
  REQUIRE(report.reasons.size() == 3);
  CHECK(report.reasons[0] == "DNS listener 127.0.0.1:53/tcp did not answer the self-check (timeout x3)");
  CHECK(report.reasons[1] == "DNS listener [::1]:53/udp has not answered the self-check yet (timeout)");
  CHECK(report.reasons[2] == "DNS listener [::1]:53/tcp has not answered the self-check yet");

  inputs.data_path.resize(1);
  CHECK(evaluate_readiness(inputs).ready);
}

TEST_CASE("reasons keep a stable order: process, loops, first round, zones, data path") {
  ReadinessInputs inputs = ready_inputs();
  inputs.draining = true;
  inputs.first_probe_round_done = false;
  inputs.upstreams_unchecked = 1;
  inputs.critical_zones.push_back({".", {upstream("192.0.2.1:53", UpstreamStatus::down, "timeout", 2)}});
  inputs.data_path.push_back({"127.0.0.1:53/udp", false, false, "", 0});
  ReadinessReport report = evaluate_readiness(inputs);
  REQUIRE(report.reasons.size() == 4);
  CHECK(report.reasons[0] == "draining");
  CHECK(report.reasons[1].rfind("first upstream check round", 0) == 0);
  CHECK(report.reasons[2].rfind("zone .:", 0) == 0);
  CHECK(report.reasons[3].rfind("DNS listener", 0) == 0);
}
