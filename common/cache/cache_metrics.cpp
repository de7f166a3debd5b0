#include "common/cache/cache_metrics.h"

namespace hubdns {

namespace {
PacketCache::Stats stats_of(const std::shared_ptr<PacketCache>* slot) {
  return *slot ? (*slot)->stats() : PacketCache::Stats{};
}
}  // namespace

void register_cache_metrics(MetricsRegistry& registry, const std::shared_ptr<PacketCache>* cache) {
  // Names after CoreDNS's cache plugin (coredns_cache_hits_total, _misses_total,
  // _entries, _evictions_total): one lookup result per family, so a dashboard built for
  // one reads the other.
  registry.add_family({.name = "hubdns_cache_lookups_total",
                       .type = MetricType::counter,
                       .help = "Cache lookups by result: hit (fresh answer served), miss, stale_hit (expired entry served because no upstream could answer), stale_miss.",
                       .label_names = {"result"}},
                      [cache](MetricSink& sink) {
                        PacketCache::Stats stats = stats_of(cache);
                        sink.add({"hit"}, stats.hits);
                        sink.add({"miss"}, stats.misses);
                        sink.add({"stale_hit"}, stats.stale_hits);
                        sink.add({"stale_miss"}, stats.stale_misses);
                      });
  registry.add_family({.name = "hubdns_cache_insertions_total",
                       .type = MetricType::counter,
                       .help = "Upstream answers stored in the cache (a refresh of an existing entry counts too)."},
                      [cache](MetricSink& sink) { sink.add({}, stats_of(cache).insertions); });
  registry.add_family({.name = "hubdns_cache_not_cacheable_total",
                       .type = MetricType::counter,
                       .help = "Upstream answers not stored, by reason (SERVFAIL, truncated, TTL 0, negative without SOA, ...).",
                       .label_names = {"reason"}},
                      [cache](MetricSink& sink) {
                        PacketCache::Stats stats = stats_of(cache);
                        for (size_t i = 0; i < dns::kCacheRejectionCount; ++i) {
                          auto reason = static_cast<dns::CacheRejection>(i);
                          if (reason == dns::CacheRejection::none) continue;
                          sink.add({to_string(reason)}, stats.not_cacheable_by_reason[i]);
                        }
                      });
  registry.add_family({.name = "hubdns_cache_removals_total",
                       .type = MetricType::counter,
                       .help = "Entries removed from the cache: evicted for room (eviction), past their stale window (expired), by POST /cache/flush (flushed).",
                       .label_names = {"reason"}},
                      [cache](MetricSink& sink) {
                        PacketCache::Stats stats = stats_of(cache);
                        sink.add({"eviction"}, stats.evictions);
                        sink.add({"expired"}, stats.expired_removed);
                        sink.add({"flushed"}, stats.flushed);
                      });
  registry.add_family({.name = "hubdns_cache_entries",
                       .type = MetricType::gauge,
                       .help = "Entries in the cache now (at most cache.max_entries)."},
                      [cache](MetricSink& sink) { sink.add({}, stats_of(cache).entries); });
  registry.add_family({.name = "hubdns_cache_bytes",
                       .type = MetricType::gauge,
                       .help = "Heap memory held by the cache's entries and index, in bytes (an estimate that includes allocator overhead)."},
                      [cache](MetricSink& sink) { sink.add({}, stats_of(cache).bytes); });
}

}  // namespace hubdns
