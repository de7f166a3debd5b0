#include "probe/readiness.h"

namespace hubdns {
namespace {

// Appends a reason for each loop that has not beaten within max_silence_ms.
void append_silent_loops(const LoopHeartbeats& loops, std::vector<std::string>* reasons) {
  auto check = [&](const std::string& name, uint64_t last_ms) {
    if (last_ms == 0) {
      reasons->push_back(name + " event loop has not started");
    } else if (loops.now_ms > last_ms && loops.now_ms - last_ms > loops.max_silence_ms) {
      reasons->push_back(name + " event loop silent for " + std::to_string(loops.now_ms - last_ms) +
                         " ms");
    }
  };
  check("control", loops.control_loop_last_ms);
  for (size_t i = 0; i < loops.worker_last_ms.size(); ++i) {
    check("worker " + std::to_string(i), loops.worker_last_ms[i]);
  }
}

}  // namespace

LivenessReport evaluate_liveness(const LoopHeartbeats& loops) {
  LivenessReport report;
  append_silent_loops(loops, &report.reasons);
  report.alive = report.reasons.empty();
  return report;
}

ReadinessReport evaluate_readiness(const ReadinessInputs& inputs) {
  ReadinessReport report;
  if (!inputs.listeners_bound) report.reasons.emplace_back("listeners not bound");
  if (inputs.draining) report.reasons.emplace_back("draining");
  append_silent_loops(inputs.loops, &report.reasons);
  if (!inputs.first_probe_round_done) report.reasons.emplace_back("first upstream probe round not finished");
  for (const CriticalZoneHealth& zone : inputs.critical_zones) {
    if (zone.upstreams_up == 0) {
      report.reasons.push_back("critical zone " + zone.zone + ": no upstream up (0 of " +
                               std::to_string(zone.upstreams_total) + ")");
    }
  }
  report.ready = report.reasons.empty();
  return report;
}

std::string reasons_body(const std::vector<std::string>& reasons) {
  if (reasons.empty()) return "ok\n";
  std::string body;
  for (const std::string& reason : reasons) {
    body += reason;
    body += '\n';
  }
  return body;
}

}  // namespace hubdns
