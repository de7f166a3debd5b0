// UpstreamTcpPool on a real EventLoop against a scripted DNS-over-TCP upstream
// (FakeUpstream) listening on 127.0.0.1 port 0 and run by the same loop, so every test is
// single-threaded and ordered. The upstream can answer in order or in reverse, dribble
// answers byte by byte, close after N answers, stop mid-answer, stay silent, or add empty
// frames, unknown IDs and garbage framing. Every test ends with every handle closed and
// EventLoop::close() == 0 (no leaked handle).
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <random>
#include <unordered_map>
#include <string>
#include <vector>

#include "common/dns/message.h"
#include "common/net/address.h"
#include "common/util/clock.h"
#include "common/uv/handle.h"
#include "forwarder/upstream_tcp_pool.h"

using namespace hubdns;

namespace {

// A query for example.com/A with the given ID.
std::vector<uint8_t> make_query(uint16_t id) {
  std::vector<uint8_t> query(dns::kHeaderSize, 0);
  dns::write_u16(query.data(), id);
  dns::write_u16(query.data() + 2, dns::kFlagRd);
  dns::write_u16(query.data() + 4, 1);  // QDCOUNT
  const uint8_t name[] = {7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0};
  query.insert(query.end(), std::begin(name), std::end(name));
  query.insert(query.end(), {0, 1, 0, 1});  // A, IN
  return query;
}

std::vector<uint8_t> frame(const std::vector<uint8_t>& message) {
  std::vector<uint8_t> framed(2 + message.size());
  dns::write_u16(framed.data(), static_cast<uint16_t>(message.size()));
  std::memcpy(framed.data() + 2, message.data(), message.size());
  return framed;
}

void append(std::vector<uint8_t>& to, const std::vector<uint8_t>& bytes) {
  to.insert(to.end(), bytes.begin(), bytes.end());
}

SocketAddress loopback(uint16_t port) {
  std::string error;
  std::optional<SocketAddress> address = SocketAddress::parse("127.0.0.1", port, &error);
  REQUIRE_MESSAGE(address.has_value(), error);
  return *address;
}

// A loopback port nobody listens on: bound, read, closed.
uint16_t closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&sin), sizeof sin) == 0);
  socklen_t length = sizeof sin;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &length) == 0);
  ::close(fd);
  return ntohs(sin.sin_port);
}

// Runs the loop until done() or the timeout; a 2 ms ticker keeps uv_run from blocking.
bool run_until(EventLoop& loop, const std::function<bool()>& done, uint64_t timeout_ms = 3000) {
  UvTimer ticker;
  REQUIRE(ticker.init(uv_timer_init, loop.get()) == 0);
  uv_timer_start(ticker.get(), [](uv_timer_t*) {}, 2, 2);
  uint64_t deadline = monotonic_ms() + timeout_ms;
  while (!done() && monotonic_ms() < deadline) uv_run(loop.get(), UV_RUN_ONCE);
  return done();
}

void run_for(EventLoop& loop, uint64_t ms) {
  run_until(loop, [] { return false; }, ms);
}

// A scripted DNS-over-TCP upstream on 127.0.0.1:0, on the test's loop. Sessions own their
// handle and are freed in its close callback; writes own their bytes.
class FakeUpstream {
 public:
  struct Script {
    bool silent = false;        // read queries, never answer
    bool reverse = false;       // hold answers until `batch` queries came, send them reversed in one write
    size_t batch = 1;
    bool byte_by_byte = false;  // answers leave one byte per millisecond
    std::vector<int> close_after;  // per accepted connection: answers before closing (-1: never)
    int close_after_default = -1;
    int partial_after = -1;  // after this many answers, send 4 bytes of the next one and close
    bool empty_frame_first = false;  // a zero-length frame before each answer
    bool unknown_id_first = false;   // an answer with an ID nobody asked before each answer
    bool short_frame = false;        // a 5-byte frame instead of the answer
  };

  FakeUpstream(uv_loop_t* loop, Script script) : loop_(loop), script_(std::move(script)) {
    REQUIRE(listener_.init(uv_tcp_init, loop) == 0);
    listener_->data = this;
    SocketAddress any = loopback(0);
    REQUIRE(uv_tcp_bind(listener_.get(), any.sockaddr_ptr(), 0) == 0);
    REQUIRE(uv_listen(listener_.as<uv_stream_t>(), 16, on_connection) == 0);
    sockaddr_storage bound{};
    int length = sizeof bound;
    REQUIRE(uv_tcp_getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&bound), &length) == 0);
    address_ = SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&bound));
    REQUIRE(dribble_timer_.init(uv_timer_init, loop) == 0);
    dribble_timer_->data = this;
  }
  ~FakeUpstream() { close(); }
  FakeUpstream(const FakeUpstream&) = delete;
  FakeUpstream& operator=(const FakeUpstream&) = delete;

  const SocketAddress& address() const { return address_; }
  unsigned connections() const { return connections_; }
  unsigned queries() const { return queries_; }
  size_t open_sessions() const { return sessions_.size(); }

  void close() {
    listener_.close();
    dribble_timer_.close();
    while (!sessions_.empty()) close_session(sessions_.back());
  }

 private:
  struct Session {
    FakeUpstream* server = nullptr;  // nullptr once closing
    uv_tcp_t tcp{};
    std::vector<uint8_t> received;
    int close_after = -1;
    int answered = 0;
    bool finishing = false;  // answers no more; closes once its bytes are out
    std::vector<std::vector<uint8_t>> held;
    std::deque<uint8_t> dribble;
  };
  struct OwnedWrite {
    uv_write_t request{};
    std::vector<uint8_t> bytes;
  };

  static void on_connection(uv_stream_t* listener, int status) {
    auto* self = static_cast<FakeUpstream*>(listener->data);
    if (self == nullptr || status < 0) return;
    auto* session = new Session;
    session->server = self;
    uv_tcp_init(self->loop_, &session->tcp);
    session->tcp.data = session;
    if (uv_accept(listener, reinterpret_cast<uv_stream_t*>(&session->tcp)) != 0) {
      session->server = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(&session->tcp), on_session_closed);
      return;
    }
    const Script& script = self->script_;
    session->close_after = self->connections_ < script.close_after.size()
                               ? script.close_after[self->connections_]
                               : script.close_after_default;
    ++self->connections_;
    self->sessions_.push_back(session);
    uv_read_start(reinterpret_cast<uv_stream_t*>(&session->tcp), on_alloc, on_read);
  }

  static void on_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
    auto* session = static_cast<Session*>(handle->data);
    *buf = uv_buf_init(reinterpret_cast<char*>(session->server->read_buffer_),
                       sizeof session->server->read_buffer_);
  }

  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
    auto* session = static_cast<Session*>(stream->data);
    FakeUpstream* self = session->server;
    if (self == nullptr) return;
    if (nread < 0) {
      self->close_session(session);
      return;
    }
    auto* data = reinterpret_cast<uint8_t*>(buf->base);
    session->received.insert(session->received.end(), data, data + nread);
    size_t offset = 0;
    while (!session->finishing && session->received.size() - offset >= 2) {
      size_t length = dns::read_u16(session->received.data() + offset);
      if (session->received.size() - offset < 2 + length) break;
      std::vector<uint8_t> query(session->received.begin() + static_cast<ptrdiff_t>(offset + 2),
                                 session->received.begin() + static_cast<ptrdiff_t>(offset + 2 + length));
      offset += 2 + length;
      ++self->queries_;
      self->handle_query(session, query);
    }
    session->received.erase(session->received.begin(),
                            session->received.begin() + static_cast<ptrdiff_t>(offset));
  }

  void handle_query(Session* session, const std::vector<uint8_t>& query) {
    if (script_.silent) return;
    if (session->close_after >= 0 && session->answered >= session->close_after) {
      finish(session);
      return;
    }
    std::vector<uint8_t> answer = query;
    dns::write_u16(answer.data() + 2, static_cast<uint16_t>(dns::message_flags(answer.data()) | dns::kFlagQr));
    if (script_.partial_after >= 0 && session->answered >= script_.partial_after) {
      std::vector<uint8_t> framed = frame(answer);
      framed.resize(4);  // length and ID, then nothing
      emit(session, framed);
      finish(session);
      return;
    }
    std::vector<uint8_t> bytes;
    if (script_.empty_frame_first) append(bytes, {0, 0});
    if (script_.unknown_id_first) {
      std::vector<uint8_t> stray = answer;
      dns::set_message_id(stray.data(), static_cast<uint16_t>(dns::message_id(answer.data()) ^ 0x8000));
      append(bytes, frame(stray));
    }
    if (script_.short_frame) {
      append(bytes, {0, 5, 1, 2, 3, 4, 5});
    } else {
      append(bytes, frame(answer));
    }
    ++session->answered;
    if (script_.reverse) {
      session->held.push_back(std::move(bytes));
      if (session->held.size() < script_.batch) return;
      bytes.clear();
      for (auto it = session->held.rbegin(); it != session->held.rend(); ++it) append(bytes, *it);
      session->held.clear();
    }
    emit(session, bytes);
    if (session->close_after >= 0 && session->answered >= session->close_after) finish(session);
  }

  void emit(Session* session, const std::vector<uint8_t>& bytes) {
    if (script_.byte_by_byte) {
      session->dribble.insert(session->dribble.end(), bytes.begin(), bytes.end());
      if (!uv_is_active(dribble_timer_.as_handle())) {
        uv_timer_start(dribble_timer_.get(), on_dribble, 1, 1);
      }
      return;
    }
    write(session, bytes);
  }

  static void write(Session* session, std::vector<uint8_t> bytes) {
    auto* owned = new OwnedWrite;
    owned->bytes = std::move(bytes);
    owned->request.data = owned;
    uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(owned->bytes.data()),
                               static_cast<unsigned>(owned->bytes.size()));
    int rc = uv_write(&owned->request, reinterpret_cast<uv_stream_t*>(&session->tcp), &buf, 1,
                      [](uv_write_t* request, int) { delete static_cast<OwnedWrite*>(request->data); });
    if (rc != 0) delete owned;
  }

  static void on_dribble(uv_timer_t* timer) {
    auto* self = static_cast<FakeUpstream*>(timer->data);
    if (self == nullptr) return;
    bool more = false;
    std::vector<Session*> sessions = self->sessions_;  // shutdown may close one
    for (Session* session : sessions) {
      if (session->dribble.empty()) continue;
      write(session, {session->dribble.front()});
      session->dribble.pop_front();
      if (!session->dribble.empty()) {
        more = true;
      } else if (session->finishing) {
        shutdown(session);
      }
    }
    if (!more) uv_timer_stop(timer);
  }

  // Stops reading; once the answers already queued are out, sends FIN and closes.
  void finish(Session* session) {
    if (session->finishing) return;
    session->finishing = true;
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&session->tcp));
    if (session->dribble.empty()) shutdown(session);
  }

  static void shutdown(Session* session) {
    auto* request = new uv_shutdown_t;
    request->data = session;
    int rc = uv_shutdown(request, reinterpret_cast<uv_stream_t*>(&session->tcp), [](uv_shutdown_t* req, int) {
      auto* s = static_cast<Session*>(req->data);
      delete req;
      if (s->server != nullptr) s->server->close_session(s);
    });
    if (rc != 0) {
      delete request;
      session->server->close_session(session);
    }
  }

  void close_session(Session* session) {
    sessions_.erase(std::find(sessions_.begin(), sessions_.end(), session));
    session->server = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&session->tcp), on_session_closed);
  }

  static void on_session_closed(uv_handle_t* handle) { delete static_cast<Session*>(handle->data); }

  uv_loop_t* loop_;
  Script script_;
  UvTcp listener_;
  UvTimer dribble_timer_;
  SocketAddress address_;
  std::vector<Session*> sessions_;
  unsigned connections_ = 0;
  unsigned queries_ = 0;
  uint8_t read_buffer_[65536];
};

struct Result {
  uint64_t token = 0;
  int status = 0;
  uint16_t id = 0;  // the answer's ID (0 on error)
  size_t length = 0;
};

// Records every callback; `hook` lets a test act from inside one.
struct Recorder {
  std::vector<Result> results;
  std::function<void(const Result&)> hook;

  static void callback(void* context, uint64_t token, int status, const uint8_t* answer, size_t length) {
    auto* self = static_cast<Recorder*>(context);
    Result result{token, status, answer != nullptr ? dns::message_id(answer) : uint16_t{0}, length};
    self->results.push_back(result);
    if (self->hook) self->hook(result);
  }
  size_t count(uint64_t token) const {
    return static_cast<size_t>(std::count_if(results.begin(), results.end(),
                                             [token](const Result& r) { return r.token == token; }));
  }
  const Result* find(uint64_t token) const {
    for (const Result& r : results) {
      if (r.token == token) return &r;
    }
    return nullptr;
  }
};

// Tokens and IDs differ, so a test notices if the pool mixed them up.
uint64_t token_for(uint16_t id) { return 1000000ull + id * 7ull; }

bool send(UpstreamTcpPool& pool, const SocketAddress& upstream, uint16_t id) {
  std::vector<uint8_t> query = make_query(id);
  return pool.send(upstream, token_for(id), query.data(), query.size());
}

// Every token answered with status 0 and its own ID.
void check_answered(const Recorder& recorder, uint16_t first_id, uint16_t count) {
  for (uint16_t id = first_id; id < first_id + count; ++id) {
    CAPTURE(id);
    REQUIRE(recorder.count(token_for(id)) == 1);
    const Result* result = recorder.find(token_for(id));
    CHECK(result->status == 0);
    CHECK(result->id == id);
    CHECK(result->length == make_query(id).size());
  }
}

}  // namespace

TEST_CASE("pipelines 20 queries on one connection, answers in order") {
  EventLoop loop;
  {
    FakeUpstream upstream(loop.get(), {});
    Recorder recorder;
    UpstreamTcpPool pool(loop.get(), {}, Recorder::callback, &recorder);
    for (uint16_t id = 1; id <= 20; ++id) REQUIRE(send(pool, upstream.address(), id));
    CHECK(recorder.results.empty());
    REQUIRE(run_until(loop, [&] { return recorder.results.size() == 20; }));
    check_answered(recorder, 1, 20);
    CHECK(upstream.connections() == 1);
    CHECK(upstream.queries() == 20);
    CHECK(pool.open_connections() == 1);
    CHECK(pool.outstanding() == 0);
    CHECK(pool.counters().connections_opened == 1);
    CHECK(pool.counters().queries_sent == 20);
    CHECK(pool.counters().answers == 20);
    CHECK(pool.counters().errors == 0);

    // The warm connection is reused for the next round.
    for (uint16_t id = 21; id <= 40; ++id) REQUIRE(send(pool, upstream.address(), id));
    REQUIRE(run_until(loop, [&] { return recorder.results.size() == 40; }));
    check_answered(recorder, 21, 20);
    CHECK(upstream.connections() == 1);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("matches answers sent in reverse order, several in one read") {
  EventLoop loop;
  {
    FakeUpstream::Script script;
    script.reverse = true;
    script.batch = 10;
    FakeUpstream upstream(loop.get(), script);
    Recorder recorder;
    UpstreamTcpPool pool(loop.get(), {}, Recorder::callback, &recorder);
    for (uint16_t id = 100; id < 110; ++id) REQUIRE(send(pool, upstream.address(), id));
    REQUIRE(run_until(loop, [&] { return recorder.results.size() == 10; }));
    check_answered(recorder, 100, 10);
    CHECK(recorder.results.front().token == token_for(109));
    CHECK(recorder.results.back().token == token_for(100));
    CHECK(upstream.connections() == 1);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("reassembles answers that arrive byte by byte") {
  EventLoop loop;
  {
    FakeUpstream::Script script;
    script.byte_by_byte = true;
    FakeUpstream upstream(loop.get(), script);
    Recorder recorder;
    UpstreamTcpPool pool(loop.get(), {}, Recorder::callback, &recorder);
    for (uint16_t id = 7; id < 10; ++id) REQUIRE(send(pool, upstream.address(), id));
    REQUIRE(run_until(loop, [&] { return recorder.results.size() == 3; }));
    check_answered(recorder, 7, 3);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("drops empty frames and answers with unknown IDs, keeps the connection") {
  EventLoop loop;
  {
    FakeUpstream::Script script;
    script.empty_frame_first = true;
    script.unknown_id_first = true;
    FakeUpstream upstream(loop.get(), script);
    Recorder recorder;
    UpstreamTcpPool pool(loop.get(), {}, Recorder::callback, &recorder);
    REQUIRE(send(pool, upstream.address(), 1));
    REQUIRE(send(pool, upstream.address(), 2));
    REQUIRE(run_until(loop, [&] { return recorder.results.size() == 2; }));
    check_answered(recorder, 1, 2);
    CHECK(pool.counters().unknown_answers == 4);
    CHECK(pool.open_connections() == 1);
    CHECK(upstream.connections() == 1);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("garbage framing fails the outstanding queries, once each") {
  EventLoop loop;
  {
    FakeUpstream::Script script;
    script.short_frame = true;
    FakeUpstream upstream(loop.get(), script);
    Recorder recorder;
    UpstreamTcpPool pool(loop.get(), {}, Recorder::callback, &recorder);
    REQUIRE(send(pool, upstream.address(), 1));
    REQUIRE(send(pool, upstream.address(), 2));
    REQUIRE(run_until(loop, [&] { return recorder.results.size() == 2; }));
    run_for(loop, 20);
    CHECK(recorder.results.size() == 2);
    for (uint16_t id = 1; id <= 2; ++id) {
      REQUIRE(recorder.count(token_for(id)) == 1);
      CHECK(recorder.find(token_for(id))->status == UV_EPROTO);
    }
    CHECK(pool.open_connections() == 0);
    CHECK(pool.counters().errors == 2);
    CHECK(pool.counters().connection_failures == 1);
    CHECK(pool.counters().reconnect_retries == 0);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("resends once on a fresh connection when the upstream closed a reused one") {
  EventLoop loop;
  {
    FakeUpstream::Script script;
    script.close_after = {1};  // the first connection closes after one answer, later ones stay
    FakeUpstream upstream(loop.get(), script);
    Recorder recorder;
    UpstreamTcpPool pool(loop.get(), {}, Recorder::callback, &recorder);
    // The second query goes out on the first connection just as the upstream closes it
    // (sent from inside the first answer's callback, before the pool has read the FIN):
    // the idle-close race. It must be resent, not failed.
    recorder.hook = [&](const Result& result) {
      if (result.token == token_for(1)) CHECK(send(pool, upstream.address(), 2));
    };
    REQUIRE(send(pool, upstream.address(), 1));
    REQUIRE(run_until(loop, [&] { return recorder.results.size() == 2; }));
    check_answered(recorder, 1, 2);
    CHECK(pool.counters().reconnect_retries == 1);
    CHECK(pool.counters().connections_opened == 2);
    CHECK(pool.counters().errors == 0);
    CHECK(upstream.connections() == 2);
    CHECK(pool.open_connections() == 1);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("a resent query that fails again is reported once") {
  EventLoop loop;
  {
    FakeUpstream::Script script;
    script.close_after = {1, 0};  // the retry's connection closes without answering
    FakeUpstream upstream(loop.get(), script);
    Recorder recorder;
    UpstreamTcpPool pool(loop.get(), {}, Recorder::callback, &recorder);
    recorder.hook = [&](const Result& result) {
      if (result.token == token_for(1)) CHECK(send(pool, upstream.address(), 2));
    };
    REQUIRE(send(pool, upstream.address(), 1));
    REQUIRE(run_until(loop, [&] { return recorder.results.size() == 2; }));
    run_for(loop, 30);
    CHECK(recorder.results.size() == 2);
    REQUIRE(recorder.count(token_for(2)) == 1);
    int status = recorder.find(token_for(2))->status;
    CHECK_MESSAGE((status == UV_EOF || status == UV_ECONNRESET), uv_err_name(status));
    CHECK(pool.counters().reconnect_retries == 1);
    CHECK(pool.counters().errors == 1);
    CHECK(upstream.connections() == 2);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("a query whose answer had begun to arrive is not resent") {
  EventLoop loop;
  {
    FakeUpstream::Script script;
    script.partial_after = 1;  // answers one, then sends 4 bytes of the next answer and closes
    FakeUpstream upstream(loop.get(), script);
    Recorder recorder;
    UpstreamTcpPool pool(loop.get(), {}, Recorder::callback, &recorder);
    recorder.hook = [&](const Result& result) {
      if (result.token == token_for(1)) CHECK(send(pool, upstream.address(), 2));
    };
    REQUIRE(send(pool, upstream.address(), 1));
    REQUIRE(run_until(loop, [&] { return recorder.results.size() == 2; }));
    REQUIRE(recorder.count(token_for(2)) == 1);
    CHECK(recorder.find(token_for(2))->status == UV_EOF);
    CHECK(pool.counters().reconnect_retries == 0);
    CHECK(upstream.connections() == 1);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("a fresh connection that dies fails its queries without a resend") {
  EventLoop loop;
  {
    FakeUpstream::Script script;
    script.close_after_default = 0;
    FakeUpstream upstream(loop.get(), script);
    Recorder recorder;
    UpstreamTcpPool pool(loop.get(), {}, Recorder::callback, &recorder);
    for (uint16_t id = 1; id <= 3; ++id) REQUIRE(send(pool, upstream.address(), id));
    REQUIRE(run_until(loop, [&] { return recorder.results.size() == 3; }));
    run_for(loop, 30);
    CHECK(recorder.results.size() == 3);
    for (uint16_t id = 1; id <= 3; ++id) {
      REQUIRE(recorder.count(token_for(id)) == 1);
      int status = recorder.find(token_for(id))->status;
      CHECK_MESSAGE((status == UV_EOF || status == UV_ECONNRESET), uv_err_name(status));
    }
    CHECK(pool.counters().reconnect_retries == 0);
    CHECK(pool.counters().connection_failures == 1);
    CHECK(upstream.connections() == 1);
    CHECK(pool.open_connections() == 0);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("an upstream closing an idle connection costs no callback; the next query reconnects") {
  EventLoop loop;
  {
    FakeUpstream::Script script;
    script.close_after = {1};
    FakeUpstream upstream(loop.get(), script);
    Recorder recorder;
    UpstreamTcpPool pool(loop.get(), {}, Recorder::callback, &recorder);
    REQUIRE(send(pool, upstream.address(), 1));
    REQUIRE(run_until(loop, [&] { return recorder.results.size() == 1; }));
    REQUIRE(run_until(loop, [&] { return pool.open_connections() == 0; }));
    CHECK(recorder.results.size() == 1);
    CHECK(pool.counters().connection_failures == 0);
    REQUIRE(send(pool, upstream.address(), 2));
    REQUIRE(run_until(loop, [&] { return recorder.results.size() == 2; }));
    check_answered(recorder, 1, 2);
    CHECK(pool.counters().reconnect_retries == 0);
    CHECK(upstream.connections() == 2);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("connection refused: one error per query, never from inside send()") {
  EventLoop loop;
  {
    Recorder recorder;
    UpstreamTcpPool pool(loop.get(), {}, Recorder::callback, &recorder);
    SocketAddress nobody = loopback(closed_port());
    for (uint16_t id = 1; id <= 3; ++id) REQUIRE(send(pool, nobody, id));
    CHECK(recorder.results.empty());
    REQUIRE(run_until(loop, [&] { return recorder.results.size() == 3; }));
    run_for(loop, 30);
    CHECK(recorder.results.size() == 3);
    for (uint16_t id = 1; id <= 3; ++id) {
      REQUIRE(recorder.count(token_for(id)) == 1);
      CHECK(recorder.find(token_for(id))->status == UV_ECONNREFUSED);
    }
    CHECK(pool.counters().errors == 3);
    CHECK(pool.counters().connection_failures == 1);
    CHECK(pool.open_connections() == 0);
    CHECK(pool.outstanding() == 0);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("a connect that fails at once is reported from the loop, not from send()") {
  EventLoop loop;
  {
    Recorder recorder;
    UpstreamTcpPool pool(loop.get(), {}, Recorder::callback, &recorder);
    // An address without a family: uv_tcp_connect fails synchronously with UV_EINVAL.
    REQUIRE(send(pool, SocketAddress{}, 1));
    CHECK(recorder.results.empty());
    CHECK(pool.outstanding() == 1);
    REQUIRE(run_until(loop, [&] { return recorder.results.size() == 1; }));
    CHECK(recorder.results[0].status == UV_EINVAL);
    CHECK(pool.open_connections() == 0);
    // Cancelled before the loop reported it: no callback.
    REQUIRE(send(pool, SocketAddress{}, 2));
    pool.cancel(token_for(2));
    run_for(loop, 20);
    CHECK(recorder.results.size() == 1);
    CHECK(pool.outstanding() == 0);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("error callbacks may send and cancel") {
  EventLoop loop;
  {
    Recorder recorder;
    UpstreamTcpPool pool(loop.get(), {}, Recorder::callback, &recorder);
    SocketAddress nobody = loopback(closed_port());
    // On the first error: cancel the other query of the batch (no callback for it, although
    // its failure is already queued) and send a new one (its error comes later).
    recorder.hook = [&](const Result& result) {
      if (recorder.results.size() != 1) return;
      pool.cancel(result.token == token_for(1) ? token_for(2) : token_for(1));
      CHECK(send(pool, nobody, 3));
      CHECK(recorder.results.size() == 1);  // not called back from inside send()
    };
    REQUIRE(send(pool, nobody, 1));
    REQUIRE(send(pool, nobody, 2));
    REQUIRE(run_until(loop, [&] { return recorder.results.size() == 2; }));
    run_for(loop, 30);
    REQUIRE(recorder.results.size() == 2);
    CHECK(recorder.results[1].token == token_for(3));
    CHECK(recorder.count(token_for(1)) + recorder.count(token_for(2)) == 1);
    CHECK(pool.outstanding() == 0);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("a cancelled query gets no callback and its late answer is dropped") {
  EventLoop loop;
  {
    FakeUpstream::Script script;
    script.reverse = true;
    script.batch = 3;
    FakeUpstream upstream(loop.get(), script);
    Recorder recorder;
    UpstreamTcpPool pool(loop.get(), {}, Recorder::callback, &recorder);
    for (uint16_t id = 11; id <= 13; ++id) REQUIRE(send(pool, upstream.address(), id));
    pool.cancel(token_for(12));
    pool.cancel(token_for(12));  // twice: harmless
    pool.cancel(42);             // unknown: harmless
    // A cancelled query still holds its ID on its connection until its answer comes (the
    // upstream may still answer it), but the caller may reuse the token at once.
    REQUIRE(run_until(loop, [&] { return recorder.results.size() == 2; }));
    run_for(loop, 20);
    REQUIRE(recorder.results.size() == 2);
    CHECK(recorder.results[0].token == token_for(13));
    CHECK(recorder.results[1].token == token_for(11));
    CHECK(recorder.count(token_for(12)) == 0);
    CHECK(pool.counters().late_answers == 1);
    CHECK(pool.counters().answers == 2);
    CHECK(pool.outstanding() == 0);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("idle connections are closed after idle_close_ms") {
  EventLoop loop;
  {
    FakeUpstream upstream(loop.get(), {});
    Recorder recorder;
    UpstreamTcpPoolOptions options;
    options.idle_close_ms = 60;
    UpstreamTcpPool pool(loop.get(), options, Recorder::callback, &recorder);
    REQUIRE(send(pool, upstream.address(), 1));
    REQUIRE(run_until(loop, [&] { return recorder.results.size() == 1; }));
    uint64_t idle_since = monotonic_ms();
    CHECK(pool.open_connections() == 1);
    REQUIRE(run_until(loop, [&] { return pool.open_connections() == 0; }));
    CHECK(monotonic_ms() - idle_since >= 45);  // timers run on the loop's cached clock
    CHECK(pool.counters().idle_closes == 1);
    REQUIRE(run_until(loop, [&] { return upstream.open_sessions() == 0; }));
    // The pool is still usable.
    REQUIRE(send(pool, upstream.address(), 2));
    REQUIRE(run_until(loop, [&] { return recorder.results.size() == 2; }));
    check_answered(recorder, 1, 2);
    CHECK(upstream.connections() == 2);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("a connection whose queries were all cancelled closes once idle") {
  EventLoop loop;
  {
    FakeUpstream::Script script;
    script.silent = true;
    FakeUpstream upstream(loop.get(), script);
    Recorder recorder;
    UpstreamTcpPoolOptions options;
    options.idle_close_ms = 30;
    UpstreamTcpPool pool(loop.get(), options, Recorder::callback, &recorder);
    REQUIRE(send(pool, upstream.address(), 1));
    REQUIRE(send(pool, upstream.address(), 2));
    REQUIRE(run_until(loop, [&] { return upstream.queries() == 2; }));
    pool.cancel(token_for(1));
    run_for(loop, 60);
    CHECK(pool.open_connections() == 1);  // query 2 still waits: not idle
    pool.cancel(token_for(2));
    REQUIRE(run_until(loop, [&] { return pool.open_connections() == 0; }));
    CHECK(recorder.results.empty());
    CHECK(pool.counters().idle_closes == 1);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("limits: connections per upstream, pipeline depth, IDs and tokens in use") {
  EventLoop loop;
  {
    FakeUpstream::Script script;
    script.silent = true;
    FakeUpstream upstream(loop.get(), script);
    Recorder recorder;
    UpstreamTcpPoolOptions options;
    options.max_connections_per_upstream = 2;
    options.max_pipelined_per_connection = 3;
    UpstreamTcpPool pool(loop.get(), options, Recorder::callback, &recorder);
    for (uint16_t id = 1; id <= 6; ++id) REQUIRE(send(pool, upstream.address(), id));
    CHECK(pool.open_connections() == 2);
    std::vector<uint8_t> query = make_query(7);
    CHECK(pool.send_query(upstream.address(), token_for(7), query.data(), query.size()) ==
          UpstreamTcpPool::SendResult::full);
    query = make_query(3);
    CHECK(pool.send_query(upstream.address(), 99, query.data(), query.size()) ==
          UpstreamTcpPool::SendResult::id_in_use);
    CHECK(pool.send_query(upstream.address(), token_for(1), query.data(), query.size()) ==
          UpstreamTcpPool::SendResult::token_in_use);
    CHECK(pool.send_query(upstream.address(), 99, query.data(), 5) ==
          UpstreamTcpPool::SendResult::bad_query);
    REQUIRE(run_until(loop, [&] { return upstream.queries() == 6; }));
    CHECK(upstream.connections() == 2);

    // A connection full of cancelled queries is useless: it closes at once, making room.
    for (uint16_t id = 1; id <= 3; ++id) pool.cancel(token_for(id));
    CHECK(pool.open_connections() == 1);
    CHECK(pool.counters().idle_closes == 1);
    for (uint16_t id = 1; id <= 3; ++id) CHECK(send(pool, upstream.address(), id));
    CHECK(pool.open_connections() == 2);
    REQUIRE(run_until(loop, [&] { return upstream.queries() == 9; }));
    CHECK(upstream.connections() == 3);
    CHECK(recorder.results.empty());
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("close_all with queries pending: no callback, every connection closed") {
  EventLoop loop;
  {
    FakeUpstream::Script script;
    script.silent = true;
    FakeUpstream upstream(loop.get(), script);
    Recorder recorder;
    UpstreamTcpPool pool(loop.get(), {}, Recorder::callback, &recorder);
    for (uint16_t id = 1; id <= 5; ++id) REQUIRE(send(pool, upstream.address(), id));
    REQUIRE(run_until(loop, [&] { return upstream.queries() == 5; }));
    REQUIRE(send(pool, loopback(closed_port()), 6));  // connecting (refused, not known yet)
    REQUIRE(send(pool, SocketAddress{}, 7));          // connect failed at once: error queued
    pool.close_all();
    CHECK(pool.open_connections() == 0);
    CHECK(pool.outstanding() == 0);
    REQUIRE(run_until(loop, [&] { return upstream.open_sessions() == 0; }));
    run_for(loop, 30);
    CHECK(recorder.results.empty());
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("close_all from inside an answer callback stops the rest") {
  EventLoop loop;
  {
    FakeUpstream::Script script;
    script.reverse = true;
    script.batch = 5;
    FakeUpstream upstream(loop.get(), script);
    Recorder recorder;
    UpstreamTcpPool pool(loop.get(), {}, Recorder::callback, &recorder);
    recorder.hook = [&](const Result&) { pool.close_all(); };
    for (uint16_t id = 1; id <= 5; ++id) REQUIRE(send(pool, upstream.address(), id));
    REQUIRE(run_until(loop, [&] { return recorder.results.size() == 1; }));
    run_for(loop, 30);
    CHECK(recorder.results.size() == 1);
    CHECK(recorder.results[0].token == token_for(5));
    CHECK(pool.open_connections() == 0);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("destroying the pool with queries in flight calls nothing back and leaks nothing") {
  EventLoop loop;
  {
    FakeUpstream::Script script;
    script.silent = true;
    FakeUpstream upstream(loop.get(), script);
    Recorder recorder;
    auto pool = std::make_unique<UpstreamTcpPool>(loop.get(), UpstreamTcpPoolOptions{},
                                                  Recorder::callback, &recorder);
    for (uint16_t id = 1; id <= 3; ++id) REQUIRE(send(*pool, upstream.address(), id));
    REQUIRE(run_until(loop, [&] { return upstream.queries() == 3; }));
    for (uint16_t id = 5; id <= 7; ++id) REQUIRE(send(*pool, upstream.address(), id));  // writes in flight
    REQUIRE(send(*pool, loopback(closed_port()), 8));  // connecting
    REQUIRE(send(*pool, SocketAddress{}, 9));          // error queued
    pool.reset();
    run_for(loop, 30);
    CHECK(recorder.results.empty());
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("IDs need only be unique per upstream; each upstream gets its own connections") {
  EventLoop loop;
  {
    FakeUpstream first(loop.get(), {});
    FakeUpstream second(loop.get(), {});
    Recorder recorder;
    UpstreamTcpPool pool(loop.get(), {}, Recorder::callback, &recorder);
    std::vector<uint8_t> query = make_query(5);
    REQUIRE(pool.send(first.address(), 1, query.data(), query.size()));
    REQUIRE(pool.send(second.address(), 2, query.data(), query.size()));
    CHECK_FALSE(pool.send(first.address(), 3, query.data(), query.size()));  // ID 5 in use there
    REQUIRE(run_until(loop, [&] { return recorder.results.size() == 2; }));
    CHECK(recorder.count(1) == 1);
    CHECK(recorder.count(2) == 1);
    CHECK(first.connections() == 1);
    CHECK(second.connections() == 1);
    CHECK(pool.open_connections() == 2);
    // Answered: the ID is free again.
    REQUIRE(pool.send(first.address(), 3, query.data(), query.size()));
    REQUIRE(run_until(loop, [&] { return recorder.results.size() == 3; }));
    CHECK(first.connections() == 1);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("IndexTable agrees with std::unordered_map under random inserts and erases") {
  std::mt19937 random(12345);
  detail::IndexTable<uint16_t> table;
  table.reserve(64);
  std::unordered_map<uint16_t, uint32_t> model;
  for (uint32_t step = 0; step < 200000; ++step) {
    auto key = static_cast<uint16_t>(random() % 512);  // dense keys: long probe runs
    bool present = model.count(key) != 0;
    if (!present && model.size() < 64) {
      table.insert(key, step);
      model[key] = step;
    } else if (present) {
      CHECK(table.erase(key));
      model.erase(key);
    }
    if (step % 1000 == 0) {
      REQUIRE(table.size() == model.size());
      for (uint16_t k = 0; k < 512; ++k) {
        auto it = model.find(k);
        REQUIRE(table.find(k) == (it == model.end() ? detail::IndexTable<uint16_t>::kNone : it->second));
      }
    }
  }
}

TEST_CASE("IndexTable: insert, find, erase with collisions") {
  detail::IndexTable<uint16_t> table;
  table.reserve(64);
  // Insert and erase in an order that exercises backward shifting across probe runs.
  for (uint32_t i = 0; i < 64; ++i) table.insert(static_cast<uint16_t>(i * 1024), i);
  CHECK(table.size() == 64);
  for (uint32_t i = 0; i < 64; i += 2) CHECK(table.erase(static_cast<uint16_t>(i * 1024)));
  CHECK_FALSE(table.erase(1));
  for (uint32_t i = 0; i < 64; ++i) {
    uint32_t found = table.find(static_cast<uint16_t>(i * 1024));
    CHECK(found == (i % 2 == 0 ? detail::IndexTable<uint16_t>::kNone : i));
  }
  detail::IndexTable<uint64_t> tokens;  // grows on demand
  for (uint64_t t = 0; t < 1000; ++t) tokens.insert(t * 977, static_cast<uint32_t>(t));
  for (uint64_t t = 0; t < 1000; t += 3) CHECK(tokens.erase(t * 977));
  size_t seen = 0;
  tokens.for_each([&](uint64_t key, uint32_t value) {
    CHECK(key == value * 977ull);
    ++seen;
  });
  CHECK(seen == tokens.size());
  CHECK(tokens.size() == 1000 - 334);
}
