// The UDP hot path allocates nothing once warm: a real DnsWorker relays queries between a
// client socket and a fake upstream socket of this test (loopback only), and every
// operator new of the process is counted while 5000 queries go through; likewise for
// answers served from the shared cache. The test's own side uses fixed buffers and raw
// system calls, so any count is the worker's.
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "common/cache/packet_cache.h"
#include "common/config/config.h"
#include "common/dns/message.h"
#include "common/health/process_state.h"
#include "common/metrics/forwarder_counters.h"
#include "forwarder/dns_worker.h"
#include "forwarder/listen_sockets.h"

namespace {
std::atomic<uint64_t> allocations{0};
}  // namespace

// g++ 12 at -O2 inlines these replacements and then reports free() on memory from
// "operator new" as a mismatch; here they are one allocator by construction.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
// Replacing the global allocation functions counts every allocation made through new in
// this binary (libstdc++ containers included). They forward to malloc/free.
void* operator new(size_t size) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t size) { return operator new(size); }
void* operator new(size_t size, std::align_val_t align) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  size_t alignment = static_cast<size_t>(align);
  size_t rounded = (size + alignment - 1) / alignment * alignment;
  if (void* p = std::aligned_alloc(alignment, rounded == 0 ? alignment : rounded)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t size, std::align_val_t align) { return operator new(size, align); }
// The cache allocates its entries with the nothrow forms: counted too, and paired with the
// same free() as the others (a sanitizer build would otherwise see a mismatch).
void* operator new(size_t size, const std::nothrow_t&) noexcept {
  allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);
}
void* operator new[](size_t size, const std::nothrow_t& tag) noexcept { return operator new(size, tag); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace {

int udp_socket_on_loopback(sockaddr_in* bound) {
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t length = sizeof *bound;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(bound), &length);
  return fd;
}

bool wait_readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 3000) == 1;
}

// "q00042.example.com" A IN, into a fixed buffer.
size_t make_query(uint8_t* out, unsigned number, uint16_t id) {
  uint8_t header[12] = {static_cast<uint8_t>(id >> 8), static_cast<uint8_t>(id), 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0};
  std::memcpy(out, header, sizeof header);
  size_t pos = sizeof header;
  char label[8];
  std::snprintf(label, sizeof label, "q%05u", number % 100000);
  out[pos++] = 6;
  std::memcpy(out + pos, label, 6);
  pos += 6;
  const uint8_t rest[] = {7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1};
  std::memcpy(out + pos, rest, sizeof rest);
  return pos + sizeof rest;
}

// Relays `count` queries: client -> hubdns -> fake upstream (answers) -> hubdns -> client.
// The upstream's answer is the query with QR set (an empty answer, which the cache does
// not keep), or with one A record (TTL 300) when with_record. Returns how many answers came
// back with the client's ID.
unsigned relay(int client, const sockaddr_in& hubdns, int upstream, unsigned first, unsigned count,
               bool with_record = false) {
  uint8_t query[512], buffer[4096];
  unsigned answered = 0;
  for (unsigned i = first; i < first + count; ++i) {
    uint16_t id = static_cast<uint16_t>(i * 7919u);
    size_t length = make_query(query, i, id);
    ::sendto(client, query, length, 0, reinterpret_cast<const sockaddr*>(&hubdns), sizeof hubdns);
    if (!wait_readable(upstream)) break;
    sockaddr_storage from{};
    socklen_t from_length = sizeof from;
    ssize_t n = ::recvfrom(upstream, buffer, sizeof buffer, 0, reinterpret_cast<sockaddr*>(&from), &from_length);
    if (n < 12) break;
    buffer[2] |= 0x80;  // QR: the query itself is a valid empty answer
    if (with_record) {
      const uint8_t record[] = {0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0x01, 0x2C, 0, 4, 192, 0, 2, 1};
      std::memcpy(buffer + n, record, sizeof record);
      n += static_cast<ssize_t>(sizeof record);
      buffer[7] = 1;  // ANCOUNT
    }
    ::sendto(upstream, buffer, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), from_length);
    if (!wait_readable(client)) break;
    n = ::recv(client, buffer, sizeof buffer, 0);
    if (n >= 12 && hubdns::dns::message_id(buffer) == id) ++answered;
  }
  return answered;
}

// Asks `count` questions that the cache should answer: nothing may reach the upstream.
unsigned ask_cached(int client, const sockaddr_in& hubdns, unsigned first, unsigned count) {
  uint8_t query[512], buffer[4096];
  unsigned answered = 0;
  for (unsigned i = first; i < first + count; ++i) {
    uint16_t id = static_cast<uint16_t>(i * 7919u + 1);
    size_t length = make_query(query, i, id);
    ::sendto(client, query, length, 0, reinterpret_cast<const sockaddr*>(&hubdns), sizeof hubdns);
    if (!wait_readable(client)) break;
    ssize_t n = ::recv(client, buffer, sizeof buffer, 0);
    if (n >= 12 && hubdns::dns::message_id(buffer) == id && buffer[7] == 1) ++answered;
  }
  return answered;
}

// One real worker on a loopback listener, forwarding "." to a fake upstream socket of the
// test, optionally with the shared cache. Stops and joins the worker when destroyed.
struct WorkerUnderTest {
  sockaddr_in upstream_address{};
  int upstream = udp_socket_on_loopback(&upstream_address);
  sockaddr_in client_address{};
  int client = udp_socket_on_loopback(&client_address);
  sockaddr_in hubdns_address{};
  std::shared_ptr<hubdns::Config> config = std::make_shared<hubdns::Config>();
  hubdns::ProcessState state{1};
  hubdns::ForwarderCounters counters;
  std::unique_ptr<hubdns::PacketCache> cache;
  std::unique_ptr<hubdns::DnsWorker> worker;

  explicit WorkerUnderTest(bool with_cache) {
    config->server.listen.push_back(*hubdns::SocketAddress::parse("127.0.0.1:0", 53));
    config->server.allow.push_back(*hubdns::Cidr::parse("127.0.0.0/8"));
    hubdns::ForwardRule rule;
    rule.zone = ".";
    rule.upstreams.push_back(hubdns::SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&upstream_address)));
    rule.max_outstanding = 1000;
    config->forward.push_back(rule);
    if (with_cache) cache = std::make_unique<hubdns::PacketCache>(config->cache);
    std::string error;
    auto sockets = hubdns::open_listen_sockets(config->server.listen, 1, &error);
    REQUIRE_MESSAGE(!sockets.empty(), error);
    std::memcpy(&hubdns_address, sockets[0][0].address.sockaddr_ptr(), sizeof hubdns_address);
    auto health = std::make_shared<hubdns::UpstreamHealthTable>(*config);
    worker = std::make_unique<hubdns::DnsWorker>(0, config, health, &state, &counters, cache.get(),
                                                 std::move(sockets[0]));
    REQUIRE_MESSAGE(worker->start(&error), error);
  }
  // Stops the worker; false if its loop did not close cleanly.
  bool stop() {
    worker->request_stop();
    return worker->join();
  }
  ~WorkerUnderTest() {
    ::close(client);
    ::close(upstream);
  }
};

}  // namespace

TEST_CASE("a warm DNS worker relays UDP queries without allocating") {
  WorkerUnderTest t(false);
  unsigned warm = relay(t.client, t.hubdns_address, t.upstream, 0, 2000);
  uint64_t before = allocations.load();
  unsigned measured = relay(t.client, t.hubdns_address, t.upstream, 2000, 5000);
  uint64_t during = allocations.load() - before;
  CHECK(t.stop());

  CHECK(warm == 2000);
  CHECK(measured == 5000);
  CHECK(during == 0);
}

TEST_CASE("answers from the shared cache are served without allocating and without upstream queries") {
  WorkerUnderTest t(true);
  // Storing allocates (one block per entry); serving does not.
  unsigned stored = relay(t.client, t.hubdns_address, t.upstream, 0, 2000, true);
  unsigned warm = ask_cached(t.client, t.hubdns_address, 0, 2000);
  uint64_t upstream_before = t.counters.upstream_queries.load();
  uint64_t before = allocations.load();
  unsigned measured = ask_cached(t.client, t.hubdns_address, 0, 2000) + ask_cached(t.client, t.hubdns_address, 0, 2000);
  uint64_t during = allocations.load() - before;
  uint64_t upstream_during = t.counters.upstream_queries.load() - upstream_before;
  CHECK(t.stop());

  CHECK(stored == 2000);
  CHECK(warm == 2000);
  CHECK(measured == 4000);
  CHECK(upstream_during == 0);
  CHECK(t.cache->stats().hits >= 6000);
  CHECK(during == 0);
}
