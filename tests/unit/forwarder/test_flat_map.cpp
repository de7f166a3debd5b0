// Unit tests for forwarder/flat_map.h: behaves like std::unordered_map under random
// inserts and erases (backward-shift deletion keeps every key findable), and is bounded.
#include <doctest/doctest.h>

#include <random>
#include <unordered_map>

#include "forwarder/flat_map.h"

using hubdns::FlatMap;

TEST_CASE("FlatMap agrees with unordered_map over a long random run") {
  FlatMap map(512);
  std::unordered_map<uint64_t, uint32_t> model;
  std::mt19937_64 random(42);
  for (int step = 0; step < 200000; ++step) {
    // Structured keys like the worker's (socket << 16 | id), in a small range so probe runs
    // collide and wrap around the table.
    uint64_t key = ((random() % 16) << 16) | (random() % 97);
    if (random() % 3 == 0) {
      map.erase(key);
      model.erase(key);
    } else if (!map.full() || model.count(key) != 0) {
      uint32_t value = static_cast<uint32_t>(random() % 100000);
      REQUIRE(map.insert(key, value));
      model[key] = value;
    }
    if (step % 1000 == 0) {
      REQUIRE(map.size() == model.size());
      for (const auto& [k, v] : model) REQUIRE(map.find(k) == v);
    }
  }
  for (uint64_t key = 0; key < (16u << 16); key += 7) {
    auto it = model.find(key);
    CHECK(map.find(key) == (it == model.end() ? FlatMap::kNotFound : it->second));
  }
}

TEST_CASE("FlatMap refuses inserts beyond its capacity and accepts again after erase") {
  FlatMap map(4);  // capacity 16, at most 8 entries
  uint32_t inserted = 0;
  for (uint64_t key = 1; key <= 100; ++key) inserted += map.insert(key * 1000003, 1) ? 1u : 0u;
  CHECK(inserted == 8);
  CHECK(map.full());
  CHECK(map.insert(1000003, 5));  // overwriting an existing key is always fine
  CHECK(map.find(1000003) == 5);
  map.erase(1000003);
  CHECK_FALSE(map.full());
  CHECK(map.insert(42, 7));
  CHECK(map.find(42) == 7);
}
