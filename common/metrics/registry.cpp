#include "common/metrics/registry.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <utility>

namespace hubdns {
namespace {

// Programming errors only (see the header): say which family and why, then stop.
[[noreturn]] void metrics_bug(std::string_view family, std::string_view message) {
  std::fprintf(stderr, "hubdns: metrics: %.*s: %.*s\n", static_cast<int>(family.size()), family.data(),
               static_cast<int>(message.size()), message.data());
  std::fflush(stderr);
  std::abort();
}

bool is_valid_name(std::string_view name) {
  if (name.empty()) return false;
  auto letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  if (!letter(name.front())) return false;
  return std::all_of(name.begin() + 1, name.end(), [&](char c) { return letter(c) || (c >= '0' && c <= '9'); });
}

std::string_view type_name(MetricType type) {
  switch (type) {
    case MetricType::counter:
      return "counter";
    case MetricType::gauge:
      return "gauge";
    case MetricType::histogram:
      return "histogram";
  }
  return "untyped";
}

// The names a family's samples appear under; no two families may share one, or a
// scraper would merge them.
std::vector<std::string> series_names(const MetricFamilyInfo& info) {
  if (info.type == MetricType::histogram) {
    return {info.name, info.name + "_bucket", info.name + "_sum", info.name + "_count"};
  }
  return {info.name};
}

void append_unsigned(std::string* out, uint64_t value) {
  char buffer[24];
  auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  out->append(buffer, result.ptr);
}

void append_signed(std::string* out, int64_t value) {
  char buffer[24];
  auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  out->append(buffer, result.ptr);
}

// A histogram quantity (bound or sum) in base units; exact when it divides evenly.
std::string scaled_value(uint64_t value, uint64_t units_per_base) {
  if (value % units_per_base == 0) {
    std::string text;
    append_unsigned(&text, value / units_per_base);
    return text;
  }
  return format_metric_value(static_cast<double>(value) / static_cast<double>(units_per_base));
}

}  // namespace

std::string format_metric_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // Whole numbers below 2^53 are exact in a double: print them as integers, never "1e+06".
  if (std::trunc(value) == value && std::fabs(value) < 9007199254740992.0) {
    std::string text;
    append_signed(&text, static_cast<int64_t>(value));
    return text;
  }
  char buffer[32];
  auto result = std::to_chars(buffer, buffer + sizeof buffer, value);  // shortest round-trip
  return std::string(buffer, result.ptr);
}

std::string escape_metric_help(std::string_view help) {
  std::string escaped;
  escaped.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      escaped += "\\\\";
    } else if (c == '\n') {
      escaped += "\\n";
    } else {
      escaped += c;
    }
  }
  return escaped;
}

std::string escape_label_value(std::string_view value) {
  std::string escaped;
  escaped.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      escaped += "\\\\";
    } else if (c == '"') {
      escaped += "\\\"";
    } else if (c == '\n') {
      escaped += "\\n";
    } else {
      escaped += c;
    }
  }
  return escaped;
}

Histogram::Histogram(std::vector<uint64_t> upper_bounds, uint64_t units_per_base)
    : upper_bounds_(std::move(upper_bounds)), units_per_base_(units_per_base) {
  if (upper_bounds_.empty()) metrics_bug("histogram", "needs at least one upper bound");
  if (units_per_base_ == 0) metrics_bug("histogram", "units_per_base must not be 0");
  for (size_t i = 1; i < upper_bounds_.size(); ++i) {
    if (upper_bounds_[i] <= upper_bounds_[i - 1]) metrics_bug("histogram", "upper bounds must strictly increase");
  }
  buckets_ = std::make_unique<std::atomic<uint64_t>[]>(upper_bounds_.size() + 1);
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void Histogram::observe(uint64_t value) {
  // First bound >= value; past the end is the +Inf bucket.
  auto bound = std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value);
  buckets_[static_cast<size_t>(bound - upper_bounds_.begin())].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot snapshot;
  snapshot.cumulative.reserve(upper_bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    snapshot.cumulative.push_back(running);
  }
  // From the buckets actually read, not a separate counter, so +Inf always equals _count.
  snapshot.count = running;
  snapshot.sum = sum_.load(std::memory_order_relaxed);
  return snapshot;
}

void MetricSink::begin_sample(std::string_view suffix, LabelValues labels, std::string_view le) {
  const MetricFamilyInfo& info = family_->info;
  if (labels.values().size() != info.label_names.size()) {
    metrics_bug(info.name, "collector gave " + std::to_string(labels.values().size()) +
                               " label values for " + std::to_string(info.label_names.size()) + " label names");
  }
  std::string& out = *out_;
  out += info.name;
  out += suffix;
  if (!info.label_names.empty() || !le.empty()) {
    out += '{';
    for (size_t i = 0; i < info.label_names.size(); ++i) {
      if (i != 0) out += ',';
      out += info.label_names[i];
      out += "=\"";
      out += escape_label_value(labels.values()[i]);
      out += '"';
    }
    if (!le.empty()) {
      if (!info.label_names.empty()) out += ',';
      out += "le=\"";
      out += le;
      out += '"';
    }
    out += '}';
  }
  out += ' ';
}

void MetricSink::check_scalar_family() const {
  if (family_->info.type == MetricType::histogram) {
    metrics_bug(family_->info.name, "collector added a plain value to a histogram family");
  }
}

void MetricSink::add_unsigned(LabelValues labels, uint64_t value) {
  check_scalar_family();
  begin_sample({}, labels, {});
  append_unsigned(out_, value);
  *out_ += '\n';
}

void MetricSink::add_signed(LabelValues labels, int64_t value) {
  check_scalar_family();
  begin_sample({}, labels, {});
  append_signed(out_, value);
  *out_ += '\n';
}

void MetricSink::add_double(LabelValues labels, double value) {
  check_scalar_family();
  begin_sample({}, labels, {});
  *out_ += format_metric_value(value);
  *out_ += '\n';
}

void MetricSink::add(LabelValues labels, const Histogram& histogram) {
  if (family_->info.type != MetricType::histogram) {
    metrics_bug(family_->info.name, "collector added a histogram to a family that is not one");
  }
  const Histogram::Snapshot snapshot = histogram.snapshot();
  const std::vector<uint64_t>& bounds = histogram.upper_bounds();
  for (size_t i = 0; i < bounds.size(); ++i) {
    begin_sample("_bucket", labels, scaled_value(bounds[i], histogram.units_per_base()));
    append_unsigned(out_, snapshot.cumulative[i]);
    *out_ += '\n';
  }
  begin_sample("_bucket", labels, "+Inf");
  append_unsigned(out_, snapshot.count);
  *out_ += '\n';
  begin_sample("_sum", labels, {});
  *out_ += scaled_value(snapshot.sum, histogram.units_per_base());
  *out_ += '\n';
  begin_sample("_count", labels, {});
  append_unsigned(out_, snapshot.count);
  *out_ += '\n';
}

std::string MetricsRegistry::registration_error(const MetricFamilyInfo& info) const {
  if (!is_valid_name(info.name)) return "metric name must match [a-zA-Z_][a-zA-Z0-9_]*";
  if (!info.name.starts_with(kMetricPrefix) || info.name.size() == kMetricPrefix.size()) {
    return "metric name must start with \"" + std::string(kMetricPrefix) + "\" and go on";
  }
  if (info.type == MetricType::counter && !info.name.ends_with("_total")) {
    return "a counter's name must end in _total";
  }
  if (info.help.empty()) return "help text must not be empty";
  for (size_t i = 0; i < info.label_names.size(); ++i) {
    const std::string& label = info.label_names[i];
    if (!is_valid_name(label)) return "label name \"" + label + "\" must match [a-zA-Z_][a-zA-Z0-9_]*";
    if (label.starts_with("__")) return "label name \"" + label + "\" is reserved (starts with __)";
    if (info.type == MetricType::histogram && label == "le") return "label name \"le\" is reserved in a histogram";
    for (size_t j = 0; j < i; ++j) {
      if (info.label_names[j] == label) return "label name \"" + label + "\" appears twice";
    }
  }
  const std::vector<std::string> mine = series_names(info);
  for (const auto& [name, family] : families_) {
    for (const std::string& theirs : series_names(family.info)) {
      if (std::find(mine.begin(), mine.end(), theirs) != mine.end()) {
        return "series name \"" + theirs + "\" is already used by family " + name;
      }
    }
  }
  return {};
}

void MetricsRegistry::add_family(MetricFamilyInfo info, MetricCollector collector) {
  const std::string error = registration_error(info);
  if (!error.empty()) metrics_bug(info.name, error);
  if (!collector) metrics_bug(info.name, "no collector");
  std::string name = info.name;
  families_.emplace(std::move(name), RegisteredMetricFamily{std::move(info), std::move(collector)});
}

std::string MetricsRegistry::render() const {
  std::string out;
  out.reserve(families_.size() * 256);
  for (const auto& [name, family] : families_) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += escape_metric_help(family.info.help);
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type_name(family.info.type);
    out += '\n';
    MetricSink sink(&out, &family);
    family.collector(sink);
  }
  return out;
}

}  // namespace hubdns
