#include "daemon/reloader.h"

#include <unistd.h>

#include <algorithm>

#include "common/log/log.h"
#include "common/util/clock.h"
#include "conf/loader.h"
#include "forwarder/listen_sockets.h"

namespace hubdns {

namespace {

constexpr uint64_t kRetireCheckMs = 50;

bool same_cache_settings(const CacheConfig& a, const CacheConfig& b) {
  return a.enabled == b.enabled && a.max_entries == b.max_entries && a.min_ttl == b.min_ttl &&
         a.max_ttl == b.max_ttl && a.max_negative_ttl == b.max_negative_ttl && a.serve_stale == b.serve_stale &&
         a.stale_answer_ttl == b.stale_answer_ttl && a.max_stale == b.max_stale;
}

// Settings a reload cannot apply to a running process: said, never silently ignored.
std::vector<std::string> restart_only_changes(const Config& running, const Config& next) {
  std::vector<std::string> changed;
  if (running.server.workers != next.server.workers) changed.push_back("[server] workers");
  if (running.health.listen != next.health.listen) changed.push_back("[health] listen");
  if (running.health.tcp_listen != next.health.tcp_listen) changed.push_back("[health] tcp_listen");
  if (running.health.realtime_priority != next.health.realtime_priority) changed.push_back("[health] realtime_priority");
  const LifecycleConfig& a = running.lifecycle;
  const LifecycleConfig& b = next.lifecycle;
  if (a.drain_grace != b.drain_grace || a.scheduled_events != b.scheduled_events ||
      a.ack_scheduled_events != b.ack_scheduled_events || a.metadata_url != b.metadata_url) {
    changed.push_back("[lifecycle]");
  }
  return changed;
}

void close_sockets(std::vector<ListenSocket>& sockets) {
  for (ListenSocket& socket : sockets) {
    if (socket.udp_fd >= 0) ::close(socket.udp_fd);
    if (socket.tcp_fd >= 0) ::close(socket.tcp_fd);
    socket.udp_fd = socket.tcp_fd = -1;
  }
}

}  // namespace

Reloader::Reloader(uv_loop_t* loop, std::string config_path, unsigned worker_count, ProcessState* state,
                   ForwarderCounters* counters, ConfigSnapshot config)
    : loop_(loop),
      config_path_(std::move(config_path)),
      worker_count_(worker_count),
      state_(state),
      counters_(counters),
      config_(std::move(config)),
      health_(std::make_shared<UpstreamHealthTable>(*config_)) {
  if (config_->cache.enabled) cache_ = std::make_shared<PacketCache>(config_->cache);
  retire_timer_.init(uv_timer_init, loop_);
  retire_timer_->data = this;
}

Reloader::~Reloader() {
  stop_all();
  retire_timer_.close();
}

bool Reloader::start_workers(std::vector<std::vector<ListenSocket>> sockets, std::string* error) {
  for (unsigned i = 0; i < worker_count_; ++i) {
    workers_.push_back(std::make_unique<DnsWorker>(i, config_, health_, state_, counters_, cache_.get(),
                                                   std::move(sockets[i])));
  }
  for (auto& worker : workers_) {
    if (!worker->start(error)) return false;
  }
  return true;
}

bool Reloader::build_generation(const ConfigSnapshot& next, const SharedUpstreamHealth& health,
                                const std::shared_ptr<PacketCache>& cache,
                                std::vector<std::unique_ptr<DnsWorker>>* workers, std::string* error) {
  const std::vector<SocketAddress>& running = config_->server.listen;
  std::vector<SocketAddress> added;
  for (const SocketAddress& address : next->server.listen) {
    if (std::find(running.begin(), running.end(), address) == running.end()) added.push_back(address);
  }
  // Every socket of the new generation, per worker, in the new configuration's order.
  std::vector<std::vector<ListenSocket>> sockets(worker_count_);
  std::vector<std::vector<ListenSocket>> opened;
  if (!added.empty()) {
    opened = open_listen_sockets(added, worker_count_, error);
    if (opened.empty()) return false;
  }
  bool ok = true;
  for (unsigned i = 0; i < worker_count_ && ok; ++i) {
    std::vector<ListenSocket> kept = workers_[i]->duplicate_listen_sockets(error);
    if (kept.empty() && !running.empty()) ok = false;
    for (const SocketAddress& address : next->server.listen) {
      auto at_running = std::find(running.begin(), running.end(), address);
      if (at_running != running.end() && ok) {
        size_t k = static_cast<size_t>(at_running - running.begin());
        sockets[i].push_back(kept[k]);
        kept[k].udp_fd = kept[k].tcp_fd = -1;
      } else if (at_running == running.end()) {
        size_t k = static_cast<size_t>(std::find(added.begin(), added.end(), address) - added.begin());
        sockets[i].push_back(opened[i][k]);
        opened[i][k].udp_fd = opened[i][k].tcp_fd = -1;
      }
    }
    close_sockets(kept);  // addresses that are gone: only the old workers keep them
  }
  for (auto& per_worker : opened) close_sockets(per_worker);  // left over after a failure
  if (!ok) {
    for (auto& per_worker : sockets) close_sockets(per_worker);
    return false;
  }
  for (unsigned i = 0; i < worker_count_; ++i) {
    workers->push_back(std::make_unique<DnsWorker>(i, next, health, state_, counters_, cache.get(),
                                                   std::move(sockets[i])));
  }
  // Every worker prepared before any runs: a failure leaves the running generation alone
  // (a started worker would already be taking queries from the shared sockets).
  for (auto& worker : *workers) {
    if (!worker->prepare(error)) {
      workers->clear();  // never launched: destroying them closes their duplicates only
      return false;
    }
  }
  for (auto& worker : *workers) worker->launch();
  return true;
}

Reloader::Outcome Reloader::reload(const char* trigger) {
  Outcome outcome;
  if (stopping_) {
    LOG_WARN("msg=\"configuration reload ignored: the process is stopping\" trigger=%s", trigger);
    outcome.message = "the process is stopping: no reload";
    return outcome;
  }
  const std::string source = config_path_.empty() ? "<default>" : config_path_;
  LOG_INFO("msg=\"configuration reload\" trigger=%s file=%s", trigger, source.c_str());
  ConfigLoadResult loaded = config_path_.empty() ? load_default_config() : load_config_file(config_path_);
  auto fail = [&](const std::string& why) {
    ++reloads_failed_;
    last_reload_ok_ = false;
    last_reload_error_ = why;
    outcome.ok = false;
    outcome.message = why;
    LOG_ERROR("msg=\"configuration reload failed; the running configuration stays\" generation=%llu error=\"%s\"",
              static_cast<unsigned long long>(generation_), why.c_str());
    return outcome;
  };
  if (!loaded.ok()) {
    std::string errors;
    for (const ConfigError& error : loaded.errors) {
      LOG_ERROR("msg=\"configuration error\" detail=\"%s\"", error.to_string().c_str());
      errors += (errors.empty() ? "" : "\n") + error.to_string();
    }
    return fail(errors);
  }
  const ConfigSnapshot& next = loaded.config;
  if (next->server.listen.empty()) return fail("[server] listen is empty");

  auto health = std::make_shared<UpstreamHealthTable>(*next, *config_, *health_);
  std::shared_ptr<PacketCache> cache;
  if (next->cache.enabled) {
    cache = cache_ && same_cache_settings(config_->cache, next->cache) ? cache_
                                                                       : std::make_shared<PacketCache>(next->cache);
  }
  const char* cache_state = !cache ? "off" : cache == cache_ ? "kept" : "new, empty";
  const std::vector<std::string> needs_restart = restart_only_changes(*config_, *next);
  std::vector<std::unique_ptr<DnsWorker>> fresh;
  std::string error;
  if (!build_generation(next, health, cache, &fresh, &error)) return fail(error);

  // The new generation answers; the old one stops listening and finishes what it holds.
  const uint64_t budget = static_cast<uint64_t>(config_->server.query_timeout.count()) + 1000;
  for (auto& worker : workers_) {
    worker->request_stop_listening();
    retiring_.push_back({cache_, std::move(worker), monotonic_ms() + budget});
  }
  workers_ = std::move(fresh);
  config_ = next;
  health_ = health;
  cache_ = cache;
  ++generation_;
  ++reloads_ok_;
  last_reload_ok_ = true;
  last_reload_error_.clear();
  if (monitor_ != nullptr) monitor_->reconfigure(config_, health_, generation_, workers_.front()->listen_addresses());
  if (!uv_is_active(retire_timer_.as_handle())) {
    uv_timer_start(retire_timer_.get(), on_retire_timer, kRetireCheckMs, kRetireCheckMs);
  }

  for (const std::string& warning : next->warnings) {
    LOG_WARN("msg=\"configuration warning\" detail=\"%s\"", warning.c_str());
    outcome.message += "warning: " + warning + "\n";
  }
  for (const std::string& setting : needs_restart) {
    LOG_WARN("msg=\"changed setting takes effect at the next restart\" setting=\"%s\"", setting.c_str());
    outcome.message += "warning: " + setting + " changed: takes effect at the next restart\n";
  }
  outcome.ok = true;
  outcome.message += "reloaded: generation " + std::to_string(generation_) + "\n";
  LOG_INFO("msg=\"configuration reloaded\" generation=%llu zones=%zu cache=\"%s\"",
           static_cast<unsigned long long>(generation_), config_->forward.size(), cache_state);
  return outcome;
}

void Reloader::on_retire_timer(uv_timer_t* timer) {
  auto* self = static_cast<Reloader*>(timer->data);
  self->retire_drained();
  if (self->retiring_.empty()) uv_timer_stop(timer);
}

void Reloader::retire_drained() {
  const uint64_t now = monotonic_ms();
  for (auto it = retiring_.begin(); it != retiring_.end();) {
    if (it->worker->drained() || now >= it->deadline_ms) {
      it->worker->request_stop();  // whatever is still pending gets SERVFAIL, never silence
      if (!it->worker->join()) LOG_WARN("msg=\"a DNS worker loop did not close cleanly\"");
      it = retiring_.erase(it);
    } else {
      ++it;
    }
  }
}

void Reloader::stop_listening_all() {
  stopping_ = true;
  for (auto& worker : workers_) worker->request_stop_listening();
}

bool Reloader::all_drained() const {
  for (const auto& worker : workers_) {
    if (!worker->drained()) return false;
  }
  for (const Retiring& old : retiring_) {
    if (!old.worker->drained()) return false;
  }
  return true;
}

void Reloader::stop_all() {
  for (auto& worker : workers_) worker->request_stop();
  for (Retiring& old : retiring_) old.worker->request_stop();
  for (auto& worker : workers_) {
    if (!worker->join()) LOG_WARN("msg=\"a DNS worker loop did not close cleanly\"");
  }
  for (Retiring& old : retiring_) {
    if (!old.worker->join()) LOG_WARN("msg=\"a DNS worker loop did not close cleanly\"");
  }
  workers_.clear();
  retiring_.clear();
  if (retire_timer_.initialized()) uv_timer_stop(retire_timer_.get());
}

void Reloader::register_metrics(MetricsRegistry& registry) {
  const Reloader* self = this;
  registry.add_family({.name = "hubdns_config_reloads_total",
                       .type = MetricType::counter,
                       .help = "Configuration reloads (SIGHUP, POST /reload) by result: ok, or error (the running configuration stayed).",
                       .label_names = {"result"}},
                      [self](MetricSink& sink) {
                        sink.add({"ok"}, self->reloads_ok_);
                        sink.add({"error"}, self->reloads_failed_);
                      });
  registry.add_family({.name = "hubdns_config_last_reload_successful",
                       .type = MetricType::gauge,
                       .help = "1 if the last configuration reload succeeded (or none was tried), 0 if it failed."},
                      [self](MetricSink& sink) { sink.add({}, self->last_reload_ok_ ? 1 : 0); });
}

void Reloader::fill_status(StatusView* view) const {
  view->reload = {.ok = reloads_ok_, .failed = reloads_failed_, .last_ok = last_reload_ok_,
                  .last_error = last_reload_error_, .retiring_workers = retiring_.size()};
}

}  // namespace hubdns
