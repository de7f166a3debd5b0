// libFuzzer target: the bounded JSON reader (probe/json_reader.h) and the instance metadata
// documents read with it (probe/azure_metadata.h), over arbitrary bytes as a broken or
// hostile metadata endpoint could answer. Properties checked: a document that parses
// serializes (JsonWriter) to text that parses back to the same value, and the serialized
// text is no larger than a small multiple of the input; the IMDS readers never crash and
// what they return is consistent with what they were given.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "probe/azure_metadata.h"
#include "probe/json_reader.h"

namespace {

void check(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  hubdns::JsonLimits limits;
  limits.max_depth = 16;
  hubdns::JsonValue value;
  std::string error;
  if (hubdns::parse_json(text, &value, &error, limits)) {
    check(error.empty());
    const std::string again = hubdns::to_json_text(value);
    // Escapes can grow a string six-fold (a control byte becomes \u00XX).
    check(again.size() <= 6 * size + 16);
    hubdns::JsonValue reparsed;
    std::string reparse_error;
    check(hubdns::parse_json(again, &reparsed, &reparse_error, limits));
    check(reparsed == value);
  } else {
    check(!error.empty());
  }

  hubdns::InstanceMetadata instance;
  if (hubdns::parse_instance_metadata(text, &instance, &error)) check(!instance.name.empty());

  hubdns::ScheduledEventsDocument events;
  if (hubdns::parse_scheduled_events(text, &events, &error)) {
    for (const hubdns::ScheduledEvent& event : events.events) {
      check(!event.id.empty());
      (void)hubdns::event_type_requires_drain(event.type);
      for (const std::string& resource : event.resources) {
        if (!resource.empty()) check(hubdns::event_names_instance(event, resource));
      }
      const std::string body = hubdns::start_requests_body(event.id);
      hubdns::JsonValue approval;
      check(hubdns::parse_json(body, &approval, &error));
      check(approval.find("StartRequests")->items().at(0).string_member("EventId") == event.id);
    }
  }
  return 0;
}
