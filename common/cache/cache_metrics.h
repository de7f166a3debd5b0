// The cache's /metrics families: registered once on the control loop before any worker
// starts; rendered there from PacketCache::stats() (relaxed per-shard counters).
#pragma once

#include "common/cache/packet_cache.h"
#include "common/metrics/registry.h"

namespace hubdns {

// `cache` must outlive the registry's last render().
void register_cache_metrics(MetricsRegistry& registry, const PacketCache& cache);

}  // namespace hubdns
