#include "common/health/upstream_health.h"

namespace hubdns {

const char* to_string(UpstreamStatus status) {
  switch (status) {
    case UpstreamStatus::unknown: return "unknown";
    case UpstreamStatus::up: return "up";
    case UpstreamStatus::down: return "down";
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
      rules_[rule].push_back(std::make_unique<UpstreamHealthEntry>());
    }
  }
}

}  // namespace hubdns
