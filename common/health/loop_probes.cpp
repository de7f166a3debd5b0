#include "common/health/loop_probes.h"

namespace hubdns {
namespace {

// Value of one hex digit in either case, or -1.
int hex_value(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = static_cast<uint8_t>(c | 0x20);  // ASCII lower case; other bytes stay non-hex
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

std::string loop_probe_name(uint64_t token, std::string_view zone) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string name(kLoopTokenDigits, '0');
  for (size_t i = 0; i < kLoopTokenDigits; ++i) {
    name[kLoopTokenDigits - 1 - i] = kDigits[(token >> (4 * i)) & 0xF];
  }
  name += '.';
  name += kLoopProbeLabel;
  name += '.';
  if (zone != ".") name += zone;
  return name;
}

bool parse_loop_probe_name(const uint8_t* name, size_t length, uint64_t* token) {
  constexpr size_t kLabelStart = 1 + kLoopTokenDigits;  // the second label's length octet
  // Both labels and the final zero octet at least.
  if (length < kLabelStart + 1 + kLoopProbeLabel.size() + 1 || name[0] != kLoopTokenDigits) return false;
  if (name[kLabelStart] != kLoopProbeLabel.size()) return false;
  for (size_t i = 0; i < kLoopProbeLabel.size(); ++i) {
    uint8_t c = name[kLabelStart + 1 + i];
    if (c >= 'A' && c <= 'Z') c = static_cast<uint8_t>(c + 32);
    if (c != static_cast<uint8_t>(kLoopProbeLabel[i])) return false;
  }
  uint64_t value = 0;
  for (size_t i = 0; i < kLoopTokenDigits; ++i) {
    const int digit = hex_value(name[1 + i]);
    if (digit < 0) return false;
    value = (value << 4) | static_cast<uint64_t>(digit);
  }
  *token = value;
  return true;
}

void LoopProbeRegistry::add(uint64_t token) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Entry& entry : entries_) {
    if (entry.token == token) {
      entry.arrived = false;
      return;
    }
  }
  entries_.push_back({token, false});
}

void LoopProbeRegistry::remove(uint64_t token) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::erase_if(entries_, [token](const Entry& entry) { return entry.token == token; });
}

bool LoopProbeRegistry::arrived(uint64_t token) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const Entry& entry : entries_) {
    if (entry.token == token) return entry.arrived;
  }
  return false;
}

size_t LoopProbeRegistry::outstanding() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_.size();
}

bool LoopProbeRegistry::note_arrival(uint64_t token) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Entry& entry : entries_) {
    if (entry.token == token) {
      entry.arrived = true;
      return true;
    }
  }
  return false;
}

}  // namespace hubdns
