#include "conf/loader.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <span>
#include <sys/stat.h>
#include <tuple>
#include <utility>

#include "common/dns/name.h"
#include "common/util/duration.h"
#include "conf/resolv_conf.h"
#include "conf/suggest.h"

namespace hubdns {
namespace {

// ---------------------------------------------------------------------------------------
// Limits. conf/README.md documents each one; keep the two in step.

constexpr size_t kMaxUpstreamsPerRule = 16;
constexpr std::streamsize kMaxConfigFileBytes = 4 << 20;
constexpr uint16_t kDnsPort = 53;
constexpr uint16_t kHealthPort = 8053;
constexpr int64_t kMaxTtlSeconds = 2147483647;  // RFC 2181: TTLs are 31-bit
constexpr Duration kMaxTtl{kMaxTtlSeconds * 1000};

constexpr Duration ms(int64_t n) { return Duration{n}; }
constexpr Duration seconds(int64_t n) { return Duration{n * 1000}; }

// ---------------------------------------------------------------------------------------
// The schema: which keys each table accepts. Unknown keys are reported against these lists
// ("did you mean ...?"), and a key that belongs to another table is pointed there.

constexpr std::string_view kServerKeys[] = {"listen",        "workers",      "allow",
                                            "query_timeout", "edns_udp_size", "max_inflight",
                                            "tcp_idle_timeout", "max_tcp_clients", "log_queries"};
constexpr std::string_view kHealthKeys[] = {"listen", "tcp_listen", "interval",   "timeout",
                                            "rise",   "fall",       "admin_token", "realtime_priority"};
constexpr std::string_view kCacheKeys[] = {"enabled",          "max_entries", "min_ttl",
                                           "max_ttl",          "max_negative_ttl",
                                           "serve_stale",      "stale_answer_ttl",
                                           "max_stale"};
constexpr std::string_view kLifecycleKeys[] = {"drain_grace", "scheduled_events",
                                               "ack_scheduled_events", "metadata_url"};
constexpr std::string_view kForwardKeys[] = {"zone",     "upstreams",       "policy",
                                             "critical", "attempt_timeout", "max_outstanding",
                                             "probe",    "cache"};
constexpr std::string_view kProbeKeys[] = {"name", "type"};
constexpr std::string_view kTopLevelNames[] = {"server", "health", "cache", "lifecycle",
                                               "forward"};

struct SectionSchema {
  std::string_view name;
  std::string_view display;  // how messages write the table
  std::span<const std::string_view> keys;
};

constexpr SectionSchema kSections[] = {
    {"server", "[server]", kServerKeys},
    {"health", "[health]", kHealthKeys},
    {"cache", "[cache]", kCacheKeys},
    {"lifecycle", "[lifecycle]", kLifecycleKeys},
    {"forward", "[[forward]]", kForwardKeys},
};

// ---------------------------------------------------------------------------------------
// Small text helpers.

std::string quote(std::string_view text) { return "'" + std::string(text) + "'"; }
std::string dquote(std::string_view text) { return "\"" + std::string(text) + "\""; }

template <typename Range>
std::string join(const Range& items, std::string_view separator,
                 std::string_view left = "", std::string_view right = "") {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += separator;
    out += left;
    out += item;
    out += right;
  }
  return out;
}

const char* type_name(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::table: return "table";
    case toml::node_type::array: return "array";
    case toml::node_type::string: return "string";
    case toml::node_type::integer: return "integer";
    case toml::node_type::floating_point: return "float";
    case toml::node_type::boolean: return "boolean";
    case toml::node_type::date: return "date";
    case toml::node_type::time: return "time";
    case toml::node_type::date_time: return "date-time";
    case toml::node_type::none: break;
  }
  return "nothing";
}

bool contains(std::span<const std::string_view> names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// ---------------------------------------------------------------------------------------
// Problems found so far, with their positions. Nothing stops at the first one: the user
// gets every mistake in one run.

class Problems {
 public:
  explicit Problems(std::string file) : file_(std::move(file)) {}

  void error(const toml::source_region& where, std::string message) {
    errors_.push_back(make(where, std::move(message)));
  }
  void error_without_position(std::string message) {
    errors_.push_back(ConfigError{file_, 0, 0, std::move(message)});
  }
  void warning(const toml::source_region& where, std::string message) {
    warnings_.push_back(make(where, std::move(message)).to_string());
  }

  size_t error_count() const { return errors_.size(); }

  // In file order; problems without a position (about the file as a whole) come last.
  std::vector<ConfigError> take_errors() {
    std::stable_sort(errors_.begin(), errors_.end(), [](const ConfigError& a, const ConfigError& b) {
      const auto key = [](const ConfigError& e) {
        return std::make_tuple(e.line == 0, e.line, e.column);
      };
      return key(a) < key(b);
    });
    return std::move(errors_);
  }
  std::vector<std::string> take_warnings() { return std::move(warnings_); }

 private:
  ConfigError make(const toml::source_region& where, std::string message) const {
    return ConfigError{file_, static_cast<unsigned>(where.begin.line),
                       static_cast<unsigned>(where.begin.column), std::move(message)};
  }

  std::string file_;
  std::vector<ConfigError> errors_;
  std::vector<std::string> warnings_;
};

// "unknown key 'listn' in [server]; did you mean 'listen'?", or a pointer to the table the
// key belongs to, or the list of valid keys.
std::string unknown_key_message(std::string_view key, std::string_view where,
                                std::span<const std::string_view> known) {
  std::string message = "unknown key " + quote(key) + " in " + std::string(where);
  const std::string nearest = nearest_name(key, known);
  if (!nearest.empty()) return message + "; did you mean " + quote(nearest) + "?";
  std::vector<std::string> homes;
  for (const SectionSchema& section : kSections) {
    if (contains(section.keys, key)) homes.emplace_back(section.display);
  }
  if (!homes.empty()) return message + "; " + quote(key) + " belongs in " + join(homes, " or ");
  return message + "; valid keys: " + join(known, ", ");
}

// A table being read. Each read_* leaves *out untouched unless the key is present and its
// value valid, and reports a bad value; the result says which case happened so that checks
// across keys can skip values that are already reported.
enum class Field { absent, ok, bad };

class TableReader {
 public:
  TableReader(const toml::table& table, std::string where, Problems& problems)
      : table_(table), where_(std::move(where)), problems_(problems) {}

  const toml::table& table() const { return table_; }
  const toml::node* find(std::string_view key) const { return table_.get(key); }

  void check_keys(std::span<const std::string_view> known) const {
    for (auto&& [key, node] : table_) {
      (void)node;
      if (!contains(known, key.str())) {
        problems_.error(key.source(), unknown_key_message(key.str(), where_, known));
      }
    }
  }

  Field read_bool(std::string_view key, bool* out) const {
    const toml::node* node = find(key);
    if (node == nullptr) return Field::absent;
    const auto* value = node->as_boolean();
    if (value == nullptr) return wrong_type(*node, key, "a boolean (true or false)");
    *out = value->get();
    return Field::ok;
  }

  template <typename Int>
  Field read_integer(std::string_view key, int64_t min, int64_t max, Int* out) const {
    const toml::node* node = find(key);
    if (node == nullptr) return Field::absent;
    const auto* value = node->as_integer();
    if (value == nullptr) return wrong_type(*node, key, "an integer");
    const int64_t number = value->get();
    if (number < min || number > max) {
      problems_.error(node->source(), quote(key) + " must be between " + std::to_string(min) +
                                          " and " + std::to_string(max) + ", got " +
                                          std::to_string(number));
      return Field::bad;
    }
    *out = static_cast<Int>(number);
    return Field::ok;
  }

  // whole_seconds: for TTL limits, which DNS counts in seconds.
  Field read_duration(std::string_view key, Duration min, Duration max, Duration* out,
                      bool whole_seconds = false) const {
    const toml::node* node = find(key);
    if (node == nullptr) return Field::absent;
    const auto* value = node->as_string();
    if (value == nullptr) {
      return wrong_type(*node, key, "a duration string with a unit, such as \"" +
                                        format_duration(*out) + "\",");
    }
    const std::string& text = value->get();
    std::string reason;
    const std::optional<Duration> duration = parse_duration(text, &reason);
    if (!duration) {
      problems_.error(node->source(), quote(key) + " is not a valid duration: " + reason);
      return Field::bad;
    }
    if (whole_seconds && duration->count() % 1000 != 0) {
      problems_.error(node->source(), quote(key) +
                                          " must be a whole number of seconds (DNS TTLs are "
                                          "in seconds), got " + dquote(text));
      return Field::bad;
    }
    if (*duration < min || *duration > max) {
      problems_.error(node->source(), quote(key) + " must be between " + format_duration(min) +
                                          " and " + format_duration(max) + ", got " +
                                          dquote(text));
      return Field::bad;
    }
    *out = *duration;
    return Field::ok;
  }

  Field read_string(std::string_view key, std::string* out) const {
    const toml::node* node = find(key);
    if (node == nullptr) return Field::absent;
    const auto* value = node->as_string();
    if (value == nullptr) return wrong_type(*node, key, "a string");
    *out = value->get();
    return Field::ok;
  }

  template <typename Enum>
  Field read_enum(std::string_view key, std::span<const std::pair<std::string_view, Enum>> choices,
                  Enum* out) const {
    std::vector<std::string_view> names;
    for (const auto& choice : choices) names.push_back(choice.first);
    const std::string listed = join(names, ", ", "\"", "\"");
    const toml::node* node = find(key);
    if (node == nullptr) return Field::absent;
    const auto* value = node->as_string();
    if (value == nullptr) return wrong_type(*node, key, "one of " + listed + ",");
    for (const auto& choice : choices) {
      if (choice.first == value->get()) {
        *out = choice.second;
        return Field::ok;
      }
    }
    std::string message = quote(key) + " must be one of " + listed + "; got " + dquote(value->get());
    const std::string nearest = nearest_name(value->get(), names);
    if (!nearest.empty()) message += " (did you mean " + dquote(nearest) + "?)";
    problems_.error(node->source(), std::move(message));
    return Field::bad;
  }

  // An array of strings; each element is handed to parse_one(text, where) which returns
  // false after reporting. The array is bad if any element is.
  template <typename ParseOne>
  Field read_string_array(std::string_view key, std::string_view example, bool allow_empty,
                          std::string_view empty_reason, ParseOne&& parse_one) const {
    const toml::node* node = find(key);
    if (node == nullptr) return Field::absent;
    const toml::array* array = node->as_array();
    if (array == nullptr) {
      return wrong_type(*node, key, "an array of strings such as " + std::string(example) + ",");
    }
    if (array->empty() && !allow_empty) {
      problems_.error(node->source(), quote(key) + " in " + where_ + " is empty: " +
                                          std::string(empty_reason));
      return Field::bad;
    }
    bool all_good = true;
    for (const toml::node& element : *array) {
      const auto* text = element.as_string();
      if (text == nullptr) {
        problems_.error(element.source(), "each entry of " + quote(key) +
                                              " must be a string, got " + type_name(element));
        all_good = false;
        continue;
      }
      if (!parse_one(text->get(), element.source())) all_good = false;
    }
    return all_good ? Field::ok : Field::bad;
  }

  Problems& problems() const { return problems_; }
  const std::string& where() const { return where_; }

 private:
  Field wrong_type(const toml::node& node, std::string_view key, const std::string& wanted) const {
    std::string message = quote(key) + " must be " + wanted;
    if (message.back() != ',') message += ',';
    problems_.error(node.source(), message + " got " + type_name(node));
    return Field::bad;
  }

  const toml::table& table_;
  std::string where_;
  Problems& problems_;
};

// ---------------------------------------------------------------------------------------
// Addresses with their positions, for the checks across tables (loops, colliding ports).

struct PlacedAddress {
  SocketAddress address;
  toml::source_region where;
  std::string origin;  // "" for a literal; the file path for an upstream read from resolv.conf
};

enum class PortRule {
  zero_means_any,  // listen addresses: port 0 lets the kernel choose
  nonzero,         // upstreams: port 0 reaches nobody
  must_be_written  // [health] tcp_listen: there is no natural default
};

// Reads an address list; on success *out receives every entry in order. Duplicates are an
// error: they are always a slip, and for listen addresses they would fail to bind.
Field read_address_list(const TableReader& reader, std::string_view key, uint16_t default_port,
                        PortRule port_rule, bool allow_empty, std::string_view empty_reason,
                        std::vector<PlacedAddress>* out) {
  std::vector<PlacedAddress> found;
  const std::string example =
      port_rule == PortRule::must_be_written ? "[\"0.0.0.0:8054\"]"
                                             : "[\"0.0.0.0:" + std::to_string(default_port) + "\"]";
  const Field field = reader.read_string_array(
      key, example, allow_empty, empty_reason,
      [&](const std::string& text, const toml::source_region& where) {
        std::string reason;
        const std::optional<SocketAddress> address =
            port_rule == PortRule::must_be_written ? SocketAddress::parse_with_port(text, &reason)
                                                   : SocketAddress::parse(text, default_port, &reason);
        if (!address) {
          reader.problems().error(where, "bad address in " + quote(key) + ": " + reason);
          return false;
        }
        if (port_rule != PortRule::zero_means_any && address->port() == 0) {
          reader.problems().error(where, "bad address in " + quote(key) + ": port 0 in " +
                                             dquote(text) + " is not usable here");
          return false;
        }
        for (const PlacedAddress& earlier : found) {
          if (earlier.address == *address) {
            reader.problems().error(where, quote(key) + " lists " + address->to_string() +
                                               " twice (first on line " +
                                               std::to_string(earlier.where.begin.line) + ")");
            return false;
          }
        }
        found.push_back(PlacedAddress{*address, where, ""});
        return true;
      });
  if (field == Field::ok) *out = std::move(found);
  return field;
}

Field read_cidr_list(const TableReader& reader, std::string_view key, std::vector<Cidr>* out) {
  std::vector<Cidr> found;
  const Field field = reader.read_string_array(
      key, "[\"10.0.0.0/8\", \"::1/128\"]", false,
      "every client would be refused (to allow everyone, write [\"0.0.0.0/0\", \"::/0\"])",
      [&](const std::string& text, const toml::source_region& where) {
        std::string reason;
        const std::optional<Cidr> cidr = Cidr::parse(text, &reason);
        if (!cidr) {
          reader.problems().error(where, "bad address prefix in " + quote(key) + ": " + reason);
          return false;
        }
        found.push_back(*cidr);
        return true;
      });
  if (field == Field::ok) *out = std::move(found);
  return field;
}

std::vector<SocketAddress> addresses_of(const std::vector<PlacedAddress>& placed) {
  std::vector<SocketAddress> out;
  out.reserve(placed.size());
  for (const PlacedAddress& p : placed) out.push_back(p.address);
  return out;
}

// ---------------------------------------------------------------------------------------
// Enumerations and DNS types.

constexpr std::pair<std::string_view, UpstreamPolicy> kPolicies[] = {
    {"fastest", UpstreamPolicy::fastest},
    {"sequential", UpstreamPolicy::sequential},
    {"round_robin", UpstreamPolicy::round_robin},
    {"random", UpstreamPolicy::random},
};

constexpr std::pair<std::string_view, ScheduledEventsMode> kScheduledEventsModes[] = {
    {"off", ScheduledEventsMode::off},
    {"auto", ScheduledEventsMode::automatic},
    {"on", ScheduledEventsMode::on},
};

constexpr std::pair<std::string_view, uint16_t> kProbeTypes[] = {
    {"A", 1},    {"NS", 2},   {"CNAME", 5}, {"SOA", 6},  {"PTR", 12},
    {"MX", 15},  {"TXT", 16}, {"AAAA", 28}, {"SRV", 33},
};

std::string upper_ascii(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

// A probe type: a mnemonic (any case) or RFC 3597's TYPEnnn. Types that cannot be asked as
// an ordinary question (OPT, IXFR, AXFR, MAILB, MAILA, ANY) are refused.
bool parse_probe_type(std::string_view text, uint16_t* out, std::string* error) {
  const std::string upper = upper_ascii(text);
  for (const auto& [name, code] : kProbeTypes) {
    if (upper == name) {
      *out = code;
      return true;
    }
  }
  std::vector<std::string_view> names;
  for (const auto& entry : kProbeTypes) names.push_back(entry.first);
  if (upper.size() > 4 && upper.compare(0, 4, "TYPE") == 0) {
    const std::string_view digits = std::string_view(upper).substr(4);
    uint32_t code = 0;
    bool numeric = digits.size() <= 5;
    for (const char c : digits) {
      if (c < '0' || c > '9') numeric = false;
      if (numeric) code = code * 10 + static_cast<uint32_t>(c - '0');
    }
    if (numeric && code >= 1 && code <= 65535) {
      if (code == 41 || (code >= 251 && code <= 255)) {
        *error = "probe type " + dquote(text) + " is a meta type and cannot be asked as a question";
        return false;
      }
      *out = static_cast<uint16_t>(code);
      return true;
    }
    *error = "probe type " + dquote(text) + " must be TYPE followed by a number from 1 to 65535";
    return false;
  }
  *error = "unknown probe type " + dquote(text) + "; use one of " + join(names, ", ") +
           " or TYPEnnn";
  const std::string nearest = nearest_name(text, names);
  if (!nearest.empty()) *error += " (did you mean " + dquote(nearest) + "?)";
  return false;
}

// ---------------------------------------------------------------------------------------
// The tables.

struct ServerPositions {
  Field listen_field = Field::absent;
  std::vector<PlacedAddress> listen;
  Field query_timeout = Field::absent;
};

struct HealthPositions {
  Field listen_field = Field::absent;
  std::vector<PlacedAddress> listen;
  Field tcp_listen_field = Field::absent;
  std::vector<PlacedAddress> tcp_listen;
};

void read_server(const TableReader& reader, ServerConfig* server, ServerPositions* positions) {
  reader.check_keys(kServerKeys);
  positions->listen_field =
      read_address_list(reader, "listen", kDnsPort, PortRule::zero_means_any, false,
                        "hubdns needs at least one address to serve DNS on", &positions->listen);
  reader.read_integer("workers", 0, 256, &server->workers);
  read_cidr_list(reader, "allow", &server->allow);
  positions->query_timeout =
      reader.read_duration("query_timeout", ms(10), seconds(60), &server->query_timeout);
  reader.read_integer("edns_udp_size", 512, 4096, &server->edns_udp_size);
  reader.read_integer("max_inflight", 1, 10'000'000, &server->max_inflight);
  reader.read_duration("tcp_idle_timeout", ms(100), seconds(3600), &server->tcp_idle_timeout);
  reader.read_integer("max_tcp_clients", 1, 1'000'000, &server->max_tcp_clients);
  reader.read_integer("log_queries", 0, 1'000'000, &server->log_queries);
}

// The token is compared with an HTTP Authorization header, so it must fit in one.
bool valid_admin_token(std::string_view token) {
  return std::all_of(token.begin(), token.end(), [](char c) { return c >= 0x21 && c <= 0x7e; });
}

void read_health(const TableReader& reader, HealthConfig* health, HealthPositions* positions) {
  reader.check_keys(kHealthKeys);
  positions->listen_field = read_address_list(reader, "listen", kHealthPort,
                                              PortRule::zero_means_any, true, "", &positions->listen);
  positions->tcp_listen_field = read_address_list(reader, "tcp_listen", 0, PortRule::must_be_written,
                                                  true, "", &positions->tcp_listen);
  const Field interval = reader.read_duration("interval", ms(10), seconds(3600), &health->interval);
  const Field timeout = reader.read_duration("timeout", ms(10), seconds(60), &health->timeout);
  reader.read_integer("rise", 1, 100, &health->rise);
  reader.read_integer("fall", 1, 100, &health->fall);
  reader.read_bool("realtime_priority", &health->realtime_priority);
  if (reader.read_string("admin_token", &health->admin_token) == Field::ok &&
      !valid_admin_token(health->admin_token)) {
    reader.problems().error(reader.find("admin_token")->source(),
                            "'admin_token' may contain only printable ASCII characters without "
                            "spaces (it is compared with an HTTP Authorization header)");
  }
  // A probe still waiting when the next one is due would pile up behind a dead upstream.
  if (interval != Field::bad && timeout != Field::bad && health->timeout >= health->interval) {
    const toml::node* at = reader.find(timeout == Field::ok ? "timeout" : "interval");
    reader.problems().error(at != nullptr ? at->source() : reader.table().source(),
                            "[health] timeout (" + format_duration(health->timeout) +
                                ") must be shorter than interval (" +
                                format_duration(health->interval) +
                                "): each probe must end before the next one starts");
  }
}

void read_cache(const TableReader& reader, CacheConfig* cache) {
  reader.check_keys(kCacheKeys);
  reader.read_bool("enabled", &cache->enabled);
  reader.read_integer("max_entries", 1, 100'000'000, &cache->max_entries);
  const Field min_ttl = reader.read_duration("min_ttl", ms(0), kMaxTtl, &cache->min_ttl, true);
  const Field max_ttl = reader.read_duration("max_ttl", ms(0), kMaxTtl, &cache->max_ttl, true);
  reader.read_duration("max_negative_ttl", ms(0), kMaxTtl, &cache->max_negative_ttl, true);
  reader.read_bool("serve_stale", &cache->serve_stale);
  reader.read_duration("stale_answer_ttl", ms(0), kMaxTtl, &cache->stale_answer_ttl, true);
  reader.read_duration("max_stale", ms(0), kMaxTtl, &cache->max_stale, true);
  if (min_ttl != Field::bad && max_ttl != Field::bad && cache->min_ttl > cache->max_ttl) {
    const toml::node* at = reader.find(min_ttl == Field::ok ? "min_ttl" : "max_ttl");
    reader.problems().error(at != nullptr ? at->source() : reader.table().source(),
                            "[cache] min_ttl (" + format_duration(cache->min_ttl) +
                                ") must not exceed max_ttl (" + format_duration(cache->max_ttl) +
                                ")");
  }
}

void read_lifecycle(const TableReader& reader, LifecycleConfig* lifecycle) {
  reader.check_keys(kLifecycleKeys);
  reader.read_duration("drain_grace", ms(0), seconds(3600), &lifecycle->drain_grace);
  reader.read_enum<ScheduledEventsMode>("scheduled_events", kScheduledEventsModes,
                                        &lifecycle->scheduled_events);
  reader.read_bool("ack_scheduled_events", &lifecycle->ack_scheduled_events);
  std::string url;
  if (reader.read_string("metadata_url", &url) == Field::ok) {
    const bool has_scheme = url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0;
    const size_t host_begin = url.find("://") + 3;
    const bool has_space = std::any_of(url.begin(), url.end(),
                                       [](char c) { return c <= 0x20 || c == 0x7f; });
    if (!has_scheme || host_begin >= url.size() || url[host_begin] == '/' || has_space) {
      reader.problems().error(reader.find("metadata_url")->source(),
                              "'metadata_url' must be an http:// or https:// URL with a host, "
                              "such as \"http://169.254.169.254\"; got " + dquote(url));
    } else {
      // Paths are appended to it ("/metadata/scheduledevents"), so one form is kept.
      while (url.size() > host_begin + 1 && url.back() == '/') url.pop_back();
      lifecycle->metadata_url = url;
    }
  }
}

struct RulePositions {
  const toml::table* table = nullptr;
  Field attempt_timeout = Field::absent;
  std::vector<PlacedAddress> upstreams;
};

// Reads the strings of `upstreams`, expanding resolv.conf paths.
Field read_upstreams(const TableReader& reader, std::vector<PlacedAddress>* out) {
  std::vector<PlacedAddress> found;
  const auto add = [&](const PlacedAddress& candidate, bool from_file) {
    for (const PlacedAddress& earlier : found) {
      if (earlier.address == candidate.address) {
        if (from_file) return true;  // the file repeats a server already listed: harmless
        reader.problems().error(candidate.where,
                                "'upstreams' lists " + candidate.address.to_string() +
                                    " twice" +
                                    (earlier.origin.empty() ? " (first on line " +
                                                                  std::to_string(earlier.where.begin.line) + ")"
                                                            : " (also in " + earlier.origin + ")"));
        return false;
      }
    }
    found.push_back(candidate);
    return true;
  };

  const Field field = reader.read_string_array(
      "upstreams", "[\"168.63.129.16\"]", false, "a rule needs at least one upstream",
      [&](const std::string& text, const toml::source_region& where) {
        if (!text.empty() && text.front() == '/') {
          const ResolvConfNameservers file = read_resolv_conf_nameservers(text);
          if (!file.read_error.empty()) {
            reader.problems().error(where, "cannot read upstreams from " + dquote(text) + ": " +
                                               file.read_error);
            return false;
          }
          for (const std::string& skipped : file.skipped) {
            reader.problems().warning(where, text + " " + skipped + "; ignored");
          }
          std::vector<SocketAddress> servers = file.nameservers;
          if (servers.empty()) {
            reader.problems().warning(
                where, text + (file.file_exists ? " has no usable nameserver line"
                                                : " does not exist") +
                           "; using " + kFallbackNameserver + " (Azure DNS)");
            servers.push_back(*SocketAddress::parse(kFallbackNameserver, kDnsPort));
          }
          bool all_good = true;
          for (const SocketAddress& server : servers) {
            if (!add(PlacedAddress{server, where, text}, true)) all_good = false;
          }
          return all_good;
        }
        std::string reason;
        const std::optional<SocketAddress> address = SocketAddress::parse(text, kDnsPort, &reason);
        if (!address) {
          reader.problems().error(where, "bad upstream " + dquote(text) + ": " + reason +
                                             "; an upstream is IP, IP:PORT, [IPv6]:PORT or the "
                                             "absolute path of a resolv.conf-style file");
          return false;
        }
        if (address->port() == 0) {
          reader.problems().error(where, "bad upstream " + dquote(text) +
                                             ": port 0 reaches no server");
          return false;
        }
        return add(PlacedAddress{*address, where, ""}, false);
      });
  if (field != Field::ok) return field;
  if (found.size() > kMaxUpstreamsPerRule) {
    reader.problems().error(reader.find("upstreams")->source(),
                            "'upstreams' has " + std::to_string(found.size()) +
                                " servers (after reading resolv.conf files); at most " +
                                std::to_string(kMaxUpstreamsPerRule) + " are allowed");
    return Field::bad;
  }
  *out = std::move(found);
  return Field::ok;
}

void read_probe(const TableReader& rule_reader, const std::string& zone, ProbeQuestion* probe) {
  probe->name = zone;
  probe->qtype = 6;  // SOA: every zone has one, and it is what a resolver checks first
  const toml::node* node = rule_reader.find("probe");
  if (node == nullptr) return;
  const toml::table* table = node->as_table();
  if (table == nullptr) {
    rule_reader.problems().error(node->source(),
                                 "'probe' must be a table such as { name = \"" +
                                     (zone.empty() ? std::string(".") : zone) +
                                     "\", type = \"SOA\" }, got " + type_name(*node));
    return;
  }
  const TableReader reader(*table, "'probe'", rule_reader.problems());
  reader.check_keys(kProbeKeys);
  std::string name;
  if (reader.read_string("name", &name) == Field::ok) {
    std::string reason;
    if (!normalize_dns_name(name, &probe->name, &reason)) {
      reader.problems().error(reader.find("name")->source(),
                              "probe 'name' is not a valid domain name: " + reason);
    }
  }
  std::string type;
  if (reader.read_string("type", &type) == Field::ok) {
    std::string reason;
    if (!parse_probe_type(type, &probe->qtype, &reason)) {
      reader.problems().error(reader.find("type")->source(), reason);
    }
  }
}

struct ZoneSeen {
  unsigned line;
};

void read_forward_rule(const TableReader& reader, std::map<std::string, ZoneSeen>* zones_seen,
                       ForwardRule* rule, RulePositions* positions) {
  reader.check_keys(kForwardKeys);
  positions->table = &reader.table();

  bool zone_ok = false;
  const toml::node* zone_node = reader.find("zone");
  std::string zone_text;
  if (zone_node == nullptr) {
    reader.problems().error(reader.table().source(),
                            "[[forward]] rule has no 'zone' (write zone = \".\" to forward "
                            "every name)");
  } else if (reader.read_string("zone", &zone_text) == Field::ok) {
    std::string reason;
    if (!normalize_dns_name(zone_text, &rule->zone, &reason)) {
      reader.problems().error(zone_node->source(), "'zone' is not a valid domain name: " + reason);
    } else {
      const auto [it, inserted] =
          zones_seen->emplace(rule->zone, ZoneSeen{zone_node->source().begin.line});
      if (!inserted) {
        reader.problems().error(zone_node->source(),
                                "duplicate zone " + quote(rule->zone) +
                                    ": already forwarded by the rule on line " +
                                    std::to_string(it->second.line));
      } else {
        zone_ok = true;
      }
    }
  }
  // The root carries the names everyone needs; a conditional zone is often a shared
  // dependency (on-premises DNS) whose outage must not pull every instance out of the pool.
  rule->critical = zone_ok && rule->zone == ".";

  if (reader.find("upstreams") == nullptr) {
    reader.problems().error(reader.table().source(),
                            "[[forward]] rule" + (zone_ok ? " for zone " + quote(rule->zone) : "") +
                                " has no 'upstreams'");
  } else if (read_upstreams(reader, &positions->upstreams) == Field::ok) {
    rule->upstreams = addresses_of(positions->upstreams);
  }
  reader.read_enum<UpstreamPolicy>("policy", kPolicies, &rule->policy);
  reader.read_bool("critical", &rule->critical);
  positions->attempt_timeout =
      reader.read_duration("attempt_timeout", ms(10), seconds(60), &rule->attempt_timeout);
  reader.read_integer("max_outstanding", 1, 65535, &rule->max_outstanding);
  read_probe(reader, zone_ok ? rule->zone : std::string("."), &rule->probe);
  reader.read_bool("cache", &rule->cache);
}

// ---------------------------------------------------------------------------------------
// Checks across tables.

// Listeners that would fail to bind because another one holds the same TCP port.
void check_listener_collisions(const ServerPositions& server, const HealthPositions& health,
                               Problems& problems) {
  struct Listener {
    const PlacedAddress* placed;
    const char* owner;
  };
  std::vector<Listener> listeners;
  for (const PlacedAddress& p : server.listen) listeners.push_back({&p, "[server] listen"});
  for (const PlacedAddress& p : health.listen) listeners.push_back({&p, "[health] listen"});
  for (const PlacedAddress& p : health.tcp_listen) listeners.push_back({&p, "[health] tcp_listen"});
  for (size_t i = 0; i < listeners.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      const SocketAddress& a = listeners[i].placed->address;
      const SocketAddress& b = listeners[j].placed->address;
      if (std::strcmp(listeners[i].owner, listeners[j].owner) == 0) continue;  // checked per list
      if (a.port() == 0 || a.port() != b.port() || a.family() != b.family()) continue;
      if (a == b || a.is_unspecified() || b.is_unspecified()) {
        problems.error(listeners[i].placed->where,
                       std::string(listeners[i].owner) + " " + a.to_string() +
                           " collides with " + listeners[j].owner + " " + b.to_string() +
                           " (line " + std::to_string(listeners[j].placed->where.begin.line) +
                           "): both need TCP port " + std::to_string(a.port()));
      }
    }
  }
}

// An upstream that is hubdns itself would send every query round in circles.
void check_forwarding_loops(const std::vector<RulePositions>& rules, const ServerPositions& server,
                            Problems& problems) {
  for (const RulePositions& rule : rules) {
    for (const PlacedAddress& upstream : rule.upstreams) {
      for (const PlacedAddress& listen : server.listen) {
        const SocketAddress& u = upstream.address;
        const SocketAddress& l = listen.address;
        if (l.port() != u.port()) continue;
        const std::string from =
            upstream.origin.empty() ? "" : " (from " + upstream.origin + ")";
        if (u == l) {
          problems.error(upstream.where, "upstream " + u.to_string() + from +
                                             " is this server's own [server] listen address: "
                                             "queries would loop");
        } else if (l.is_unspecified() && u.is_loopback()) {
          // Not certain: another local server may own that loopback address.
          problems.warning(upstream.where,
                           "upstream " + u.to_string() + from + " is on this host and [server] "
                           "listens on " + l.to_string() +
                               ": unless another server owns that address, queries will loop");
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// The document.

void report_misplaced_top_level(const toml::key& key, const toml::node& node, Problems& problems) {
  const std::string name(key.str());
  if (node.is_table()) {
    std::string message = "unknown table [" + name + "]";
    const std::string nearest = nearest_name(name, kTopLevelNames);
    if (!nearest.empty()) {
      message += nearest == "forward" ? "; did you mean [[forward]]?" : "; did you mean [" + nearest + "]?";
    } else {
      message += "; valid tables: [server], [health], [cache], [lifecycle], [[forward]]";
    }
    problems.error(key.source(), std::move(message));
    return;
  }
  std::vector<std::string> homes;
  for (const SectionSchema& section : kSections) {
    if (contains(section.keys, name)) homes.emplace_back(section.display);
  }
  if (!homes.empty()) {
    problems.error(key.source(), "key " + quote(name) + " must be inside a table: it belongs in " +
                                     join(homes, " or "));
    return;
  }
  std::string message = "unknown key " + quote(name) + " at top level";
  const std::string nearest = nearest_name(name, kTopLevelNames);
  if (!nearest.empty()) message += "; did you mean " + quote(nearest) + "?";
  else message += "; settings go in [server], [health], [cache], [lifecycle] or [[forward]]";
  problems.error(key.source(), std::move(message));
}

std::vector<SocketAddress> parse_fixed_addresses(std::initializer_list<const char*> texts,
                                                 uint16_t default_port) {
  std::vector<SocketAddress> out;
  for (const char* text : texts) out.push_back(*SocketAddress::parse(text, default_port));
  return out;
}

// What an absent key means, where config.h cannot say it (values that need parsing).
void apply_defaults(Config* config) {
  config->server.listen = parse_fixed_addresses({"0.0.0.0"}, kDnsPort);
  config->health.listen = parse_fixed_addresses({"0.0.0.0"}, kHealthPort);
  for (const char* text : {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8",
                           "::1/128", "fc00::/7"}) {
    config->server.allow.push_back(*Cidr::parse(text));
  }
}

void read_document(const toml::table& root, Config* config, Problems& problems) {
  apply_defaults(config);
  ServerPositions server_positions;
  HealthPositions health_positions;
  std::vector<RulePositions> rule_positions;
  std::map<std::string, ZoneSeen> zones_seen;

  const auto section = [&](std::string_view name) -> const toml::table* {
    const toml::node* node = root.get(name);
    if (node == nullptr) return nullptr;
    const toml::table* table = node->as_table();
    if (table == nullptr) {
      problems.error(node->source(), quote(name) + " must be a table ([" + std::string(name) +
                                         "]), got " + type_name(*node));
    }
    return table;
  };

  for (auto&& [key, node] : root) {
    if (!contains(kTopLevelNames, key.str())) report_misplaced_top_level(key, node, problems);
  }

  if (const toml::table* table = section("server")) {
    read_server(TableReader(*table, "[server]", problems), &config->server, &server_positions);
  }
  if (const toml::table* table = section("health")) {
    read_health(TableReader(*table, "[health]", problems), &config->health, &health_positions);
  }
  // Absent lists keep their defaults, which take part in the checks below without a position.
  const auto settle = [](Field field, std::vector<SocketAddress>* config_list,
                         std::vector<PlacedAddress>* placed) {
    if (field == Field::ok) {
      *config_list = addresses_of(*placed);
    } else if (field == Field::absent) {
      for (const SocketAddress& a : *config_list) placed->push_back(PlacedAddress{a, {}, ""});
    }
  };
  settle(server_positions.listen_field, &config->server.listen, &server_positions.listen);
  settle(health_positions.listen_field, &config->health.listen, &health_positions.listen);
  settle(health_positions.tcp_listen_field, &config->health.tcp_listen, &health_positions.tcp_listen);
  if (const toml::table* table = section("cache")) {
    read_cache(TableReader(*table, "[cache]", problems), &config->cache);
  }
  if (const toml::table* table = section("lifecycle")) {
    read_lifecycle(TableReader(*table, "[lifecycle]", problems), &config->lifecycle);
  }

  // Whether the file has any rule at all, good or bad: a bad one is already reported.
  bool any_rule_written = false;
  if (const toml::node* node = root.get("forward")) {
    any_rule_written = !node->is_array() || !node->as_array()->empty();
    const toml::array* rules = node->as_array();
    if (rules == nullptr) {
      problems.error(node->source(), std::string("'forward' must be an array of tables: write "
                                                 "[[forward]] (double brackets) before each "
                                                 "rule, got ") + type_name(*node));
    } else {
      for (const toml::node& element : *rules) {
        const toml::table* table = element.as_table();
        if (table == nullptr) {
          problems.error(element.source(), std::string("each 'forward' entry must be a table, got ") +
                                               type_name(element));
          continue;
        }
        ForwardRule rule;
        RulePositions positions;
        read_forward_rule(TableReader(*table, "[[forward]]", problems), &zones_seen, &rule,
                          &positions);
        config->forward.push_back(std::move(rule));
        rule_positions.push_back(std::move(positions));
      }
    }
  }
  if (!any_rule_written) {
    problems.error_without_position(
        "no [[forward]] rule: at least one is needed, e.g. [[forward]] zone = \".\" "
        "upstreams = [\"168.63.129.16\"]");
  }

  // An attempt that may outlast the client's whole budget could never be retried elsewhere.
  // Written that way it is an error; the default (4500ms) shrinks to a shorter budget, so
  // lowering query_timeout does not force attempt_timeout into every rule.
  const bool query_timeout_usable = server_positions.query_timeout != Field::bad;
  for (size_t i = 0; i < config->forward.size() && query_timeout_usable; ++i) {
    ForwardRule& rule = config->forward[i];
    const RulePositions& positions = rule_positions[i];
    if (rule.attempt_timeout <= config->server.query_timeout) continue;
    if (positions.attempt_timeout == Field::absent) {
      rule.attempt_timeout = config->server.query_timeout;
    } else if (positions.attempt_timeout == Field::ok) {
      problems.error(positions.table->get("attempt_timeout")->source(),
                     "attempt_timeout (" + format_duration(rule.attempt_timeout) +
                         ") exceeds [server] query_timeout (" +
                         format_duration(config->server.query_timeout) +
                         "): an upstream attempt must fit in the client's budget; lower "
                         "attempt_timeout or raise query_timeout");
    }
  }

  // Only among lists that were read cleanly, so a bad entry is not reported twice.
  const auto usable = [](Field field) { return field != Field::bad; };
  if (usable(server_positions.listen_field) && usable(health_positions.listen_field) &&
      usable(health_positions.tcp_listen_field)) {
    check_listener_collisions(server_positions, health_positions, problems);
  }
  if (usable(server_positions.listen_field)) {
    check_forwarding_loops(rule_positions, server_positions, problems);
  }

  if (!config->forward.empty() && problems.error_count() == 0 &&
      zones_seen.find(".") == zones_seen.end()) {
    problems.warning(root.source(),
                     "no [[forward]] rule for the root zone \".\": names outside the "
                     "configured zones have no upstream");
  }
}

}  // namespace

std::string ConfigError::to_string() const {
  if (line == 0) return file + ": " + message;
  return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

ConfigLoadResult load_config_text(std::string_view text, const std::string& source_name) {
  ConfigLoadResult result;
  Problems problems(source_name);
  try {
    toml::table root;
    try {
      root = toml::parse(text, std::string_view(source_name));
    } catch (const toml::parse_error& error) {
      // The document cannot be trusted past a syntax error, so this is the only problem
      // reported; toml++ gives its position.
      problems.error(error.source(), "TOML syntax error: " + std::string(error.description()));
      result.errors = problems.take_errors();
      return result;
    }
    auto config = std::make_shared<Config>();
    config->source = source_name;
    read_document(root, config.get(), problems);
    config->warnings = problems.take_warnings();
    result.errors = problems.take_errors();
    if (result.errors.empty()) result.config = std::move(config);
  } catch (const std::exception& error) {
    // Nothing may escape: a reload must never take the running process down.
    result.config.reset();
    result.errors = problems.take_errors();
    result.errors.push_back(
        ConfigError{source_name, 0, 0, std::string("internal error while loading: ") + error.what()});
  }
  return result;
}

ConfigLoadResult load_config_file(const std::string& path) {
  ConfigLoadResult result;
  try {
    struct stat info {};
    if (::stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode)) {
      result.errors.push_back(ConfigError{path, 0, 0, "cannot read: is a directory"});
      return result;
    }
    std::ifstream file(path, std::ios::binary);
    if (!file) {
      result.errors.push_back(ConfigError{path, 0, 0, std::string("cannot open: ") + std::strerror(errno)});
      return result;
    }
    std::string content(static_cast<size_t>(kMaxConfigFileBytes) + 1, '\0');
    file.read(content.data(), kMaxConfigFileBytes + 1);
    if (file.bad()) {
      result.errors.push_back(ConfigError{path, 0, 0, std::string("cannot read: ") + std::strerror(errno)});
      return result;
    }
    content.resize(static_cast<size_t>(file.gcount()));
    if (content.size() > static_cast<size_t>(kMaxConfigFileBytes)) {
      result.errors.push_back(ConfigError{path, 0, 0, "file is larger than 4 MiB; not a configuration"});
      return result;
    }
    return load_config_text(content, path);
  } catch (const std::exception& error) {
    result.config.reset();
    result.errors.push_back(ConfigError{path, 0, 0, std::string("cannot read: ") + error.what()});
    return result;
  }
}

ConfigLoadResult load_default_config() { return load_config_text(default_config_text(), "<default>"); }

}  // namespace hubdns
