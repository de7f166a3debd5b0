// Unit tests for the forwarding-loop probe names and the registry the control loop and the
// DNS workers share (common/health/loop_probes.h).
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "common/health/loop_probes.h"
#include "tests/unit/common/wire_test_support.h"

using namespace hubdns;

namespace {

bool parses(const std::string& name, uint64_t* token) {
  std::vector<uint8_t> w = test::wire_name(name);
  return parse_loop_probe_name(w.data(), w.size(), token);
}

}  // namespace

TEST_CASE("probe names: 16 lower-case hex digits, the reserved label, then the rule's zone") {
  CHECK(loop_probe_name(0x0123456789abcdefULL, "corp.example.") == "0123456789abcdef._hubdns-loop.corp.example.");
  CHECK(loop_probe_name(0, ".") == "0000000000000000._hubdns-loop.");
  CHECK(loop_probe_name(~0ULL, "a.") == "ffffffffffffffff._hubdns-loop.a.");
}

TEST_CASE("parse: the token back from any spelling of the name, under any zone") {
  uint64_t token = 0;
  CHECK(parses(loop_probe_name(0xfedcba9876543210ULL, "corp.example."), &token));
  CHECK(token == 0xfedcba9876543210ULL);
  CHECK(parses("00000000000000AB._HUBDNS-Loop.", &token));  // 0x20 mixed case on the way
  CHECK(token == 0xab);
  CHECK(parses("0123456789abcdef._hubdns-loop.a.very.deep.zone.example.", &token));
  CHECK(token == 0x0123456789abcdefULL);
}

TEST_CASE("parse: anything else is not a probe") {
  uint64_t token = 7;
  CHECK_FALSE(parses("www.example.com.", &token));
  CHECK_FALSE(parses(".", &token));
  CHECK_FALSE(parses("0123456789abcde._hubdns-loop.", &token));    // 15 digits
  CHECK_FALSE(parses("0123456789abcdef0._hubdns-loop.", &token));  // 17 digits
  CHECK_FALSE(parses("0123456789abcdeg._hubdns-loop.", &token));   // not hex
  CHECK_FALSE(parses("0123456789abcdef._hubdns-loops.", &token));
  CHECK_FALSE(parses("0123456789abcdef._hubdns_loop.", &token));
  CHECK_FALSE(parses("0123456789abcdef.x._hubdns-loop.", &token));  // the label must come right after
  CHECK_FALSE(parses("0123456789abcdef.", &token));
  CHECK(token == 7);  // untouched
  // Truncated wire data never reads past `length`.
  std::vector<uint8_t> w = test::wire_name("0123456789abcdef._hubdns-loop.");
  for (size_t length = 0; length < w.size(); ++length) {
    std::vector<uint8_t> cut(w.begin(), w.begin() + static_cast<long>(length));
    CHECK_FALSE(parse_loop_probe_name(cut.data(), cut.size(), &token));
  }
}

TEST_CASE("registry: only outstanding tokens are ours; arrivals are noted until removed") {
  LoopProbeRegistry registry;
  CHECK_FALSE(registry.note_arrival(42));  // another instance's probe
  registry.add(42);
  registry.add(43);
  CHECK(registry.outstanding() == 2);
  CHECK_FALSE(registry.arrived(42));
  CHECK(registry.note_arrival(42));
  CHECK(registry.arrived(42));
  CHECK_FALSE(registry.arrived(43));
  registry.add(42);  // added again: a fresh wait
  CHECK_FALSE(registry.arrived(42));
  CHECK(registry.outstanding() == 2);
  registry.remove(42);
  CHECK_FALSE(registry.note_arrival(42));
  CHECK_FALSE(registry.arrived(42));
  registry.remove(43);
  registry.remove(43);  // idempotent
  CHECK(registry.outstanding() == 0);
}

TEST_CASE("registry: workers note arrivals while the control loop adds and removes") {
  LoopProbeRegistry registry;
  registry.add(1);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> ours{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&] {
      while (!stop.load()) {
        if (registry.note_arrival(1)) ours.fetch_add(1);
        registry.note_arrival(999);  // never ours
      }
    });
  }
  for (uint64_t token = 100; token < 2100; ++token) {
    registry.add(token);
    registry.remove(token);
  }
  // The workers may not have been scheduled yet on a busy machine: give them time to note
  // an arrival before stopping them (bounded), so the check below tests the registry, not
  // the scheduler.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (ours.load() == 0 && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
  stop = true;
  for (std::thread& worker : workers) worker.join();
  CHECK(registry.arrived(1));
  CHECK(ours.load() > 0);
  CHECK(registry.outstanding() == 1);
}
