// The Azure Instance Metadata Service (IMDS) documents hubdns reads, as pure functions:
// the request paths, parsing of /metadata/instance (who this VM is) and
// /metadata/scheduledevents (maintenance coming to it), which events call for a drain, and
// the body that approves an event (StartRequests). The HTTP side is in
// probe/imds_client.h. Pure; any thread. Parsing goes through the bounded JSON reader
// (probe/json_reader.h) and is fuzzed by tests/fuzz/fuzz_imds_json.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hubdns {

inline constexpr std::string_view kImdsInstancePath = "/metadata/instance?api-version=2021-02-01";
inline constexpr std::string_view kImdsScheduledEventsPath = "/metadata/scheduledevents?api-version=2020-07-01";
// Bodies larger than this are refused (a real instance document is a few KiB).
inline constexpr size_t kImdsMaxBodyBytes = 256 * 1024;

// compute.* of the instance document; "" where the document has no such string.
struct InstanceMetadata {
  std::string name;            // compute.name: what Scheduled Events list in Resources
  std::string vm_scale_set;    // compute.vmScaleSetName
  std::string zone;            // compute.zone
  std::string location;        // compute.location
  std::string vm_id;           // compute.vmId
};

// Parses /metadata/instance. Requires an object with a "compute" object whose "name" is a
// non-empty string; false and *error otherwise.
bool parse_instance_metadata(std::string_view body, InstanceMetadata* out, std::string* error);

struct ScheduledEvent {
  std::string id;             // EventId
  std::string type;           // EventType: Reboot, Redeploy, Freeze, Preempt, Terminate
  std::string resource_type;  // ResourceType: VirtualMachine
  std::vector<std::string> resources;  // Resources: names of the VMs it affects
  std::string status;         // EventStatus: Scheduled, Started
  std::string not_before;     // NotBefore: RFC 1123 time, or "" once started
  std::string source;         // EventSource: Platform, User
  int64_t duration_seconds = -1;  // DurationInSeconds; -1 when absent or unknown
};

struct ScheduledEventsDocument {
  int64_t incarnation = 0;  // DocumentIncarnation
  std::vector<ScheduledEvent> events;
};

// Parses /metadata/scheduledevents. Requires an object whose "Events" is an array (an
// absent "Events" is an empty list); an event without a string EventId is an error, other
// missing fields stay empty.
bool parse_scheduled_events(std::string_view body, ScheduledEventsDocument* out, std::string* error);

// EventType is one of the kinds that take this VM away: Reboot, Redeploy, Freeze, Preempt,
// Terminate (case-insensitive).
bool event_type_requires_drain(std::string_view type);

// The event's Resources list `instance_name` (case-insensitive, as Azure names are).
bool event_names_instance(const ScheduledEvent& event, std::string_view instance_name);

// {"StartRequests":[{"EventId":"<id>"}]}
std::string start_requests_body(std::string_view event_id);

}  // namespace hubdns
