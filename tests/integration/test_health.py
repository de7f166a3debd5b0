"""The health listener of the real binary, checked with curl: /livez and /readyz (alias
/healthz) answer 200 once the listeners are bound; unknown paths 404, wrong methods 405."""

import unittest

from harness import FakeUpstream, Hubdns, config_with, curl, dig, metric


class HealthEndpointTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.upstream = FakeUpstream()
        cls.hubdns = Hubdns(config_with(f"""
[[forward]]
zone = "."
upstreams = ["{cls.upstream.endpoint}"]
"""))

    @classmethod
    def tearDownClass(cls):
        code = cls.hubdns.stop()
        cls.upstream.close()
        assert code == 0, f"hubdns exit code {code}"

    def test_livez_and_readyz_are_200(self):
        for path in ("/livez", "/readyz", "/healthz"):
            code, head, body = curl(self.hubdns.health_port, path)
            self.assertEqual(code, 200, f"{path}: {head}\n{body}")
            self.assertEqual(body.strip(), "ok", path)
            self.assertIn("Content-Type: text/plain", head)

    def test_livez_azure_format(self):
        # The query form, and the path form that version 2 of the Application Health
        # extension can be configured with (it escapes "?" in its requestPath).
        for path in ("/livez?format=azure", "/livez/azure"):
            code, head, body = curl(self.hubdns.health_port, path)
            self.assertEqual(code, 200, path)
            self.assertIn("application/json", head, path)
            self.assertIn('"ApplicationHealthState":"Healthy"', body.replace(" ", ""), path)

    def test_head_has_no_body(self):
        code, head, body = curl(self.hubdns.health_port, "/readyz", method="HEAD", extra=["-I"])
        self.assertIn("Content-Length: 3", head)
        self.assertEqual(code, 200, head)
        self.assertEqual(body, "")

    def test_metrics_in_prometheus_format(self):
        before = metric(self.hubdns.health_port, 'hubdns_dns_queries_total{proto="udp"}')
        self.assertIsNotNone(before)
        dig(self.hubdns.dns_port, "metrics.example.com")
        after = metric(self.hubdns.health_port, 'hubdns_dns_queries_total{proto="udp"}')
        self.assertEqual(after, before + 1)
        code, head, body = curl(self.hubdns.health_port, "/metrics")
        self.assertIn("text/plain; version=0.0.4", head)
        self.assertIn("# TYPE hubdns_upstream_queries_total counter", body)

    def test_unknown_path_and_wrong_method(self):
        code, _, _ = curl(self.hubdns.health_port, "/nope")
        self.assertEqual(code, 404)
        code, head, _ = curl(self.hubdns.health_port, "/readyz", method="DELETE")
        self.assertEqual(code, 405)
        self.assertIn("Allow:", head)


if __name__ == "__main__":
    unittest.main()
