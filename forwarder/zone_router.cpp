#include "forwarder/zone_router.h"

#include <cctype>

namespace hubdns {

std::string zone_to_wire(std::string_view presentation) {
  std::string wire;
  size_t start = 0;
  while (start < presentation.size()) {
    size_t dot = presentation.find('.', start);
    if (dot == std::string_view::npos) dot = presentation.size();
    size_t label_length = dot - start;
    if (label_length > 0) {
      wire.push_back(static_cast<char>(label_length));
      for (size_t i = start; i < dot; ++i) {
        wire.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(presentation[i]))));
      }
    }
    start = dot + 1;
  }
  wire.push_back('\0');
  return wire;
}

ZoneRouter::ZoneRouter(const std::vector<ForwardRule>& rules) {
  for (size_t i = 0; i < rules.size(); ++i) zones_.emplace(zone_to_wire(rules[i].zone), i);
}

size_t ZoneRouter::route(const uint8_t* wire_name, size_t length) const {
  // Try each suffix that starts on a label boundary, longest first.
  size_t offset = 0;
  while (offset < length) {
    std::string_view suffix(reinterpret_cast<const char*>(wire_name + offset), length - offset);
    auto it = zones_.find(suffix);
    if (it != zones_.end()) return it->second;
    uint8_t label_length = wire_name[offset];
    if (label_length == 0) break;
    offset += 1u + label_length;
  }
  return kNoRule;
}

}  // namespace hubdns
