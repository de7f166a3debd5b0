"""The relay core against fake upstreams: coalescing, max_outstanding, anti-spoofing,
failover, EDNS rewriting, TC and the TCP retry, pipelined TCP with out-of-order answers on
reused upstream connections, REFUSED for a second loopback address."""

import signal
import socket
import struct
import threading
import time
import unittest

from harness import (FakeUpstream, Hubdns, build_query, config_with, dig, kdig, metric,
                     parse_question, rcode_of, udp_exchange)


def tcp_exchange_many(port, queries, timeout=5.0):
    """Sends all queries on one TCP connection at once; returns answers in arrival order."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"".join(struct.pack("!H", len(q)) + q for q in queries))
        answers, buf = [], b""
        while len(answers) < len(queries):
            chunk = s.recv(65535)
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                length = struct.unpack("!H", buf[:2])[0]
                answers.append(buf[2 : 2 + length])
                buf = buf[2 + length :]
        return answers


def concurrent_udp(port, queries, timeout=5.0):
    """Sends each query from its own socket at (nearly) the same time; returns the answers."""
    results = [None] * len(queries)

    def one(i):
        results[i] = udp_exchange(port, queries[i], timeout=timeout)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(queries))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def single_rule(upstreams, extra="", workers=1, query_timeout="3s"):
    quoted = ", ".join(f'"{u.endpoint}"' for u in upstreams)
    config = config_with(f'[[forward]]\nzone = "."\nupstreams = [{quoted}]\n{extra}\n',
                         query_timeout=query_timeout)
    return config.replace("workers = 2", f"workers = {workers}")


class RelayCoreTest(unittest.TestCase):
    def test_identical_questions_in_flight_go_upstream_once(self):
        upstream = FakeUpstream(address="10.3.3.3")
        upstream.delays["same.example.com."] = 0.5
        with Hubdns(single_rule([upstream])) as hubdns:
            names = ["same.example.com" if i % 2 else "SAME.Example.COM" for i in range(20)]
            queries = [build_query(n, qid=1000 + i) for i, n in enumerate(names)]
            answers = concurrent_udp(hubdns.dns_port, queries)
            for i, answer in enumerate(answers):
                self.assertIsNotNone(answer, f"query {i} unanswered")
                qid, _, qname, _, _, _ = parse_question(answer)
                self.assertEqual(qid, 1000 + i)
                self.assertEqual(rcode_of(answer), 0)
                self.assertEqual(qname, build_query(names[i])[12:-4])  # the client's spelling
            self.assertEqual(upstream.query_count(), 1)
            self.assertEqual(metric(hubdns.health_port, "hubdns_dns_coalesced_total"), 19)
            self.assertEqual(metric(hubdns.health_port, "hubdns_upstream_queries_total"), 1)
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()

    def test_max_outstanding_caps_queries_per_upstream(self):
        upstream = FakeUpstream()
        upstream.delay = 1.0
        with Hubdns(single_rule([upstream], 'max_outstanding = 2')) as hubdns:
            queries = [build_query(f"n{i}.example.com", qid=i) for i in range(5)]
            started = time.time()
            answers = concurrent_udp(hubdns.dns_port, queries)
            rcodes = sorted(rcode_of(a) for a in answers)
            self.assertEqual(rcodes, [0, 0, 2, 2, 2])
            self.assertEqual(upstream.query_count(), 2)
            self.assertLess(time.time() - started, 2.5)
            self.assertEqual(metric(hubdns.health_port, "hubdns_upstream_max_outstanding_rejects_total"), 3)
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()

    def test_spoofed_answers_are_ignored(self):
        upstream = FakeUpstream(address="10.4.4.4")
        upstream.delays["target.example.com."] = 0.6
        with Hubdns(single_rule([upstream])) as hubdns:
            result = {}
            t = threading.Thread(target=lambda: result.update(
                answer=udp_exchange(hubdns.dns_port, build_query("target.example.com", qid=77))))
            t.start()
            deadline = time.time() + 2
            while not upstream.client_queries() and time.time() < deadline:
                time.sleep(0.01)
            _, _, _, real_query, peer = upstream.client_queries()[0]
            upstream_id = struct.unpack("!H", real_query[:2])[0]
            forged_answer = (struct.pack("!HHHHHH", upstream_id, 0x8180, 1, 1, 0, 0) +
                             real_query[12:real_query.index(b"\0", 12) + 5] +
                             b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + bytes([6, 6, 6, 6]))
            # From another port: wrong source.
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as spoofer:
                spoofer.sendto(forged_answer, peer)
            # From the upstream's own address and port, but for another question.
            other = build_query("other.example.com", qid=upstream_id)
            wrong_question = (struct.pack("!HHHHHH", upstream_id, 0x8180, 1, 0, 0, 0) + other[12:])
            upstream.udp.sendto(wrong_question, peer)
            t.join()
            answer = result["answer"]
            self.assertIsNotNone(answer)
            self.assertEqual(struct.unpack("!H", answer[:2])[0], 77)
            self.assertIn(bytes([10, 4, 4, 4]), answer)
            self.assertNotIn(bytes([6, 6, 6, 6]), answer)
            self.assertEqual(metric(hubdns.health_port, "hubdns_upstream_mismatched_responses_total"), 2)
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()

    def test_failover_after_drop_wrong_id_and_garbage(self):
        for bad_mode in ("drop", "wrong_id", "garbage"):
            bad = FakeUpstream(mode=bad_mode)
            good = FakeUpstream(address="10.5.5.5")
            config = single_rule([bad, good], 'policy = "sequential"\nattempt_timeout = "400ms"')
            with Hubdns(config) as hubdns:
                status, answers, out = dig(hubdns.dns_port, f"failover-{bad_mode}.example.com")
                self.assertEqual((status, answers), ("NOERROR", ["10.5.5.5"]), out)
                self.assertEqual(bad.query_count(), 1)
                self.assertEqual(hubdns.stop(), 0)
            bad.close()
            good.close()

    def test_servfail_and_refused_fail_over_to_the_next_upstream(self):
        for bad_mode in ("servfail", "refused"):
            bad = FakeUpstream(mode=bad_mode)
            good = FakeUpstream(address="10.5.5.6")
            config = single_rule([bad, good], 'policy = "sequential"')
            with Hubdns(config) as hubdns:
                status, answers, out = dig(hubdns.dns_port, f"failover-{bad_mode}.example.com")
                self.assertEqual((status, answers), ("NOERROR", ["10.5.5.6"]), out)
                self.assertEqual((bad.query_count(), good.query_count()), (1, 1))
                self.assertEqual(hubdns.stop(), 0)
            bad.close()
            good.close()

    def test_fastest_turns_away_from_an_upstream_that_refuses_at_once(self):
        # A refusal comes back faster than any real answer; it must not make that upstream
        # look like the fastest one.
        refusing = FakeUpstream(mode="refused")
        good = FakeUpstream(address="10.5.5.7")
        good.delay = 0.02
        with Hubdns(single_rule([refusing, good], 'policy = "fastest"')) as hubdns:
            for i in range(20):
                status, answers, out = dig(hubdns.dns_port, f"fastest-{i}.example.com")
                self.assertEqual((status, answers), ("NOERROR", ["10.5.5.7"]), out)
            self.assertLessEqual(refusing.query_count(), 5)
            self.assertEqual(hubdns.stop(), 0)
        refusing.close()
        good.close()

    def test_the_last_upstreams_servfail_or_refused_reaches_the_client(self):
        # Nothing left to try: the upstream's own answer goes out (each upstream asked once).
        for mode, expected in (("servfail", "SERVFAIL"), ("refused", "REFUSED")):
            first, second = FakeUpstream(mode=mode), FakeUpstream(mode=mode)
            with Hubdns(single_rule([first, second], 'policy = "sequential"')) as hubdns:
                status, _, out = dig(hubdns.dns_port, f"all-{mode}.example.com")
                self.assertEqual(status, expected, out)
                self.assertEqual((first.query_count(), second.query_count()), (1, 1))
                self.assertEqual(hubdns.stop(), 0)
            first.close()
            second.close()

    def test_servfail_with_ede_within_query_timeout_when_all_fail(self):
        first, second = FakeUpstream(mode="drop"), FakeUpstream(mode="drop")
        config = single_rule([first, second], 'attempt_timeout = "400ms"', query_timeout="1s")
        with Hubdns(config) as hubdns:
            started = time.time()
            status, out = kdig(hubdns.dns_port, "nobody.example.com", extra=["+edns"])
            elapsed = time.time() - started
            self.assertEqual(status, "SERVFAIL", out)
            self.assertIn("EDE", out)
            self.assertLess(elapsed, 1.8)
            self.assertEqual(first.query_count() + second.query_count(), 2)
            self.assertEqual(hubdns.stop(), 0)
        first.close()
        second.close()

    def test_edns_is_rewritten_for_upstream(self):
        upstream = FakeUpstream()
        with Hubdns(single_rule([upstream])) as hubdns:
            status, _, out = dig(hubdns.dns_port, "edns.example.com",
                                 extra=["+bufsize=4096", "+dnssec", "+ednsopt=65001:abcd"])
            self.assertEqual(status, "NOERROR", out)
            raw = upstream.client_queries()[-1][3]
            qend = parse_question(raw)[5]
            opt = raw[qend:]
            self.assertEqual(struct.unpack("!H", raw[10:12])[0], 1)
            self.assertEqual(opt[0], 0)
            otype, size, ttl, rdlen = struct.unpack("!HHIH", opt[1:11])
            self.assertEqual((otype, size, rdlen), (41, 1232, 0))  # our size, no options
            self.assertTrue(ttl & 0x8000)  # DO kept
            dig(hubdns.dns_port, "noedns.example.com", extra=["+noedns"])
            raw = upstream.client_queries()[-1][3]
            self.assertEqual(len(raw), parse_question(raw)[5])
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()

    def test_truncated_udp_answer_relayed_then_retried_over_tcp(self):
        upstream = FakeUpstream(address="10.6.6.6", mode="truncate")
        with Hubdns(single_rule([upstream])) as hubdns:
            status, answers, out = dig(hubdns.dns_port, "tc.example.com")  # dig retries on TC
            self.assertEqual((status, answers), ("NOERROR", ["10.6.6.6"]), out)
            self.assertIn("Truncated, retrying in TCP mode", out)
            self.assertEqual(upstream.query_count("udp"), 1)
            self.assertEqual(upstream.query_count("tcp"), 1)
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()

    def test_every_pipelined_tcp_query_is_answered_when_the_listeners_close(self):
        # More queries than a connection may have in flight (64): the rest wait in the
        # receive buffer. A stop (or a reload) closing the listeners meanwhile must still
        # answer every complete query received (RFC 7766), then close the connection.
        upstream = FakeUpstream(address="10.3.9.9")
        upstream.delay = 0.01
        with Hubdns(single_rule([upstream])) as hubdns:
            count = 100
            stream = b"".join(struct.pack("!H", len(q)) + q
                              for q in (build_query(f"p{i}.example.com", qid=i + 1) for i in range(count)))
            with socket.create_connection(("127.0.0.1", hubdns.dns_port), timeout=10) as sock:
                sock.sendall(stream)
                time.sleep(0.05)  # the first 64 are upstream, the rest buffered
                hubdns.process.send_signal(signal.SIGTERM)  # drain_grace 0: listeners close now
                data = b""
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            answers = {}
            while len(data) >= 4:
                length = struct.unpack("!H", data[:2])[0]
                answers[struct.unpack("!H", data[2:4])[0]] = data[5] & 0x0F
                data = data[2 + length:]
            self.assertEqual(set(answers), set(range(1, count + 1)))
            self.assertEqual(set(answers.values()), {0})
            self.assertEqual(hubdns.process.wait(timeout=10), 0)
        upstream.close()

    def test_pipelined_tcp_answers_out_of_order_on_reused_connections(self):
        upstream = FakeUpstream(address="10.8.8.8")
        upstream.delays.update({"a.example.com.": 0.6, "c.example.com.": 0.3})
        with Hubdns(single_rule([upstream])) as hubdns:
            queries = [build_query(n, qid=i + 1) for i, n in
                       enumerate(["a.example.com", "b.example.com", "c.example.com"])]
            answers = tcp_exchange_many(hubdns.dns_port, queries)
            self.assertEqual([struct.unpack("!H", a[:2])[0] for a in answers], [2, 3, 1])
            self.assertTrue(all(rcode_of(a) == 0 for a in answers))
            # Again: the upstream connection is reused, not reopened.
            answers = tcp_exchange_many(hubdns.dns_port, queries)
            self.assertEqual(len(answers), 3)
            self.assertEqual(upstream.query_count("tcp"), 6)
            self.assertEqual(upstream.tcp_connections, 1)
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()

    def test_self_check_name_is_answered_locally_over_udp_and_tcp(self):
        upstream = FakeUpstream()
        # Even with loopback outside `allow`: the health checks must reach the workers.
        config = single_rule([upstream], workers=2).replace("query_timeout", 'allow = ["10.0.0.0/8"]\nquery_timeout')
        with Hubdns(config) as hubdns:
            for extra in ([], ["+tcp"]):
                status, answers, out = dig(hubdns.dns_port, "_selfcheck.hubdns.invalid", "TXT", extra=extra)
                self.assertEqual(status, "NOERROR", out)
                self.assertRegex(out, r'_selfcheck\.hubdns\.invalid\.\s+0\s+IN\s+TXT\s+"worker [01]"')
            status, _, out = dig(hubdns.dns_port, "other.example.com")
            self.assertEqual(status, "REFUSED", out)
            self.assertEqual(upstream.query_count(), 0)
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()

    @staticmethod
    def closed_by_server_within(sock, seconds):
        sock.settimeout(seconds)
        try:
            return sock.recv(1) == b""
        except (socket.timeout, ConnectionResetError):
            return False

    def test_tcp_idle_and_half_sent_clients_are_cut_off(self):
        upstream = FakeUpstream()
        config = single_rule([upstream]).replace(
            "query_timeout", 'tcp_idle_timeout = "300ms"\nquery_timeout')
        with Hubdns(config) as hubdns:
            idle = socket.create_connection(("127.0.0.1", hubdns.dns_port))
            half = socket.create_connection(("127.0.0.1", hubdns.dns_port))
            half.sendall(b"\x00")  # one byte of a length prefix, then nothing
            started = time.time()
            self.assertTrue(self.closed_by_server_within(idle, 3))
            self.assertTrue(self.closed_by_server_within(half, 3))
            self.assertLess(time.time() - started, 2.5)
            idle.close()
            half.close()
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()

    def test_at_max_tcp_clients_idle_connections_make_room_and_busy_ones_do_not(self):
        upstream = FakeUpstream(address="10.4.4.4")
        config = single_rule([upstream]).replace("query_timeout", "max_tcp_clients = 2\nquery_timeout")

        def ask(sock, name, qid):
            query = build_query(name, qid=qid)
            sock.sendall(struct.pack("!H", len(query)) + query)

        def answer_id(sock):
            sock.settimeout(5)
            frame = b""
            while len(frame) < 2 or len(frame) < 2 + struct.unpack("!H", frame[:2])[0]:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                frame += chunk
            return struct.unpack("!H", frame[2:4])[0]

        with Hubdns(config) as hubdns:
            port = hubdns.dns_port
            # max_tcp_clients = 2 (one worker), both places idle: a third client takes the
            # place of the one idle longest, which is closed; the third is served.
            first = socket.create_connection(("127.0.0.1", port))
            time.sleep(0.05)
            second = socket.create_connection(("127.0.0.1", port))
            time.sleep(0.05)
            third = socket.create_connection(("127.0.0.1", port))
            self.assertTrue(self.closed_by_server_within(first, 2))
            ask(third, "third.example.com", 3)
            self.assertEqual(answer_id(third), 3)
            self.assertEqual(metric(hubdns.health_port, "hubdns_dns_tcp_clients_evicted_total"), 1)
            # Both places owed an answer (a query each, held 1.5 s upstream): a new client is
            # turned away at once, and the two still get their answers.
            upstream.delay = 1.5
            ask(second, "second.example.com", 2)
            ask(third, "third-again.example.com", 4)
            time.sleep(0.3)
            fourth = socket.create_connection(("127.0.0.1", port))
            self.assertTrue(self.closed_by_server_within(fourth, 1))
            self.assertEqual(metric(hubdns.health_port, "hubdns_dns_tcp_clients_rejected_total"), 1)
            self.assertEqual(answer_id(second), 2)
            self.assertEqual(answer_id(third), 4)
            for s in (first, second, third, fourth):
                s.close()
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()

    def test_refused_for_a_second_loopback_address_outside_allow(self):
        upstream = FakeUpstream()
        config = single_rule([upstream]).replace("query_timeout", 'allow = ["127.0.0.1/32"]\nquery_timeout')
        with Hubdns(config) as hubdns:
            status, _, out = dig(hubdns.dns_port, "from-2.example.com", extra=["-b", "127.0.0.2"])
            self.assertEqual(status, "REFUSED", out)
            status, _, out = dig(hubdns.dns_port, "from-2.example.com", extra=["-b", "127.0.0.2", "+tcp"])
            self.assertEqual(status, "REFUSED", out)
            self.assertEqual(upstream.query_count(), 0)
            status, _, out = dig(hubdns.dns_port, "from-1.example.com", extra=["-b", "127.0.0.1"])
            self.assertEqual(status, "NOERROR", out)
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()


if __name__ == "__main__":
    unittest.main()
