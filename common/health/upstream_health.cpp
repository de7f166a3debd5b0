#include "common/health/upstream_health.h"

namespace hubdns {

const char* to_string(UpstreamStatus status) {
  switch (status) {
    case UpstreamStatus::unknown: return "unknown";
    case UpstreamStatus::up: return "up";
    case UpstreamStatus::down: return "down";
    case UpstreamStatus::loop: return "loop";
  }
  return "unknown";
}

std::vector<uint64_t> upstream_latency_bounds_us() {
  return {500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000};
}

UpstreamHealthTable::UpstreamHealthTable(const Config& config) {
  rules_.resize(config.forward.size());
  for (size_t rule = 0; rule < config.forward.size(); ++rule) {
    for (size_t i = 0; i < config.forward[rule].upstreams.size(); ++i) {
      rules_[rule].push_back(std::make_shared<UpstreamHealthEntry>());
    }
  }
}

UpstreamHealthTable::UpstreamHealthTable(const Config& config, const Config& previous_config,
                                         const UpstreamHealthTable& previous) {
  rules_.resize(config.forward.size());
  for (size_t rule = 0; rule < config.forward.size(); ++rule) {
    const ForwardRule& now = config.forward[rule];
    for (const SocketAddress& upstream : now.upstreams) {
      std::shared_ptr<UpstreamHealthEntry> kept;
      for (size_t old_rule = 0; old_rule < previous_config.forward.size() && !kept; ++old_rule) {
        const ForwardRule& before = previous_config.forward[old_rule];
        if (before.zone != now.zone || old_rule >= previous.rules_.size()) continue;
        for (size_t i = 0; i < before.upstreams.size() && i < previous.rules_[old_rule].size(); ++i) {
          if (before.upstreams[i] == upstream) kept = previous.rules_[old_rule][i];
        }
      }
      rules_[rule].push_back(kept ? kept : std::make_shared<UpstreamHealthEntry>());
    }
  }
}

}  // namespace hubdns
