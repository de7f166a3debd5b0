// A DNS worker: one thread running its own libuv loop with its own listening sockets
// (SO_REUSEPORT, handed over by open_listen_sockets), its own upstream sockets and its own
// table of pending queries, so the hot path shares nothing and takes no lock. main()
// creates, starts, stops and joins workers; everything else a worker owns is touched
// only by its own thread (request_stop() uses uv_async_send, the one cross-thread call).
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/cache/packet_cache.h"
#include "common/config/config.h"
#include "common/health/process_state.h"
#include "common/health/upstream_health.h"
#include "common/metrics/forwarder_counters.h"
#include "forwarder/listen_sockets.h"

namespace hubdns {

class DnsWorkerLoop;

class DnsWorker {
 public:
  // cache: the process's shared answer cache, or nullptr when [cache] is disabled; it
  // must outlive the worker.
  DnsWorker(unsigned index, ConfigSnapshot config, SharedUpstreamHealth upstream_health,
            ProcessState* state, ForwarderCounters* counters, PacketCache* cache,
            std::vector<ListenSocket> sockets);
  ~DnsWorker();
  DnsWorker(const DnsWorker&) = delete;
  DnsWorker& operator=(const DnsWorker&) = delete;

  // Takes over the sockets and starts the thread. On failure nothing runs and *error says why.
  bool start(std::string* error) { return prepare(error) && launch(); }
  // The same in two steps, so that a set of workers can be prepared (sockets, handles)
  // before any of them runs: a reload then never half-starts a generation.
  bool prepare(std::string* error);
  bool launch();
  // Any thread: asks the worker to stop listening (the drain's last step): what is already
  // queued on its UDP listeners is read and answered, the TCP listeners close, TCP clients
  // are closed once their answers are written; queries in flight go on to their answers.
  void request_stop_listening();
  // Any thread: true once the worker stopped listening and owes no answer any more.
  bool drained() const;
  // Main thread, while the worker runs and before request_stop_listening(): duplicates of
  // its listening sockets (the same kernel sockets: nothing queued on them is lost) for
  // the worker that replaces it on a reload. Empty, with *error, if dup() fails.
  std::vector<ListenSocket> duplicate_listen_sockets(std::string* error) const;
  // The DNS listen addresses as bound (real ports), in configuration order.
  std::vector<SocketAddress> listen_addresses() const;
  // Any thread: asks the worker to close everything and let its loop end.
  void request_stop();
  // Waits for the thread; returns false if the loop did not close cleanly (leaked handle).
  bool join();

 private:
  std::unique_ptr<DnsWorkerLoop> loop_;
  std::thread thread_;
  bool clean_exit_ = false;
};

}  // namespace hubdns
