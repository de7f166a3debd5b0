// The cache's /metrics families: registered once on the control loop before any worker
// starts; rendered there from PacketCache::stats() (relaxed per-shard counters).
#pragma once

#include <memory>

#include "common/cache/packet_cache.h"
#include "common/metrics/registry.h"

namespace hubdns {

// `cache` points at the process's current cache (nullptr while [cache] is disabled: the
// families then show zeros); a reload may replace it. The slot must outlive the registry's
// last render().
void register_cache_metrics(MetricsRegistry& registry, const std::shared_ptr<PacketCache>* cache);

}  // namespace hubdns
