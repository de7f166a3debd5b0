// FlatMap: a fixed-capacity open-addressing hash map from 64-bit keys to 32-bit values,
// for the worker's hot-path indexes (waiting upstream IDs, in-flight questions). Linear
// probing with backward-shift deletion (no tombstones), so lookups stay short however
// long the process runs. Capacity is set once; no allocation afterwards. Not thread-safe:
// one per worker.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace hubdns {

class FlatMap {
 public:
  static constexpr uint32_t kNotFound = 0xFFFFFFFFu;

  // Room for at least max_entries at a load factor of at most one half.
  explicit FlatMap(size_t max_entries = 1024) { reset(max_entries); }

  void reset(size_t max_entries) {
    size_t capacity = 16;
    while (capacity < max_entries * 2) capacity <<= 1;
    slots_.assign(capacity, Slot{});
    mask_ = capacity - 1;
    size_ = 0;
    max_entries_ = capacity / 2;
  }

  size_t size() const { return size_; }
  bool full() const { return size_ >= max_entries_; }

  uint32_t find(uint64_t key) const {
    for (size_t i = index_of(key);; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.value == kNotFound) return kNotFound;
      if (slot.key == key) return slot.value;
    }
  }

  // Inserts or overwrites. Returns false (and changes nothing) when full.
  bool insert(uint64_t key, uint32_t value) {
    for (size_t i = index_of(key);; i = (i + 1) & mask_) {
      Slot& slot = slots_[i];
      if (slot.value == kNotFound) {
        if (full()) return false;
        slot.key = key;
        slot.value = value;
        ++size_;
        return true;
      }
      if (slot.key == key) {
        slot.value = value;
        return true;
      }
    }
  }

  // Removes key if present.
  void erase(uint64_t key) {
    size_t i = index_of(key);
    for (;; i = (i + 1) & mask_) {
      if (slots_[i].value == kNotFound) return;
      if (slots_[i].key == key) break;
    }
    // Backward-shift: move later members of the probe run into the hole when their home
    // position allows it, so no lookup ever stops early at the hole.
    size_t hole = i;
    for (size_t j = (hole + 1) & mask_; slots_[j].value != kNotFound; j = (j + 1) & mask_) {
      size_t home = index_of(slots_[j].key);
      bool movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
      if (movable) {
        slots_[hole] = slots_[j];
        hole = j;
      }
    }
    slots_[hole] = Slot{};
    --size_;
  }

 private:
  struct Slot {
    uint64_t key = 0;
    uint32_t value = kNotFound;
  };

  size_t index_of(uint64_t key) const {
    // Keys can be structured (socket << 16 | id): mix the bits before masking.
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return static_cast<size_t>(key) & mask_;
  }

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
  size_t max_entries_ = 0;
};

}  // namespace hubdns
