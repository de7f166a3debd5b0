// hubdns: the composition root. Parses the command line, loads the configuration (conf/),
// binds the DNS listeners and starts the DNS workers (forwarder/), then runs the control
// loop on the main thread: the health HTTP endpoint (probe/) and signal handling. This is
// the only place where forwarder/ and probe/ meet, besides common/.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/config/config.h"
#include "common/health/process_state.h"
#include "common/health/upstream_health.h"
#include "common/log/log.h"
#include "common/metrics/forwarder_counters.h"
#include "common/metrics/forwarder_metrics.h"
#include "common/metrics/registry.h"
#include "common/util/clock.h"
#include "common/uv/handle.h"
#include "conf/loader.h"
#include "forwarder/dns_worker.h"
#include "forwarder/listen_sockets.h"
#include "probe/health_monitor.h"
#include "probe/health_server.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitBadConfig = 1;
constexpr int kExitRuntime = 2;

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
int run_daemon(const hubdns::ConfigSnapshot& config) {
  using namespace hubdns;
  unsigned worker_count = config->server.workers;
  if (worker_count == 0) worker_count = std::max(1u, std::thread::hardware_concurrency());

  ProcessState state(worker_count);
  ForwarderCounters counters;
  // Written by the health checks on the control loop, read by every DNS worker.
  auto upstream_health = std::make_shared<UpstreamHealthTable>(*config);
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
    HealthServer health(control_loop.get(), state);
    health.add_route("GET", "/metrics", [&metrics](const HttpRequest&, const RequestContext&) {
      HttpResponse response = HttpResponse::text(200, metrics.render());
      response.content_type = std::string(kMetricsContentType);
      return response;
    });
    // Upstream checks, data-path self-check, TCP probe port, /status, POST /drain and
    // /undrain; its /metrics families are registered here, before any worker starts.
    HealthMonitor monitor(control_loop.get(), &health, config, upstream_health, &state, dns_addresses);
    monitor.register_metrics(metrics);
    if (health.listen(config->health.listen, &error) != 0) {
      LOG_ERROR("msg=\"cannot bind health listener\" error=\"%s\"", error.c_str());
      close_listen_sockets(sockets);
      health.close();
      control_loop.close();
      return kExitRuntime;
    }

    std::vector<std::unique_ptr<DnsWorker>> workers;
    for (unsigned i = 0; i < worker_count; ++i) {
      workers.push_back(std::make_unique<DnsWorker>(i, config, upstream_health, &state, &counters,
                                                    std::move(sockets[i])));
    }
    bool started = true;
    for (auto& worker : workers) {
      if (!worker->start(&error)) {
        LOG_ERROR("msg=\"cannot start DNS worker\" error=\"%s\"", error.c_str());
        started = false;
        break;
      }
    }

    // Signals are handled on the control loop (libuv turns them into loop callbacks).
    struct SignalContext {
      std::vector<std::unique_ptr<DnsWorker>>* workers;
      HealthServer* health;
      ProcessState* state;
      bool stopping = false;
    } context{&workers, &health, &state};
    UvSignal sigterm, sigint, sighup;
    auto on_stop_signal = [](uv_signal_t* handle, int signum) {
      auto* ctx = static_cast<SignalContext*>(handle->data);
      if (ctx == nullptr || ctx->stopping) return;
      ctx->stopping = true;
      LOG_INFO("msg=\"stopping\" signal=%s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
      ctx->state->set_draining(true);
      for (auto& worker : *ctx->workers) worker->request_stop();
      uv_stop(handle->loop);
    };
    sigterm.init(uv_signal_init, control_loop.get());
    sigint.init(uv_signal_init, control_loop.get());
    sighup.init(uv_signal_init, control_loop.get());
    sigterm->data = sigint->data = sighup->data = &context;
    uv_signal_start(sigterm.get(), on_stop_signal, SIGTERM);
    uv_signal_start(sigint.get(), on_stop_signal, SIGINT);
    uv_signal_start(
        sighup.get(),
        [](uv_signal_t*, int) {
          LOG_WARN("msg=\"SIGHUP received; configuration reload is not implemented yet, keeping the running configuration\"");
        },
        SIGHUP);

    if (started) {
      state.set_listeners_bound(true);
      LOG_INFO("msg=\"hubdns started\" version=%s config=%s workers=%u dns=%s health=%s",
               HUBDNS_VERSION, config->source.c_str(), worker_count, join_addresses(dns_addresses).c_str(),
               join_addresses(health.bound_addresses()).c_str());
      monitor.start();  // the first check round runs as soon as the loop does
      control_loop.run();
    } else {
      exit_code = kExitRuntime;
    }

    state.set_listeners_bound(false);
    for (auto& worker : workers) worker->request_stop();
    for (auto& worker : workers) {
      if (!worker->join()) LOG_WARN("msg=\"a DNS worker loop did not close cleanly\"");
    }
    workers.clear();
    monitor.close();
    health.close();
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
  return run_daemon(loaded.config);
}
