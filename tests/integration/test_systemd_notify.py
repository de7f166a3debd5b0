"""systemd notifications (SPEC "Signals": Type=notify) from the real binary, without
systemd: the test binds the datagram socket that $NOTIFY_SOCKET names (a path in a temp
directory, or an abstract '@' name) and reads what hubdns sends: READY=1 once the DNS port
answers, STATUS= lines, WATCHDOG=1 every WATCHDOG_USEC/2, STOPPING=1 on SIGTERM."""

import os
import signal
import socket
import tempfile
import threading
import time
import unittest

from harness import FakeUpstream, Hubdns, build_query, config_with, udp_exchange

WATCHDOG_USEC = 200000  # pings every 100 ms


class NotifyListener:
    """Receives datagrams on a unix socket; for READY=1, records whether DNS answered then."""

    def __init__(self, abstract):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.dir = None
        if abstract:
            self.name = f"@hubdns-test-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind("\0" + self.name[1:])
        else:
            self.dir = tempfile.TemporaryDirectory(prefix="hubdns-notify-")
            self.name = os.path.join(self.dir.name, "notify.sock")
            self.sock.bind(self.name)
        self.sock.settimeout(0.2)
        self.messages = []  # (monotonic time, text)
        self.dns_port = None
        self.dns_answered_at_ready = None
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            text = data.decode()
            if "READY=1" in text.split("\n") and self.dns_answered_at_ready is None and self.dns_port:
                # At the moment READY=1 arrives, the DNS port must already answer.
                answer = udp_exchange(self.dns_port, build_query("ready.example.com", qid=0x5151), timeout=2.0)
                self.dns_answered_at_ready = answer is not None and answer[:2] == b"\x51\x51"
            with self.lock:
                self.messages.append((time.monotonic(), text))

    def texts(self):
        with self.lock:
            return [m[1] for m in self.messages]

    def times_of(self, text):
        with self.lock:
            return [t for t, m in self.messages if m == text]

    def wait_for(self, predicate, timeout=10.0, what="message"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for text in self.texts():
                if predicate(text):
                    return text
            time.sleep(0.02)
        raise AssertionError(f"no {what} within {timeout} s; got {self.texts()}")

    def close(self):
        self.stopping = True
        self.thread.join()
        self.sock.close()
        if self.dir:
            self.dir.cleanup()


class SystemdNotifyTest(unittest.TestCase):
    def setUp(self):
        self.upstream = FakeUpstream()

    def tearDown(self):
        self.upstream.close()

    def run_case(self, abstract):
        listener = NotifyListener(abstract)
        try:
            env = dict(os.environ, NOTIFY_SOCKET=listener.name, WATCHDOG_USEC=str(WATCHDOG_USEC))
            env.pop("WATCHDOG_PID", None)
            hubdns = Hubdns(config_with(f"""
[[forward]]
zone = "."
upstreams = ["{self.upstream.endpoint}"]
"""), env=env, wait_ready=False)
            listener.dns_port = hubdns.dns_port
            try:
                ready = listener.wait_for(lambda t: t.startswith("READY=1"), what="READY=1")
                self.assertTrue(ready.startswith("READY=1\nSTATUS="), ready)
                # READY=1 waits for the DNS workers' loops: never "has not started".
                self.assertNotIn("has not started", ready)
                self.assertIn("hubdns started", hubdns.log())
                listener.wait_for(lambda t: listener.dns_answered_at_ready is not None, what="DNS check")
                self.assertTrue(listener.dns_answered_at_ready, "DNS did not answer when READY=1 arrived")

                # The status line follows readiness: ready once the first checks passed.
                listener.wait_for(lambda t: "STATUS=ready; 2 workers; 1 zone, 1/1 upstreams up" in t.split("\n"),
                                  what="STATUS=ready")

                # Watchdog pings every WATCHDOG_USEC/2 = 100 ms while every loop is alive.
                time.sleep(1.2)
                pings = listener.times_of("WATCHDOG=1")
                self.assertGreaterEqual(len(pings), 10, pings)
                recent = [t for t in pings if t >= pings[-1] - 1.0]
                gaps = [b - a for a, b in zip(recent, recent[1:])]
                average = sum(gaps) / len(gaps)
                self.assertGreater(average, 0.07, gaps)
                self.assertLess(average, 0.14, gaps)
                self.assertLess(max(gaps), 0.5, gaps)
                self.assertEqual(sum(1 for t in listener.texts() if t.startswith("READY=1")), 1)
                self.assertIn("systemd watchdog enabled", hubdns.log())

                self.assertNotIn("STOPPING=1", "\n".join(listener.texts()))
            finally:
                code = hubdns.stop(signal.SIGTERM)
            self.assertEqual(code, 0)
            stopping = listener.wait_for(lambda t: t.startswith("STOPPING=1"), timeout=2, what="STOPPING=1")
            self.assertEqual(stopping, "STOPPING=1\nSTATUS=stopping")
            # Every message is newline-separated KEY=value assignments.
            for text in listener.texts():
                for line in text.split("\n"):
                    key, equals, _ = line.partition("=")
                    self.assertTrue(equals and key.isupper(), repr(text))
        finally:
            listener.close()

    def test_path_socket(self):
        self.run_case(abstract=False)

    def test_abstract_socket(self):
        self.run_case(abstract=True)

    def test_watchdog_for_another_pid_and_no_socket(self):
        # WATCHDOG_PID naming another process: READY=1, but no pings.
        listener = NotifyListener(abstract=False)
        try:
            env = dict(os.environ, NOTIFY_SOCKET=listener.name, WATCHDOG_USEC=str(WATCHDOG_USEC), WATCHDOG_PID="1")
            hubdns = Hubdns(config_with(f"""
[[forward]]
zone = "."
upstreams = ["{self.upstream.endpoint}"]
"""), env=env)
            listener.wait_for(lambda t: t.startswith("READY=1"), what="READY=1")
            time.sleep(0.5)
            self.assertEqual(listener.times_of("WATCHDOG=1"), [])
            self.assertEqual(hubdns.stop(), 0)
        finally:
            listener.close()
        # No NOTIFY_SOCKET: nothing is sent and nothing is logged about it.
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        hubdns = Hubdns(config_with(f"""
[[forward]]
zone = "."
upstreams = ["{self.upstream.endpoint}"]
"""), env=env)
        time.sleep(0.3)
        log = hubdns.log()
        self.assertEqual(hubdns.stop(), 0)
        self.assertNotIn("systemd", log)


if __name__ == "__main__":
    unittest.main()
