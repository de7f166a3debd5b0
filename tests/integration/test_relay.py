"""The first working path: queries relayed by the real binary over UDP and TCP to fake
upstreams on loopback, routed by longest zone suffix, answered SERVFAIL when the upstream
does not answer, REFUSED outside `allow`, FORMERR for malformed queries."""

import struct
import unittest

from harness import (FakeUpstream, Hubdns, build_query, config_with, dig, kdig, rcode_of,
                     udp_exchange)


class RelayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = FakeUpstream(address="10.0.0.1")
        cls.spoke = FakeUpstream(address="10.1.0.7")
        cls.dead = FakeUpstream(mode="drop")
        cls.big = FakeUpstream(address="10.2.0.1", big_answer=120)
        forward = f"""
[[forward]]
zone = "."
upstreams = ["{cls.root.endpoint}"]

[[forward]]
zone = "az-spoke-1-internal.net"
upstreams = ["{cls.spoke.endpoint}"]

[[forward]]
zone = "dead.example"
upstreams = ["{cls.dead.endpoint}"]
attempt_timeout = "300ms"

[[forward]]
zone = "big.example"
upstreams = ["{cls.big.endpoint}"]
"""
        cls.hubdns = Hubdns(config_with(forward, query_timeout="1s"))

    @classmethod
    def tearDownClass(cls):
        code = cls.hubdns.stop()
        for upstream in (cls.root, cls.spoke, cls.dead, cls.big):
            upstream.close()
        assert code == 0, f"hubdns exit code {code}"

    def test_udp_relay_returns_upstream_answer(self):
        before = self.root.query_count("udp")
        status, answers, out = dig(self.hubdns.dns_port, "www.example.com")
        self.assertEqual(status, "NOERROR", out)
        self.assertEqual(answers, ["10.0.0.1"], out)
        self.assertEqual(self.root.query_count("udp"), before + 1)

    def test_tcp_relay_goes_upstream_over_tcp(self):
        before = self.root.query_count("tcp")
        status, answers, out = dig(self.hubdns.dns_port, "tcp.example.com", extra=["+tcp"])
        self.assertEqual(status, "NOERROR", out)
        self.assertEqual(answers, ["10.0.0.1"], out)
        self.assertEqual(self.root.query_count("tcp"), before + 1)

    def test_kdig_udp_and_tcp(self):
        status, out = kdig(self.hubdns.dns_port, "kdig.example.org")
        self.assertEqual(status, "NOERROR", out)
        self.assertIn("10.0.0.1", out)
        status, out = kdig(self.hubdns.dns_port, "kdig.example.org", extra=["+tcp"])
        self.assertEqual(status, "NOERROR", out)
        self.assertIn("10.0.0.1", out)

    def test_longest_suffix_routing_case_insensitive(self):
        status, answers, out = dig(self.hubdns.dns_port, "vm-dns-dev01.AZ-Spoke-1-Internal.NET")
        self.assertEqual(status, "NOERROR", out)
        self.assertEqual(answers, ["10.1.0.7"], out)
        # The client's own spelling of the name comes back.
        self.assertIn("vm-dns-dev01.AZ-Spoke-1-Internal.NET.", out)
        # A name that only shares a string suffix, not a label suffix, goes to ".".
        status, answers, out = dig(self.hubdns.dns_port, "notaz-spoke-1-internal.net")
        self.assertEqual(answers, ["10.0.0.1"], out)

    def test_upstream_sees_fresh_id_and_client_gets_its_own(self):
        query = build_query("id-check.example.com", qid=0xBEEF)
        answer = udp_exchange(self.hubdns.dns_port, query)
        self.assertIsNotNone(answer)
        self.assertEqual(struct.unpack("!H", answer[:2])[0], 0xBEEF)
        self.assertEqual(rcode_of(answer), 0)

    def test_servfail_when_upstream_silent(self):
        status, answers, out = dig(self.hubdns.dns_port, "x.dead.example")
        self.assertEqual(status, "SERVFAIL", out)
        # EDNS client: the SERVFAIL carries an Extended DNS Error.
        status, out = kdig(self.hubdns.dns_port, "y.dead.example", extra=["+edns"])
        self.assertEqual(status, "SERVFAIL", out)
        self.assertIn("EDE", out)

    def test_large_answer_truncated_over_udp_full_over_tcp(self):
        status, answers, out = dig(self.hubdns.dns_port, "many.big.example",
                                   extra=["+ignore", "+noedns"])
        self.assertEqual(status, "NOERROR", out)
        self.assertIn(" tc", out.split("flags:")[1].split(";")[0], out)
        status, answers, out = dig(self.hubdns.dns_port, "many.big.example", extra=["+tcp"])
        self.assertEqual(status, "NOERROR", out)
        self.assertEqual(len(answers), 120, out)

    def test_malformed_query_gets_formerr_or_is_dropped(self):
        # Readable header, question cut short: FORMERR with the same ID.
        query = build_query("short.example.com", qid=0x4242)[:20]
        answer = udp_exchange(self.hubdns.dns_port, query)
        self.assertIsNotNone(answer)
        self.assertEqual(struct.unpack("!H", answer[:2])[0], 0x4242)
        self.assertEqual(rcode_of(answer), 1)
        # Two questions: FORMERR.
        query = bytearray(build_query("two.example.com", qid=0x4243))
        query[5] = 2
        answer = udp_exchange(self.hubdns.dns_port, bytes(query))
        self.assertEqual(rcode_of(answer), 1)
        # Not even a header: dropped, and the relay keeps working.
        self.assertIsNone(udp_exchange(self.hubdns.dns_port, b"\x01\x02\x03", timeout=0.5))
        status, _, out = dig(self.hubdns.dns_port, "after-garbage.example.com")
        self.assertEqual(status, "NOERROR", out)

    def test_several_queries_on_one_tcp_connection(self):
        result = kdig(self.hubdns.dns_port, "a.example.com", extra=["+tcp", "+keepopen",
                                                                     "b.example.com", "c.example.com"])
        status, out = result
        self.assertEqual(out.count("status: NOERROR"), 3, out)


class AccessControlTest(unittest.TestCase):
    def test_client_outside_allow_is_refused_and_nothing_forwarded(self):
        upstream = FakeUpstream()
        config = config_with(f"""
[[forward]]
zone = "."
upstreams = ["{upstream.endpoint}"]
""").replace("query_timeout", 'allow = ["10.0.0.0/8"]\nquery_timeout')
        with Hubdns(config) as hubdns:
            status, answers, out = dig(hubdns.dns_port, "example.com")
            self.assertEqual(status, "REFUSED", out)
            status, answers, out = dig(hubdns.dns_port, "example.com", extra=["+tcp"])
            self.assertEqual(status, "REFUSED", out)
            self.assertEqual(upstream.query_count(), 0)
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()


if __name__ == "__main__":
    unittest.main()
