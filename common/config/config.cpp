#include "common/config/config.h"

namespace hubdns {

// These spellings are the ones the configuration file uses, so /status and logs show what
// an operator would write.
const char* to_string(UpstreamPolicy policy) {
  switch (policy) {
    case UpstreamPolicy::fastest: return "fastest";
    case UpstreamPolicy::sequential: return "sequential";
    case UpstreamPolicy::round_robin: return "round_robin";
    case UpstreamPolicy::random: return "random";
  }
  return "unknown";
}

const char* to_string(ScheduledEventsMode mode) {
  switch (mode) {
    case ScheduledEventsMode::off: return "off";
    case ScheduledEventsMode::automatic: return "auto";
    case ScheduledEventsMode::on: return "on";
  }
  return "unknown";
}

}  // namespace hubdns
