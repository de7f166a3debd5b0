#include "probe/readiness.h"

#include <utility>

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

// "192.168.1.10:53: timeout x3" / "192.168.1.11:53: REFUSED" / "192.168.1.12:53: not checked yet" /
// "10.1.0.4:53: forwards back to this instance (loop)"
std::string describe_upstream(const UpstreamHealthSummary& upstream) {
  std::string text = upstream.address + ": ";
  // Before `checked`: the loop verdict may come before the first health check result.
  if (upstream.status == UpstreamStatus::loop) return text + "forwards back to this instance (loop)";
  if (!upstream.checked) return text + "not checked yet";
  if (upstream.last_error.empty()) return text + to_string(upstream.status);
  text += upstream.last_error;
  if (upstream.error_streak > 1) text += " x" + std::to_string(upstream.error_streak);
  // unknown with failures: below `fall`, not down yet, but not up either.
  if (upstream.status == UpstreamStatus::unknown) text += " (not up yet)";
  return text;
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
  if (!inputs.first_probe_round_done) {
    report.reasons.push_back("first upstream check round not finished (" +
                             std::to_string(inputs.upstreams_unchecked) + " upstreams not checked yet)");
  }
  for (const CriticalZoneHealth& zone : inputs.critical_zones) {
    bool any_up = false;
    bool any_checked = false;
    for (const UpstreamHealthSummary& upstream : zone.upstreams) {
      any_up = any_up || upstream.status == UpstreamStatus::up;
      any_checked = any_checked || upstream.checked;
    }
    // A zone none of whose upstreams has a result yet is covered by the first-round line.
    if (any_up || (!any_checked && !inputs.first_probe_round_done)) continue;
    std::string line = "zone " + zone.zone + ": no upstream up (";
    for (size_t i = 0; i < zone.upstreams.size(); ++i) {
      if (i > 0) line += "; ";
      line += describe_upstream(zone.upstreams[i]);
    }
    line += ")";
    report.reasons.push_back(std::move(line));
  }
  for (const DataPathHealth& check : inputs.data_path) {
    if (check.failing) {
      std::string line = "DNS listener " + check.listener + " did not answer the self-check (" + check.last_error;
      if (check.consecutive_failures > 1) line += " x" + std::to_string(check.consecutive_failures);
      report.reasons.push_back(line + ")");
    } else if (!check.answered_yet) {
      std::string line = "DNS listener " + check.listener + " has not answered the self-check yet";
      if (!check.last_error.empty()) line += " (" + check.last_error + ")";
      report.reasons.push_back(std::move(line));
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
