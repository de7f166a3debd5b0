#include "common/cache/packet_cache.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>
#include <limits>
#include <mutex>
#include <new>
#include <random>
#include <thread>
#include <vector>

namespace hubdns {

using dns::CacheRejection;

namespace {

// Key bits: the query flags that change the answer. EDNS presence is one because an
// answer carrying OPT must never reach a client that sent none (RFC 6891 7); DO because
// it decides whether DNSSEC records are included; RD, CD and AD because upstreams answer
// them differently (no recursion, no validation, AD requested: RFC 6840 5.7).
constexpr uint8_t kKeyRd = 0x01;
constexpr uint8_t kKeyCd = 0x02;
constexpr uint8_t kKeyAd = 0x04;
constexpr uint8_t kKeyEdns = 0x08;
constexpr uint8_t kKeyDo = 0x10;

constexpr uint8_t kMaxFrequency = 3;  // S3-FIFO's 2-bit access counter
constexpr size_t kInitialBuckets = 16;
constexpr size_t kMaxShards = 4096;
constexpr size_t kStackTtlFields = 128;  // more records than this: one vector on insert

// SipHash-1-3 (Aumasson and Bernstein; the keyed hash Rust's HashMap uses): keyed by a
// random 128-bit secret, so names that collide cannot be computed from outside.
uint64_t siphash13(const uint8_t* data, size_t length, uint64_t key0, uint64_t key1) {
  uint64_t v0 = 0x736f6d6570736575ULL ^ key0;
  uint64_t v1 = 0x646f72616e646f6dULL ^ key1;
  uint64_t v2 = 0x6c7967656e657261ULL ^ key0;
  uint64_t v3 = 0x7465646279746573ULL ^ key1;
  auto round = [&] {
    v0 += v1; v1 = std::rotl(v1, 13); v1 ^= v0; v0 = std::rotl(v0, 32);
    v2 += v3; v3 = std::rotl(v3, 16); v3 ^= v2;
    v0 += v3; v3 = std::rotl(v3, 21); v3 ^= v0;
    v2 += v1; v1 = std::rotl(v1, 17); v1 ^= v2; v2 = std::rotl(v2, 32);
  };
  const size_t whole = length & ~size_t{7};
  for (size_t i = 0; i < whole; i += 8) {
    uint64_t word;
    std::memcpy(&word, data + i, 8);
    v3 ^= word;
    round();
    v0 ^= word;
  }
  uint64_t last = static_cast<uint64_t>(length) << 56;
  for (size_t i = 0; i < length - whole; ++i) last |= static_cast<uint64_t>(data[whole + i]) << (8 * i);
  v3 ^= last;
  round();
  v0 ^= last;
  v2 ^= 0xFF;
  round();
  round();
  round();
  return v0 ^ v1 ^ v2 ^ v3;
}

void random_hash_key(uint64_t* key0, uint64_t* key1) {
  try {
    std::random_device device;
    auto word = [&] { return (static_cast<uint64_t>(device()) << 32) | device(); };
    *key0 = word();
    *key1 = word();
  } catch (...) {
    // No entropy source: still differ per process and start time.
    const auto now = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    *key0 = now * 0x9E3779B97F4A7C15ULL;
    *key1 = reinterpret_cast<uintptr_t>(&now) ^ std::rotl(now, 29);
  }
}

uint32_t whole_seconds(Duration d) {
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(d).count();
  if (seconds <= 0) return 0;
  return static_cast<uint32_t>(std::min<int64_t>(seconds, dns::kMaxTtlSeconds));
}

// glibc malloc: 8 bytes of chunk header, 16-byte granularity, 32 bytes at least.
size_t malloc_estimate(size_t requested) {
  return std::max<size_t>(32, (requested + 8 + 15) & ~size_t{15});
}

void add(std::atomic<uint64_t>& counter, uint64_t n = 1) {
  counter.fetch_add(n, std::memory_order_relaxed);
}

// True if `name` equals `zone` or lies below it, on label boundaries. Both are lower-cased
// uncompressed wire names.
bool name_at_or_below(const uint8_t* name, size_t name_length, const uint8_t* zone, size_t zone_length) {
  size_t pos = 0;
  while (pos < name_length) {
    const size_t rest = name_length - pos;
    if (rest == zone_length) return std::memcmp(name + pos, zone, zone_length) == 0;
    if (rest < zone_length || name[pos] == 0) return false;
    pos += 1u + name[pos];
  }
  return false;
}

// Length of an uncompressed wire name that fills exactly `length` bytes, or 0.
bool is_plain_wire_name(const uint8_t* name, size_t length) {
  if (length == 0 || length > dns::kMaxNameWireLength) return false;
  size_t pos = 0;
  while (pos < length) {
    const uint8_t label = name[pos];
    if (label == 0) return pos + 1 == length;
    if (label > 63) return false;
    pos += 1u + label;
  }
  return false;
}

}  // namespace

// ---- entries and shards ------------------------------------------------------------------

// One cached answer, in one heap block: this header, then the TTL field offsets (uint16
// each), the answer as stored (TTLs already clamped), then the lower-cased qname. All
// fields are guarded by the owning shard's mutex.
struct PacketCache::Entry {
  enum class Queue : uint8_t { small, main };

  Entry* bucket_next = nullptr;  // hash chain
  Entry* newer = nullptr;        // FIFO neighbours in its queue
  Entry* older = nullptr;
  uint64_t hash = 0;
  uint64_t inserted_ms = 0;
  uint64_t fresh_until_ms = 0;
  uint64_t prefetch_requested_ms = 0;
  uint32_t ttl_seconds = 0;  // the entry's TTL after clamping: fresh for this long
  uint32_t hits = 0;         // fresh hits since stored (saturating), for prefetch
  uint16_t answer_length = 0;
  uint16_t ttl_field_count = 0;
  uint16_t qtype = 0;
  uint16_t qclass = 0;
  uint8_t name_length = 0;
  uint8_t key_bits = 0;
  uint8_t frequency = 0;  // hits since it entered its queue, capped at kMaxFrequency
  Queue queue = Queue::small;
  bool prefetch_requested = false;

  static size_t block_size(size_t name_length, size_t answer_length, size_t ttl_field_count) {
    return sizeof(Entry) + 2 * ttl_field_count + answer_length + name_length;
  }
  size_t footprint() const { return malloc_estimate(block_size(name_length, answer_length, ttl_field_count)); }

  uint8_t* offsets() { return reinterpret_cast<uint8_t*>(this + 1); }
  const uint8_t* offsets() const { return reinterpret_cast<const uint8_t*>(this + 1); }
  uint8_t* answer() { return offsets() + 2 * size_t{ttl_field_count}; }
  const uint8_t* answer() const { return offsets() + 2 * size_t{ttl_field_count}; }
  uint8_t* name() { return answer() + answer_length; }
  const uint8_t* name() const { return answer() + answer_length; }
  size_t ttl_offset(size_t i) const { return dns::read_u16(offsets() + 2 * i); }
};

struct PacketCache::Key {
  uint64_t hash = 0;
  uint16_t qtype = 0;
  uint16_t qclass = 0;
  uint8_t name_length = 0;
  uint8_t bits = 0;
  uint8_t name[dns::kMaxNameWireLength];

  bool matches(const Entry& entry) const {
    return entry.hash == hash && entry.qtype == qtype && entry.qclass == qclass &&
           entry.key_bits == bits && entry.name_length == name_length &&
           std::memcmp(entry.name(), name, name_length) == 0;
  }
};

namespace {

using Entry = PacketCache::Entry;

void free_entry(Entry* entry) {
  entry->~Entry();
  ::operator delete(entry);
}

// An intrusive FIFO: splicing never allocates.
struct Fifo {
  Entry* newest = nullptr;
  Entry* oldest = nullptr;
  size_t count = 0;

  void push_newest(Entry* entry) {
    entry->newer = nullptr;
    entry->older = newest;
    if (newest != nullptr) newest->newer = entry;
    else oldest = entry;
    newest = entry;
    ++count;
  }
  void unlink(Entry* entry) {
    if (entry->newer != nullptr) entry->newer->older = entry->older;
    else newest = entry->older;
    if (entry->older != nullptr) entry->older->newer = entry->newer;
    else oldest = entry->newer;
    entry->newer = entry->older = nullptr;
    --count;
  }
  // `replacement` takes `current`'s place in the queue.
  void replace(Entry* current, Entry* replacement) {
    replacement->newer = current->newer;
    replacement->older = current->older;
    if (replacement->newer != nullptr) replacement->newer->older = replacement;
    else newest = replacement;
    if (replacement->older != nullptr) replacement->older->newer = replacement;
    else oldest = replacement;
    current->newer = current->older = nullptr;
  }
};

struct ShardCounters {
  std::atomic<uint64_t> hits{0};
  std::atomic<uint64_t> misses{0};
  std::atomic<uint64_t> stale_hits{0};
  std::atomic<uint64_t> stale_misses{0};
  std::atomic<uint64_t> prefetches_wanted{0};
  std::atomic<uint64_t> insertions{0};
  std::atomic<uint64_t> replacements{0};
  std::atomic<uint64_t> evictions{0};
  std::atomic<uint64_t> expired_removed{0};
  std::atomic<uint64_t> flushed{0};
  std::array<std::atomic<uint64_t>, dns::kCacheRejectionCount> not_cacheable{};
  std::atomic<uint64_t> entries{0};
  std::atomic<uint64_t> bytes{0};
};

}  // namespace

// Eviction is S3-FIFO (Yang et al., SOSP 2023) per shard: new entries enter a small FIFO
// (a tenth of the shard); one that was hit while there moves to the main FIFO when it
// reaches the end, one that was not is dropped and its hash remembered in a "ghost" table,
// so that if it comes back it goes straight to main. Main is a CLOCK: an entry hit since
// its last pass gets another round. Why not LRU: a flood of one-time names (random
// subdomains, the usual attack on resolvers, each an NXDOMAIN we cache) would push every
// hot entry out of an LRU; here it only churns the small queue. And a hit is a counter
// increment instead of relinking a list. The ghost table is a direct-mapped array of hash
// tags (one slot per bucket): approximate, allocation-free, and a false "seen before" only
// puts an entry in main.
struct alignas(64) PacketCache::Shard {
  std::mutex mutex;
  std::unique_ptr<Entry*[]> buckets;  // chained hash index, grown by doubling
  std::unique_ptr<uint32_t[]> ghost;  // same number of slots as buckets
  size_t bucket_count = 0;
  size_t max_buckets = 0;
  Fifo small;
  Fifo main;
  size_t capacity = 0;
  size_t small_target = 0;
  size_t entry_bytes = 0;
  ShardCounters counters;

  ~Shard() { clear(); }

  size_t entry_count() const { return small.count + main.count; }
  Fifo& queue_of(const Entry& entry) { return entry.queue == Entry::Queue::small ? small : main; }
  size_t bucket_of(uint64_t hash) const { return static_cast<size_t>(hash) & (bucket_count - 1); }
  size_t ghost_slot(uint64_t hash) const { return static_cast<size_t>(hash >> 32) & (bucket_count - 1); }
  static uint32_t ghost_tag(uint64_t hash) { return static_cast<uint32_t>(hash) | 1u; }

  void init(size_t shard_capacity) {
    capacity = shard_capacity;
    small_target = std::max<size_t>(1, shard_capacity / 10);
    max_buckets = std::bit_ceil(std::max<size_t>(1, shard_capacity));
    bucket_count = std::min(kInitialBuckets, max_buckets);
    buckets = std::make_unique<Entry*[]>(bucket_count);
    ghost = std::make_unique<uint32_t[]>(bucket_count);
    publish();
  }

  void publish() {
    counters.entries.store(entry_count(), std::memory_order_relaxed);
    counters.bytes.store(entry_bytes + bucket_count * (sizeof(Entry*) + sizeof(uint32_t)),
                         std::memory_order_relaxed);
  }

  Entry* find(const Key& key) const {
    for (Entry* entry = buckets[bucket_of(key.hash)]; entry != nullptr; entry = entry->bucket_next) {
      if (key.matches(*entry)) return entry;
    }
    return nullptr;
  }

  void link_bucket(Entry* entry) {
    Entry*& head = buckets[bucket_of(entry->hash)];
    entry->bucket_next = head;
    head = entry;
  }

  void unlink_bucket(Entry* entry) {
    for (Entry** link = &buckets[bucket_of(entry->hash)]; *link != nullptr; link = &(*link)->bucket_next) {
      if (*link == entry) {
        *link = entry->bucket_next;
        entry->bucket_next = nullptr;
        return;
      }
    }
  }

  // Doubles the index when it is as full as it is long (chains average under one entry).
  // No memory: keep the old size, chains just grow. The ghost table starts over.
  void grow_if_full() {
    if (entry_count() < bucket_count || bucket_count >= max_buckets) return;
    const size_t new_count = bucket_count * 2;
    std::unique_ptr<Entry*[]> new_buckets(new (std::nothrow) Entry*[new_count]());
    std::unique_ptr<uint32_t[]> new_ghost(new (std::nothrow) uint32_t[new_count]());
    if (!new_buckets || !new_ghost) return;
    std::unique_ptr<Entry*[]> old_buckets = std::move(buckets);
    const size_t old_count = bucket_count;
    buckets = std::move(new_buckets);
    ghost = std::move(new_ghost);
    bucket_count = new_count;
    for (size_t i = 0; i < old_count; ++i) {
      Entry* entry = old_buckets[i];
      while (entry != nullptr) {
        Entry* next = entry->bucket_next;
        link_bucket(entry);
        entry = next;
      }
    }
  }

  void remember(uint64_t hash) { ghost[ghost_slot(hash)] = ghost_tag(hash); }
  bool seen_recently(uint64_t hash) {
    uint32_t& slot = ghost[ghost_slot(hash)];
    if (slot != ghost_tag(hash)) return false;
    slot = 0;
    return true;
  }

  void remove(Entry* entry) {
    unlink_bucket(entry);
    queue_of(*entry).unlink(entry);
    entry_bytes -= entry->footprint();
    free_entry(entry);
  }

  size_t clear() {
    size_t removed = 0;
    for (Fifo* queue : {&small, &main}) {
      while (queue->oldest != nullptr) {
        remove(queue->oldest);
        ++removed;
      }
    }
    return removed;
  }
};

// ---- construction ------------------------------------------------------------------------

PacketCache::PacketCache(const CacheConfig& config, size_t shard_count) {
  if (config.enabled) capacity_ = static_cast<size_t>(config.max_entries);
  min_ttl_seconds_ = whole_seconds(config.min_ttl);
  max_ttl_seconds_ = whole_seconds(config.max_ttl);
  max_negative_ttl_seconds_ = whole_seconds(config.max_negative_ttl);
  serve_stale_ = config.serve_stale;
  stale_answer_ttl_seconds_ = whole_seconds(config.stale_answer_ttl);
  max_stale_ms_ = static_cast<uint64_t>(std::max<int64_t>(0, config.max_stale.count()));
  random_hash_key(&hash_key0_, &hash_key1_);

  if (shard_count == 0) {
    // Enough shards that workers rarely meet on one lock.
    shard_count = std::max<size_t>(8, size_t{4} * std::max(1u, std::thread::hardware_concurrency()));
  }
  shard_count = std::bit_ceil(std::min(shard_count, kMaxShards));
  while (shard_count > 1 && shard_count > capacity_) shard_count /= 2;
  shard_count_ = shard_count;
  shard_shift_ = 64u - static_cast<unsigned>(std::countr_zero(shard_count));
  shards_ = std::make_unique<Shard[]>(shard_count_);
  for (size_t i = 0; i < shard_count_; ++i) {
    shards_[i].init(capacity_ / shard_count_ + (i < capacity_ % shard_count_ ? 1 : 0));
  }
}

PacketCache::~PacketCache() = default;

PacketCache::Shard& PacketCache::shard_for(uint64_t hash) const {
  // The top bits pick the shard; the low bits pick the bucket within it.
  return shards_[shard_count_ == 1 ? 0 : static_cast<size_t>(hash >> shard_shift_)];
}

bool PacketCache::make_key(const uint8_t* query, const dns::QueryInfo& info, Key* key) const {
  if (info.qname_length == 0 || info.qname_length > dns::kMaxNameWireLength) return false;
  key->name_length = static_cast<uint8_t>(info.qname_length);
  dns::lowercase_wire_name(query + info.qname_offset, info.qname_length, key->name);
  key->qtype = info.qtype;
  key->qclass = info.qclass;
  key->bits = static_cast<uint8_t>(((info.flags & dns::kFlagRd) ? kKeyRd : 0) |
                                   ((info.flags & dns::kFlagCd) ? kKeyCd : 0) |
                                   ((info.flags & dns::kFlagAd) ? kKeyAd : 0) |
                                   (info.has_edns ? kKeyEdns : 0) |
                                   (info.has_edns && info.edns_do ? kKeyDo : 0));
  uint8_t material[dns::kMaxNameWireLength + 5];
  std::memcpy(material, key->name, key->name_length);
  size_t pos = key->name_length;
  dns::write_u16(material + pos, key->qtype);
  dns::write_u16(material + pos + 2, key->qclass);
  material[pos + 4] = key->bits;
  key->hash = siphash13(material, pos + 5, hash_key0_, hash_key1_);
  return true;
}

bool PacketCache::is_dead(const Entry& entry, uint64_t now_ms) const {
  if (now_ms < entry.fresh_until_ms) return false;
  if (!serve_stale_) return true;
  return now_ms - entry.fresh_until_ms >= max_stale_ms_;
}

// ---- lookup ------------------------------------------------------------------------------

void PacketCache::copy_out(const Entry& entry, const uint8_t* query, const dns::QueryInfo& info,
                           uint64_t now_ms, bool stale, uint8_t* out) const {
  std::memcpy(out, entry.answer(), entry.answer_length);
  dns::set_message_id(out, info.id);
  // The stored question has the same length (checked on insert); give the client back its
  // own spelling (DNS 0x20 randomisation, RFC 4343 case preservation).
  std::memcpy(out + dns::kHeaderSize, query + info.qname_offset, entry.name_length);
  const uint64_t elapsed_seconds = now_ms > entry.inserted_ms ? (now_ms - entry.inserted_ms) / 1000 : 0;
  const uint32_t age = static_cast<uint32_t>(std::min<uint64_t>(elapsed_seconds, dns::kMaxTtlSeconds));
  for (size_t i = 0; i < entry.ttl_field_count; ++i) {
    const size_t offset = entry.ttl_offset(i);
    uint32_t ttl = stale_answer_ttl_seconds_;
    if (!stale) {
      const uint32_t stored = dns::read_u32(entry.answer() + offset);
      ttl = stored > age ? stored - age : 0;
    }
    dns::write_u32(out + offset, ttl);
  }
}

bool PacketCache::wants_prefetch(Entry& entry, uint64_t now_ms) const {
  if (entry.hits < kPrefetchMinHits || entry.ttl_seconds < kPrefetchMinTtlSeconds) return false;
  const uint64_t remaining_ms = entry.fresh_until_ms - now_ms;  // fresh: now < fresh_until
  if (remaining_ms * 10 >= uint64_t{entry.ttl_seconds} * 1000) return false;
  // Asked already: wait for the refresh (insert() replaces the entry) for a while. A `now`
  // before the request is another worker's clock a little behind: still waiting.
  if (entry.prefetch_requested && (now_ms < entry.prefetch_requested_ms ||
                                   now_ms - entry.prefetch_requested_ms < kPrefetchRetryMs)) {
    return false;
  }
  entry.prefetch_requested = true;
  entry.prefetch_requested_ms = now_ms;
  return true;
}

PacketCache::Hit PacketCache::lookup(const uint8_t* query, const dns::QueryInfo& info, uint64_t now_ms,
                                     bool allow_stale, uint8_t* out, size_t out_capacity,
                                     size_t* out_length) {
  *out_length = 0;
  if (!enabled()) return Hit::miss;
  Key key;
  if (!make_key(query, info, &key)) return Hit::miss;
  Shard& shard = shard_for(key.hash);
  ShardCounters& counters = shard.counters;
  std::atomic<uint64_t>& miss_counter = allow_stale ? counters.stale_misses : counters.misses;

  std::lock_guard lock(shard.mutex);
  Entry* entry = shard.find(key);
  if (entry == nullptr || entry->answer_length > out_capacity) {
    add(miss_counter);
    return Hit::miss;
  }
  if (now_ms < entry->fresh_until_ms) {
    copy_out(*entry, query, info, now_ms, false, out);
    *out_length = entry->answer_length;
    if (entry->frequency < kMaxFrequency) ++entry->frequency;
    if (entry->hits < std::numeric_limits<uint32_t>::max()) ++entry->hits;
    add(counters.hits);
    if (wants_prefetch(*entry, now_ms)) {
      add(counters.prefetches_wanted);
      return Hit::fresh_prefetch;
    }
    return Hit::fresh;
  }
  if (is_dead(*entry, now_ms)) {
    // A popular entry that simply expired should come back into main, not the probation
    // queue: remember it as the ghost table would for an evicted one.
    if (entry->queue == Entry::Queue::main || entry->frequency > 0) shard.remember(entry->hash);
    shard.remove(entry);
    shard.publish();
    add(counters.expired_removed);
    add(miss_counter);
    return Hit::miss;
  }
  if (!allow_stale) {  // kept: the caller may come back for it if the upstreams fail
    add(miss_counter);
    return Hit::miss;
  }
  copy_out(*entry, query, info, now_ms, true, out);
  *out_length = entry->answer_length;
  add(counters.stale_hits);
  return Hit::stale;
}

// ---- insert ------------------------------------------------------------------------------

PacketCache::Entry* PacketCache::build_entry(const Key& key, const dns::QueryInfo& info,
                                             const uint8_t* answer, size_t length, uint64_t now_ms,
                                             CacheRejection* reason) const {
  if (length < dns::kHeaderSize || length > dns::kMaxMessageSize) {
    *reason = CacheRejection::malformed;
    return nullptr;
  }
  std::array<dns::TtlField, kStackTtlFields> local_fields;
  std::vector<dns::TtlField> many_fields;
  const dns::TtlField* fields = local_fields.data();
  dns::AnswerShape shape;
  *reason = dns::analyze_answer(answer, length, &shape, local_fields.data(), local_fields.size());
  if (*reason != CacheRejection::none) return nullptr;
  if (shape.ttl_field_count > local_fields.size()) {
    try {
      many_fields.resize(shape.ttl_field_count);
    } catch (...) {
      *reason = CacheRejection::out_of_memory;
      return nullptr;
    }
    dns::analyze_answer(answer, length, &shape, many_fields.data(), many_fields.size());
    fields = many_fields.data();
  }
  if (!dns::response_matches(answer, length, dns::message_id(answer), key.name, key.name_length,
                             key.qtype, key.qclass)) {
    *reason = CacheRejection::question_mismatch;
    return nullptr;
  }
  if (shape.has_opt && !info.has_edns) {
    *reason = CacheRejection::opt_mismatch;
    return nullptr;
  }

  // The entry's TTL. Positive: the smallest answer/authority TTL, clamped to
  // [min_ttl, max_ttl]. A TTL of 0 is the owner saying "do not cache" (RFC 1035 3.2.1),
  // so it is never raised by min_ttl (as dnsdist; Unbound would raise it). Negative
  // (RFC 2308 5): min(SOA TTL, SOA MINIMUM) (and any smaller record TTL, e.g. a CNAME
  // leading to the NXDOMAIN), capped by max_negative_ttl and max_ttl; min_ttl does not
  // apply, negative answers have their own bound.
  const bool positive = shape.kind == dns::AnswerKind::positive;
  uint32_t entry_ttl = 0;
  if (positive) {
    entry_ttl = std::min(std::max(shape.min_ttl, min_ttl_seconds_), max_ttl_seconds_);
  } else {
    entry_ttl = std::min({shape.min_ttl, shape.soa_minimum, max_negative_ttl_seconds_, max_ttl_seconds_});
  }
  if (shape.min_ttl == 0 || entry_ttl == 0) {
    *reason = CacheRejection::zero_ttl;
    return nullptr;
  }

  void* block = ::operator new(Entry::block_size(key.name_length, length, shape.ttl_field_count),
                               std::nothrow);
  if (block == nullptr) {
    *reason = CacheRejection::out_of_memory;
    return nullptr;
  }
  Entry* entry = new (block) Entry{};
  entry->hash = key.hash;
  entry->inserted_ms = now_ms;
  entry->fresh_until_ms = now_ms + uint64_t{entry_ttl} * 1000;
  entry->ttl_seconds = entry_ttl;
  entry->answer_length = static_cast<uint16_t>(length);
  entry->ttl_field_count = static_cast<uint16_t>(shape.ttl_field_count);
  entry->qtype = key.qtype;
  entry->qclass = key.qclass;
  entry->name_length = key.name_length;
  entry->key_bits = key.bits;
  std::memcpy(entry->answer(), answer, length);
  std::memcpy(entry->name(), key.name, key.name_length);

  // Store clamped TTLs, so that a hit only subtracts the age. Positive: every record's TTL
  // into [min_ttl, max_ttl]; the answer and authority records are then all at least the
  // entry's TTL, so their aged TTLs stay above zero while the entry is fresh. Negative:
  // the SOA carries the negative TTL (RFC 2308 3), other records are only capped.
  // Additional records below the entry's TTL age down to 0 and stay there.
  uint8_t* stored = entry->answer();
  for (size_t i = 0; i < shape.ttl_field_count; ++i) {
    const dns::TtlField& field = fields[i];
    dns::write_u16(entry->offsets() + 2 * i, field.offset);
    const uint32_t ttl = dns::sanitize_ttl(dns::read_u32(stored + field.offset));
    uint32_t clamped = std::min(ttl, max_ttl_seconds_);
    if (positive) {
      clamped = std::min(std::max(ttl, min_ttl_seconds_), max_ttl_seconds_);
    } else if (field.type == dns::kTypeSoa && field.section == dns::Section::authority) {
      clamped = entry_ttl;
    }
    dns::write_u32(stored + field.offset, clamped);
  }
  return entry;
}

bool PacketCache::insert(const uint8_t* query, const dns::QueryInfo& info, const uint8_t* answer,
                         size_t length, uint64_t now_ms) {
  return insert_or_reason(query, info, answer, length, now_ms) == CacheRejection::none;
}

CacheRejection PacketCache::insert_or_reason(const uint8_t* query, const dns::QueryInfo& info,
                                             const uint8_t* answer, size_t length, uint64_t now_ms) {
  if (!enabled()) return CacheRejection::disabled;
  Key key;
  CacheRejection reason = CacheRejection::question_mismatch;
  Entry* entry = nullptr;
  if (make_key(query, info, &key)) entry = build_entry(key, info, answer, length, now_ms, &reason);
  Shard& shard = shard_for(key.hash);
  if (entry == nullptr) {
    add(shard.counters.not_cacheable[static_cast<size_t>(reason)]);
    return reason;
  }

  std::lock_guard lock(shard.mutex);
  if (Entry* current = shard.find(key)) {
    // A refresh (prefetch, or a miss on an expired entry): keep the place and the hit
    // history the key earned; the age, TTL and prefetch state start over.
    entry->queue = current->queue;
    entry->frequency = current->frequency;
    shard.queue_of(*current).replace(current, entry);
    shard.unlink_bucket(current);
    shard.link_bucket(entry);
    shard.entry_bytes -= current->footprint();
    free_entry(current);
    add(shard.counters.replacements);
  } else {
    // Asked before making room, so that this insert's own evictions cannot overwrite it.
    const bool returning = shard.seen_recently(key.hash);
    while (shard.entry_count() >= shard.capacity) {
      // S3-FIFO: take from small while it is over its share, otherwise from main.
      if (shard.small.count > shard.small_target || shard.main.count == 0) {
        Entry* victim = shard.small.oldest;
        const bool dead = is_dead(*victim, now_ms);
        if (victim->frequency > 0 && !dead) {
          shard.small.unlink(victim);
          victim->frequency = 0;
          victim->queue = Entry::Queue::main;
          shard.main.push_newest(victim);
          continue;
        }
        if (!dead) shard.remember(victim->hash);
        add(dead ? shard.counters.expired_removed : shard.counters.evictions);
        shard.remove(victim);
      } else {
        Entry* victim = shard.main.oldest;
        const bool dead = is_dead(*victim, now_ms);
        if (victim->frequency > 0 && !dead) {
          --victim->frequency;
          shard.main.unlink(victim);
          shard.main.push_newest(victim);
          continue;
        }
        add(dead ? shard.counters.expired_removed : shard.counters.evictions);
        shard.remove(victim);
      }
    }
    shard.grow_if_full();
    entry->queue = returning ? Entry::Queue::main : Entry::Queue::small;
    shard.queue_of(*entry).push_newest(entry);
    shard.link_bucket(entry);
  }
  shard.entry_bytes += entry->footprint();
  shard.publish();
  add(shard.counters.insertions);
  return CacheRejection::none;
}

// ---- removal -----------------------------------------------------------------------------

size_t PacketCache::flush_all() {
  size_t removed = 0;
  for (size_t i = 0; i < shard_count_; ++i) {
    Shard& shard = shards_[i];
    std::lock_guard lock(shard.mutex);
    const size_t n = shard.clear();
    shard.publish();
    add(shard.counters.flushed, n);
    removed += n;
  }
  return removed;
}

template <typename Predicate>
size_t PacketCache::remove_where(Predicate should_remove, bool count_as_flushed) {
  size_t removed = 0;
  for (size_t i = 0; i < shard_count_; ++i) {
    Shard& shard = shards_[i];
    std::lock_guard lock(shard.mutex);
    size_t n = 0;
    for (Fifo* queue : {&shard.small, &shard.main}) {
      for (Entry* entry = queue->oldest; entry != nullptr;) {
        Entry* next = entry->newer;
        if (should_remove(*entry)) {
          shard.remove(entry);
          ++n;
        }
        entry = next;
      }
    }
    shard.publish();
    add(count_as_flushed ? shard.counters.flushed : shard.counters.expired_removed, n);
    removed += n;
  }
  return removed;
}

size_t PacketCache::flush_name(const uint8_t* wire_name, size_t length) {
  if (!is_plain_wire_name(wire_name, length)) return 0;
  uint8_t zone[dns::kMaxNameWireLength];
  dns::lowercase_wire_name(wire_name, length, zone);
  return remove_where(
      [&](const Entry& entry) { return name_at_or_below(entry.name(), entry.name_length, zone, length); },
      true);
}

size_t PacketCache::remove_expired(uint64_t now_ms) {
  return remove_where([&](const Entry& entry) { return is_dead(entry, now_ms); }, false);
}

// ---- reporting ---------------------------------------------------------------------------

PacketCache::Stats PacketCache::stats() const {
  Stats stats;
  auto read = [](const std::atomic<uint64_t>& counter) { return counter.load(std::memory_order_relaxed); };
  for (size_t i = 0; i < shard_count_; ++i) {
    const ShardCounters& c = shards_[i].counters;
    stats.hits += read(c.hits);
    stats.misses += read(c.misses);
    stats.stale_hits += read(c.stale_hits);
    stats.stale_misses += read(c.stale_misses);
    stats.prefetches_wanted += read(c.prefetches_wanted);
    stats.insertions += read(c.insertions);
    stats.replacements += read(c.replacements);
    stats.evictions += read(c.evictions);
    stats.expired_removed += read(c.expired_removed);
    stats.flushed += read(c.flushed);
    for (size_t r = 0; r < c.not_cacheable.size(); ++r) {
      const uint64_t n = read(c.not_cacheable[r]);
      stats.not_cacheable_by_reason[r] += n;
      stats.not_cacheable += n;
    }
    stats.entries += read(c.entries);
    stats.bytes += read(c.bytes);
  }
  stats.bytes += shard_count_ * sizeof(Shard);
  return stats;
}

size_t PacketCache::entry_footprint(size_t qname_length, size_t answer_length, size_t ttl_field_count) {
  return malloc_estimate(Entry::block_size(qname_length, answer_length, ttl_field_count)) +
         sizeof(Entry*) + sizeof(uint32_t);
}

const char* to_string(PacketCache::Hit hit) {
  switch (hit) {
    case PacketCache::Hit::miss: return "miss";
    case PacketCache::Hit::fresh: return "fresh";
    case PacketCache::Hit::fresh_prefetch: return "fresh_prefetch";
    case PacketCache::Hit::stale: return "stale";
  }
  return "unknown";
}

}  // namespace hubdns
