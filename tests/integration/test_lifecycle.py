"""Stopping without losing a query: SIGTERM drains (readiness 503 at once, DNS served for
drain_grace), then the listeners close, queries in flight finish, exit 0; a second signal
stops at once. Real binary, fake upstream on loopback, a UDP load client standing in for the
clients behind a load balancer, curl for /readyz.
"""
import signal
import threading
import time
import unittest

from harness import FakeUpstream, Hubdns, LoadClient, config_with, curl, dig


def lifecycle_config(upstream, drain_grace, query_timeout="3s"):
    return config_with(f'[lifecycle]\ndrain_grace = "{drain_grace}"\n\n'
                       f'[[forward]]\nzone = "."\nupstreams = ["{upstream.endpoint}"]\n',
                       query_timeout=query_timeout)


class LifecycleTest(unittest.TestCase):
    def test_sigterm_drains_without_losing_a_query(self):
        upstream = FakeUpstream(address="10.20.0.1")
        with Hubdns(lifecycle_config(upstream, "1500ms")) as hubdns:
            self.assertEqual(curl(hubdns.health_port, "/readyz")[0], 200)
            load = LoadClient(hubdns.dns_port)
            time.sleep(0.5)
            signalled = time.time()
            hubdns.process.send_signal(signal.SIGTERM)
            # Readiness goes 503 at once...
            saw_503 = None
            while time.time() - signalled < 1.0:
                if curl(hubdns.health_port, "/readyz")[0] == 503:
                    saw_503 = time.time()
                    break
                time.sleep(0.02)
            self.assertIsNotNone(saw_503, "readiness did not go 503 after SIGTERM")
            self.assertLess(saw_503 - signalled, 0.5)
            # ... while DNS is still served: the load balancer stops sending when its probe
            # sees 503 (here 0.3 s later), which is before drain_grace (1.5 s) is over.
            time.sleep(0.3)
            stopped_sending = time.time()
            load.finish(wait=0.5)
            self.assertGreater(load.answered_after(saw_503), 10, "DNS was not served after the 503")
            self.assertEqual(load.unanswered(), [], "queries sent before the load balancer reacted were lost")
            self.assertTrue(all(rcode == 0 for _, rcode in load.answered.values()))
            # Then the process ends by itself, after the grace, with status 0.
            self.assertEqual(hubdns.process.wait(timeout=10), 0)
            exited = time.time()
            self.assertGreater(exited - signalled, 1.4, "stopped before drain_grace was over")
            self.assertGreater(exited, stopped_sending)
            log = hubdns.log()
            self.assertIn("draining first", log)
            self.assertIn("drain grace over", log)
            self.assertIn('msg="hubdns stopped"', log)
        upstream.close()

    def test_queries_in_flight_when_the_listeners_close_still_get_their_answer(self):
        upstream = FakeUpstream(address="10.20.0.2")
        upstream.delays["slow.example."] = 1.0
        with Hubdns(lifecycle_config(upstream, "200ms")) as hubdns:
            results = {}

            def ask(name, key, extra=()):
                results[key] = dig(hubdns.dns_port, name, extra=extra)

            udp = threading.Thread(target=ask, args=("slow.example", "udp"))
            tcp = threading.Thread(target=ask, args=("slow.example", "tcp", ["+tcp"]))
            udp.start()
            tcp.start()
            time.sleep(0.2)
            hubdns.process.send_signal(signal.SIGTERM)
            time.sleep(0.5)  # grace over: listeners closed, both queries still upstream
            refused = dig(hubdns.dns_port, "new.example", extra=["+tcp", "+time=1"])
            self.assertIsNone(refused[0], "a new TCP client was accepted after the listeners closed")
            udp.join(timeout=10)
            tcp.join(timeout=10)
            for key in ("udp", "tcp"):
                status, answers, out = results[key]
                self.assertEqual((status, answers), ("NOERROR", ["10.20.0.2"]), f"{key}: {out}")
            self.assertEqual(hubdns.process.wait(timeout=10), 0)
        upstream.close()

    def test_a_second_signal_stops_at_once(self):
        upstream = FakeUpstream()
        with Hubdns(lifecycle_config(upstream, "30s")) as hubdns:
            hubdns.process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            self.assertIsNone(hubdns.process.poll(), "did not wait for drain_grace")
            self.assertEqual(curl(hubdns.health_port, "/readyz")[0], 503)
            self.assertEqual(dig(hubdns.dns_port, "still.example")[0], "NOERROR")
            # The drain of a stop cannot be undone (the load balancer would send traffic
            # back to listeners about to close).
            self.assertEqual(curl(hubdns.health_port, "/undrain", method="POST")[0], 409)
            self.assertEqual(curl(hubdns.health_port, "/readyz")[0], 503)
            start = time.time()
            hubdns.process.send_signal(signal.SIGINT)
            self.assertEqual(hubdns.process.wait(timeout=5), 0)
            self.assertLess(time.time() - start, 2.0)
            self.assertIn("second stop signal", hubdns.log())
        upstream.close()


class QueryLogTest(unittest.TestCase):
    def test_per_query_logging_is_off_by_default_and_sampled_when_on(self):
        upstream = FakeUpstream(address="10.20.0.9")
        for every, expected in ((0, 0), (1, 6), (3, 2)):
            # One worker: sampling counts per worker.
            config = lifecycle_config(upstream, "0s").replace("workers = 2", f"workers = 1\nlog_queries = {every}")
            with Hubdns(config) as hubdns:
                for i in range(6):
                    dig(hubdns.dns_port, f"Q{i}.Example.COM", extra=["+tcp"] if i % 2 else [])
                lines = [line for line in hubdns.log().splitlines() if 'msg="query"' in line]
                self.assertEqual(hubdns.stop(), 0)
            self.assertEqual(len(lines), expected, "\n".join(lines))
            if every == 1:
                self.assertRegex(lines[0], r'^level=info msg="query" proto=udp client=127\.0\.0\.1:\d+ '
                                           r'name=Q0\.Example\.COM\. type=1 rcode=NOERROR bytes=\d+ worker=\d$')
                self.assertIn("proto=tcp", lines[1])
        upstream.close()


if __name__ == "__main__":
    unittest.main()
