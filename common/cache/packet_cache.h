// The shared DNS answer cache: upstream answers kept as the wire bytes received, keyed by
// the question (name case-insensitive, type, class) and the query bits that change the
// answer (RD, CD, AD, EDNS present, DO). A hit copies the answer into the caller's buffer
// with the client's ID and qname spelling and every TTL aged by the whole seconds spent in
// the cache; the TTL fields were located at insert time, so a hit is a memcpy and a few
// 32-bit writes. Also: negative caching (RFC 2308), serve-stale (RFC 8767), prefetch of
// popular entries near expiry, flushing by name, bounded entry count.
//
// Threads: one PacketCache is shared by the process. Every DNS worker calls lookup() and
// insert() concurrently; the control loop calls flush_all(), flush_name(),
// remove_expired() and stats(). The cache is split into shards (a power of two, chosen by
// a hash seeded at random per cache, so remote parties cannot aim collisions at one
// shard), each with its own mutex, held for one hash probe plus one copy: no global lock.
// lookup() never allocates and never throws; insert() allocates one block per entry and
// never throws (bad input or no memory: not cached, counted).
//
// Time is the caller's: milliseconds of the monotonic clock, monotonic_ms() from
// common/util/clock.h or a worker's uv_now() (the same CLOCK_MONOTONIC base on Linux).
// Workers' clocks may differ by a loop iteration; a `now` before an entry's insertion
// counts as no time spent.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "common/cache/cache_answer.h"
#include "common/config/config.h"
#include "common/dns/message.h"

namespace hubdns {

class PacketCache {
 public:
  enum class Hit : uint8_t {
    miss,
    fresh,           // a live answer
    fresh_prefetch,  // a live answer, and the caller should refresh it upstream now
    stale,           // an expired answer within max_stale, TTLs set to stale_answer_ttl
  };

  // Prefetch: a fresh hit on an entry hit at least kPrefetchMinHits times since it was
  // stored, whose original TTL is at least kPrefetchMinTtlSeconds, with under a tenth of
  // it left, reports fresh_prefetch once. If no insert() replaced the entry within
  // kPrefetchRetryMs (the refresh failed or was dropped), the next such hit asks again.
  static constexpr uint32_t kPrefetchMinHits = 2;
  static constexpr uint32_t kPrefetchMinTtlSeconds = 10;
  static constexpr uint64_t kPrefetchRetryMs = 10'000;

  struct Stats {
    uint64_t hits = 0;          // fresh and fresh_prefetch
    uint64_t misses = 0;        // lookups without allow_stale that found nothing usable
    uint64_t stale_hits = 0;
    uint64_t stale_misses = 0;  // lookups with allow_stale that found nothing usable
    uint64_t prefetches_wanted = 0;
    uint64_t insertions = 0;    // answers stored (replacements included)
    uint64_t replacements = 0;  // of which replaced an entry with the same key
    uint64_t evictions = 0;     // live entries dropped for room
    uint64_t expired_removed = 0;  // entries dropped past their stale window
    uint64_t flushed = 0;
    uint64_t not_cacheable = 0;
    std::array<uint64_t, dns::kCacheRejectionCount> not_cacheable_by_reason{};
    uint64_t entries = 0;
    uint64_t bytes = 0;  // estimated heap: entries (with allocator overhead) and index tables
  };

  // shard_count 0 picks a default from the number of CPUs; any other value is rounded up
  // to a power of two. Shards never outnumber max_entries. A disabled config (or
  // max_entries 0) gives a cache that stores nothing and misses every lookup.
  explicit PacketCache(const CacheConfig& config, size_t shard_count = 0);
  ~PacketCache();
  PacketCache(const PacketCache&) = delete;
  PacketCache& operator=(const PacketCache&) = delete;

  // Looks up the answer to a client's query (`query` and `info` from dns::parse_query; the
  // key is taken from info, never from the bytes after the question). On a hit, writes the
  // answer to out and its length to *out_length. An answer longer than out_capacity reads
  // as a miss, so pass dns::kMaxMessageSize for TCP and a UDP buffer of the same size, then
  // truncate as on the uncached path. allow_stale: also return an expired entry within
  // max_stale (serve_stale must be on); use it only when the upstreams failed.
  Hit lookup(const uint8_t* query, const dns::QueryInfo& info, uint64_t now_ms, bool allow_stale,
             uint8_t* out, size_t out_capacity, size_t* out_length);

  // Stores the upstream's `answer` to a client's query, replacing any entry with the same
  // key (which is how a prefetch refreshes one). Returns true if stored; otherwise the
  // reason is counted in Stats::not_cacheable_by_reason (see also the overload).
  bool insert(const uint8_t* query, const dns::QueryInfo& info, const uint8_t* answer,
              size_t length, uint64_t now_ms);
  dns::CacheRejection insert_or_reason(const uint8_t* query, const dns::QueryInfo& info,
                                       const uint8_t* answer, size_t length, uint64_t now_ms);

  // Remove entries; each returns how many. flush_name takes an uncompressed wire-format
  // name and removes the entries for it and every name below it (on label boundaries,
  // case-insensitively: example.com takes www.example.com, not notexample.com); a
  // malformed name removes nothing. remove_expired drops entries past their stale window
  // (they are also dropped lazily by lookups and by eviction); a control-loop timer may
  // call it to return their memory sooner. Safe while workers use the cache.
  size_t flush_all();
  size_t flush_name(const uint8_t* wire_name, size_t length);
  size_t remove_expired(uint64_t now_ms);

  // Sums per-shard relaxed counters: each is exact, the set is not one instant's snapshot.
  Stats stats() const;

  bool enabled() const { return capacity_ > 0; }
  size_t shard_count() const { return shard_count_; }
  size_t capacity() const { return capacity_; }

  // Estimated heap bytes one entry costs (its block with malloc's overhead plus its share
  // of the index: one bucket pointer and one ghost slot): what "memory per entry" means.
  static size_t entry_footprint(size_t qname_length, size_t answer_length,
                                size_t ttl_field_count);

  // Implementation types, complete only in packet_cache.cpp.
  struct Entry;
  struct Key;
  struct Shard;

 private:
  Shard& shard_for(uint64_t hash) const;
  bool make_key(const uint8_t* query, const dns::QueryInfo& info, Key* key) const;
  bool is_dead(const Entry& entry, uint64_t now_ms) const;
  void copy_out(const Entry& entry, const uint8_t* query, const dns::QueryInfo& info,
                uint64_t now_ms, bool stale, uint8_t* out) const;
  bool wants_prefetch(Entry& entry, uint64_t now_ms) const;
  // Removes every entry for which should_remove(entry) holds, shard by shard; counted as
  // flushed or as expired. Returns how many went.
  template <typename Predicate>
  size_t remove_where(Predicate should_remove, bool count_as_flushed);
  Entry* build_entry(const Key& key, const dns::QueryInfo& info, const uint8_t* answer,
                     size_t length, uint64_t now_ms, dns::CacheRejection* reason) const;

  size_t capacity_ = 0;
  uint32_t min_ttl_seconds_ = 0;
  uint32_t max_ttl_seconds_ = 0;
  uint32_t max_negative_ttl_seconds_ = 0;
  bool serve_stale_ = false;
  uint32_t stale_answer_ttl_seconds_ = 0;
  uint64_t max_stale_ms_ = 0;

  uint64_t hash_key0_ = 0;
  uint64_t hash_key1_ = 0;
  size_t shard_count_ = 1;
  unsigned shard_shift_ = 64;  // hash >> shard_shift_ picks the shard (top bits)
  std::unique_ptr<Shard[]> shards_;
};

const char* to_string(PacketCache::Hit hit);

}  // namespace hubdns
