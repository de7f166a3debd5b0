"""`hubdns` with no arguments runs on its embedded default: DNS on 127.0.0.1:5300, health
on 127.0.0.1:8053, forwarding to the nameservers of /etc/resolv.conf.

The fixed ports and the machine's real resolver must not be touched by a test, so the
test re-runs itself in a private network and mount namespace (unshare, as root): there,
loopback is its own, 5300/8053 are free, and /etc/resolv.conf is bind-mounted to a file
naming a fake upstream on 127.0.0.1:53."""

import os
import subprocess
import sys
import tempfile
import time
import unittest

from harness import BINARY, FakeUpstream, curl, dig

IN_NAMESPACE = os.environ.get("HUBDNS_TEST_IN_NAMESPACE") == "1"


@unittest.skipUnless(os.geteuid() == 0, "needs root for a private network namespace (CI runs as root)")
class DefaultConfigTest(unittest.TestCase):
    def test_runs_in_private_namespace(self):
        if IN_NAMESPACE:
            self.skipTest("inner run")
        env = dict(os.environ, HUBDNS_TEST_IN_NAMESPACE="1")
        result = subprocess.run(
            ["unshare", "--net", "--mount", sys.executable, "-m", "unittest", "-v",
             "test_default_config.DefaultConfigInNamespace"],
            capture_output=True, text=True, timeout=120, env=env,
            cwd=os.path.dirname(os.path.abspath(__file__)))
        sys.stderr.write(result.stderr)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("OK", result.stderr)


@unittest.skipUnless(IN_NAMESPACE, "runs inside the namespace made by DefaultConfigTest")
class DefaultConfigInNamespace(unittest.TestCase):
    def test_default_configuration_end_to_end(self):
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        with tempfile.NamedTemporaryFile("w", suffix=".resolv.conf", delete=False) as f:
            f.write("# fake resolv.conf for the test\nsearch example.internal\nnameserver 127.0.0.1\n")
            resolv = f.name
        subprocess.run(["mount", "--bind", resolv, "/etc/resolv.conf"], check=True)
        upstream = FakeUpstream(address="10.53.53.53", port=53)
        process = subprocess.Popen([BINARY], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True)
        try:
            deadline = time.time() + 10
            code = 0
            while time.time() < deadline:
                code, _, _ = curl(8053, "/healthz")
                if code == 200:
                    break
                time.sleep(0.05)
            self.assertEqual(code, 200)
            status, answers, out = dig(5300, "example.com")
            self.assertEqual(status, "NOERROR", out)
            self.assertEqual(answers, ["10.53.53.53"], out)
            status, answers, out = dig(5300, "www.example.com", extra=["+tcp"])
            self.assertEqual(answers, ["10.53.53.53"], out)
            self.assertGreaterEqual(upstream.query_count(), 2)
            # The default configuration caches: the same question again stays local.
            asked = upstream.query_count()
            status, answers, out = dig(5300, "example.com")
            self.assertEqual(answers, ["10.53.53.53"], out)
            self.assertEqual(upstream.query_count(), asked)
            code, head, body = curl(8053, "/livez")
            self.assertEqual(code, 200, head)
        finally:
            # The default drain_grace is 15 s; a second SIGTERM skips it (test_lifecycle.py
            # covers the drain).
            process.terminate()
            time.sleep(0.2)
            process.terminate()
            _, err = process.communicate(timeout=20)
            upstream.close()
            os.unlink(resolv)
        self.assertEqual(process.returncode, 0, err)


if __name__ == "__main__":
    unittest.main()
