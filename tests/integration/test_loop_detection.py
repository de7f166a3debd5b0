"""Forwarding-loop detection with the real binary: two hubdns instances whose corp.example
rules forward to each other both find the loop (/status "loop", the error log line,
readiness for a critical zone, /metrics), answer clients SERVFAIL at once instead of
letting the query circle, and keep serving the zones that are fine; the verdict stays until a
reload checks again; a chained tier (a hubdns forwarding to another hubdns) is no loop; and
the probes reach an upstream outside a loop once per check, never more.

Loopback only. Every wait is bounded (SLACK on top of what is expected)."""

import json
import time
import unittest

from harness import FakeUpstream, Hubdns, curl, dig, free_port, metric
from test_readiness import SLACK, health_config, readyz, readyz_when, status, upstream_status, wait_for

QUERY_TIMEOUT = 4.0  # long, so that a query circling until it runs out could not pass for a quick SERVFAIL


def config(forwards):
    return health_config(forwards).replace('query_timeout = "1s"', f'query_timeout = "{QUERY_TIMEOUT:g}s"')


def assert_each_probe_arrived_once(test, fake, senders):
    """Every loop probe that `senders` ((instance, zone, upstream) checks whose probes end
    at `fake`) sent reached `fake` exactly once, and none arrives once they are decided."""
    probes = fake.loop_probes()
    time.sleep(1.0)  # five health intervals: nothing more may come
    test.assertEqual(fake.loop_probes(), probes)
    sent = sum(upstream_status(status(instance.health_port), zone, upstream)["loop_check"]["probes"]
               for instance, zone, upstream in senders)
    test.assertEqual(len(probes), sent, probes)
    test.assertEqual(len(set(probes)), len(probes), probes)
    for name in probes:
        test.assertRegex(name, r"^[0-9a-f]{16}\._hubdns-loop\.$")


def loop_state(port, zone, address):
    """(status, loop_check state) of one upstream in /status."""
    upstream = upstream_status(status(port), zone, address)
    return upstream["status"], (upstream["loop_check"] or {}).get("state")


class LoopBetweenTwoInstances(unittest.TestCase):
    """A forwards corp.example to B, B forwards corp.example to A: a loop through a second
    hubdns. Both forward "." to a fake upstream that is not part of any loop."""

    def start_pair(self, corp_critical):
        self.fake = FakeUpstream(address="10.0.0.53")
        self.addCleanup(self.fake.close)
        self.port_a, self.port_b = free_port(), free_port()
        self.a_to_b = f"127.0.0.1:{self.port_b}"
        self.b_to_a = f"127.0.0.1:{self.port_a}"
        config_a = config([(".", [self.fake.endpoint], True), ("corp.example", [self.a_to_b], corp_critical)])
        config_b = config([(".", [self.fake.endpoint], True), ("corp.example", [self.b_to_a], corp_critical)])
        # A starts alone: its first probe finds nobody at B (no verdict) and is asked again;
        # the second instance's probes then find the loop from both sides.
        self.a = Hubdns(config_a, dns_port=self.port_a)
        self.addCleanup(self.a.stop)
        self.b = Hubdns(config_b, dns_port=self.port_b)
        self.addCleanup(self.b.stop)

        def both_flagged():
            return (loop_state(self.a.health_port, "corp.example", self.a_to_b)[0] == "loop"
                    and loop_state(self.b.health_port, "corp.example", self.b_to_a)[0] == "loop")
        flagged, _ = wait_for(both_flagged, 5.0 + SLACK, step=0.05)
        self.assertTrue(flagged, f"A: {json.dumps(status(self.a.health_port)['zones'])}\n"
                                 f"B: {json.dumps(status(self.b.health_port)['zones'])}\n"
                                 f"{self.a.log()}\n{self.b.log()}")

    def test_both_sides_flag_the_loop_and_stop_forwarding_there(self):
        self.start_pair(corp_critical=False)
        for hub, peer, label in ((self.a, self.a_to_b, "A"), (self.b, self.b_to_a, "B")):
            with self.subTest(instance=label):
                self.assertEqual(loop_state(hub.health_port, "corp.example", peer), ("loop", "loop"))
                check = upstream_status(status(hub.health_port), "corp.example", peer)["loop_check"]
                self.assertEqual(check["last_result"], "came back to this instance")
                lines = [line for line in hub.log().splitlines() if 'msg="forwarding loop detected"' in line]
                self.assertEqual(len(lines), 1, hub.log())
                self.assertTrue(lines[0].startswith("level=error "), lines[0])
                self.assertIn(f"zone=corp.example upstream={peer} ", lines[0])
                # The root rule's upstream is fine: checked, clear, up.
                self.assertEqual(loop_state(hub.health_port, ".", self.fake.endpoint), ("up", "clear"))
                labels = f'{{zone="corp.example",upstream="{peer}"}}'
                self.assertEqual(metric(hub.health_port, "hubdns_upstream_up" + labels), 0)
                self.assertEqual(metric(hub.health_port, "hubdns_upstream_loop" + labels), 1)
                self.assertEqual(metric(hub.health_port, 'hubdns_upstream_loop{zone=".",upstream="'
                                        + self.fake.endpoint + '"}'), 0)
                self.assertGreaterEqual(metric(hub.health_port, 'hubdns_loop_probes_total{result="loop"}'), 1)
                # corp.example is not critical: the loop is reported, the instance stays ready.
                result, _ = readyz_when(hub.health_port, 200, SLACK)
                self.assertIsNotNone(result, readyz(hub.health_port))

        # A client's query under corp.example: SERVFAIL at once (no usable upstream), and
        # nothing goes upstream: it does not circle between A and B until query_timeout.
        sent_before = metric(self.a.health_port, "hubdns_upstream_queries_total")
        started = time.monotonic()
        code, _, out = dig(self.a.dns_port, "host.corp.example", "A")
        elapsed = time.monotonic() - started
        self.assertEqual(code, "SERVFAIL", out)
        self.assertLess(elapsed, QUERY_TIMEOUT / 2, "answered at once, not after circling for query_timeout")
        self.assertEqual(metric(self.a.health_port, "hubdns_upstream_queries_total"), sent_before)
        # (B's health checks of corp.example at A meet the same: hubdns_upstream_none_healthy_total
        # grows with every round, so it proves nothing about this one query.)
        # The root zone still resolves through the fake upstream.
        code, answers, out = dig(self.a.dns_port, "www.example.net", "A")
        self.assertEqual((code, answers), ("NOERROR", ["10.0.0.53"]), out)

        # The fake upstream is in no loop: each probe of the instances' "." rule reached it
        # once (one per instance, unless a loaded machine made one wait in vain and it was
        # asked again), and none came in the rounds since (a clear verdict is not re-asked).
        assert_each_probe_arrived_once(self, self.fake, [(self.a, ".", self.fake.endpoint),
                                                         (self.b, ".", self.fake.endpoint)])

    def test_a_critical_zone_in_a_loop_makes_the_instance_unready(self):
        self.start_pair(corp_critical=True)
        for hub, peer in ((self.a, self.a_to_b), (self.b, self.b_to_a)):
            result, _ = readyz_when(hub.health_port, 503, SLACK)
            self.assertIsNotNone(result, readyz(hub.health_port))
            self.assertIn(f"zone corp.example: no upstream up ({peer}: forwards back to this instance (loop))",
                          result[1])
            # The health checks go on underneath, but never lift the verdict.
            time.sleep(0.6)
            self.assertEqual(loop_state(hub.health_port, "corp.example", peer), ("loop", "loop"))
            self.assertEqual(readyz(hub.health_port)[0], 503)


    def test_the_verdict_stays_until_a_reload_checks_again(self):
        self.start_pair(corp_critical=False)
        # B's operator fixes B: corp.example now goes to a real server.
        corp = FakeUpstream(address="10.0.0.99")
        self.addCleanup(corp.close)
        self.b.write_config(config([(".", [self.fake.endpoint], True), ("corp.example", [corp.endpoint], False)]))
        code, _, body = curl(self.b.health_port, "/reload", method="POST")
        self.assertEqual(code, 200, body)
        self.assertIn(loop_state(self.b.health_port, "corp.example", corp.endpoint)[0], ("unknown", "up"))
        # A's health checks now get answers through B, but they never lift the verdict...
        time.sleep(1.0)
        self.assertEqual(loop_state(self.a.health_port, "corp.example", self.a_to_b), ("loop", "loop"))
        # ...A's reload checks again: the probe goes through B to the real server.
        code, _, body = curl(self.a.health_port, "/reload", method="POST")
        self.assertEqual(code, 200, body)
        fixed, _ = wait_for(lambda: loop_state(self.a.health_port, "corp.example", self.a_to_b) == ("up", "clear"),
                            5.0 + SLACK, step=0.05)
        self.assertTrue(fixed, json.dumps(upstream_status(status(self.a.health_port), "corp.example", self.a_to_b)))
        self.assertIn(f'msg="forwarding loop no longer detected" zone=corp.example upstream={self.a_to_b}',
                      self.a.log())
        code, answers, out = dig(self.a.dns_port, "host.corp.example", "A")
        self.assertEqual((code, answers), ("NOERROR", ["10.0.0.99"]), out)


class ChainedTiers(unittest.TestCase):
    """A spoke hubdns forwarding "." to a hub hubdns, which forwards to a fake upstream: the
    spoke's probe passes through the hub (not the hub's token: forwarded as usual) to the
    fake. No loop on either side."""

    def test_a_hubdns_behind_another_hubdns_is_no_loop(self):
        fake = FakeUpstream(address="10.0.0.54")
        self.addCleanup(fake.close)
        hub = Hubdns(config([(".", [fake.endpoint], True)]))
        self.addCleanup(hub.stop)
        hub_address = f"127.0.0.1:{hub.dns_port}"
        spoke = Hubdns(config([(".", [hub_address], True)]))
        self.addCleanup(spoke.stop)

        def both_clear():
            return (loop_state(hub.health_port, ".", fake.endpoint) == ("up", "clear")
                    and loop_state(spoke.health_port, ".", hub_address) == ("up", "clear"))
        clear, _ = wait_for(both_clear, 5.0 + SLACK, step=0.05)
        self.assertTrue(clear, f"hub: {json.dumps(status(hub.health_port)['zones'])}\n"
                               f"spoke: {json.dumps(status(spoke.health_port)['zones'])}")
        for instance in (hub, spoke):
            self.assertNotIn("forwarding loop detected", instance.log())
            result, _ = readyz_when(instance.health_port, 200, SLACK)
            self.assertIsNotNone(result, readyz(instance.health_port))
        code, answers, out = dig(spoke.dns_port, "www.example.org", "A")
        self.assertEqual((code, answers), ("NOERROR", ["10.0.0.54"]), out)

        # The probes of both tiers reached the fake upstream (the spoke's through the hub),
        # each once.
        assert_each_probe_arrived_once(self, fake, [(hub, ".", fake.endpoint), (spoke, ".", hub_address)])


if __name__ == "__main__":
    unittest.main()
