// ZoneRouter maps a query name to the forward rule with the longest matching zone suffix
// (case-insensitive, on label boundaries). Lookup hashes one suffix per label of the query
// name, so its cost does not depend on the number of rules. Built once per configuration
// snapshot; immutable afterwards, so any thread may read it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/config/config.h"

namespace hubdns {

class ZoneRouter {
 public:
  static constexpr size_t kNoRule = static_cast<size_t>(-1);

  explicit ZoneRouter(const std::vector<ForwardRule>& rules);

  // wire_name: a lower-cased, uncompressed wire-format name. Returns the index of the rule
  // in the configuration's forward list, or kNoRule when no zone (not even ".") matches.
  size_t route(const uint8_t* wire_name, size_t length) const;

 private:
  struct StringViewHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, size_t, StringViewHash, std::equal_to<>> zones_;
};

// "corp.contoso.com." or "corp.contoso.com" -> lower-case wire format; "." -> "\0".
std::string zone_to_wire(std::string_view presentation);

}  // namespace hubdns
