#include "probe/azure_metadata.h"

#include <cmath>

#include "probe/json_reader.h"
#include "probe/json_writer.h"

namespace hubdns {
namespace {

JsonLimits imds_limits() {
  JsonLimits limits;
  limits.max_bytes = kImdsMaxBodyBytes;
  limits.max_depth = 16;
  limits.max_values = 20000;
  return limits;
}

bool equal_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

}  // namespace

bool parse_instance_metadata(std::string_view body, InstanceMetadata* out, std::string* error) {
  JsonValue document;
  if (!parse_json(body, &document, error, imds_limits())) return false;
  const JsonValue* compute = document.find("compute");
  if (compute == nullptr || !compute->is_object()) {
    *error = "no \"compute\" object";
    return false;
  }
  InstanceMetadata metadata;
  metadata.name = compute->string_member("name");
  if (metadata.name.empty()) {
    *error = "no \"compute.name\"";
    return false;
  }
  metadata.vm_scale_set = compute->string_member("vmScaleSetName");
  metadata.zone = compute->string_member("zone");
  metadata.location = compute->string_member("location");
  metadata.vm_id = compute->string_member("vmId");
  *out = std::move(metadata);
  return true;
}

bool parse_scheduled_events(std::string_view body, ScheduledEventsDocument* out, std::string* error) {
  JsonValue document;
  if (!parse_json(body, &document, error, imds_limits())) return false;
  if (!document.is_object()) {
    *error = "not a JSON object";
    return false;
  }
  ScheduledEventsDocument result;
  if (const JsonValue* incarnation = document.find("DocumentIncarnation");
      incarnation != nullptr && incarnation->is_number()) {
    const double value = incarnation->as_number();
    if (value >= 0 && value < 9.0e15) result.incarnation = static_cast<int64_t>(value);
  }
  const JsonValue* events = document.find("Events");
  if (events != nullptr && !events->is_array()) {
    *error = "\"Events\" is not an array";
    return false;
  }
  if (events != nullptr) {
    for (const JsonValue& item : events->items()) {
      if (!item.is_object()) {
        *error = "an event is not an object";
        return false;
      }
      ScheduledEvent event;
      event.id = item.string_member("EventId");
      if (event.id.empty()) {
        *error = "an event has no \"EventId\"";
        return false;
      }
      event.type = item.string_member("EventType");
      event.resource_type = item.string_member("ResourceType");
      event.status = item.string_member("EventStatus");
      event.not_before = item.string_member("NotBefore");
      event.source = item.string_member("EventSource");
      if (const JsonValue* resources = item.find("Resources"); resources != nullptr) {
        for (const JsonValue& resource : resources->items()) {
          if (resource.is_string()) event.resources.push_back(resource.as_string());
        }
      }
      if (const JsonValue* duration = item.find("DurationInSeconds"); duration != nullptr && duration->is_number()) {
        const double value = duration->as_number();
        if (value >= 0 && value < 9.0e15) event.duration_seconds = static_cast<int64_t>(std::floor(value));
      }
      result.events.push_back(std::move(event));
    }
  }
  *out = std::move(result);
  return true;
}

bool event_type_requires_drain(std::string_view type) {
  for (std::string_view kind : {"Reboot", "Redeploy", "Freeze", "Preempt", "Terminate"}) {
    if (equal_ignoring_case(type, kind)) return true;
  }
  return false;
}

bool event_names_instance(const ScheduledEvent& event, std::string_view instance_name) {
  if (instance_name.empty()) return false;
  for (const std::string& resource : event.resources) {
    if (equal_ignoring_case(resource, instance_name)) return true;
  }
  return false;
}

std::string start_requests_body(std::string_view event_id) {
  JsonWriter json;
  json.begin_object();
  json.key("StartRequests").begin_array();
  json.begin_object();
  json.member("EventId", event_id);
  json.end_object();
  json.end_array();
  json.end_object();
  return json.str();
}

}  // namespace hubdns
