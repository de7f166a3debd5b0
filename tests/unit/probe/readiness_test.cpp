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

TEST_CASE("upstream-aware extension points") {
  ReadinessInputs inputs = ready_inputs();
  inputs.first_probe_round_done = false;
  inputs.critical_zones.push_back({".", 1, 2});
  inputs.critical_zones.push_back({"contoso.com.", 0, 2});
  ReadinessReport report = evaluate_readiness(inputs);
  CHECK_FALSE(report.ready);
  REQUIRE(report.reasons.size() == 2);
  CHECK(report.reasons[0] == "first upstream probe round not finished");
  CHECK(report.reasons[1] == "critical zone contoso.com.: no upstream up (0 of 2)");
}
