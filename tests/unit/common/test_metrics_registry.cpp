// The /metrics registry: exact exposition text (format 0.0.4), registration checks, the
// histogram, and the mapping of every ForwarderCounters field.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/metrics/forwarder_metrics.h"
#include "common/metrics/registry.h"

namespace hubdns {
namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream stream(text);
  for (std::string line; std::getline(stream, line);) lines.push_back(line);
  return lines;
}

bool has_line(const std::string& text, const std::string& line) {
  for (const std::string& candidate : lines_of(text)) {
    if (candidate == line) return true;
  }
  return false;
}

// The parser and linter Prometheus itself ships (Debian package `prometheus`), when this
// machine has it: HUBDNS_PROMTOOL names it, or it is on PATH. Empty when neither.
std::string promtool_command() {
  if (const char* configured = std::getenv("HUBDNS_PROMTOOL"); configured != nullptr && *configured != '\0') {
    return configured;
  }
  if (std::system("command -v promtool >/dev/null 2>&1") == 0) return "promtool";
  return {};
}

// Feeds `text` to `promtool check metrics`; its findings go to the test's output.
int promtool_check(const std::string& promtool, const std::string& text) {
  FILE* pipe = popen(("'" + promtool + "' check metrics").c_str(), "w");
  REQUIRE(pipe != nullptr);
  std::fwrite(text.data(), 1, text.size(), pipe);
  return pclose(pipe);
}

// A small registry with one family of each shape, registered out of order on purpose.
struct SampleRegistry {
  std::atomic<uint64_t> events{7};
  Histogram latency{{1000, 5000, 250000}, 1'000'000};  // microseconds, exposed as seconds
  MetricsRegistry registry;

  SampleRegistry() {
    registry.add_family({.name = "hubdns_test_requests_total",
                         .type = MetricType::counter,
                         .help = "Requests by transport and zone.",
                         .label_names = {"proto", "zone"}},
                        [](MetricSink& sink) {
                          sink.add({"udp", "corp.contoso.com"}, uint64_t{18446744073709551615u});
                          sink.add({"tcp", "back\\slash \"quoted\"\nnewline"}, 3u);
                        });
    registry.add_family({.name = "hubdns_test_latency_seconds",
                         .type = MetricType::histogram,
                         .help = "Latency.",
                         .label_names = {"upstream"}},
                        [this](MetricSink& sink) { sink.add({"10.0.0.1:53"}, latency); });
    registry.add_family({.name = "hubdns_test_events_total",
                         .type = MetricType::counter,
                         .help = "Help with a backslash \\ and a\nnewline; \"quotes\" stay."},
                        [this](MetricSink& sink) { sink.add({}, events); });
    registry.add_family({.name = "hubdns_test_inflight",
                         .type = MetricType::gauge,
                         .help = "A gauge with a signed and a fractional sample.",
                         .label_names = {"worker"}},
                        [](MetricSink& sink) {
                          sink.add({"0"}, -2);
                          sink.add({"1"}, 0.25);
                        });
    latency.observe(500);
    latency.observe(1000);  // on a bound: counts in that bucket (le = less or equal)
    latency.observe(3000);
    latency.observe(300000);
  }
};

TEST_CASE("MetricsRegistry: exact exposition text, families sorted by name") {
  SampleRegistry sample;
  const std::string expected =
      "# HELP hubdns_test_events_total Help with a backslash \\\\ and a\\nnewline; \"quotes\" stay.\n"
      "# TYPE hubdns_test_events_total counter\n"
      "hubdns_test_events_total 7\n"
      "# HELP hubdns_test_inflight A gauge with a signed and a fractional sample.\n"
      "# TYPE hubdns_test_inflight gauge\n"
      "hubdns_test_inflight{worker=\"0\"} -2\n"
      "hubdns_test_inflight{worker=\"1\"} 0.25\n"
      "# HELP hubdns_test_latency_seconds Latency.\n"
      "# TYPE hubdns_test_latency_seconds histogram\n"
      "hubdns_test_latency_seconds_bucket{upstream=\"10.0.0.1:53\",le=\"0.001\"} 2\n"
      "hubdns_test_latency_seconds_bucket{upstream=\"10.0.0.1:53\",le=\"0.005\"} 3\n"
      "hubdns_test_latency_seconds_bucket{upstream=\"10.0.0.1:53\",le=\"0.25\"} 3\n"
      "hubdns_test_latency_seconds_bucket{upstream=\"10.0.0.1:53\",le=\"+Inf\"} 4\n"
      "hubdns_test_latency_seconds_sum{upstream=\"10.0.0.1:53\"} 0.3045\n"
      "hubdns_test_latency_seconds_count{upstream=\"10.0.0.1:53\"} 4\n"
      "# HELP hubdns_test_requests_total Requests by transport and zone.\n"
      "# TYPE hubdns_test_requests_total counter\n"
      "hubdns_test_requests_total{proto=\"udp\",zone=\"corp.contoso.com\"} 18446744073709551615\n"
      "hubdns_test_requests_total{proto=\"tcp\",zone=\"back\\\\slash \\\"quoted\\\"\\nnewline\"} 3\n";
  CHECK(sample.registry.render() == expected);
  CHECK(sample.registry.family_count() == 4);

  // Collectors read at scrape time: a later increment shows in the next render.
  sample.events.fetch_add(1);
  CHECK(has_line(sample.registry.render(), "hubdns_test_events_total 8"));
}

TEST_CASE("MetricsRegistry: an empty registry renders nothing") {
  MetricsRegistry registry;
  CHECK(registry.render().empty());
}

TEST_CASE("format_metric_value: integers plainly, fractions shortest, special values by name") {
  CHECK(format_metric_value(0.0) == "0");
  CHECK(format_metric_value(-0.0) == "0");
  CHECK(format_metric_value(42.0) == "42");
  CHECK(format_metric_value(-3.0) == "-3");
  CHECK(format_metric_value(1e6) == "1000000");
  CHECK(format_metric_value(9007199254740991.0) == "9007199254740991");
  CHECK(format_metric_value(0.5) == "0.5");
  CHECK(format_metric_value(0.1) == "0.1");
  CHECK(format_metric_value(-1.25) == "-1.25");
  CHECK(format_metric_value(1e-7) == "1e-07");
  CHECK(format_metric_value(1e300) == "1e+300");
  CHECK(format_metric_value(std::numeric_limits<double>::quiet_NaN()) == "NaN");
  CHECK(format_metric_value(std::numeric_limits<double>::infinity()) == "+Inf");
  CHECK(format_metric_value(-std::numeric_limits<double>::infinity()) == "-Inf");
}

TEST_CASE("escaping: help escapes backslash and newline, label values also the double quote") {
  CHECK(escape_metric_help("a\\b\nc\"d") == "a\\\\b\\nc\"d");
  CHECK(escape_label_value("a\\b\nc\"d") == "a\\\\b\\nc\\\"d");
  CHECK(escape_label_value("plain.example.") == "plain.example.");
  CHECK(escape_label_value("") == "");
}

TEST_CASE("MetricsRegistry::registration_error: names, labels, help, duplicates") {
  MetricsRegistry registry;
  auto error = [&](MetricFamilyInfo info) { return registry.registration_error(info); };
  auto counter = [](std::string name, std::vector<std::string> labels = {}) {
    return MetricFamilyInfo{.name = std::move(name), .type = MetricType::counter, .help = "h", .label_names = std::move(labels)};
  };

  CHECK(error(counter("hubdns_ok_total", {"proto", "_x", "reason2"})) == "");
  CHECK(error({.name = "hubdns_gauge", .type = MetricType::gauge, .help = "h"}) == "");

  CHECK(error(counter("")) != "");
  CHECK(error(counter("hubdns_bad-name_total")) != "");
  CHECK(error(counter("hubdns_colon:name_total")) != "");  // colons are for recording rules
  CHECK(error(counter("9hubdns_total")) != "");
  CHECK(error(counter("other_thing_total")) != "");  // SPEC: names start with hubdns_
  CHECK(error(counter("hubdns_")) != "");
  CHECK(error(counter("hubdns_queries")) != "");  // counters end in _total
  CHECK(error({.name = "hubdns_no_help", .type = MetricType::gauge}) != "");

  CHECK(error(counter("hubdns_x_total", {"bad-label"})) != "");
  CHECK(error(counter("hubdns_x_total", {"1st"})) != "");
  CHECK(error(counter("hubdns_x_total", {"__reserved"})) != "");
  CHECK(error(counter("hubdns_x_total", {"proto", "proto"})) != "");
  CHECK(error(counter("hubdns_x_total", {"le"})) == "");  // only reserved in histograms
  CHECK(error({.name = "hubdns_h", .type = MetricType::histogram, .help = "h", .label_names = {"le"}}) != "");

  registry.add_family(counter("hubdns_taken_total"), [](MetricSink&) {});
  registry.add_family({.name = "hubdns_latency_seconds", .type = MetricType::histogram, .help = "h"},
                      [](MetricSink&) {});
  CHECK(error(counter("hubdns_taken_total")) != "");
  CHECK(error({.name = "hubdns_taken_total", .type = MetricType::gauge, .help = "h"}) != "");
  // A histogram's series names collide too, both ways round.
  CHECK(error({.name = "hubdns_latency_seconds_count", .type = MetricType::gauge, .help = "h"}) != "");
  CHECK(error({.name = "hubdns_taken", .type = MetricType::histogram, .help = "h"}) == "");
  registry.add_family({.name = "hubdns_depth", .type = MetricType::gauge, .help = "h"}, [](MetricSink&) {});
  CHECK(error({.name = "hubdns_depth", .type = MetricType::histogram, .help = "h"}) != "");
  CHECK(error({.name = "hubdns", .type = MetricType::histogram, .help = "h"}) != "");
}

TEST_CASE("MetricsRegistry: a family without samples still says what it is") {
  MetricsRegistry registry;
  registry.add_family({.name = "hubdns_upstream_up", .type = MetricType::gauge, .help = "Per upstream.", .label_names = {"upstream"}},
                      [](MetricSink&) {});
  CHECK(registry.render() == "# HELP hubdns_upstream_up Per upstream.\n# TYPE hubdns_upstream_up gauge\n");
}

TEST_CASE("MetricsRegistry: label values known only at run time") {
  MetricsRegistry registry;
  const std::vector<std::string> upstreams = {"168.63.129.16:53", "[fd00::1]:53"};
  registry.add_family({.name = "hubdns_upstream_up", .type = MetricType::gauge, .help = "h", .label_names = {"zone", "upstream"}},
                      [&upstreams](MetricSink& sink) {
                        for (const std::string& upstream : upstreams) {
                          const std::string_view labels[] = {".", upstream};
                          sink.add(std::span<const std::string_view>(labels), 1);
                        }
                      });
  const std::string text = registry.render();
  CHECK(has_line(text, "hubdns_upstream_up{zone=\".\",upstream=\"168.63.129.16:53\"} 1"));
  CHECK(has_line(text, "hubdns_upstream_up{zone=\".\",upstream=\"[fd00::1]:53\"} 1"));
}

TEST_CASE("Histogram: buckets, bounds, unit scaling") {
  Histogram plain({1, 10, 100});
  for (uint64_t value : {0u, 1u, 2u, 10u, 11u, 100u, 101u, 5000u}) plain.observe(value);
  const Histogram::Snapshot snapshot = plain.snapshot();
  CHECK(snapshot.cumulative == std::vector<uint64_t>{2, 4, 6, 8});
  CHECK(snapshot.count == 8);
  CHECK(snapshot.sum == 5225);

  MetricsRegistry registry;
  registry.add_family({.name = "hubdns_test_sizes_bytes", .type = MetricType::histogram, .help = "Sizes."},
                      [&plain](MetricSink& sink) { sink.add({}, plain); });
  CHECK(registry.render() ==
        "# HELP hubdns_test_sizes_bytes Sizes.\n"
        "# TYPE hubdns_test_sizes_bytes histogram\n"
        "hubdns_test_sizes_bytes_bucket{le=\"1\"} 2\n"
        "hubdns_test_sizes_bytes_bucket{le=\"10\"} 4\n"
        "hubdns_test_sizes_bytes_bucket{le=\"100\"} 6\n"
        "hubdns_test_sizes_bytes_bucket{le=\"+Inf\"} 8\n"
        "hubdns_test_sizes_bytes_sum 5225\n"
        "hubdns_test_sizes_bytes_count 8\n");

  // Milliseconds exposed as seconds: whole seconds print as integers, the rest exactly.
  Histogram millis({5, 1000, 2500}, 1000);
  millis.observe(2000);
  MetricsRegistry scaled;
  scaled.add_family({.name = "hubdns_test_seconds", .type = MetricType::histogram, .help = "h"},
                    [&millis](MetricSink& sink) { sink.add({}, millis); });
  const std::string text = scaled.render();
  CHECK(has_line(text, "hubdns_test_seconds_bucket{le=\"0.005\"} 0"));
  CHECK(has_line(text, "hubdns_test_seconds_bucket{le=\"1\"} 0"));
  CHECK(has_line(text, "hubdns_test_seconds_bucket{le=\"2.5\"} 1"));
  CHECK(has_line(text, "hubdns_test_seconds_sum 2"));
}

TEST_CASE("Histogram: concurrent observers lose nothing") {
  Histogram histogram({10, 20});
  std::vector<std::thread> threads;
  for (uint64_t t = 0; t < 4; ++t) {
    threads.emplace_back([&histogram, t] {
      for (uint64_t i = 0; i < 10000; ++i) histogram.observe((i + t) % 30);
    });
  }
  for (std::thread& thread : threads) thread.join();
  const Histogram::Snapshot snapshot = histogram.snapshot();
  CHECK(snapshot.count == 40000);
  CHECK(snapshot.cumulative.back() == 40000);
}

TEST_CASE("register_forwarder_metrics: every counter, with its own value") {
  ForwarderCounters counters;
  // Distinct values, so a field wired to the wrong family shows.
  counters.queries_udp = 101;
  counters.queries_tcp = 102;
  counters.refused_acl = 103;
  counters.dropped_malformed = 104;
  counters.formerr = 105;
  counters.no_route = 106;
  counters.upstream_queries = 107;
  counters.upstream_timeouts = 108;
  counters.upstream_mismatched = 109;
  counters.upstream_errors = 110;
  counters.answers = 111;
  counters.truncated = 112;
  counters.servfail_sent = 113;
  counters.overload_servfail = 114;
  counters.tcp_clients_rejected = 115;
  counters.coalesced = 116;
  counters.upstream_overload = 117;
  counters.no_healthy_upstream = 118;
  counters.stale_answers = 119;
  counters.cache_prefetches = 120;
  // The gauges are differences of two counts.
  counters.pending_started = 1000;
  counters.pending_finished = 879;
  counters.tcp_clients_opened = 500;
  counters.tcp_clients_closed = 378;
  counters.tcp_clients_evicted = 123;

  MetricsRegistry registry;
  register_forwarder_metrics(registry, counters);
  const std::string text = registry.render();
  INFO(text);

  const std::vector<std::string> expected_samples = {
      "hubdns_dns_queries_total{proto=\"udp\"} 101",
      "hubdns_dns_queries_total{proto=\"tcp\"} 102",
      "hubdns_dns_refused_total{reason=\"acl\"} 103",
      "hubdns_dns_dropped_total{reason=\"malformed\"} 104",
      "hubdns_dns_invalid_queries_total 105",
      "hubdns_dns_refused_total{reason=\"no_route\"} 106",
      "hubdns_upstream_queries_total 107",
      "hubdns_upstream_timeouts_total 108",
      "hubdns_upstream_mismatched_responses_total 109",
      "hubdns_upstream_errors_total 110",
      "hubdns_upstream_responses_total 111",
      "hubdns_dns_truncated_total 112",
      "hubdns_dns_servfail_total{reason=\"upstream\"} 113",
      "hubdns_dns_servfail_total{reason=\"overload\"} 114",
      "hubdns_dns_tcp_clients_rejected_total 115",
      "hubdns_dns_coalesced_total 116",
      "hubdns_upstream_max_outstanding_rejects_total 117",
      "hubdns_upstream_none_healthy_total 118",
      "hubdns_dns_stale_answers_total 119",
      "hubdns_cache_prefetches_total 120",
      "hubdns_dns_inflight_queries 121",
      "hubdns_dns_tcp_clients 122",
      "hubdns_dns_tcp_clients_evicted_total 123",
  };
  for (const std::string& sample : expected_samples) {
    INFO("missing: ", sample);
    CHECK(has_line(text, sample));
  }

  // Nothing else: one sample line per field, each family typed and documented once.
  size_t sample_lines = 0;
  size_t type_lines = 0;
  size_t help_lines = 0;
  for (const std::string& line : lines_of(text)) {
    if (line.starts_with("# TYPE ")) {
      ++type_lines;
      const bool gauge = line.starts_with("# TYPE hubdns_dns_inflight_queries ") ||
                         line.starts_with("# TYPE hubdns_dns_tcp_clients ");
      CHECK(line.ends_with(gauge ? " gauge" : " counter"));
    } else if (line.starts_with("# HELP ")) {
      ++help_lines;
    } else {
      ++sample_lines;
    }
  }
  CHECK(sample_lines == expected_samples.size());
  CHECK(type_lines == registry.family_count());
  CHECK(help_lines == registry.family_count());
  CHECK(registry.family_count() == 20);

  counters.queries_udp.fetch_add(1, std::memory_order_relaxed);
  CHECK(has_line(registry.render(), "hubdns_dns_queries_total{proto=\"udp\"} 102"));
  // A scrape between a finish and its start being seen never shows a negative gauge.
  counters.pending_finished = 1001;
  CHECK(has_line(registry.render(), "hubdns_dns_inflight_queries 0"));
}

TEST_CASE("exposition passes promtool check metrics (when promtool is available)") {
  const std::string promtool = promtool_command();
  if (promtool.empty()) {
    MESSAGE("promtool not found (Debian package prometheus, or set HUBDNS_PROMTOOL): check skipped");
    return;
  }
  SampleRegistry sample;
  CHECK(promtool_check(promtool, sample.registry.render()) == 0);

  ForwarderCounters counters;
  MetricsRegistry forwarder;
  register_forwarder_metrics(forwarder, counters);
  CHECK(promtool_check(promtool, forwarder.render()) == 0);
}

}  // namespace
}  // namespace hubdns
