// Configuration loading: defaults, every class of error with its position, the embedded
// default, the example files in conf/, and upstreams read from resolv.conf files.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/util/duration.h"
#include "conf/loader.h"

namespace hubdns {
namespace {

struct Position {
  unsigned line = 0;
  unsigned column = 0;
};

// 1-based line and column of the n-th (1-based) occurrence of needle in text: where the
// loader must point. The texts are ASCII, so columns are bytes.
Position position_of(std::string_view text, std::string_view needle, int occurrence = 1) {
  size_t at = std::string_view::npos;
  size_t from = 0;
  for (int i = 0; i < occurrence; ++i) {
    at = text.find(needle, from);
    REQUIRE_MESSAGE(at != std::string_view::npos, "needle not in text: ", std::string(needle));
    from = at + 1;
  }
  Position p{1, 1};
  for (size_t i = 0; i < at; ++i) {
    if (text[i] == '\n') {
      ++p.line;
      p.column = 1;
    } else {
      ++p.column;
    }
  }
  return p;
}

constexpr std::string_view kRootRule =
    "[[forward]]\n"
    "zone = \".\"\n"
    "upstreams = [\"192.0.2.1\"]\n";

std::string describe(const std::vector<ConfigError>& errors) {
  std::string out;
  for (const ConfigError& e : errors) out += e.to_string() + "\n";
  return out;
}

ConfigSnapshot loaded(std::string_view text) {
  const ConfigLoadResult result = load_config_text(text, "test.toml");
  INFO(describe(result.errors));
  REQUIRE(result.ok());
  REQUIRE(result.config != nullptr);
  return result.config;
}

std::vector<ConfigError> errors_of(std::string_view text) {
  const ConfigLoadResult result = load_config_text(text, "test.toml");
  CHECK_FALSE(result.ok());
  CHECK(result.config == nullptr);
  CHECK_FALSE(result.errors.empty());
  return result.errors;
}

// The text must yield exactly one error, at the given occurrence of `at`, whose message
// contains `fragment`.
void expect_one_error(std::string_view text, std::string_view at, std::string_view fragment,
                      int occurrence = 1) {
  const std::vector<ConfigError> errors = errors_of(text);
  INFO("text:\n", std::string(text), "errors:\n", describe(errors));
  REQUIRE(errors.size() == 1);
  const Position expected = position_of(text, at, occurrence);
  CHECK(errors[0].file == "test.toml");
  CHECK(errors[0].line == expected.line);
  CHECK(errors[0].column == expected.column);
  CHECK(errors[0].message.find(fragment) != std::string::npos);
}

SocketAddress address(const char* text, uint16_t port) { return *SocketAddress::parse(text, port); }

// ---------------------------------------------------------------------------------------

TEST_CASE("ConfigError::to_string") {
  CHECK(ConfigError{"a.toml", 3, 7, "bad"}.to_string() == "a.toml:3:7: bad");
  CHECK(ConfigError{"a.toml", 0, 0, "cannot open"}.to_string() == "a.toml: cannot open");
}

TEST_CASE("defaults for every absent key") {
  const ConfigSnapshot config = loaded(kRootRule);
  CHECK(config->source == "test.toml");
  CHECK(config->warnings.empty());

  const ServerConfig& server = config->server;
  REQUIRE(server.listen.size() == 1);
  CHECK(server.listen[0] == address("0.0.0.0", 53));
  CHECK(server.workers == 0);
  std::vector<std::string> allow;
  for (const Cidr& c : server.allow) allow.push_back(c.to_string());
  CHECK(allow == std::vector<std::string>{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                          "127.0.0.0/8", "::1/128", "fc00::/7"});
  CHECK(server.query_timeout == Duration{5000});
  CHECK(server.edns_udp_size == 1232);
  CHECK(server.max_inflight == 10000);
  CHECK(server.tcp_idle_timeout == Duration{10000});
  CHECK(server.max_tcp_clients == 1000);

  const HealthConfig& health = config->health;
  REQUIRE(health.listen.size() == 1);
  CHECK(health.listen[0] == address("0.0.0.0", 8053));
  CHECK(health.tcp_listen.empty());
  CHECK(health.interval == Duration{2000});
  CHECK(health.timeout == Duration{1000});
  CHECK(health.rise == 2);
  CHECK(health.fall == 3);
  CHECK(health.admin_token.empty());

  const CacheConfig& cache = config->cache;
  CHECK(cache.enabled);
  CHECK(cache.max_entries == 100000);
  CHECK(cache.min_ttl == Duration{0});
  CHECK(cache.max_ttl == Duration{86400000});
  CHECK(cache.max_negative_ttl == Duration{300000});
  CHECK(cache.serve_stale);
  CHECK(cache.stale_answer_ttl == Duration{30000});
  CHECK(cache.max_stale == Duration{86400000});

  const LifecycleConfig& lifecycle = config->lifecycle;
  CHECK(lifecycle.drain_grace == Duration{15000});
  CHECK(lifecycle.scheduled_events == ScheduledEventsMode::off);
  CHECK_FALSE(lifecycle.ack_scheduled_events);
  CHECK(lifecycle.metadata_url == "http://169.254.169.254");

  REQUIRE(config->forward.size() == 1);
  const ForwardRule& rule = config->forward[0];
  CHECK(rule.zone == ".");
  REQUIRE(rule.upstreams.size() == 1);
  CHECK(rule.upstreams[0] == address("192.0.2.1", 53));
  CHECK(rule.policy == UpstreamPolicy::fastest);
  CHECK(rule.critical);
  CHECK(rule.attempt_timeout == Duration{4500});
  CHECK(rule.max_outstanding == 200);
  CHECK(rule.probe.name == ".");
  CHECK(rule.probe.qtype == 6);
  CHECK(rule.cache);
}

TEST_CASE("a conditional zone is not critical by default and probes its own SOA") {
  const ConfigSnapshot config = loaded(std::string(kRootRule) +
                                       "[[forward]]\n"
                                       "zone = \"Corp.Contoso.COM\"\n"
                                       "upstreams = [\"192.168.1.10\", \"[2001:db8::53]:5353\"]\n");
  REQUIRE(config->forward.size() == 2);
  const ForwardRule& rule = config->forward[1];
  CHECK(rule.zone == "corp.contoso.com.");
  CHECK_FALSE(rule.critical);
  CHECK(rule.probe.name == "corp.contoso.com.");
  CHECK(rule.probe.qtype == 6);
  REQUIRE(rule.upstreams.size() == 2);
  CHECK(rule.upstreams[1] == address("[2001:db8::53]:5353", 53));
  CHECK(config->forward[0].critical);
}

TEST_CASE("every key can be set") {
  const ConfigSnapshot config = loaded(R"(
[server]
listen = ["127.0.0.1:5300", "[::1]:5300", "10.0.0.4"]
workers = 4
allow = ["10.0.0.0/8", "192.0.2.7"]
query_timeout = "3s"
edns_udp_size = 4096
max_inflight = 5
tcp_idle_timeout = "500ms"
max_tcp_clients = 7

[health]
listen = ["127.0.0.1", "[::1]:9000"]
tcp_listen = ["127.0.0.1:8054"]
interval = "5s"
timeout = "2500ms"
rise = 1
fall = 10
admin_token = "s3cr3t-token"

[cache]
enabled = false
max_entries = 10
min_ttl = "10s"
max_ttl = "1h"
max_negative_ttl = "30s"
serve_stale = false
stale_answer_ttl = "1s"
max_stale = "2h"

[lifecycle]
drain_grace = "0s"
scheduled_events = "auto"
ack_scheduled_events = true
metadata_url = "http://127.0.0.1:8080/"

[[forward]]
zone = "example.org."
upstreams = ["192.0.2.53:5353"]
policy = "round_robin"
critical = true
attempt_timeout = "1500ms"
max_outstanding = 1
probe = { name = "www.Example.org", type = "aaaa" }
cache = false

[[forward]]
zone = "."
upstreams = ["192.0.2.1"]
policy = "sequential"
critical = false
probe = { type = "TYPE65" }

[[forward]]
zone = "net"
upstreams = ["192.0.2.1"]
policy = "random"
[forward.probe]
name = "net"
)");
  CHECK(config->server.listen ==
        std::vector<SocketAddress>{address("127.0.0.1:5300", 0), address("[::1]:5300", 0),
                                   address("10.0.0.4", 53)});
  CHECK(config->server.workers == 4);
  REQUIRE(config->server.allow.size() == 2);
  CHECK(config->server.allow[1].to_string() == "192.0.2.7/32");
  CHECK(config->server.query_timeout == Duration{3000});
  CHECK(config->server.edns_udp_size == 4096);
  CHECK(config->server.max_inflight == 5);
  CHECK(config->server.tcp_idle_timeout == Duration{500});
  CHECK(config->server.max_tcp_clients == 7);

  CHECK(config->health.listen ==
        std::vector<SocketAddress>{address("127.0.0.1", 8053), address("[::1]:9000", 0)});
  CHECK(config->health.tcp_listen == std::vector<SocketAddress>{address("127.0.0.1:8054", 0)});
  CHECK(config->health.interval == Duration{5000});
  CHECK(config->health.timeout == Duration{2500});
  CHECK(config->health.rise == 1);
  CHECK(config->health.fall == 10);
  CHECK(config->health.admin_token == "s3cr3t-token");

  CHECK_FALSE(config->cache.enabled);
  CHECK(config->cache.max_entries == 10);
  CHECK(config->cache.min_ttl == Duration{10000});
  CHECK(config->cache.max_ttl == Duration{3600000});
  CHECK(config->cache.max_negative_ttl == Duration{30000});
  CHECK_FALSE(config->cache.serve_stale);
  CHECK(config->cache.stale_answer_ttl == Duration{1000});
  CHECK(config->cache.max_stale == Duration{7200000});

  CHECK(config->lifecycle.drain_grace == Duration{0});
  CHECK(config->lifecycle.scheduled_events == ScheduledEventsMode::automatic);
  CHECK(config->lifecycle.ack_scheduled_events);
  CHECK(config->lifecycle.metadata_url == "http://127.0.0.1:8080");

  REQUIRE(config->forward.size() == 3);
  const ForwardRule& org = config->forward[0];
  CHECK(org.zone == "example.org.");
  CHECK(org.upstreams == std::vector<SocketAddress>{address("192.0.2.53:5353", 0)});
  CHECK(org.policy == UpstreamPolicy::round_robin);
  CHECK(org.critical);
  CHECK(org.attempt_timeout == Duration{1500});
  CHECK(org.max_outstanding == 1);
  CHECK(org.probe.name == "www.example.org.");
  CHECK(org.probe.qtype == 28);
  CHECK_FALSE(org.cache);

  const ForwardRule& root = config->forward[1];
  CHECK(root.policy == UpstreamPolicy::sequential);
  CHECK_FALSE(root.critical);
  CHECK(root.probe.name == ".");
  CHECK(root.probe.qtype == 65);

  const ForwardRule& net = config->forward[2];
  CHECK(net.policy == UpstreamPolicy::random);
  CHECK(net.probe.name == "net.");
  CHECK(net.probe.qtype == 6);
}

TEST_CASE("probe types: mnemonics and TYPEnnn") {
  const struct {
    const char* type;
    uint16_t code;
  } cases[] = {{"A", 1},    {"NS", 2},   {"CNAME", 5}, {"SOA", 6},      {"PTR", 12},
               {"MX", 15},  {"TXT", 16}, {"AAAA", 28}, {"SRV", 33},     {"soa", 6},
               {"TYPE1", 1}, {"type257", 257}, {"TYPE65535", 65535}};
  for (const auto& c : cases) {
    const ConfigSnapshot config = loaded(std::string(kRootRule) + "probe = { type = \"" + c.type + "\" }\n");
    CHECK(config->forward[0].probe.qtype == c.code);
  }
  for (const char* bad : {"TYPE0", "TYPE65536", "TYPE", "TYPEx", "TYPE41", "TYPE255", "ANY", "SOAA"}) {
    const std::string text = std::string(kRootRule) + "probe = { type = \"" + bad + "\" }\n";
    INFO("type=", bad);
    expect_one_error(text, std::string("\"") + bad + "\"", "probe type");
  }
}

// ---------------------------------------------------------------------------------------
// Each kind of mistake: one error, at the right line and column.

TEST_CASE("TOML syntax errors carry toml++'s position") {
  const std::string text = "[server]\nworkers = 4 x\n";
  expect_one_error(text, "x\n", "TOML syntax error");
  const std::string redefined = "[server]\nworkers = 1\nworkers = 2\n";
  const std::vector<ConfigError> errors = errors_of(redefined);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].line == 3);
  CHECK(errors[0].message.find("TOML syntax error") != std::string::npos);
}

TEST_CASE("unknown key, with the nearest valid name") {
  const std::string text = "[server]\nlistn = [\"127.0.0.1\"]\n" + std::string(kRootRule);
  expect_one_error(text, "listn", "unknown key 'listn' in [server]; did you mean 'listen'?");
  const std::vector<ConfigError> errors = errors_of(text);
  CHECK(errors[0].to_string() == "test.toml:2:1: unknown key 'listn' in [server]; did you mean 'listen'?");

  expect_one_error("[health]\n  intervall = \"2s\"\n" + std::string(kRootRule), "intervall",
                   "did you mean 'interval'?");
  expect_one_error(std::string(kRootRule) + "zonee = \"x\"\n", "zonee",
                   "unknown key 'zonee' in [[forward]]; did you mean 'zone'?");
  expect_one_error(std::string(kRootRule) + "probe = { name = \".\", tpye = \"A\" }\n", "tpye",
                   "did you mean 'type'?");
  expect_one_error("[server]\ninterval = \"2s\"\n" + std::string(kRootRule), "interval",
                   "'interval' belongs in [health]");
  expect_one_error("[cache]\nbogus = 1\n" + std::string(kRootRule), "bogus",
                   "valid keys: enabled, max_entries");
}

TEST_CASE("unknown table and misplaced top-level keys") {
  expect_one_error("[sever]\nworkers = 1\n" + std::string(kRootRule), "sever",
                   "unknown table [sever]; did you mean [server]?");
  expect_one_error("[tls]\ncert = \"x\"\n" + std::string(kRootRule), "tls",
                   "unknown table [tls]; valid tables:");
  expect_one_error("workers = 4\n" + std::string(kRootRule), "workers",
                   "key 'workers' must be inside a table: it belongs in [server]");
  expect_one_error("listen = [\"127.0.0.1\"]\n" + std::string(kRootRule), "listen",
                   "belongs in [server] or [health]");
  expect_one_error("frobnicate = true\n" + std::string(kRootRule), "frobnicate",
                   "unknown key 'frobnicate' at top level");
  expect_one_error("server = 5\n" + std::string(kRootRule), "5",
                   "'server' must be a table ([server]), got integer");
  expect_one_error("[[server]]\nworkers = 1\n" + std::string(kRootRule), "[[server]]",
                   "'server' must be a table ([server]), got array");
}

TEST_CASE("wrong types") {
  const std::string text = "[server]\nworkers = \"4\"\n" + std::string(kRootRule);
  expect_one_error(text, "\"4\"", "'workers' must be an integer, got string");
  CHECK(errors_of(text)[0].message == "'workers' must be an integer, got string");
  expect_one_error("[server]\nworkers = 4.0\n" + std::string(kRootRule), "4.0",
                   "'workers' must be an integer, got float");
  expect_one_error("[cache]\nenabled = \"yes\"\n" + std::string(kRootRule), "\"yes\"",
                   "'enabled' must be a boolean (true or false), got string");
  expect_one_error("[health]\ninterval = 2\n" + std::string(kRootRule), "2\n",
                   "'interval' must be a duration string with a unit, such as \"2s\", got integer");
  expect_one_error("[server]\nlisten = \"127.0.0.1\"\n" + std::string(kRootRule), "\"127.0.0.1\"",
                   "'listen' must be an array of strings");
  expect_one_error("[server]\nlisten = [\"127.0.0.1\", 53]\n" + std::string(kRootRule), "53]",
                   "each entry of 'listen' must be a string, got integer");
  expect_one_error("[lifecycle]\nscheduled_events = false\n" + std::string(kRootRule), "false",
                   "'scheduled_events' must be one of \"off\", \"auto\", \"on\", got boolean");
  expect_one_error("[health]\nadmin_token = 1234\n" + std::string(kRootRule), "1234",
                   "'admin_token' must be a string, got integer");
  expect_one_error(std::string(kRootRule) + "zone2 = 1\n", "zone2", "did you mean 'zone'?");
  expect_one_error("[[forward]]\nzone = 1\nupstreams = [\"192.0.2.1\"]\n", "1\n",
                   "'zone' must be a string, got integer");
  expect_one_error(std::string(kRootRule) + "probe = \"SOA\"\n", "\"SOA\"",
                   "'probe' must be a table such as { name = \".\", type = \"SOA\" }, got string");
  expect_one_error(std::string(kRootRule) + "probe = { name = 5 }\n", "5 }",
                   "'name' must be a string, got integer");
}

TEST_CASE("bad durations") {
  expect_one_error("[health]\ninterval = \"2\"\n" + std::string(kRootRule), "\"2\"",
                   "'interval' is not a valid duration: missing unit in \"2\"");
  expect_one_error("[server]\nquery_timeout = \"-1s\"\n" + std::string(kRootRule), "\"-1s\"",
                   "negative duration");
  expect_one_error("[server]\nquery_timeout = \"99999999999999999999d\"\n" + std::string(kRootRule),
                   "\"9999", "too large");
  expect_one_error("[lifecycle]\ndrain_grace = \"5 min\"\n" + std::string(kRootRule), "\"5 min\"",
                   "not a valid duration");
  expect_one_error("[server]\nquery_timeout = \"2m\"\n" + std::string(kRootRule), "\"2m\"",
                   "'query_timeout' must be between 10ms and 1m, got \"2m\"");
  expect_one_error("[cache]\nmin_ttl = \"1500ms\"\n" + std::string(kRootRule), "\"1500ms\"",
                   "'min_ttl' must be a whole number of seconds");
}

TEST_CASE("bad addresses, prefixes and ports") {
  expect_one_error("[server]\nlisten = [\"127.0.0.1:5300\", \"localhost\"]\n" + std::string(kRootRule),
                   "\"localhost\"", "bad address in 'listen': 'localhost' is not an IP address");
  expect_one_error("[server]\nlisten = [\"127.0.0.1:70000\"]\n" + std::string(kRootRule),
                   "\"127.0.0.1:70000\"", "port '70000' is out of range (0-65535)");
  expect_one_error("[server]\nallow = [\"10.0.0.0/8\", \"10.1.0.0/8\"]\n" + std::string(kRootRule),
                   "\"10.1.0.0/8\"", "did you mean '10.0.0.0/8'?");
  expect_one_error("[server]\nallow = [\"10.0.0.0/33\"]\n" + std::string(kRootRule), "\"10.0.0.0/33\"",
                   "bad address prefix in 'allow'");
  expect_one_error("[server]\nallow = []\n" + std::string(kRootRule), "[]",
                   "'allow' in [server] is empty: every client would be refused");
  expect_one_error("[server]\nlisten = [\"127.0.0.1:53\", \"127.0.0.1\"]\n" + std::string(kRootRule),
                   "\"127.0.0.1\"]", "lists 127.0.0.1:53 twice (first on line 2)");
  expect_one_error("[health]\ntcp_listen = [\"127.0.0.1\"]\n" + std::string(kRootRule), "\"127.0.0.1\"",
                   "missing port in '127.0.0.1' (write IP:PORT)");
  expect_one_error("[[forward]]\nzone = \".\"\nupstreams = [\"192.0.2.1:0\"]\n", "\"192.0.2.1:0\"",
                   "bad upstream \"192.0.2.1:0\": port 0 reaches no server");
  expect_one_error("[[forward]]\nzone = \".\"\nupstreams = [\"dns.google\"]\n", "\"dns.google\"",
                   "absolute path of a resolv.conf-style file");
  expect_one_error("[[forward]]\nzone = \".\"\nupstreams = [\"192.0.2.1\", \"192.0.2.1:53\"]\n",
                   "\"192.0.2.1:53\"", "'upstreams' lists 192.0.2.1:53 twice");
  // Port 0 is fine for listeners: it means "any free port".
  const ConfigSnapshot config =
      loaded("[server]\nlisten = [\"127.0.0.1:0\"]\n[health]\nlisten = [\"127.0.0.1:0\"]\n" +
             std::string(kRootRule));
  CHECK(config->server.listen[0].port() == 0);
}

TEST_CASE("upstream count: none, and more than 16") {
  expect_one_error("[[forward]]\nzone = \".\"\nupstreams = []\n", "[]",
                   "'upstreams' in [[forward]] is empty: a rule needs at least one upstream");
  std::string sixteen;
  for (int i = 1; i <= 16; ++i) sixteen += (i > 1 ? ", " : "") + std::string("\"192.0.2.") + std::to_string(i) + "\"";
  loaded("[[forward]]\nzone = \".\"\nupstreams = [" + sixteen + "]\n");
  expect_one_error("[[forward]]\nzone = \".\"\nupstreams = [" + sixteen + ", \"192.0.2.17\"]\n", "[",
                   "'upstreams' has 17 servers", 3);
}

TEST_CASE("zones: invalid, duplicate, missing") {
  expect_one_error("[[forward]]\nzone = \"bad..zone\"\nupstreams = [\"192.0.2.1\"]\n", "\"bad..zone\"",
                   "'zone' is not a valid domain name: empty label");
  expect_one_error("[[forward]]\nzone = \"*.contoso.com\"\nupstreams = [\"192.0.2.1\"]\n",
                   "\"*.contoso.com\"", "not allowed");
  const std::string duplicate = std::string(kRootRule) +
                                "[[forward]]\nzone = \"Corp.Contoso.com\"\nupstreams = [\"192.0.2.2\"]\n"
                                "[[forward]]\nzone = \"corp.contoso.COM.\"\nupstreams = [\"192.0.2.3\"]\n";
  expect_one_error(duplicate, "\"corp.contoso.COM.\"",
                   "duplicate zone 'corp.contoso.com.': already forwarded by the rule on line 5");
  expect_one_error("[[forward]]\nupstreams = [\"192.0.2.1\"]\n", "[[forward]]",
                   "[[forward]] rule has no 'zone'");
  expect_one_error("[[forward]]\nzone = \"example.com\"\n", "[[forward]]",
                   "[[forward]] rule for zone 'example.com.' has no 'upstreams'");
  expect_one_error(std::string(kRootRule) + "probe = { name = \"a..b\" }\n", "\"a..b\"",
                   "probe 'name' is not a valid domain name");
  expect_one_error(std::string(kRootRule) + "probe = { nmae = \"x\" }\n", "nmae",
                   "unknown key 'nmae' in 'probe'; did you mean 'name'?");
}

TEST_CASE("no rule at all, and [forward] written as a single table") {
  const std::vector<ConfigError> none = errors_of("[server]\nworkers = 1\n");
  REQUIRE(none.size() == 1);
  CHECK(none[0].line == 0);
  CHECK(none[0].to_string().rfind("test.toml: no [[forward]] rule", 0) == 0);
  CHECK(errors_of("").size() == 1);
  CHECK(errors_of("forward = []\n").size() == 1);
  expect_one_error("[forward]\nzone = \".\"\nupstreams = [\"192.0.2.1\"]\n", "[forward]",
                   "'forward' must be an array of tables: write [[forward]]");
  expect_one_error("forward = [1]\n", "1]", "each 'forward' entry must be a table, got integer");
}

TEST_CASE("numbers out of range") {
  const struct {
    const char* table;
    const char* key;
    const char* value;
    const char* range;
  } cases[] = {
      {"server", "workers", "257", "between 0 and 256"},
      {"server", "workers", "-1", "between 0 and 256"},
      {"server", "edns_udp_size", "511", "between 512 and 4096"},
      {"server", "edns_udp_size", "4097", "between 512 and 4096"},
      {"server", "max_inflight", "0", "between 1 and 10000000"},
      {"server", "max_tcp_clients", "0", "between 1 and 1000000"},
      {"health", "rise", "0", "between 1 and 100"},
      {"health", "fall", "0", "between 1 and 100"},
      {"cache", "max_entries", "0", "between 1 and 100000000"},
  };
  for (const auto& c : cases) {
    const std::string text = std::string("[") + c.table + "]\n" + c.key + " = " + c.value + "\n" +
                             std::string(kRootRule);
    expect_one_error(text, std::string(c.value) + "\n", c.range);
    const std::vector<ConfigError> errors = errors_of(text);
    // The position is the value's, not the key's.
    CHECK(errors[0].column == std::string(c.key).size() + 4);
  }
  expect_one_error(std::string(kRootRule) + "max_outstanding = 0\n", "0\n", "between 1 and 65535");
  expect_one_error(std::string(kRootRule) + "max_outstanding = 65536\n", "65536", "between 1 and 65535");
  // Beyond 64 bits is a TOML error.
  CHECK(errors_of("[server]\nworkers = 99999999999999999999\n" + std::string(kRootRule))[0]
            .message.find("TOML syntax error") != std::string::npos);
}

TEST_CASE("enumerations list their valid values") {
  const std::string text = std::string(kRootRule) + "policy = \"fastes\"\n";
  expect_one_error(text, "\"fastes\"",
                   "'policy' must be one of \"fastest\", \"sequential\", \"round_robin\", \"random\"; "
                   "got \"fastes\" (did you mean \"fastest\"?)");
  expect_one_error(std::string(kRootRule) + "policy = \"least_outstanding\"\n", "\"least",
                   "must be one of");
  expect_one_error("[lifecycle]\nscheduled_events = \"automatic\"\n" + std::string(kRootRule),
                   "\"automatic\"", "'scheduled_events' must be one of \"off\", \"auto\", \"on\"");
}

TEST_CASE("checks across keys") {
  // [health] timeout must be shorter than interval: reported at timeout when it is set...
  expect_one_error("[health]\ninterval = \"1s\"\ntimeout = \"1s\"\n" + std::string(kRootRule), "\"1s\"\n",
                   "[health] timeout (1s) must be shorter than interval (1s)", 2);
  // ...and at interval when only that one is.
  expect_one_error("[health]\ninterval = \"500ms\"\n" + std::string(kRootRule), "\"500ms\"",
                   "timeout (1s) must be shorter than interval (500ms)");

  // attempt_timeout may not exceed query_timeout when written; the default shrinks to fit.
  const ConfigSnapshot short_budget = loaded("[server]\nquery_timeout = \"3s\"\n" + std::string(kRootRule) +
                                             "[[forward]]\nzone = \"net\"\nupstreams = [\"192.0.2.2\"]\n"
                                             "attempt_timeout = \"1s\"\n");
  CHECK(short_budget->forward[0].attempt_timeout == Duration{3000});
  CHECK(short_budget->forward[1].attempt_timeout == Duration{1000});
  expect_one_error(std::string(kRootRule) + "attempt_timeout = \"6s\"\n", "\"6s\"",
                   "attempt_timeout (6s) exceeds [server] query_timeout (5s)");
  loaded(std::string(kRootRule) + "attempt_timeout = \"5s\"\n");
  // A bad query_timeout is reported once, not again through every rule.
  CHECK(errors_of("[server]\nquery_timeout = \"3\"\n" + std::string(kRootRule)).size() == 1);

  expect_one_error("[cache]\nmin_ttl = \"2d\"\n" + std::string(kRootRule), "\"2d\"",
                   "[cache] min_ttl (2d) must not exceed max_ttl (1d)");
}

TEST_CASE("listeners that collide and upstreams that loop") {
  expect_one_error("[server]\nlisten = [\"127.0.0.1:5300\"]\n[health]\nlisten = [\"127.0.0.1:5300\"]\n" +
                       std::string(kRootRule),
                   "\"127.0.0.1:5300\"", "[health] listen 127.0.0.1:5300 collides with [server] listen", 2);
  expect_one_error("[health]\nlisten = [\"0.0.0.0:8053\"]\ntcp_listen = [\"127.0.0.1:8053\"]\n" +
                       std::string(kRootRule),
                   "\"127.0.0.1:8053\"", "both need TCP port 8053");

  expect_one_error("[server]\nlisten = [\"127.0.0.1:5300\"]\n[[forward]]\nzone = \".\"\n"
                   "upstreams = [\"127.0.0.1:5300\"]\n",
                   "\"127.0.0.1:5300\"", "queries would loop", 2);
  // A loopback upstream behind a wildcard listener may be another server: a warning only.
  const ConfigSnapshot config = loaded("[[forward]]\nzone = \".\"\nupstreams = [\"127.0.0.53\"]\n");
  REQUIRE(config->warnings.size() == 1);
  CHECK(config->warnings[0].find("test.toml:3:14: upstream 127.0.0.53:53") == 0);
}

TEST_CASE("other value checks") {
  expect_one_error("[health]\nadmin_token = \"two words\"\n" + std::string(kRootRule), "\"two words\"",
                   "printable ASCII characters without spaces");
  expect_one_error("[lifecycle]\nmetadata_url = \"169.254.169.254\"\n" + std::string(kRootRule),
                   "\"169.254.169.254\"", "'metadata_url' must be an http:// or https:// URL");
  expect_one_error("[lifecycle]\nmetadata_url = \"http://\"\n" + std::string(kRootRule), "\"http://\"",
                   "'metadata_url' must be");
}

TEST_CASE("five different mistakes give five errors, in file order") {
  const std::string text =
      "[server]\n"
      "listn = [\"0.0.0.0:53\"]\n"         // unknown key
      "workers = \"four\"\n"               // wrong type
      "\n"
      "[health]\n"
      "interval = \"2\"\n"                 // duration without unit
      "\n"
      "[[forward]]\n"
      "zone = \".\"\n"
      "upstreams = [\"192.0.2.1:99999\"]\n"  // bad port
      "policy = \"fastes\"\n";              // bad enum value
  const std::vector<ConfigError> errors = errors_of(text);
  INFO(describe(errors));
  REQUIRE(errors.size() == 5);
  const char* at[] = {"listn", "\"four\"", "\"2\"", "\"192.0.2.1:99999\"", "\"fastes\""};
  const char* says[] = {"did you mean 'listen'", "must be an integer, got string", "missing unit",
                        "out of range", "did you mean \"fastest\""};
  for (size_t i = 0; i < 5; ++i) {
    const Position p = position_of(text, at[i]);
    CHECK(errors[i].line == p.line);
    CHECK(errors[i].column == p.column);
    CHECK(errors[i].message.find(says[i]) != std::string::npos);
  }
}

TEST_CASE("odd input is reported, never a crash") {
  const std::string cases[] = {
      std::string("\0\0\0", 3),
      "\xff\xfe[server]\n",
      "[server\n",
      "a = " + std::string(2000, '['),
      "a = " + std::string(2000, '{'),
      "[[forward]]\nzone = \"" + std::string(300, 'a') + "\"\nupstreams = [\"192.0.2.1\"]\n",
      "[[forward]]\nzone = \".\"\nupstreams = [[\"192.0.2.1\"]]\n",
      "[[forward]]\nzone = \".\"\nupstreams = [\"\"]\n",
      "[[forward]]\nzone = \".\"\nupstreams = [\"/\"]\n",
      "[server]\nlisten = [\"[\"]\nallow = [\"/\"]\n",
      "[[forward]]\n[[forward]]\n[[forward]]\n",
  };
  for (const std::string& text : cases) {
    const ConfigLoadResult result = load_config_text(text, "odd.toml");
    CHECK_FALSE(result.ok());
    CHECK_FALSE(result.errors.empty());
  }
}

// ---------------------------------------------------------------------------------------

TEST_CASE("the embedded default loads and is what SPEC.md promises") {
  const ConfigLoadResult result = load_default_config();
  INFO(describe(result.errors));
  REQUIRE(result.ok());
  const Config& config = *result.config;
  CHECK(config.source == "<default>");
  CHECK(config.server.listen == std::vector<SocketAddress>{address("127.0.0.1:5300", 0)});
  CHECK(config.health.listen == std::vector<SocketAddress>{address("127.0.0.1:8053", 0)});
  CHECK(config.server.allow.size() == 6);
  CHECK(config.lifecycle.scheduled_events == ScheduledEventsMode::off);
  REQUIRE(config.forward.size() == 1);
  CHECK(config.forward[0].zone == ".");
  CHECK(config.forward[0].critical);
  CHECK_FALSE(config.forward[0].upstreams.empty());
  CHECK(default_config_text().find("upstreams = [\"/etc/resolv.conf\"]") != std::string_view::npos);
}

TEST_CASE("the embedded default shows every key, each with a comment above it") {
  const std::string_view text = default_config_text();
  const char* keys[] = {
      "listen",          "workers",          "allow",          "query_timeout",   "edns_udp_size",
      "max_inflight",    "tcp_idle_timeout", "max_tcp_clients", "tcp_listen",     "interval",
      "timeout",         "rise",             "fall",           "admin_token",     "enabled",
      "max_entries",     "min_ttl",          "max_ttl",        "max_negative_ttl", "serve_stale",
      "stale_answer_ttl", "max_stale",       "drain_grace",    "scheduled_events",
      "ack_scheduled_events", "metadata_url", "zone",          "upstreams",       "policy",
      "critical",        "attempt_timeout",  "max_outstanding", "probe",          "cache"};
  for (const char* key : keys) {
    INFO("key=", key);
    CHECK(text.find("\n" + std::string(key) + " = ") != std::string_view::npos);
  }
  std::string previous;
  size_t begin = 0;
  while (begin < text.size()) {
    const size_t end = text.find('\n', begin);
    const std::string line(text.substr(begin, end - begin));
    if (!line.empty() && line[0] != '#' && line[0] != '[') {
      INFO("line: ", line);
      CHECK(previous.rfind("#", 0) == 0);
    }
    previous = line;
    if (end == std::string_view::npos) break;
    begin = end + 1;
  }
}

TEST_CASE("every example in conf/ loads cleanly") {
  const std::filesystem::path conf_dir = std::filesystem::path(HUBDNS_SOURCE_DIR) / "conf";
  size_t examples = 0;
  for (const auto& entry : std::filesystem::directory_iterator(conf_dir)) {
    if (entry.path().extension() != ".toml") continue;
    ++examples;
    const ConfigLoadResult result = load_config_file(entry.path().string());
    INFO("file=", entry.path().string(), "\n", describe(result.errors));
    CHECK(result.ok());
    if (result.ok()) {
      CHECK(result.config->source == entry.path().string());
      CHECK(result.config->warnings.empty());
    }
  }
  CHECK(examples >= 1);
}

TEST_CASE("the hub-and-spoke example is the reference architecture") {
  const ConfigLoadResult result =
      load_config_file(std::string(HUBDNS_SOURCE_DIR) + "/conf/hub-and-spoke.toml");
  REQUIRE(result.ok());
  const Config& config = *result.config;
  CHECK(config.server.listen == std::vector<SocketAddress>{address("0.0.0.0:53", 0)});
  CHECK(config.health.listen == std::vector<SocketAddress>{address("0.0.0.0:8053", 0)});
  REQUIRE(config.forward.size() == 3);
  CHECK(config.forward[0].zone == ".");
  CHECK(config.forward[0].upstreams == std::vector<SocketAddress>{address("168.63.129.16", 53)});
  CHECK(config.forward[0].critical);
  CHECK(config.forward[1].zone == "az-spoke-1-internal.net.");
  CHECK(config.forward[1].upstreams == std::vector<SocketAddress>{address("10.1.0.25", 53)});
  CHECK_FALSE(config.forward[1].critical);
  CHECK(config.forward[2].zone == "corp.contoso.com.");
  CHECK(config.forward[2].upstreams ==
        std::vector<SocketAddress>{address("192.168.1.10", 53), address("192.168.1.11", 53)});
  CHECK_FALSE(config.forward[2].critical);
}

// ---------------------------------------------------------------------------------------
// Files.

// A directory under the system temporary directory, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "hubdns-conf-XXXXXX").string();
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string write(const std::string& name, const std::string& content) const {
    const std::string file = (path_ / name).string();
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out << content;
    return file;
  }
  std::string path(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

std::string rule_with_upstreams(const std::string& upstreams) {
  return "[[forward]]\nzone = \".\"\nupstreams = [" + upstreams + "]\n";
}

TEST_CASE("load_config_file: source name, and files that cannot be read") {
  const TempDir dir;
  const std::string file = dir.write("good.toml", std::string(kRootRule));
  const ConfigLoadResult good = load_config_file(file);
  REQUIRE(good.ok());
  CHECK(good.config->source == file);

  const std::string bad = dir.write("bad.toml", "[server]\nworkers = \"x\"\n" + std::string(kRootRule));
  const ConfigLoadResult bad_result = load_config_file(bad);
  REQUIRE(bad_result.errors.size() == 1);
  CHECK(bad_result.errors[0].to_string() == bad + ":2:11: 'workers' must be an integer, got string");

  const ConfigLoadResult missing = load_config_file(dir.path("missing.toml"));
  REQUIRE(missing.errors.size() == 1);
  CHECK(missing.errors[0].line == 0);
  CHECK(missing.errors[0].to_string() == dir.path("missing.toml") + ": cannot open: No such file or directory");

  const ConfigLoadResult directory = load_config_file(dir.path(""));
  REQUIRE(directory.errors.size() == 1);
  CHECK(directory.errors[0].message.find("directory") != std::string::npos);
}

TEST_CASE("upstreams from a resolv.conf-style file") {
  const TempDir dir;
  const std::string resolv = dir.write("resolv.conf",
                                       "# generated\n"
                                       "search corp.contoso.com\n"
                                       "nameserver 10.0.0.2\n"
                                       "nameserver\t10.0.0.3   # the second\n"
                                       "nameserver 2001:db8::53\n"
                                       ";nameserver 10.0.0.9\n"
                                       "#nameserver 10.0.0.8\n"
                                       "nameserver not-an-ip\n"
                                       "nameserver\n"
                                       "nameserver 192.0.2.1\n"
                                       "options edns0 trust-ad\n");
  const std::string text = rule_with_upstreams("\"192.0.2.1\", \"" + resolv + "\", \"192.0.2.99:5353\"");
  const ConfigSnapshot config = loaded(text);
  // The file's 192.0.2.1 repeats a listed server and is dropped; bad lines are warnings.
  CHECK(config->forward[0].upstreams ==
        std::vector<SocketAddress>{address("192.0.2.1", 53), address("10.0.0.2", 53),
                                   address("10.0.0.3", 53), address("2001:db8::53", 53),
                                   address("192.0.2.99:5353", 0)});
  REQUIRE(config->warnings.size() == 2);
  const Position at = position_of(text, "\"" + resolv);
  CHECK(config->warnings[0].find("test.toml:" + std::to_string(at.line) + ":" + std::to_string(at.column) +
                                 ": " + resolv + " line 8:") == 0);
  CHECK(config->warnings[1].find("line 9: nameserver without an address") != std::string::npos);

  // Read at every load: a reload sees the new content.
  dir.write("resolv.conf", "nameserver 10.9.9.9\n");
  CHECK(loaded(rule_with_upstreams("\"" + resolv + "\""))->forward[0].upstreams ==
        std::vector<SocketAddress>{address("10.9.9.9", 53)});
}

TEST_CASE("resolv.conf: missing or empty falls back to Azure DNS, with a warning") {
  const TempDir dir;
  const std::string missing = dir.path("no-such-resolv.conf");
  const ConfigSnapshot from_missing = loaded(rule_with_upstreams("\"" + missing + "\""));
  CHECK(from_missing->forward[0].upstreams == std::vector<SocketAddress>{address("168.63.129.16", 53)});
  REQUIRE(from_missing->warnings.size() == 1);
  CHECK(from_missing->warnings[0].find("does not exist; using 168.63.129.16") != std::string::npos);

  const std::string empty = dir.write("empty.conf", "search example.com\noptions ndots:2\n");
  const ConfigSnapshot from_empty = loaded(rule_with_upstreams("\"" + empty + "\""));
  CHECK(from_empty->forward[0].upstreams == std::vector<SocketAddress>{address("168.63.129.16", 53)});
  REQUIRE(from_empty->warnings.size() == 1);
  CHECK(from_empty->warnings[0].find("has no usable nameserver line") != std::string::npos);

  // A path that exists but is not a file is an error, not a silent fallback.
  expect_one_error(rule_with_upstreams("\"" + dir.path("") + "\""), "\"/", "cannot read upstreams from");

  // A link-local server whose interface does not exist cannot be reached: skipped.
  const std::string scoped = dir.write("scoped.conf",
                                       "nameserver fe80::1%no-such-if0\nnameserver 10.0.0.2\n"
                                       "nameserver [10.0.0.3]:53\n");
  const ConfigSnapshot from_scoped = loaded(rule_with_upstreams("\"" + scoped + "\""));
  CHECK(from_scoped->forward[0].upstreams == std::vector<SocketAddress>{address("10.0.0.2", 53)});
  CHECK(from_scoped->warnings.size() == 2);
}

TEST_CASE("resolv.conf servers count towards the limit of 16") {
  const TempDir dir;
  std::string content;
  for (int i = 1; i <= 10; ++i) content += "nameserver 10.0.0." + std::to_string(i) + "\n";
  const std::string resolv = dir.write("resolv.conf", content);
  std::string literal;
  for (int i = 1; i <= 7; ++i) literal += "\"192.0.2." + std::to_string(i) + "\", ";
  expect_one_error(rule_with_upstreams(literal + "\"" + resolv + "\""), "[", "has 17 servers", 3);
}

}  // namespace
}  // namespace hubdns
