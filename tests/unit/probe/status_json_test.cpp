// Unit tests for the GET /status document (probe/status_json.h).
#include <doctest/doctest.h>

#include <string>

#include "probe/status_json.h"

using namespace hubdns;

TEST_CASE("an empty view renders every key, with nulls where nothing is known") {
  StatusView view;
  view.version = "0.1.0";
  view.config_source = "<default>";
  view.config_generation = 1;
  CHECK(render_status_json(view) ==
        R"j({"version":"0.1.0","uptime_seconds":0,"ready":false,"reasons":[],"draining":false,)j"
        R"j("listeners_bound":false,"config":{"source":"<default>","generation":1,)j"
        R"j("reloads":{"ok":0,"failed":0,"last_ok":true,"last_error":null,"retiring_workers":0}},)j"
        R"j("health_check":{"interval_ms":0,"timeout_ms":0,"rise":0,"fall":0,"first_round_done":false},)j"
        R"j("workers":[],"listeners":{"dns":[],"health":[],"tcp_probe":{"addresses":[],"listening":false,"accepted":0}},)j"
        R"j("self_check":[],"zones":[],"cache":{"enabled":false},)j"
        R"j("instance":{"state":"off","name":null,"vm_scale_set":null,"zone":null,"location":null},)j"
        R"j("scheduled_events":{"mode":"off","polling":false,"last_result":null,"consecutive_failures":0,)j"
        R"j("polls_ok":0,"events":[]}})j"
        "\n");
}

TEST_CASE("the cache's figures when it is on") {
  StatusView view;
  view.cache = {.enabled = true, .max_entries = 100, .entries = 3, .bytes = 4096, .hits = 10, .misses = 4,
                .stale_hits = 1, .insertions = 4, .evictions = 0};
  std::string json = render_status_json(view);
  CHECK(json.find(R"j("cache":{"enabled":true,"max_entries":100,"entries":3,"bytes":4096,"hits":10,"misses":4,)j"
                  R"j("stale_hits":1,"insertions":4,"evictions":0})j") != std::string::npos);
}

TEST_CASE("instance metadata and scheduled events") {
  StatusView view;
  view.instance = {"known", "dns_2", "dns", "1", "westeurope"};
  view.scheduled_events.mode = "on";
  view.scheduled_events.polling = true;
  view.scheduled_events.last_result = "ok";
  view.scheduled_events.polls_ok = 12;
  view.scheduled_events.events.push_back(
      {"E1", "Reboot", "Scheduled", "Mon, 19 Sep 2016 18:29:47 GMT", {"dns_2"}, true, true, "pending"});
  const std::string json = render_status_json(view);
  CHECK(json.find(R"j("instance":{"state":"known","name":"dns_2","vm_scale_set":"dns","zone":"1","location":"westeurope"})j") !=
        std::string::npos);
  CHECK(json.find(R"j("scheduled_events":{"mode":"on","polling":true,"last_result":"ok","consecutive_failures":0,)j"
                  R"j("polls_ok":12,"events":[{"id":"E1","type":"Reboot","status":"Scheduled",)j"
                  R"j("not_before":"Mon, 19 Sep 2016 18:29:47 GMT","resources":["dns_2"],"for_this_instance":true,)j"
                  R"j("drain_requested":true,"ack":"pending"}]}})j") != std::string::npos);
}

TEST_CASE("zones, upstreams, self-checks and workers") {
  StatusView view;
  view.version = "0.1.0";
  view.uptime_seconds = 1.5;
  view.reasons = {"zone corp.contoso.com: no upstream up (192.168.1.10:53: timeout x3)"};
  view.workers = {{0, true, 12}, {1, false, -1}};
  view.self_checks.push_back({"127.0.0.1:53/udp", SelfCheckState::passing, 0, "", 250, "worker 1", 4, 0});
  ZoneStatusView zone;
  zone.zone = "corp.contoso.com";
  zone.critical = false;
  zone.policy = "fastest";
  zone.probe_name = "corp.contoso.com.";
  zone.probe_type = "SOA";
  UpstreamStatusView upstream;
  upstream.address = "192.168.1.10:53";
  upstream.status = UpstreamStatus::down;
  upstream.status_age_ms = 4000;
  upstream.consecutive_failures = 3;
  upstream.last_error = "timeout";
  upstream.last_error_age_ms = 100;
  upstream.probe_results[static_cast<size_t>(ProbeResult::timeout)] = 3;
  upstream.probe_results[static_cast<size_t>(ProbeResult::ok)] = 7;
  upstream.probes_in_flight = 1;
  upstream.answers = 10;
  upstream.average_latency_us = 1234;
  zone.upstreams.push_back(upstream);
  view.zones.push_back(zone);

  const std::string json = render_status_json(view);
  CHECK(json.find(R"j("uptime_seconds":1.5)j") != std::string::npos);
  CHECK(json.find(R"j("reasons":["zone corp.contoso.com: no upstream up (192.168.1.10:53: timeout x3)"])j") !=
        std::string::npos);
  CHECK(json.find(R"j("workers":[{"index":0,"alive":true,"heartbeat_age_ms":12},{"index":1,"alive":false,"heartbeat_age_ms":null}])j") !=
        std::string::npos);
  CHECK(json.find(R"j({"listener":"127.0.0.1:53/udp","state":"passing","consecutive_failures":0,"last_error":null,)j"
                  R"j("last_latency_ms":0.25,"answered_by":"worker 1","checks":4,"failures":0})j") != std::string::npos);
  CHECK(json.find(R"j("zone":"corp.contoso.com","critical":false,"policy":"fastest",)j"
                  R"j("probe":{"name":"corp.contoso.com.","type":"SOA"},"upstreams_up":0)j") != std::string::npos);
  CHECK(json.find(R"j({"address":"192.168.1.10:53","status":"down","status_age_ms":4000,"consecutive_successes":0,)j"
                  R"j("consecutive_failures":3,"last_error":"timeout","last_error_age_ms":100,"last_probe_latency_ms":null,)j"
                  R"j("probes":{"sent":11,"in_flight":1,"ok":7,"timeout":3,"servfail":0,"refused":0,"formerr":0,)j"
                  R"j("other_rcode":0,"bad_answer":0,"network_error":0,"skipped_busy":0},)j"
                  R"j("traffic":{"answers":10,"failures":0,"average_latency_ms":1.234},"loop_check":null})j") !=
        std::string::npos);

  view.zones[0].upstreams[0].status = UpstreamStatus::loop;
  view.zones[0].upstreams[0].loop_check = "loop";
  view.zones[0].upstreams[0].loop_check_result = "came back to this instance";
  view.zones[0].upstreams[0].loop_probes = 2;
  const std::string looped = render_status_json(view);
  CHECK(looped.find(R"j({"address":"192.168.1.10:53","status":"loop",)j") != std::string::npos);
  CHECK(looped.find(R"j("loop_check":{"state":"loop","last_result":"came back to this instance","probes":2}})j") !=
        std::string::npos);
}

TEST_CASE("text from the configuration is escaped") {
  StatusView view;
  view.config_source = "/etc/hub\"dns\n.toml";
  const std::string json = render_status_json(view);
  CHECK(json.find(R"j("source":"/etc/hub\"dns\n.toml")j") != std::string::npos);
}
