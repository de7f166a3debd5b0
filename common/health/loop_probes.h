// Forwarding-loop probes: the names and the registry both sides share.
//
// To learn whether an upstream leads back to this instance, the control loop (probe/
// loop_detector.h) asks it "<token>._hubdns-loop.<rule zone> TXT", where <token> is 16 hex
// digits (64 random bits) drawn per probe. It registers the token here first. A DNS worker
// (forwarder/) that receives a query with that shape looks the token up: if it is
// outstanding here, the query went round and came back, so the worker notes the arrival
// and answers it itself (the circle ends at once); the control loop then reads the note.
// A token that is not ours is another instance's probe (a chained hub/spoke tier, say) and
// is forwarded like any query: a hubdns behind another hubdns is no loop.
//
// Threads: the control loop adds, removes and reads tokens; every DNS worker calls
// note_arrival(). A small mutex guards the table: workers only reach it for names of the
// probe shape, which parse_loop_probe_name() rules out for ordinary names after one byte
// compare (the first label's length), so the hot path never takes the lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace hubdns {

// The label right below the rule's zone. A leading underscore keeps it out of any
// hostname namespace (RFC 8552), so no real name can be mistaken for a probe.
inline constexpr std::string_view kLoopProbeLabel = "_hubdns-loop";
inline constexpr size_t kLoopTokenDigits = 16;  // hex digits: the token's 64 bits

// The probe's presentation name: "0123456789abcdef._hubdns-loop.corp.example." for zone
// "corp.example." and "0123456789abcdef._hubdns-loop." for ".". The zone must be absolute.
std::string loop_probe_name(uint64_t token, std::string_view zone);

// Whether the uncompressed wire name (as in a query's question, any letter case) has the
// probe shape "<16 hex digits>._hubdns-loop.<anything>"; if so *token gets the digits'
// value. Costs one compare for any other name whose first label is not 16 octets long.
bool parse_loop_probe_name(const uint8_t* name, size_t length, uint64_t* token);

class LoopProbeRegistry {
 public:
  // Control loop: a probe with this token is about to leave.
  void add(uint64_t token);
  // Control loop: forget the token (its probe has been judged, or was cancelled).
  void remove(uint64_t token);
  // Control loop: whether a worker saw the token come back since add().
  bool arrived(uint64_t token) const;
  size_t outstanding() const;

  // DNS worker: true if `token` is one of ours (outstanding), and records its arrival;
  // false for a token this process never sent (or no longer waits for).
  bool note_arrival(uint64_t token);

 private:
  struct Entry {
    uint64_t token = 0;
    bool arrived = false;
  };
  mutable std::mutex mutex_;
  // A handful of entries (one or two per upstream of every rule): a scan is fastest.
  std::vector<Entry> entries_;
};

}  // namespace hubdns
