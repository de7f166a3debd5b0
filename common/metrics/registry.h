// The metrics registry behind GET /metrics: a fixed set of metric families, each with a
// collector callback that reads its samples at scrape time, rendered as Prometheus text
// exposition format 0.0.4.
//
// The registry owns only descriptions and collectors, never the numbers: hot-path writers
// bump their own atomics (ForwarderCounters, Histogram, ...) and never look anything up
// here. Threads: families are added on the main thread before any worker or the control
// loop starts, and never removed; render() runs on the control loop (any single thread;
// it is const and takes no lock). Collectors run inside render() and must only read
// atomics or immutable snapshots, and must outlive their registry's last render().
//
// Registration mistakes (bad names, duplicates, a counter without `_total`) and collector
// mistakes (wrong number of label values, a histogram sample in a counter family) are
// programming errors: the process aborts with a message naming the family. The first
// test that renders finds them; returning errors would only add untested paths to main().
#pragma once

#include <atomic>
#include <concepts>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace hubdns {

// SPEC: every metric name starts with this.
inline constexpr std::string_view kMetricPrefix = "hubdns_";
// The Content-Type of render()'s output.
inline constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

enum class MetricType : uint8_t { counter, gauge, histogram };

struct MetricFamilyInfo {
  std::string name{};  // full name as exposed, e.g. "hubdns_dns_queries_total"
  MetricType type = MetricType::counter;
  std::string help{};  // one sentence; escaped on output
  std::vector<std::string> label_names{};  // default initializers: designated initializers may omit them
};

// A fixed-bucket histogram that any thread may observe into without a lock. Values and
// bucket bounds are integers in a small unit (e.g. microseconds) so that observe() is two
// relaxed fetch_adds, no floating-point CAS loop; they are divided by units_per_base when
// rendered (e.g. 1'000'000 to expose seconds, as Prometheus' base-unit convention asks).
class Histogram {
 public:
  struct Snapshot {
    std::vector<uint64_t> cumulative;  // one per upper bound, then +Inf (== count)
    uint64_t count = 0;
    uint64_t sum = 0;  // in the histogram's units
  };

  // upper_bounds: strictly increasing, at least one; aborts otherwise (programming error).
  explicit Histogram(std::vector<uint64_t> upper_bounds, uint64_t units_per_base = 1);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // Any thread. A value equal to a bound falls in that bound's bucket (Prometheus `le`).
  void observe(uint64_t value);

  // Counts read one by one while writers go on: each bucket is exact at some instant, and
  // the cumulative counts and `count` are made consistent with each other (not with sum).
  Snapshot snapshot() const;

  const std::vector<uint64_t>& upper_bounds() const { return upper_bounds_; }
  uint64_t units_per_base() const { return units_per_base_; }

 private:
  std::vector<uint64_t> upper_bounds_;
  uint64_t units_per_base_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // per bucket (not cumulative), +Inf last
  std::atomic<uint64_t> sum_{0};
};

// Label values of one sample, in the order of the family's label names. Built from a braced
// list ({"udp"}) or from a span for label sets only known at run time.
class LabelValues {
 public:
  LabelValues() = default;
  // The list's array lives until the end of the full expression: use only as an argument.
  LabelValues(std::initializer_list<std::string_view> values) : values_(values.begin(), values.size()) {}
  LabelValues(std::span<const std::string_view> values) : values_(values) {}
  std::span<const std::string_view> values() const { return values_; }

 private:
  std::span<const std::string_view> values_;
};

class MetricSink;
using MetricCollector = std::function<void(MetricSink&)>;

struct RegisteredMetricFamily {
  MetricFamilyInfo info;
  MetricCollector collector;
};

// What a collector writes its samples to during render(); each add() appends one sample
// (a histogram: its buckets, sum and count) to the output at once, in the order given.
class MetricSink {
 public:
  MetricSink(const MetricSink&) = delete;
  MetricSink& operator=(const MetricSink&) = delete;

  template <std::integral T>
  void add(LabelValues labels, T value) {
    if constexpr (std::is_signed_v<T>) {
      add_signed(labels, static_cast<int64_t>(value));
    } else {
      add_unsigned(labels, static_cast<uint64_t>(value));
    }
  }
  template <std::integral T>
  void add(LabelValues labels, const std::atomic<T>& value) {
    add(labels, value.load(std::memory_order_relaxed));
  }
  template <std::floating_point T>
  void add(LabelValues labels, T value) {
    add_double(labels, static_cast<double>(value));
  }
  void add(LabelValues labels, const Histogram& histogram);

 private:
  friend class MetricsRegistry;
  MetricSink(std::string* out, const RegisteredMetricFamily* family) : out_(out), family_(family) {}

  void add_unsigned(LabelValues labels, uint64_t value);
  void add_signed(LabelValues labels, int64_t value);
  void add_double(LabelValues labels, double value);
  // Appends `name{labels[,le="..."]} ` (with the trailing space) after checking the labels.
  void begin_sample(std::string_view suffix, LabelValues labels, std::string_view le);
  void check_scalar_family() const;

  std::string* out_;
  const RegisteredMetricFamily* family_;
};

class MetricsRegistry {
 public:
  MetricsRegistry() = default;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Main thread, before other threads start. Aborts with registration_error()'s message if
  // that is not empty.
  void add_family(MetricFamilyInfo info, MetricCollector collector);

  // Why add_family() would refuse `info`, or "" if it would accept it. Names must match
  // [a-zA-Z_][a-zA-Z0-9_]*, start with kMetricPrefix, be unique (histogram series names
  // included), counters must end in `_total`; label names must match the same pattern,
  // not start with "__", be unique, and not be "le" in a histogram; help must not be empty.
  std::string registration_error(const MetricFamilyInfo& info) const;

  // The whole exposition: families sorted by name, each as # HELP, # TYPE, then its samples
  // in the order its collector added them.
  std::string render() const;

  size_t family_count() const { return families_.size(); }

 private:
  // Sorted by name: a stable order however main() composes the registrations.
  std::map<std::string, RegisteredMetricFamily, std::less<>> families_;
};

// The text of a sample value as the format expects it: integers in plain decimal, other
// values in the shortest form that reads back exactly, and NaN, +Inf, -Inf.
std::string format_metric_value(double value);

// Escaping of the exposition format: help text escapes `\` and newline; label values also `"`.
std::string escape_metric_help(std::string_view help);
std::string escape_label_value(std::string_view value);

}  // namespace hubdns
