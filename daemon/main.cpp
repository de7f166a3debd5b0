// hubdns: the composition root. Parses the command line, loads the configuration (conf/),
// binds the DNS listeners and starts the DNS workers (forwarder/), then runs the control
// loop on the main thread: the health HTTP endpoint (probe/) and signal handling. This is
// the only place where forwarder/ and probe/ meet, besides common/.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/cache/cache_metrics.h"
#include "common/cache/packet_cache.h"
#include "common/config/config.h"
#include "common/health/process_state.h"
#include "common/health/upstream_health.h"
#include "common/log/log.h"
#include "common/metrics/forwarder_counters.h"
#include "common/metrics/forwarder_metrics.h"
#include "common/metrics/registry.h"
#include "common/util/clock.h"
#include "common/util/scheduling.h"
#include "common/uv/handle.h"
#include "conf/loader.h"
#include "forwarder/dns_worker.h"
#include "daemon/reloader.h"
#include "forwarder/listen_sockets.h"
#include "probe/admin_auth.h"
#include "probe/cache_admin.h"
#include "probe/curl_multi.h"
#include "probe/health_monitor.h"
#include "probe/health_server.h"
#include "probe/scheduled_events.h"
#include "probe/systemd_notify.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitBadConfig = 1;
constexpr int kExitRuntime = 2;
// The control loop's requested time slice (EEVDF): short enough that a woken probe
// handler preempts a busy DNS worker at once, the work it does per wake-up is far less.
constexpr uint64_t kControlLoopSliceUs = 100;

void print_usage(FILE* out) {
  std::fputs(
      "Usage: hubdns [OPTIONS]\n"
      "\n"
      "A DNS forwarder (UDP and TCP, conditional forwarding, failover) with an HTTP health\n"
      "endpoint that tells a load balancer whether this instance can resolve.\n"
      "\n"
      "Options:\n"
      "  -c, --config FILE         run with the configuration in FILE (TOML)\n"
      "      --check-config FILE   validate FILE: print 'ok' or every error as\n"
      "                            FILE:LINE:COL: message; exit 0 or 1\n"
      "      --print-default-config\n"
      "                            print the embedded default configuration\n"
      "      --log-level LEVEL     debug, info (default), warn or error\n"
      "  -V, --version             print the version\n"
      "  -h, --help                print this help\n"
      "\n"
      "Without --config, hubdns runs on its embedded default: DNS on 127.0.0.1:5300 (UDP and\n"
      "TCP), health on http://127.0.0.1:8053 (/readyz, /livez), forwarding everything to the\n"
      "nameservers of /etc/resolv.conf. Try:\n"
      "  dig @127.0.0.1 -p 5300 example.com\n"
      "  curl -i http://127.0.0.1:8053/readyz\n"
      "\n"
      "Exit codes: 0 clean stop, 1 bad configuration or arguments, 2 runtime failure.\n",
      out);
}

int usage_error(const char* message, const char* argument) {
  std::fprintf(stderr, "hubdns: %s%s%s\nTry 'hubdns --help'.\n", message, argument ? ": " : "",
               argument ? argument : "");
  return kExitBadConfig;
}

void print_errors(const hubdns::ConfigLoadResult& result, FILE* out) {
  for (const hubdns::ConfigError& error : result.errors) {
    std::fprintf(out, "%s\n", error.to_string().c_str());
  }
}

struct Options {
  enum class Mode { run, check_config, print_default, version, help } mode = Mode::run;
  std::string config_path;
  hubdns::LogLevel log_level = hubdns::LogLevel::info;
};

// Returns -1 when parsing succeeded, otherwise the exit code.
int parse_options(int argc, char** argv, Options* options) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    // Accept "--option=value" as well as "--option value".
    std::string inline_value;
    bool has_inline = false;
    if (arg.rfind("--", 0) == 0) {
      size_t eq = arg.find('=');
      if (eq != std::string::npos) {
        inline_value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
        has_inline = true;
      }
    }
    auto take = [&]() -> const char* { return has_inline ? inline_value.c_str() : value(); };
    if (arg == "-c" || arg == "--config" || arg == "--check-config") {
      const char* path = take();
      if (path == nullptr) return usage_error((arg + " needs a file").c_str(), nullptr);
      // One file per run: a second one would silently win over the first.
      if (!options->config_path.empty()) {
        return usage_error("give one configuration file (--config or --check-config), not two", path);
      }
      options->config_path = path;
      if (arg == "--check-config") options->mode = Options::Mode::check_config;
    } else if (arg == "--print-default-config") {
      options->mode = Options::Mode::print_default;
    } else if (arg == "--log-level") {
      const char* level = take();
      if (level == nullptr) return usage_error("--log-level needs a level", nullptr);
      std::string l = level;
      if (l == "debug") options->log_level = hubdns::LogLevel::debug;
      else if (l == "info") options->log_level = hubdns::LogLevel::info;
      else if (l == "warn") options->log_level = hubdns::LogLevel::warn;
      else if (l == "error") options->log_level = hubdns::LogLevel::error;
      else return usage_error("unknown log level (debug, info, warn, error)", level);
    } else if (arg == "-V" || arg == "--version") {
      options->mode = Options::Mode::version;
    } else if (arg == "-h" || arg == "--help") {
      options->mode = Options::Mode::help;
    } else {
      return usage_error("unknown argument", argv[i]);
    }
  }
  return -1;
}

std::string join_addresses(const std::vector<hubdns::SocketAddress>& addresses) {
  std::string out;
  for (const auto& address : addresses) {
    if (!out.empty()) out += ",";
    out += address.to_string();
  }
  return out;
}

// The control loop: health endpoint, health checks, signals and its own heartbeat; runs on
// the main thread.
int run_daemon(const hubdns::ConfigSnapshot& config, const std::string& config_path) {
  using namespace hubdns;
  unsigned worker_count = config->server.workers;
  if (worker_count == 0) worker_count = std::max(1u, std::thread::hardware_concurrency());

  CurlGlobal curl_global;  // before any thread starts (IMDS requests, probe/curl_multi.h)
  ProcessState state(worker_count);
  ForwarderCounters counters;
  // Families are registered here, before any thread starts; /metrics renders them on the
  // control loop from the counters the workers bump.
  MetricsRegistry metrics;
  register_forwarder_metrics(metrics, counters);

  std::string error;
  auto sockets = open_listen_sockets(config->server.listen, worker_count, &error);
  if (sockets.empty()) {
    LOG_ERROR("msg=\"cannot bind DNS listener\" error=\"%s\"", error.c_str());
    return kExitRuntime;
  }
  std::vector<SocketAddress> dns_addresses;
  for (const ListenSocket& socket : sockets[0]) dns_addresses.push_back(socket.address);

  EventLoop control_loop;
  int exit_code = kExitOk;
  {
    // The DNS side: workers, their configuration snapshot, the upstream health table
    // (written by the checks on this loop, read by every worker) and the shared answer
    // cache, replaced together on a reload (daemon/reloader.h).
    Reloader dns(control_loop.get(), config_path, worker_count, &state, &counters, config);
    dns.register_metrics(metrics);
    register_cache_metrics(metrics, dns.cache_slot());
    HealthServer health(control_loop.get(), state);
    health.add_route("GET", "/metrics", [&metrics](const HttpRequest&, const RequestContext&) {
      HttpResponse response = HttpResponse::text(200, metrics.render());
      response.content_type = std::string(kMetricsContentType);
      return response;
    });
    // Upstream checks, data-path self-check, TCP probe port, /status, POST /drain and
    // /undrain; its /metrics families are registered here, before any worker starts.
    HealthMonitor monitor(control_loop.get(), &health, config, dns.health(), &state, dns_addresses);
    monitor.register_metrics(metrics);
    dns.attach_monitor(&monitor);
    add_cache_routes(health, dns.cache_slot(), dns.config_slot());
    monitor.add_status_contributor([&dns](StatusView& view) {
      dns.fill_status(&view);
      const std::shared_ptr<PacketCache>& cache = *dns.cache_slot();
      if (!cache) return;
      PacketCache::Stats stats = cache->stats();
      view.cache = {.enabled = true, .max_entries = dns.config()->cache.max_entries, .entries = stats.entries,
                    .bytes = stats.bytes, .hits = stats.hits, .misses = stats.misses,
                    .stale_hits = stats.stale_hits, .insertions = stats.insertions, .evictions = stats.evictions};
    });
    if (health.listen(config->health.listen, &error) != 0) {
      LOG_ERROR("msg=\"cannot bind health listener\" error=\"%s\"", error.c_str());
      close_listen_sockets(sockets);
      health.close();
      control_loop.close();
      return kExitRuntime;
    }

    // Lifecycle (probe/scheduled_events.h, probe/systemd_notify.h): IMDS scheduled events
    // on libcurl multi, and systemd notifications. An event for this VM drains like POST /drain,
    // and the drain ends when the event is over and this process is still running.
    CurlMulti http(control_loop.get());
    ScheduledEventsWatcher scheduled_events(control_loop.get(), &http, config->lifecycle,
                                            [&state, &monitor](const ScheduledEvent&, bool drain) {
                                              state.set_event_draining(drain);
                                              monitor.readiness_may_have_changed();
                                            });
    scheduled_events.register_metrics(metrics);
    monitor.add_status_contributor([&scheduled_events](StatusView& view) { scheduled_events.fill_status(&view); });
    SystemdService systemd(control_loop.get(),
                           {.alive = [&health] { return health.liveness().alive; },
                            .status_line = [&monitor] { return service_status_line(monitor.status_view()); }});
    // End of lifecycle setup.

    bool started = dns.start_workers(std::move(sockets), &error);
    if (!started) LOG_ERROR("msg=\"cannot start DNS worker\" error=\"%s\"", error.c_str());
    // After the workers started, so that only this thread (the control loop) gets it: a
    // probe must not wait behind a busy worker's time slice (common/util/scheduling.h).
    std::string priority_error;
    if (config->health.realtime_priority && request_realtime_priority(1, &priority_error)) {
      LOG_INFO("msg=\"control loop runs at real-time priority\" policy=SCHED_FIFO priority=1");
    } else {
      if (config->health.realtime_priority) {
        LOG_INFO("msg=\"control loop stays at normal priority (real-time not allowed: run as root, with CAP_SYS_NICE or LimitRTPRIO=1)\" error=\"%s\"",
                 priority_error.c_str());
      }
      if (std::string slice_error; !request_short_time_slice(kControlLoopSliceUs, &slice_error)) {
        LOG_INFO("msg=\"could not ask for a short time slice for the control loop\" error=\"%s\"", slice_error.c_str());
      }
    }

    // Signals are handled on the control loop (libuv turns them into loop callbacks).
    // SIGTERM/SIGINT drain, then stop: readiness 503 at once while DNS is still served for
    // lifecycle.drain_grace (the load balancer's probes notice and stop sending), then the
    // workers stop listening (what is queued is still answered), the queries in flight
    // finish (at most query_timeout + 1 s), and the process exits 0. A second signal stops
    // at once.
    struct SignalContext {
      Reloader* dns;
      HealthServer* health;
      ProcessState* state;
      SystemdService* systemd;
      UvTimer drain_timer;
      uint64_t finish_deadline_ms = 0;
      int stop_signals = 0;
      // SIGHUP and POST /reload: read the file again and switch to it if it is valid.
      Reloader::Outcome reload(const char* trigger) {
        systemd->reloading();
        Reloader::Outcome outcome = dns->reload(trigger);
        systemd->reloaded();
        return outcome;
      }
    } context{&dns, &health, &state, &systemd, UvTimer{}};
    context.drain_timer.init(uv_timer_init, control_loop.get());
    context.drain_timer->data = &context;
    static auto wait_for_workers = [](uv_timer_t* timer) {
      auto* ctx = static_cast<SignalContext*>(timer->data);
      const bool all_drained = ctx->dns->all_drained();
      if (all_drained || monotonic_ms() >= ctx->finish_deadline_ms) {
        if (!all_drained) LOG_WARN("msg=\"queries still in flight at the end of the stop budget; they get SERVFAIL\"");
        uv_timer_stop(timer);
        uv_stop(timer->loop);  // the workers are stopped and joined once the loop returns
      }
    };
    static auto end_of_grace = [](uv_timer_t* timer) {
      auto* ctx = static_cast<SignalContext*>(timer->data);
      LOG_INFO("msg=\"drain grace over: DNS listeners closed, finishing the queries in flight\"");
      ctx->state->set_listeners_bound(false);
      ctx->dns->stop_listening_all();
      ctx->finish_deadline_ms =
          monotonic_ms() + static_cast<uint64_t>(ctx->dns->config()->server.query_timeout.count()) + 1000;
      uv_timer_start(timer, wait_for_workers, 20, 20);
    };
    auto on_stop_signal = [](uv_signal_t* handle, int signum) {
      auto* ctx = static_cast<SignalContext*>(handle->data);
      if (ctx == nullptr) return;
      const char* name = signum == SIGTERM ? "SIGTERM" : "SIGINT";
      if (++ctx->stop_signals > 1) {
        LOG_INFO("msg=\"stopping at once\" signal=%s reason=\"second stop signal\"", name);
        uv_stop(handle->loop);
        return;
      }
      ctx->systemd->stopping();  // STOPPING=1 to systemd
      ctx->state->set_stopping();
      ctx->state->set_draining(true);
      const auto grace = static_cast<uint64_t>(ctx->dns->config()->lifecycle.drain_grace.count());
      LOG_INFO("msg=\"stopping: draining first (readiness 503, DNS still served)\" signal=%s drain_grace_ms=%llu",
               name, static_cast<unsigned long long>(grace));
      uv_timer_start(ctx->drain_timer.get(), end_of_grace, grace, 0);
    };
    health.add_route("POST", "/reload", [&dns, &context](const HttpRequest& request, const RequestContext& peer) {
      const std::string& token = dns.config()->health.admin_token;
      if (auto refusal = admin_refusal(request, peer.peer, token)) return std::move(*refusal);
      Reloader::Outcome outcome = context.reload("POST /reload");
      if (outcome.ok) return HttpResponse::text(200, outcome.message);
      return HttpResponse::text(500, "reload failed; the running configuration stays:\n" + outcome.message + "\n");
    });
    UvSignal sigterm, sigint, sighup;
    sigterm.init(uv_signal_init, control_loop.get());
    sigint.init(uv_signal_init, control_loop.get());
    sighup.init(uv_signal_init, control_loop.get());
    sigterm->data = sigint->data = sighup->data = &context;
    uv_signal_start(sigterm.get(), on_stop_signal, SIGTERM);
    uv_signal_start(sigint.get(), on_stop_signal, SIGINT);
    uv_signal_start(
        sighup.get(),
        [](uv_signal_t* handle, int) {
          if (auto* ctx = static_cast<SignalContext*>(handle->data)) ctx->reload("SIGHUP");
        },
        SIGHUP);

    if (started) {
      state.set_listeners_bound(true);
      LOG_INFO("msg=\"hubdns started\" version=%s config=%s workers=%u dns=%s health=%s",
               HUBDNS_VERSION, config->source.c_str(), worker_count, join_addresses(dns_addresses).c_str(),
               join_addresses(health.bound_addresses()).c_str());
      monitor.start();  // the first check round runs as soon as the loop does
      scheduled_events.start();
      systemd.start();  // READY=1 from the loop's first iteration
      control_loop.run();
    } else {
      exit_code = kExitRuntime;
    }

    state.set_listeners_bound(false);
    dns.stop_all();
    systemd.stopping();
    systemd.close();
    scheduled_events.close();  // before the CurlMulti it uses
    http.close();
    monitor.close();
    health.close();
    context.drain_timer.close();
    sigterm.close();
    sigint.close();
    sighup.close();
  }
  if (control_loop.close() != 0) LOG_WARN("msg=\"control loop did not close cleanly\"");
  LOG_INFO("msg=\"hubdns stopped\"");
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  int parse_result = parse_options(argc, argv, &options);
  if (parse_result >= 0) return parse_result;
  hubdns::set_log_level(options.log_level);

  switch (options.mode) {
    case Options::Mode::help:
      print_usage(stdout);
      return kExitOk;
    case Options::Mode::version:
      std::printf("hubdns %s\n", HUBDNS_VERSION);
      return kExitOk;
    case Options::Mode::print_default: {
      std::string_view text = hubdns::default_config_text();
      std::fwrite(text.data(), 1, text.size(), stdout);
      return kExitOk;
    }
    case Options::Mode::check_config: {
      hubdns::ConfigLoadResult result = hubdns::load_config_file(options.config_path);
      if (!result.ok()) {
        // The errors are this command's report, so they go to stdout like "ok" does.
        print_errors(result, stdout);
        return kExitBadConfig;
      }
      // Warnings do not make the file invalid; they go to stderr so stdout stays "ok".
      for (const std::string& warning : result.config->warnings) {
        std::fprintf(stderr, "warning: %s\n", warning.c_str());
      }
      std::printf("ok\n");
      return kExitOk;
    }
    case Options::Mode::run:
      break;
  }

  hubdns::ConfigLoadResult loaded = options.config_path.empty()
                                        ? hubdns::load_default_config()
                                        : hubdns::load_config_file(options.config_path);
  if (!loaded.ok()) {
    print_errors(loaded, stderr);
    return kExitBadConfig;
  }
  for (const std::string& warning : loaded.config->warnings) {
    LOG_WARN("msg=\"configuration warning\" detail=\"%s\"", warning.c_str());
  }
  // A client that vanishes must not kill the process through SIGPIPE.
  std::signal(SIGPIPE, SIG_IGN);
  return run_daemon(loaded.config, options.config_path);
}
