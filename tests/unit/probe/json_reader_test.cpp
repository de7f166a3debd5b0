// The bounded JSON reader (probe/json_reader.h) and the IMDS documents read with it
// (probe/azure_metadata.h).
#include <doctest/doctest.h>

#include <string>

#include "probe/azure_metadata.h"
#include "probe/json_reader.h"

using namespace hubdns;

namespace {

JsonValue parse_ok(std::string_view text) {
  JsonValue value;
  std::string error;
  const bool ok = parse_json(text, &value, &error);
  REQUIRE_MESSAGE(ok, (std::string(text) + ": " + error));
  return value;
}

std::string parse_error(std::string_view text, const JsonLimits& limits = {}) {
  JsonValue value;
  std::string error;
  const bool ok = parse_json(text, &value, &error, limits);
  CHECK_MESSAGE(!ok, (std::string(text)));
  return error;
}

}  // namespace

TEST_CASE("JSON reader: values of every type") {
  JsonValue doc = parse_ok(R"( {"a": [1, -2.5, 3e2, 0, -0], "b": {"c": "d"}, "t": true, "f": false, "n": null} )");
  REQUIRE(doc.is_object());
  const JsonValue* a = doc.find("a");
  REQUIRE(a != nullptr);
  REQUIRE(a->items().size() == 5);
  CHECK(a->items()[0].as_number() == 1.0);
  CHECK(a->items()[1].as_number() == -2.5);
  CHECK(a->items()[2].as_number() == 300.0);
  CHECK(doc.find("b")->string_member("c") == "d");
  CHECK(doc.find("t")->as_bool());
  CHECK(doc.find("f")->is_bool());
  CHECK(!doc.find("f")->as_bool());
  CHECK(doc.find("n")->is_null());
  CHECK(doc.find("missing") == nullptr);
  // Accessors of another type give empty defaults.
  CHECK(doc.find("t")->as_string().empty());
  CHECK(doc.find("b")->items().empty());
  CHECK(doc.string_member("a", "fallback") == "fallback");
  CHECK(parse_ok("[]").items().empty());
  CHECK(parse_ok("{}").members().empty());
  CHECK(parse_ok("\"x\"").as_string() == "x");
}

TEST_CASE("JSON reader: string escapes and UTF-8") {
  CHECK(parse_ok(R"("a\"b\\c\/d\b\f\n\r\t")").as_string() == "a\"b\\c/d\b\f\n\r\t");
  CHECK(parse_ok(R"("\u00e9\u20AC")").as_string() == "\xC3\xA9\xE2\x82\xAC");
  CHECK(parse_ok(R"("\ud83d\ude00")").as_string() == "\xF0\x9F\x98\x80");  // surrogate pair
  CHECK(parse_ok(R"("\ud83d")").as_string() == "\xEF\xBF\xBD");             // lone high half
  CHECK(parse_ok(R"("\ude00x")").as_string() == "\xEF\xBF\xBDx");           // lone low half
  CHECK(parse_ok(R"("\ud83d\u0041")").as_string() == "\xEF\xBF\xBD" "A");   // not a pair
  CHECK(parse_ok("\"caf\xC3\xA9\"").as_string() == "caf\xC3\xA9");
  parse_error("\"\xC3\"");          // truncated sequence
  parse_error("\"\xC0\xAF\"");      // overlong
  parse_error("\"\xED\xA0\x80\"");  // encoded surrogate
  parse_error("\"\xFF\"");
  parse_error("\"a\nb\"");          // raw control character
  parse_error(R"("\x")");
  parse_error(R"("\u12")");
  parse_error(R"("\u12G4")");
  parse_error("\"unterminated");
}

TEST_CASE("JSON reader: numbers follow the grammar") {
  for (const char* bad : {"01", "+1", ".5", "1.", "1e", "1e+", "-", "--1", "0x10", "1.5.2", "NaN", "Infinity", "1e400"}) {
    parse_error(bad);
  }
  CHECK(parse_ok("1e-400").as_number() == 0.0);
  CHECK(parse_ok("-0.000001e-400").as_number() == 0.0);
  CHECK(parse_ok("12345678901234567890").as_number() == 12345678901234567890.0);
  CHECK(parse_ok("1.7976931348623157e308").as_number() > 1e308);
}

TEST_CASE("JSON reader: structure errors name the offset") {
  CHECK(parse_error("") == "offset 0: unexpected end of input");
  CHECK(parse_error("{\"a\" 1}") == "offset 5: expected ':'");
  CHECK(parse_error("[1 2]") == "offset 3: expected ',' or ']'");
  parse_error("{\"a\":1,}");
  parse_error("[1,]");
  parse_error("{1:2}");
  parse_error("[1] x");
  parse_error("tru");
  parse_error("nul");
  parse_error("[");
  parse_error("{\"a\":");
}

TEST_CASE("JSON reader: limits on size, depth and count") {
  JsonLimits limits;
  limits.max_depth = 3;
  CHECK(parse_error("[[[[1]]]]", limits).find("nesting too deep") != std::string::npos);
  JsonValue value;
  std::string error;
  CHECK(parse_json("[[[1]]]", &value, &error, limits));
  CHECK(parse_json("{\"a\":{\"b\":[1]}}", &value, &error, limits));
  // Deep input is refused before the stack is at risk.
  std::string deep(100000, '[');
  CHECK(parse_error(deep).find("nesting too deep") != std::string::npos);
  limits = {};
  limits.max_bytes = 10;
  CHECK(parse_error("\"0123456789\"", limits).find("exceeds the limit") != std::string::npos);
  limits = {};
  limits.max_values = 4;
  CHECK(parse_json("[1,2,3]", &value, &error, limits));
  CHECK(parse_error("[1,2,3,4]", limits).find("too many values") != std::string::npos);
}

TEST_CASE("JSON reader: round trip through JsonWriter") {
  const char* text = R"({"a":[1,-2.5,300,true,false,null],"b":{"c":"d\u00e9\n"},"e":"\ud83d\ude00"})";
  JsonValue first = parse_ok(text);
  JsonValue second = parse_ok(to_json_text(first));
  CHECK(first == second);
  CHECK(to_json_text(parse_ok("[1e-400, -0]")) == "[0,-0]");
}

TEST_CASE("IMDS instance document") {
  const char* document = R"({"compute": {"azEnvironment": "AzurePublicCloud", "location": "westeurope",
      "name": "dns_2", "vmScaleSetName": "dns", "zone": "1", "vmId": "02aab8a4", "tagsList": []},
      "network": {"interface": []}})";
  InstanceMetadata metadata;
  std::string error;
  REQUIRE(parse_instance_metadata(document, &metadata, &error));
  CHECK(metadata.name == "dns_2");
  CHECK(metadata.vm_scale_set == "dns");
  CHECK(metadata.zone == "1");
  CHECK(metadata.location == "westeurope");
  CHECK(metadata.vm_id == "02aab8a4");
  // A standalone VM: no scale set, no zone.
  REQUIRE(parse_instance_metadata(R"({"compute": {"name": "vm1", "vmScaleSetName": "", "zone": ""}})", &metadata, &error));
  CHECK(metadata.name == "vm1");
  CHECK(metadata.vm_scale_set.empty());
  CHECK_FALSE(parse_instance_metadata(R"({"compute": {"name": ""}})", &metadata, &error));
  CHECK_FALSE(parse_instance_metadata(R"({"compute": {"name": 5}})", &metadata, &error));
  CHECK_FALSE(parse_instance_metadata(R"({"compute": []})", &metadata, &error));
  CHECK_FALSE(parse_instance_metadata(R"([])", &metadata, &error));
  CHECK_FALSE(parse_instance_metadata("<html>", &metadata, &error));
}

TEST_CASE("IMDS scheduled events document") {
  const char* document = R"({"DocumentIncarnation": 7, "Events": [
      {"EventId": "602d9444-d2cd-49c7-8624-8643e7171297", "EventType": "Reboot", "ResourceType": "VirtualMachine",
       "Resources": ["dns_2", "dns_3"], "EventStatus": "Scheduled", "NotBefore": "Mon, 19 Sep 2016 18:29:47 GMT",
       "Description": "", "EventSource": "Platform", "DurationInSeconds": 5},
      {"EventId": "E2", "EventType": "Freeze", "Resources": ["other"], "EventStatus": "Started", "NotBefore": "",
       "DurationInSeconds": -1}]})";
  ScheduledEventsDocument parsed;
  std::string error;
  REQUIRE_MESSAGE(parse_scheduled_events(document, &parsed, &error), error);
  CHECK(parsed.incarnation == 7);
  REQUIRE(parsed.events.size() == 2);
  const ScheduledEvent& reboot = parsed.events[0];
  CHECK(reboot.id == "602d9444-d2cd-49c7-8624-8643e7171297");
  CHECK(reboot.type == "Reboot");
  CHECK(reboot.status == "Scheduled");
  CHECK(reboot.not_before == "Mon, 19 Sep 2016 18:29:47 GMT");
  CHECK(reboot.duration_seconds == 5);
  CHECK(event_names_instance(reboot, "dns_3"));
  CHECK(event_names_instance(reboot, "DNS_2"));  // Azure names are case-insensitive
  CHECK_FALSE(event_names_instance(reboot, "dns_4"));
  CHECK_FALSE(event_names_instance(reboot, ""));
  CHECK(parsed.events[1].duration_seconds == -1);

  REQUIRE(parse_scheduled_events(R"({"DocumentIncarnation": 0, "Events": []})", &parsed, &error));
  CHECK(parsed.events.empty());
  REQUIRE(parse_scheduled_events(R"({})", &parsed, &error));
  CHECK_FALSE(parse_scheduled_events(R"({"Events": {}})", &parsed, &error));
  CHECK_FALSE(parse_scheduled_events(R"({"Events": [{"EventType": "Reboot"}]})", &parsed, &error));
  CHECK_FALSE(parse_scheduled_events(R"({"Events": [1]})", &parsed, &error));
  CHECK_FALSE(parse_scheduled_events(R"([])", &parsed, &error));
}

TEST_CASE("IMDS event kinds that drain, and the approval body") {
  for (const char* type : {"Reboot", "Redeploy", "Freeze", "Preempt", "Terminate", "reboot"}) {
    CHECK_MESSAGE(event_type_requires_drain(type), type);
  }
  CHECK_FALSE(event_type_requires_drain("LiveMigration"));
  CHECK_FALSE(event_type_requires_drain(""));
  CHECK(start_requests_body("602d9444-d2cd") == R"({"StartRequests":[{"EventId":"602d9444-d2cd"}]})");
  CHECK(start_requests_body("a\"b") == R"({"StartRequests":[{"EventId":"a\"b"}]})");
}
