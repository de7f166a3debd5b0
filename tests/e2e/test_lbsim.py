"""The load-balancer simulator itself (tests/e2e/lbsim.py): does it behave as docs/e2e.md
says Azure's Standard load balancer does? Two fake DNS backends (harness.FakeUpstream, each
answering with its own address, so an answer shows which backend it came from) with health
URLs whose status the test sets; fast probes (200 ms). Loopback only, a few seconds."""

import os
import socket
import struct
import sys
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from harness import FakeUpstream, free_port  # noqa: E402

import dnsload  # noqa: E402
import lbsim  # noqa: E402
from lbsim import DOWN, UP  # noqa: E402

INTERVAL = 0.2
THRESHOLD = 2


class HealthEndpoint:
    """GET anything: `status` (200 or 503) with a short body."""

    def __init__(self):
        self.status = 200
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                body = b"ok\n" if endpoint.status == 200 else b"draining\n"
                self.send_response(endpoint.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/readyz"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def udp_ask(sock, frontend, name, qid, timeout=1.0):
    """The answer's first A address over UDP from `sock`, or None."""
    sock.settimeout(timeout)
    sock.sendto(dnsload.build_query(name, qid), frontend)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65535)
        except socket.timeout:
            return None
        got_id, _, _, addresses, _ = dnsload.parse_response(data)
        if got_id == qid:
            return addresses[0] if addresses else None
    return None


def tcp_ask(conn, name, qid):
    msg = dnsload.build_query(name, qid)
    conn.sendall(struct.pack("!H", len(msg)) + msg)
    buf = b""
    while len(buf) < 2 or len(buf) < 2 + struct.unpack("!H", buf[:2])[0]:
        chunk = conn.recv(65535)
        if not chunk:
            return None
        buf += chunk
    return dnsload.parse_response(buf[2:])[3][0]


class LbsimTest(unittest.TestCase):
    def setUp(self):
        self.dns = [FakeUpstream(address="10.0.0.1"), FakeUpstream(address="10.0.0.2")]
        self.health = [HealthEndpoint(), HealthEndpoint()]
        self.frontend = ("127.0.0.10", free_port("127.0.0.10"))
        self.lb = None

    def start(self, **options):
        backends = [lbsim.Backend(name=f"b{i}", dns=("127.0.0.1", d.port), probe_url=h.url)
                    for i, (d, h) in enumerate(zip(self.dns, self.health))]
        options.setdefault("threshold", THRESHOLD)
        self.lb = lbsim.LoadBalancer(self.frontend, backends, interval=INTERVAL, **options).start()
        for name in ("b0", "b1"):
            self.assertIsNotNone(self.lb.wait_for(name, UP, 5), name)

    def tearDown(self):
        if self.lb is not None:
            self.lb.close()
        for d in self.dns:
            d.close()
        for h in self.health:
            h.close()

    def test_threshold_consecutive_results_change_the_state(self):
        self.start()
        since = time.monotonic()
        self.health[0].status = 503
        down = self.lb.wait_for("b0", DOWN, 5, since=since)
        self.assertIsNotNone(down)
        self.assertEqual(down.detail, "HTTP 503: draining (x2)")
        failed = [p for p in self.lb.probes_of("b0", since=since) if not p.ok and p.time <= down.time]
        self.assertEqual(len(failed), THRESHOLD)
        self.assertGreaterEqual(down.time - since, (THRESHOLD - 1) * INTERVAL - 0.05)
        self.assertEqual(self.lb.in_pool(), ["b1"])
        since = time.monotonic()
        self.health[0].status = 200
        up = self.lb.wait_for("b0", UP, 5, since=since)
        self.assertEqual(up.detail, "200 (x2)")

    def test_non200_immediate_takes_a_backend_out_on_the_first_non_200(self):
        self.start(non200_immediate=True)
        since = time.monotonic()
        self.health[1].status = 503
        down = self.lb.wait_for("b1", DOWN, 5, since=since)
        self.assertEqual(down.detail, "HTTP 503: draining (x1)")

    def test_udp_flows_spread_then_move_when_their_backend_leaves(self):
        self.start()
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(16)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        before = [udp_ask(s, self.frontend, f"a{i}.example", i + 1) for i, s in enumerate(socks)]
        self.assertEqual(set(before), {"10.0.0.1", "10.0.0.2"}, "16 flows all hashed to one backend")
        # The same 5-tuple stays on its backend.
        again = [udp_ask(s, self.frontend, f"b{i}.example", i + 100) for i, s in enumerate(socks)]
        self.assertEqual(again, before)
        self.health[0].status = 503
        self.assertIsNotNone(self.lb.wait_for("b0", DOWN, 5, since=time.monotonic()))
        after = [udp_ask(s, self.frontend, f"c{i}.example", i + 200) for i, s in enumerate(socks)]
        self.assertEqual(set(after), {"10.0.0.2"})
        # Flows of the backend that stayed did not move (rendezvous hashing).
        self.assertTrue(all(a == "10.0.0.2" for b, a in zip(before, after) if b == "10.0.0.2"))
        for s in socks:
            s.close()

    def test_established_tcp_connection_stays_on_a_probed_down_backend(self):
        self.start()
        conn = socket.create_connection(self.frontend, timeout=2)
        first = tcp_ask(conn, "t1.example", 1)
        index = ["10.0.0.1", "10.0.0.2"].index(first)
        self.health[index].status = 503
        self.assertIsNotNone(self.lb.wait_for(f"b{index}", DOWN, 5, since=time.monotonic()))
        self.assertEqual(tcp_ask(conn, "t2.example", 2), first, "an established connection moved")
        conn.close()
        other = "10.0.0.2" if first == "10.0.0.1" else "10.0.0.1"
        for i in range(5):  # new connections go to the other backend only
            with socket.create_connection(self.frontend, timeout=2) as fresh:
                self.assertEqual(tcp_ask(fresh, f"n{i}.example", 10 + i), other)

    def test_all_probed_down_drops_and_all_probed_up_spreads(self):
        self.start(all_down="drop")
        since = time.monotonic()
        for h in self.health:
            h.status = 503
        for name in ("b0", "b1"):
            self.assertIsNotNone(self.lb.wait_for(name, DOWN, 5, since=since))
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        self.assertIsNone(udp_ask(sock, self.frontend, "x.example", 1, timeout=0.5))
        with socket.create_connection(self.frontend, timeout=2) as conn:  # accepted, never answered
            conn.settimeout(0.5)
            msg = dnsload.build_query("y.example", 2)
            conn.sendall(struct.pack("!H", len(msg)) + msg)
            with self.assertRaises(socket.timeout):
                conn.recv(100)
        stats = self.lb.stats()["counters"]
        self.assertGreaterEqual(stats["udp_dropped_all_down"], 1)
        self.assertGreaterEqual(stats["tcp_blackholed"], 1)
        self.lb.set_all_down("all")
        self.assertIn(udp_ask(sock, self.frontend, "z.example", 3), ("10.0.0.1", "10.0.0.2"))
        sock.close()


if __name__ == "__main__":
    unittest.main()
