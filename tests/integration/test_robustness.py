"""Robustness of the real binary: clean stops with many workers, a TCP client that
pipelines without reading its answers, a second instance on the same port, and the
`fastest` policy turning away from a dead upstream."""

import os
import socket
import struct
import subprocess
import time
import unittest

from harness import (BINARY, FakeUpstream, Hubdns, build_query, config_with, dig, free_port, rss_kib)


class RobustnessTest(unittest.TestCase):
    def test_sigterm_with_many_workers_exits_cleanly(self):
        upstream = FakeUpstream()
        config = config_with(f'[[forward]]\nzone = "."\nupstreams = ["{upstream.endpoint}"]\n')
        config = config.replace("workers = 2", "workers = 16")
        try:
            for _ in range(5):
                hubdns = Hubdns(config)
                status, _, out = dig(hubdns.dns_port, "example.com")
                self.assertEqual(status, "NOERROR", out)
                self.assertEqual(hubdns.stop(), 0)
        finally:
            upstream.close()

    def test_second_instance_on_same_port_exits_2(self):
        upstream = FakeUpstream()
        config = config_with(f'[[forward]]\nzone = "."\nupstreams = ["{upstream.endpoint}"]\n')
        with Hubdns(config) as first:
            second_config = os.path.join(first.dir.name, "second.toml")
            with open(second_config, "w") as f:
                f.write(config.format(dns_port=first.dns_port, health_port=free_port()))
            result = subprocess.run([BINARY, "--config", second_config], capture_output=True,
                                    text=True, timeout=20)
            self.assertEqual(result.returncode, 2, result.stderr)
            self.assertIn(f"127.0.0.1:{first.dns_port}", result.stderr)
            status, _, out = dig(first.dns_port, "still-served.example.com")
            self.assertEqual(status, "NOERROR", out)
            self.assertEqual(first.stop(), 0)
        upstream.close()

    def test_tcp_client_that_never_reads_cannot_grow_memory(self):
        upstream = FakeUpstream()
        config = config_with(f'[[forward]]\nzone = "."\nupstreams = ["{upstream.endpoint}"]\n')
        # Under ASan, freed memory sits in a quarantine (256 MiB by default) and would look
        # like growth: keep it small so RSS shows what the worker really holds.
        env = dict(os.environ)
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=8"
        with Hubdns(config, env=env) as hubdns:
            before = rss_kib(hubdns.process.pid)
            # QDCOUNT=0: answered FORMERR at once, no upstream involved.
            query = struct.pack("!HHHHHH", 7, 0x0100, 0, 0, 0, 0)
            frame = struct.pack("!H", len(query)) + query
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", hubdns.dns_port))
            s.setblocking(False)
            sent = 0
            deadline = time.time() + 5
            chunk = frame * 1000
            while time.time() < deadline and sent < 20 * 1024 * 1024:
                try:
                    sent += s.send(chunk)
                except BlockingIOError:
                    time.sleep(0.01)  # hubdns stopped reading: the pause works
            grown = rss_kib(hubdns.process.pid) - before
            s.close()
            # hubdns stops reading while its answers are not read: what got through is what
            # the kernel's socket buffers hold (a few MiB), not all 20 MiB.
            self.assertLess(sent, 16 * 1024 * 1024, "hubdns kept reading a client that does not read")
            self.assertLess(grown, 64 * 1024, f"RSS grew by {grown} KiB after {sent} bytes")
            # The worker is still healthy.
            status, _, out = dig(hubdns.dns_port, "after-flood.example.com", extra=["+tcp"])
            self.assertEqual(status, "NOERROR", out)
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()

    def test_fastest_policy_turns_away_from_a_dead_upstream(self):
        dead = FakeUpstream(mode="drop")
        alive = FakeUpstream(address="10.7.7.7")
        config = config_with(f"""
[[forward]]
zone = "."
upstreams = ["{dead.endpoint}", "{alive.endpoint}"]
policy = "fastest"
attempt_timeout = "300ms"
""")
        with Hubdns(config.replace("workers = 2", "workers = 1")) as hubdns:
            for i in range(12):
                status, answers, out = dig(hubdns.dns_port, f"q{i}.example.com")
                self.assertEqual(answers, ["10.7.7.7"], out)
            # The dead upstream is tried first at most once plus rare exploration.
            self.assertLessEqual(dead.query_count(), 4)
            self.assertEqual(hubdns.stop(), 0)
        dead.close()
        alive.close()


if __name__ == "__main__":
    unittest.main()
