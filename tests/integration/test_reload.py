"""Configuration reload (SIGHUP, POST /reload) through the real binary: a valid change takes
effect with no failed query, a broken file keeps the running configuration and reports the
error (log, /status, /metrics, the HTTP answer), upstream health carries over for upstreams
that stay, listeners follow the listen addresses. Fake upstreams on loopback; dig, curl and
a UDP load client.
"""
import json
import signal
import time
import unittest

from harness import wait_until, FakeUpstream, Hubdns, LoadClient, curl, dig, free_port, metric


def reload_config(upstreams, listen='"127.0.0.1:{dns_port}"', workers=2, extra_rules=""):
    quoted = ", ".join(f'"{u.endpoint}"' for u in upstreams)
    return f"""
[server]
listen = [{listen}]
workers = {workers}
query_timeout = "2s"

[health]
listen = ["127.0.0.1:{{health_port}}"]
interval = "300ms"
timeout = "200ms"

[cache]
enabled = false

[[forward]]
zone = "."
upstreams = [{quoted}]
attempt_timeout = "500ms"
{extra_rules}
"""


def status(port):
    code, _, body = curl(port, "/status")
    return json.loads(body) if code == 200 else None


class ReloadTest(unittest.TestCase):
    def test_sighup_switches_upstreams_without_a_failed_query(self):
        first = FakeUpstream(address="10.31.0.1")
        second = FakeUpstream(address="10.31.0.2")
        with Hubdns(reload_config([first])) as hubdns:
            self.assertEqual(dig(hubdns.dns_port, "a.example")[1], ["10.31.0.1"])
            load = LoadClient(hubdns.dns_port, interval=0.002)
            time.sleep(0.3)
            hubdns.write_config(reload_config([second]))
            hubdns.process.send_signal(signal.SIGHUP)
            self.assertTrue(wait_until(lambda: dig(hubdns.dns_port, "b.example")[1] == ["10.31.0.2"]))
            time.sleep(0.3)
            load.finish(wait=0.5)
            # Every query of the steady load got an answer, and none was an error.
            self.assertGreater(len(load.sent), 200)
            self.assertEqual(load.unanswered(), [])
            self.assertEqual(sorted({rcode for _, rcode in load.answered.values()}), [0])
            # Both upstreams answered part of the load: the switch happened under it.
            self.assertGreater(first.query_count(), 10)
            self.assertGreater(second.query_count(), 10)
            doc = status(hubdns.health_port)
            self.assertEqual(doc["config"]["generation"], 2)
            self.assertEqual(doc["config"]["reloads"], {"ok": 1, "failed": 0, "last_ok": True, "last_error": None,
                                                        "retiring_workers": 0})
            self.assertEqual(metric(hubdns.health_port, "hubdns_config_generation"), 2)
            self.assertEqual(metric(hubdns.health_port, 'hubdns_config_reloads_total{result="ok"}'), 1)
            self.assertIn('msg="configuration reloaded" generation=2', hubdns.log())
            self.assertEqual(hubdns.stop(), 0)
        first.close()
        second.close()

    def test_a_broken_file_keeps_the_running_configuration_and_says_why(self):
        upstream = FakeUpstream(address="10.32.0.1")
        with Hubdns(reload_config([upstream])) as hubdns:
            good = reload_config([upstream])
            hubdns.write_config(good + '\n[[forward]]\nzone = "corp.example"\nupstreams = ["not an address"]\n')
            code, _, body = curl(hubdns.health_port, "/reload", method="POST")
            self.assertEqual(code, 500, body)
            self.assertIn("the running configuration stays", body)
            self.assertRegex(body, r"hubdns\.toml:\d+:\d+: ")
            # Still answering on the old configuration, still ready.
            self.assertEqual(dig(hubdns.dns_port, "a.example")[1], ["10.32.0.1"])
            self.assertEqual(curl(hubdns.health_port, "/readyz")[0], 200)
            doc = status(hubdns.health_port)
            self.assertEqual(doc["config"]["generation"], 1)
            self.assertFalse(doc["config"]["reloads"]["last_ok"])
            self.assertRegex(doc["config"]["reloads"]["last_error"], r"hubdns\.toml:\d+:\d+: ")
            self.assertEqual(metric(hubdns.health_port, "hubdns_config_last_reload_successful"), 0)
            self.assertEqual(metric(hubdns.health_port, 'hubdns_config_reloads_total{result="error"}'), 1)
            self.assertIn("configuration reload failed; the running configuration stays", hubdns.log())
            # SIGHUP with a TOML syntax error: the same.
            hubdns.write_config(good + "\n[[forward\n")
            hubdns.process.send_signal(signal.SIGHUP)
            self.assertTrue(wait_until(
                lambda: metric(hubdns.health_port, 'hubdns_config_reloads_total{result="error"}') == 2))
            self.assertEqual(dig(hubdns.dns_port, "b.example")[1], ["10.32.0.1"])
            # Fixed: accepted.
            hubdns.write_config(good)
            code, _, body = curl(hubdns.health_port, "/reload", method="POST")
            self.assertEqual(code, 200, body)
            self.assertIn("reloaded: generation 2", body)
            self.assertEqual(metric(hubdns.health_port, "hubdns_config_last_reload_successful"), 1)
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()

    def test_upstreams_that_stay_keep_their_health_and_readiness_does_not_flap(self):
        kept = FakeUpstream(address="10.33.0.1")
        added = FakeUpstream(address="10.33.0.2")
        with Hubdns(reload_config([kept])) as hubdns:
            self.assertTrue(wait_until(lambda: curl(hubdns.health_port, "/readyz")[0] == 200))
            before = status(hubdns.health_port)["zones"][0]["upstreams"][0]
            self.assertEqual(before["status"], "up")
            probes_before = before["probes"]["sent"]
            hubdns.write_config(reload_config([kept, added]))
            hubdns.process.send_signal(signal.SIGHUP)
            # /readyz never says 503 around the reload.
            codes = []
            deadline = time.time() + 1.0
            while time.time() < deadline:
                codes.append(curl(hubdns.health_port, "/readyz")[0])
            self.assertEqual(set(codes), {200})
            doc = status(hubdns.health_port)
            self.assertEqual(doc["config"]["generation"], 2)
            after = doc["zones"][0]["upstreams"]
            self.assertEqual(len(after), 2)
            self.assertEqual(after[0]["status"], "up")
            self.assertGreaterEqual(after[0]["probes"]["sent"], probes_before)  # carried on, not reset
            self.assertTrue(wait_until(
                lambda: status(hubdns.health_port)["zones"][0]["upstreams"][1]["status"] == "up"))
            self.assertEqual(hubdns.stop(), 0)
        kept.close()
        added.close()

    def test_listeners_follow_the_listen_addresses_and_restart_only_settings_are_named(self):
        upstream = FakeUpstream(address="10.34.0.1")
        extra_port = free_port()
        with Hubdns(reload_config([upstream])) as hubdns:
            two = f'"127.0.0.1:{{dns_port}}", "127.0.0.1:{extra_port}"'
            hubdns.write_config(reload_config([upstream], listen=two))
            code, _, body = curl(hubdns.health_port, "/reload", method="POST")
            self.assertEqual(code, 200, body)
            self.assertEqual(dig(hubdns.dns_port, "a.example")[1], ["10.34.0.1"])
            self.assertEqual(dig(extra_port, "b.example")[1], ["10.34.0.1"])
            self.assertEqual(dig(extra_port, "c.example", extra=["+tcp"])[1], ["10.34.0.1"])
            # The first address goes away: its sockets close once the old workers are done.
            hubdns.write_config(reload_config([upstream], listen=f'"127.0.0.1:{extra_port}"', workers=3))
            code, _, body = curl(hubdns.health_port, "/reload", method="POST")
            self.assertEqual(code, 200, body)
            self.assertIn("warning: [server] workers changed: takes effect at the next restart", body)
            self.assertEqual(dig(extra_port, "d.example")[1], ["10.34.0.1"])
            self.assertTrue(wait_until(lambda: dig(hubdns.dns_port, "e.example", extra=["+time=1"])[0] is None,
                                       timeout=5))
            # The data-path self-check follows: the address that went is not checked any
            # more (it would fail), the one that stays is, and readiness stays 200.
            time.sleep(4 * 0.3 + 0.5)  # more than fall x interval
            self.assertEqual(curl(hubdns.health_port, "/readyz")[0], 200)
            checked = {check["listener"] for check in status(hubdns.health_port)["self_check"]}
            self.assertEqual(checked, {f"127.0.0.1:{extra_port}/udp", f"127.0.0.1:{extra_port}/tcp"})
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()


if __name__ == "__main__":
    unittest.main()
