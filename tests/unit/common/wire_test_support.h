// Helpers shared by the unit tests that build DNS wire messages by hand.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hubdns::test {

// "www.example.com" -> 3www7example3com0 (no compression); "" or "." -> the root.
inline std::vector<uint8_t> wire_name(const std::string& name) {
  std::vector<uint8_t> out;
  size_t start = 0;
  while (start < name.size()) {
    size_t dot = name.find('.', start);
    if (dot == std::string::npos) dot = name.size();
    if (dot > start) {
      out.push_back(static_cast<uint8_t>(dot - start));
      out.insert(out.end(), name.begin() + static_cast<long>(start), name.begin() + static_cast<long>(dot));
    }
    start = dot + 1;
  }
  out.push_back(0);
  return out;
}

}  // namespace hubdns::test
