"""The shared answer cache, through the real binary: hits without upstream queries and with
aged TTLs, negative caching (RFC 2308), what is never cached, eviction at max_entries,
serve-stale with EDE 3 (RFC 8767) and max_stale, prefetch of a hot entry, and
POST /cache/flush with its admin rule. Fake upstreams on loopback; dig and curl as clients.
"""
import os
import subprocess
import time
import unittest

from harness import (wait_until, IN_PRIVATE_NAMESPACE, FakeUpstream, Hubdns, curl, dig, dig_section, metric,
                     rerun_in_private_network_namespace)

def cache_config(upstream, cache="", rule="", health="", query_timeout="3s", health_listen=None):
    """One rule "." to `upstream`, the cache on with `cache` lines added to [cache]."""
    listen = health_listen or '"127.0.0.1:{health_port}"'
    return f"""
[server]
listen = ["127.0.0.1:{{dns_port}}"]
workers = 2
query_timeout = "{query_timeout}"

[health]
listen = [{listen}]
interval = "200ms"
timeout = "150ms"
{health}

[cache]
enabled = true
{cache}

[[forward]]
zone = "."
upstreams = ["{upstream.endpoint}"]
attempt_timeout = "300ms"
{rule}
"""


def answer_ttls(out):
    """TTLs of the records in dig's ANSWER SECTION."""
    return [int(line.split()[1]) for line in dig_section(out, "ANSWER")]


def authority_ttls(out):
    return [int(line.split()[1]) for line in dig_section(out, "AUTHORITY")]


class CacheTest(unittest.TestCase):
    def test_second_query_is_answered_from_the_cache_with_a_lower_ttl(self):
        upstream = FakeUpstream(address="10.5.5.5", ttl=300)
        with Hubdns(cache_config(upstream)) as hubdns:
            status, answers, out = dig(hubdns.dns_port, "www.example.com")
            self.assertEqual((status, answers), ("NOERROR", ["10.5.5.5"]), out)
            self.assertEqual(answer_ttls(out), [300], out)
            self.assertEqual(upstream.query_count(), 1)
            time.sleep(2.2)
            # Another spelling of the same name, over TCP this time: one cache for both.
            status, answers, out = dig(hubdns.dns_port, "WWW.Example.COM", extra=["+tcp"])
            self.assertEqual((status, answers), ("NOERROR", ["10.5.5.5"]), out)
            ttl = answer_ttls(out)[0]
            self.assertTrue(296 <= ttl <= 298, out)
            self.assertIn("WWW.Example.COM.", out)  # the client's own spelling comes back
            self.assertEqual(upstream.query_count(), 1)
            self.assertEqual(metric(hubdns.health_port, 'hubdns_cache_lookups_total{result="hit"}'), 1)
            self.assertEqual(metric(hubdns.health_port, "hubdns_cache_entries"), 1)
            self.assertGreater(metric(hubdns.health_port, "hubdns_cache_bytes"), 0)
            # What changes the answer is part of the key: DO and CD ask again.
            dig(hubdns.dns_port, "www.example.com", extra=["+dnssec"])
            dig(hubdns.dns_port, "www.example.com", extra=["+cd"])
            self.assertEqual(upstream.query_count(), 3)
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()

    def test_negative_answers_are_cached_for_the_soa_minimum(self):
        upstream = FakeUpstream(mode="nxdomain", soa_ttl=3600, soa_minimum=2)
        with Hubdns(cache_config(upstream)) as hubdns:
            status, _, out = dig(hubdns.dns_port, "missing.example.com")
            self.assertEqual(status, "NXDOMAIN", out)
            status, _, out = dig(hubdns.dns_port, "missing.example.com")
            self.assertEqual(status, "NXDOMAIN", out)
            self.assertEqual(upstream.query_count(), 1)
            # RFC 2308: the SOA's TTL is lowered to what the negative entry lives.
            self.assertLessEqual(authority_ttls(out)[0], 2, out)
            time.sleep(2.3)
            status, _, out = dig(hubdns.dns_port, "missing.example.com")
            self.assertEqual(status, "NXDOMAIN", out)
            self.assertEqual(upstream.query_count(), 2)
            # NODATA the same way.
            upstream.mode = "nodata"
            for _ in range(3):
                status, answers, out = dig(hubdns.dns_port, "empty.example.com", qtype="AAAA")
                self.assertEqual((status, answers), ("NOERROR", []), out)
            self.assertEqual(upstream.query_count(), 3)
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()

    def test_max_negative_ttl_caps_the_soa_minimum(self):
        upstream = FakeUpstream(mode="nxdomain", soa_ttl=3600, soa_minimum=3600)
        with Hubdns(cache_config(upstream, cache='max_negative_ttl = "1s"')) as hubdns:
            dig(hubdns.dns_port, "missing.example.com")
            dig(hubdns.dns_port, "missing.example.com")
            self.assertEqual(upstream.query_count(), 1)
            time.sleep(1.3)
            dig(hubdns.dns_port, "missing.example.com")
            self.assertEqual(upstream.query_count(), 2)
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()

    def test_servfail_refused_truncated_and_ttl_zero_are_not_cached(self):
        upstream = FakeUpstream(mode="servfail")
        # serve_stale off: a SERVFAIL must reach the client as it is, twice.
        with Hubdns(cache_config(upstream, cache="serve_stale = false")) as hubdns:
            for mode, name, expected in (("servfail", "sf.example.com", "SERVFAIL"),
                                         ("refused", "rf.example.com", "REFUSED")):
                upstream.mode = mode
                before = upstream.query_count()
                for _ in range(2):
                    status, _, out = dig(hubdns.dns_port, name)
                    self.assertEqual(status, expected, out)
                self.assertEqual(upstream.query_count() - before, 2, mode)
            # TC over UDP: relayed with TC, not kept (+ignore: dig does not retry over TCP).
            upstream.mode = "truncate"
            for _ in range(2):
                _, _, out = dig(hubdns.dns_port, "tc.example.com", extra=["+ignore"])
                self.assertRegex(out, r"flags:[^;]*\btc\b")
            self.assertEqual(upstream.query_count("udp"), 6)
            # TTL 0: answered, never kept.
            upstream.mode = "answer"
            upstream.ttl = 0
            dig(hubdns.dns_port, "zero.example.com")
            dig(hubdns.dns_port, "zero.example.com")
            self.assertEqual(upstream.query_count(), 8)
            self.assertEqual(metric(hubdns.health_port, "hubdns_cache_entries"), 0)
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()

    def test_max_entries_bounds_the_cache_by_evicting(self):
        upstream = FakeUpstream(address="10.6.6.6")
        with Hubdns(cache_config(upstream, cache="max_entries = 64")) as hubdns:
            for i in range(300):
                status, _, out = dig(hubdns.dns_port, f"n{i}.example.com")
                self.assertEqual(status, "NOERROR", out)
            entries = metric(hubdns.health_port, "hubdns_cache_entries")
            evicted = metric(hubdns.health_port, 'hubdns_cache_removals_total{reason="eviction"}')
            self.assertLessEqual(entries, 64)
            self.assertGreater(entries, 0)
            self.assertGreaterEqual(evicted, 300 - 64)
            # The first names are gone: asking again goes upstream.
            before = upstream.query_count()
            dig(hubdns.dns_port, "n0.example.com")
            self.assertEqual(upstream.query_count(), before + 1)
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()

    def test_stale_answer_with_ede_3_when_the_upstream_stops_answering(self):
        upstream = FakeUpstream(address="10.7.7.7", ttl=1)
        config = cache_config(upstream, cache='stale_answer_ttl = "30s"\nmax_stale = "1h"', query_timeout="2s")
        with Hubdns(config) as hubdns:
            status, answers, out = dig(hubdns.dns_port, "app.example.com")
            self.assertEqual(answers, ["10.7.7.7"], out)
            # A client without EDNS has an entry of its own (an answer with OPT is not for it).
            dig(hubdns.dns_port, "app.example.com", extra=["+noedns"])
            upstream.mode = "drop"
            time.sleep(1.3)  # the entries have expired
            start = time.time()
            status, answers, out = dig(hubdns.dns_port, "app.example.com")
            elapsed = time.time() - start
            self.assertEqual((status, answers), ("NOERROR", ["10.7.7.7"]), out)
            self.assertEqual(answer_ttls(out), [30], out)
            self.assertRegex(out, r"EDE: 3 \(Stale Answer\)")
            self.assertLess(elapsed, 2.0)  # the attempt timed out (300ms), not the whole budget
            # An upstream that answers SERVFAIL is no better: stale again, at once.
            upstream.mode = "servfail"
            status, answers, out = dig(hubdns.dns_port, "app.example.com")
            self.assertEqual((status, answers), ("NOERROR", ["10.7.7.7"]), out)
            self.assertRegex(out, r"EDE: 3 \(Stale Answer\)")
            # A client without EDNS gets the stale answer too (no OPT, so no EDE).
            status, answers, out = dig(hubdns.dns_port, "app.example.com", extra=["+noedns"])
            self.assertEqual((status, answers), ("NOERROR", ["10.7.7.7"]), out)
            self.assertGreaterEqual(metric(hubdns.health_port, "hubdns_dns_stale_answers_total"), 3)
            # Nothing stale for a name never seen: SERVFAIL.
            status, _, out = dig(hubdns.dns_port, "never.example.com")
            self.assertEqual(status, "SERVFAIL", out)
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()

    def test_stale_answer_at_once_when_the_upstream_is_marked_down(self):
        upstream = FakeUpstream(address="10.7.7.8", ttl=1)
        with Hubdns(cache_config(upstream)) as hubdns:
            dig(hubdns.dns_port, "app.example.com")
            stored = time.time()
            upstream.mode = "drop"
            # The health checks (interval 200ms, fall 3 by default) mark it down.
            self.assertTrue(wait_until(lambda: curl(hubdns.health_port, "/readyz")[0] == 503, timeout=10))
            time.sleep(max(0, stored + 1.3 - time.time()))  # and the entry has expired
            before = upstream.query_count()
            start = time.time()
            status, answers, out = dig(hubdns.dns_port, "app.example.com")
            self.assertLess(time.time() - start, 0.25, "no attempt: nothing is up")
            self.assertEqual(answers, ["10.7.7.8"], out)
            self.assertRegex(out, r"EDE: 3 \(Stale Answer\)")
            self.assertEqual(upstream.query_count(), before)
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()

    def test_max_stale_is_respected_and_serve_stale_can_be_off(self):
        upstream = FakeUpstream(address="10.7.7.9", ttl=1)
        with Hubdns(cache_config(upstream, cache='max_stale = "1s"')) as hubdns:
            dig(hubdns.dns_port, "old.example.com")
            upstream.mode = "drop"
            time.sleep(2.4)  # expired 1 s ago + more than max_stale
            status, _, out = dig(hubdns.dns_port, "old.example.com")
            self.assertEqual(status, "SERVFAIL", out)
            self.assertEqual(hubdns.stop(), 0)
        upstream.mode = "answer"
        with Hubdns(cache_config(upstream, cache="serve_stale = false")) as hubdns:
            dig(hubdns.dns_port, "old.example.com")
            upstream.mode = "drop"
            time.sleep(1.3)
            status, _, out = dig(hubdns.dns_port, "old.example.com")
            self.assertEqual(status, "SERVFAIL", out)
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()

    def test_prefetch_refreshes_a_hot_entry_before_it_expires(self):
        upstream = FakeUpstream(address="10.8.8.8", ttl=10)
        with Hubdns(cache_config(upstream, query_timeout="2s")) as hubdns:
            start = time.time()
            dig(hubdns.dns_port, "hot.example.com")
            dig(hubdns.dns_port, "hot.example.com")
            dig(hubdns.dns_port, "hot.example.com")  # popular: hit twice
            self.assertEqual(upstream.query_count(), 1)
            # In the last tenth of its TTL, a hit answers and refreshes in the background.
            time.sleep(max(0, start + 9.3 - time.time()))
            status, answers, out = dig(hubdns.dns_port, "hot.example.com")
            self.assertEqual(answers, ["10.8.8.8"], out)
            self.assertLessEqual(answer_ttls(out)[0], 1, out)
            self.assertTrue(wait_until(lambda: upstream.query_count() == 2, timeout=2))
            self.assertEqual(metric(hubdns.health_port, "hubdns_cache_prefetches_total"), 1)
            # After the original expiry the refreshed entry answers: no client waited.
            time.sleep(max(0, start + 10.6 - time.time()))
            status, answers, out = dig(hubdns.dns_port, "hot.example.com")
            self.assertEqual(answers, ["10.8.8.8"], out)
            self.assertGreaterEqual(answer_ttls(out)[0], 8, out)
            self.assertEqual(upstream.query_count(), 2)
            # A name asked once is not prefetched.
            self.assertEqual(metric(hubdns.health_port, "hubdns_cache_prefetches_total"), 1)
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()

    def test_prefetch_of_an_answer_that_needs_tcp_goes_over_tcp(self):
        # Over UDP this upstream only ever answers truncated (TC): the entry came over TCP,
        # and its prefetch, which has no client to retry for it, must use TCP too.
        upstream = FakeUpstream(address="10.8.8.9", ttl=10, mode="truncate")
        with Hubdns(cache_config(upstream, query_timeout="2s")) as hubdns:
            start = time.time()
            self.assertEqual(dig(hubdns.dns_port, "big.example.com", extra=["+tcp"])[1], ["10.8.8.9"])
            dig(hubdns.dns_port, "big.example.com")
            dig(hubdns.dns_port, "big.example.com")  # popular (UDP clients, from the cache)
            time.sleep(max(0, start + 9.3 - time.time()))
            self.assertEqual(dig(hubdns.dns_port, "big.example.com")[1], ["10.8.8.9"])
            self.assertTrue(wait_until(lambda: upstream.query_count("tcp") == 2, timeout=2))
            time.sleep(max(0, start + 10.6 - time.time()))
            status, answers, out = dig(hubdns.dns_port, "big.example.com")
            self.assertEqual(answers, ["10.8.8.9"], out)
            self.assertGreaterEqual(answer_ttls(out)[0], 8, out)
            self.assertEqual(upstream.query_count("tcp"), 2)
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()

    def test_a_rule_can_opt_out_and_the_cache_can_be_flushed(self):
        upstream = FakeUpstream(address="10.9.1.1")
        private = FakeUpstream(address="10.9.1.2")
        config = cache_config(upstream) + f"""
[[forward]]
zone = "corp.example"
upstreams = ["{private.endpoint}"]
cache = false
"""
        with Hubdns(config) as hubdns:
            for _ in range(2):
                dig(hubdns.dns_port, "host.corp.example")
            self.assertEqual(private.query_count(), 1 * 2)
            for name in ("a.example.com", "b.example.com", "x.other.net"):
                dig(hubdns.dns_port, name)
            self.assertEqual(upstream.query_count(), 3)
            # Flush one name (and what is below it), from loopback: no token needed.
            code, _, body = curl(hubdns.health_port, "/cache/flush?name=example.com", method="POST")
            self.assertEqual(code, 200, body)
            self.assertIn("flushed 2 entries", body)
            dig(hubdns.dns_port, "a.example.com")
            dig(hubdns.dns_port, "x.other.net")
            self.assertEqual(upstream.query_count(), 4)
            code, _, body = curl(hubdns.health_port, "/cache/flush?name=bad..name", method="POST")
            self.assertEqual(code, 400, body)
            code, _, body = curl(hubdns.health_port, "/cache/flush", method="GET")
            self.assertEqual(code, 405, body)
            code, _, body = curl(hubdns.health_port, "/cache/flush", method="POST")
            self.assertEqual(code, 200, body)
            self.assertIn("flushed 2 entries", body)
            dig(hubdns.dns_port, "x.other.net")
            self.assertEqual(upstream.query_count(), 5)
            self.assertEqual(metric(hubdns.health_port, 'hubdns_cache_removals_total{reason="flushed"}'), 4)
            self.assertIn('msg="cache flushed"', hubdns.log())
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()
        private.close()


@unittest.skipUnless(os.geteuid() == 0, "needs root for a private network namespace (CI runs as root)")
class FlushAuthTest(unittest.TestCase):
    """Re-runs FlushAuthInNamespace in a private network namespace, where lo may carry a
    non-loopback address (192.0.2.1, TEST-NET-1): requests from there are not loopback."""

    def test_in_private_namespace(self):
        rerun_in_private_network_namespace(self, "test_cache.FlushAuthInNamespace")


@unittest.skipUnless(IN_PRIVATE_NAMESPACE, "runs inside the namespace made by FlushAuthTest")
class FlushAuthInNamespace(unittest.TestCase):
    OUTSIDE = "192.0.2.1"

    def test_flush_needs_the_token_from_a_non_loopback_peer(self):
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "addr", "replace", f"{self.OUTSIDE}/32", "dev", "lo"], check=True)
        upstream = FakeUpstream()
        config = cache_config(upstream, health='admin_token = "flush-token"',
                              health_listen='"127.0.0.1:{health_port}", "' + self.OUTSIDE + ':{health_port}"')
        with Hubdns(config) as hubdns:
            dig(hubdns.dns_port, "a.example.com")
            outside = ["--interface", self.OUTSIDE]
            code, _, body = curl(hubdns.health_port, "/cache/flush", method="POST", host=self.OUTSIDE, extra=outside)
            self.assertEqual(code, 403, body)
            code, _, body = curl(hubdns.health_port, "/cache/flush", method="POST", host=self.OUTSIDE,
                                 extra=outside + ["-H", "Authorization: Bearer wrong"])
            self.assertEqual(code, 403, body)
            self.assertEqual(metric(hubdns.health_port, "hubdns_cache_entries"), 1)
            code, _, body = curl(hubdns.health_port, "/cache/flush", method="POST", host=self.OUTSIDE,
                                 extra=outside + ["-H", "Authorization: Bearer flush-token"])
            self.assertEqual(code, 200, body)
            self.assertEqual(metric(hubdns.health_port, "hubdns_cache_entries"), 0)
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()


if __name__ == "__main__":
    unittest.main()
