"""Hostile input while good clients are served.

All attacks run at the same time, for a few seconds, against one instance:
- random datagrams (random bytes, truncated headers, responses sent as queries, absurd
  section counts, compression loops, oversize) to the DNS port;
- TCP clients sending garbage, zero-length frames, a 65535-byte length with the bytes
  never coming, and slow-loris clients dribbling one byte a second, twice as many as
  server.max_tcp_clients (idle ones make room for new clients: the good ones get in);
- HTTP slow-loris clients on the health port (more than its connection limit), oversized
  request heads, garbage request lines and a connection flood.
Meanwhile a steady UDP client and periodic TCP and /readyz checks must all succeed. After:
the process is alive, counted what it refused, releases the TCP clients, and exits 0 (the
sanitizer build turns any memory error into a failure here).
"""

import os
import random
import socket
import struct
import threading
import time
import unittest

from harness import (Hubdns, LoadClient, PacedUpstream, build_query, config_with, curl, dig,
                     metric, wait_until)

ATTACK_SECONDS = 6
MAX_TCP_CLIENTS = 50


def random_datagrams(rng):
    """An endless mix of broken DNS messages."""
    valid = build_query("victim.example", qid=1)
    while True:
        kind = rng.randrange(8)
        if kind == 0:
            yield rng.randbytes(rng.randrange(0, 600))
        elif kind == 1:
            yield valid[: rng.randrange(0, 12)]  # shorter than a header
        elif kind == 2:
            yield bytes([valid[0], valid[1], valid[2] | 0x80]) + valid[3:]  # a response
        elif kind == 3:
            yield valid[:4] + b"\xff\xff\xff\xff\xff\xff\xff\xff" + valid[12:]  # counts lie
        elif kind == 4:
            yield valid[:12] + b"\xc0\x0c\x00\x01\x00\x01"  # the name points at itself
        elif kind == 5:
            yield valid[:12] + bytes([63]) + b"a" * 63 + bytes([63]) * 200  # labels run off
        elif kind == 6:
            yield valid + rng.randbytes(rng.randrange(1, 3000))  # trailing junk, oversize
        else:
            flipped = bytearray(valid)
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
            yield bytes(flipped)


class Attack:
    """Runs attack functions on threads until stopped; counts what each did."""

    def __init__(self):
        self.stop = threading.Event()
        self.threads = []
        self.counts = {}
        self.lock = threading.Lock()

    def count(self, name, n=1):
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + n

    def start(self, target, *args):
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self.threads.append(thread)

    def finish(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=15)


class HostileInputTest(unittest.TestCase):
    def test_good_clients_are_served_through_every_attack(self):
        # Bit-flipped queries are valid often enough to reach the upstream by thousands a
        # second: a single-threaded fake that keeps up, so what the good clients see is
        # hubdns's doing.
        upstream = PacedUpstream()
        self.addCleanup(upstream.close)
        config = config_with(f'[[forward]]\nzone = "."\nupstreams = ["{upstream.endpoint}"]\n')
        config = config.replace("workers = 2", f'workers = 2\nmax_tcp_clients = {MAX_TCP_CLIENTS}\ntcp_idle_timeout = "2s"')
        hubdns = Hubdns(config)
        self.addCleanup(lambda: hubdns.process.poll() is None and hubdns.stop())
        dns, health = hubdns.dns_port, hubdns.health_port
        self.assertTrue(wait_until(lambda: curl(health, "/readyz")[0] == 200, timeout=10), hubdns.log())
        invalid_before = (metric(health, 'hubdns_dns_dropped_total{reason="malformed"}') or 0) + \
            (metric(health, "hubdns_dns_invalid_queries_total") or 0)

        attack = Attack()
        rng = random.Random(20261126)

        def udp_garbage(seed):
            generator = random_datagrams(random.Random(seed))
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            while not attack.stop.is_set():
                for _ in range(50):
                    try:
                        sock.sendto(next(generator), ("127.0.0.1", dns))
                        attack.count("udp datagrams")
                    except OSError:
                        pass
                    try:
                        while True:
                            sock.recv(4096)  # answers (FORMERR) are read and thrown away
                    except OSError:
                        pass
                time.sleep(0.002)
            sock.close()

        def tcp_garbage(seed):
            local = random.Random(seed)
            while not attack.stop.is_set():
                try:
                    with socket.create_connection(("127.0.0.1", dns), timeout=2) as s:
                        kind = local.randrange(3)
                        if kind == 0:
                            s.sendall(local.randbytes(local.randrange(1, 2000)))
                        elif kind == 1:
                            s.sendall(b"\x00\x00" * 10)  # zero-length frames
                        else:
                            s.sendall(b"\xff\xff" + b"x" * 100)  # the rest never comes
                        attack.count("tcp garbage connections")
                        time.sleep(0.05)
                except OSError:
                    attack.count("tcp connections refused or reset")
                    time.sleep(0.05)

        def slowloris(port, count, opening, counter):
            """Holds `count` connections to `port`, each sent `opening` and then one more
            byte a second, never a complete request; reconnects those the server closes."""
            held = []
            while not attack.stop.is_set():
                while len(held) < count:
                    try:
                        s = socket.create_connection(("127.0.0.1", port), timeout=2)
                        s.setblocking(False)
                        s.send(opening)
                        held.append(s)
                        attack.count(counter)
                    except OSError:
                        break
                for s in list(held):
                    try:
                        s.send(b"X")
                    except OSError:
                        held.remove(s)
                        s.close()
                attack.stop.wait(1.0)
            for s in held:
                s.close()

        def http_junk():
            local = random.Random(7)
            requests = [
                b"GET /readyz HTTP/1.1\r\nX: " + b"a" * 100000 + b"\r\n\r\n",  # oversized head
                b"\x00\x01\x02garbage\r\n\r\n",
                b"GET " + b"/" * 20000 + b" HTTP/1.1\r\n\r\n",
                b"POST /drain HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
            ]
            while not attack.stop.is_set():
                try:
                    with socket.create_connection(("127.0.0.1", health), timeout=2) as s:
                        s.sendall(local.choice(requests))
                        s.settimeout(2)
                        s.recv(4096)
                        attack.count("http junk requests")
                except OSError:
                    attack.count("http junk cut off")
                # A bare connect-and-close flood as well.
                for _ in range(20):
                    try:
                        socket.create_connection(("127.0.0.1", health), timeout=1).close()
                        attack.count("http connect flood")
                    except OSError:
                        pass

        for i in range(2):
            attack.start(udp_garbage, rng.randrange(1 << 30))
        attack.start(tcp_garbage, rng.randrange(1 << 30))
        # One byte of a length prefix: the frame never completes.
        attack.start(slowloris, dns, MAX_TCP_CLIENTS * 2, b"\x00", "tcp slow-loris connections")
        # 300: above the health server's 256 connections.
        attack.start(slowloris, health, 300, b"GET /readyz HTTP/1.1\r\n", "http slow-loris connections")
        attack.start(http_junk)

        good = LoadClient(dns, interval=0.01, name="good.example")
        tcp_results, readyz_results = [], []
        deadline = time.time() + ATTACK_SECONDS
        while time.time() < deadline:
            status, answers, _ = dig(dns, f"tcp{len(tcp_results)}.good.example", extra=["+tcp", "+time=3"])
            tcp_results.append((status, tuple(answers)))
            readyz_results.append(curl(health, "/readyz")[0])
            time.sleep(0.2)
        good.finish(wait=2.0)
        attack.finish()

        self.assertIsNone(hubdns.process.poll(), "hubdns died:\n" + hubdns.log()[-3000:])
        print(f"attacks: {dict(sorted(attack.counts.items()))}")
        print(f"good UDP client: {len(good.sent)} sent, {len(good.unanswered())} unanswered; "
              f"TCP: {len(tcp_results)} queries; /readyz: {len(readyz_results)} probes")
        self.assertGreater(attack.counts.get("udp datagrams", 0), 1000)
        self.assertGreater(attack.counts.get("http slow-loris connections", 0), 256)
        self.assertGreater(attack.counts.get("tcp slow-loris connections", 0), MAX_TCP_CLIENTS)

        # Good clients: every UDP query answered NOERROR, every TCP query and probe too.
        self.assertEqual(good.unanswered(), [])
        rcodes = [rcode for _, rcode in good.answered.values()]
        self.assertEqual(set(rcodes), {0}, f"{rcodes.count(2)} SERVFAIL; log:\n" + "\n".join(
            line for line in hubdns.log().splitlines() if "level=warn" in line or "level=error" in line)[-3000:])
        self.assertEqual(set(tcp_results), {("NOERROR", ("10.1.1.1",))})
        self.assertEqual(set(readyz_results), {200})

        # Refused and counted, not crashed on.
        invalid_after = metric(health, 'hubdns_dns_dropped_total{reason="malformed"}') + \
            metric(health, "hubdns_dns_invalid_queries_total")
        self.assertGreater(invalid_after - invalid_before, 100)
        # The slow-loris connections held every TCP place; each good TCP client took the
        # place of the one idle longest instead of being turned away.
        self.assertGreater(metric(health, "hubdns_dns_tcp_clients_evicted_total"), 0)
        self.assertGreater(metric(health, "hubdns_health_http_bad_requests_total"), 0)
        # The attackers are gone: every TCP client is released (idle timeout 2 s at most).
        self.assertTrue(wait_until(lambda: metric(health, "hubdns_dns_tcp_clients") == 0, timeout=10),
                        f"TCP clients still open: {metric(health, 'hubdns_dns_tcp_clients')}")
        status, answers, out = dig(dns, "after.good.example")
        self.assertEqual((status, answers), ("NOERROR", ["10.1.1.1"]), out)
        self.assertEqual(hubdns.stop(), 0)


if __name__ == "__main__":
    unittest.main()
