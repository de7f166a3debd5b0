"""Azure Instance Metadata and Scheduled Events ([lifecycle]) against a fake IMDS.

The fake is a Python HTTP server on 127.0.0.1 (port 0) and metadata_url always points at
it (or at a closed loopback port): no test ever contacts 169.254.169.254 or any other
non-loopback address. http_proxy points at a dead port to prove requests go direct.
"""

import json
import os
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import FakeUpstream, Hubdns, closed_port, config_with, curl, dig, metric

INSTANCE_NAME = "hubdns-vmss_3"

INSTANCE_DOCUMENT = {
    "compute": {
        "azEnvironment": "AzurePublicCloud",
        "location": "westeurope",
        "name": INSTANCE_NAME,
        "offer": "debian-12",
        "osType": "Linux",
        "resourceGroupName": "rg-hub-dns",
        "tags": "",
        "vmId": "02aab8a4-74ef-476e-8182-f6d2ba4166a6",
        "vmScaleSetName": "hubdns-vmss",
        "vmSize": "Standard_D2s_v5",
        "zone": "2",
        "tagsList": [],
        "storageProfile": {"osDisk": {"diskSizeGB": "30", "managedDisk": {"id": "x"}}},
    },
    "network": {"interface": [{"ipv4": {"ipAddress": [{"privateIpAddress": "10.0.0.4"}]}}]},
}

INSTANCE_PATH = "/metadata/instance?api-version=2021-02-01"
EVENTS_PATH = "/metadata/scheduledevents?api-version=2020-07-01"

# Requests must go direct: a proxy here (nothing listens on port 9) would break them.
PROXY_ENV = dict(os.environ, http_proxy="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9",
                 https_proxy="http://127.0.0.1:9", all_proxy="http://127.0.0.1:9", ALL_PROXY="http://127.0.0.1:9")


def event(event_id, event_type="Reboot", resources=(INSTANCE_NAME,), status="Scheduled"):
    return {
        "EventId": event_id,
        "EventType": event_type,
        "ResourceType": "VirtualMachine",
        "Resources": list(resources),
        "EventStatus": status,
        "NotBefore": "Mon, 19 Sep 2016 18:29:47 GMT",
        "Description": "Host server is undergoing maintenance.",
        "EventSource": "Platform",
        "DurationInSeconds": 5,
    }


class QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that hangs up early (hubdns refusing a huge body) is expected


class FakeImds:
    """The instance metadata service, as much as hubdns uses of it.

    mode: "ok" answers the documents; "500", "429" answer that status; "garbage" answers
    200 with a body that is not JSON; "huge" answers 200 with a 1 MiB body.
    instance_name: the VM's compute.name in the instance document (INSTANCE_NAME if None).
    events_from: another object with `lock`, `events` and `incarnation` whose scheduled-events
    document this endpoint serves (a scale set's VMs each have their own endpoint but see one
    document); by default its own (set_events).
    """

    def __init__(self, mode="ok", instance_name=None, events_from=None):
        self.mode = mode
        self.events = []
        self.incarnation = 1
        self.requests = []  # (time, method, path, headers dict, body)
        self.lock = threading.Lock()
        fake = self
        board = events_from or self
        document = json.loads(json.dumps(INSTANCE_DOCUMENT))
        if instance_name is not None:
            document["compute"]["name"] = instance_name

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _record(self, body=b""):
                with fake.lock:
                    fake.requests.append((time.monotonic(), self.command, self.path,
                                          {k.lower(): v for k, v in self.headers.items()}, body))

            def _send(self, code, body, content_type="application/json"):
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _failure(self):
                mode = fake.mode
                if mode in ("500", "429"):
                    self._send(int(mode), b'{"error": "busy"}')
                    return True
                if mode == "garbage":
                    self._send(200, b"<html>not json{{{")
                    return True
                if mode == "huge":
                    self._send(200, b"[" + b"1," * 524288 + b"1]")
                    return True
                return False

            def do_GET(self):
                self._record()
                if self._failure():
                    return
                if self.path == INSTANCE_PATH:
                    self._send(200, json.dumps(document).encode())
                elif self.path == EVENTS_PATH:
                    with board.lock:
                        doc = {"DocumentIncarnation": board.incarnation, "Events": list(board.events)}
                    self._send(200, json.dumps(doc).encode())
                else:
                    self._send(404, b"{}")

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length) if length else b""
                self._record(body)
                if self._failure():
                    return
                if self.path == EVENTS_PATH:
                    self._send(200, b"")
                else:
                    self._send(404, b"{}")

        self.server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def set_events(self, events):
        with self.lock:
            self.events = events
            self.incarnation += 1

    def seen(self, method=None, path=None):
        with self.lock:
            return [r for r in self.requests
                    if (method is None or r[1] == method) and (path is None or r[2] == path)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def lifecycle_config(upstream, metadata_url, mode, ack=False, drain_grace="1s"):
    return config_with(f"""
[[forward]]
zone = "."
upstreams = ["{upstream.endpoint}"]

[lifecycle]
scheduled_events = "{mode}"
ack_scheduled_events = {"true" if ack else "false"}
metadata_url = "{metadata_url}"
drain_grace = "{drain_grace}"
""")


def wait_for(predicate, timeout=10.0, interval=0.05, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {message}")


def status(port):
    code, _, body = curl(port, "/status")
    assert code == 200, body
    return json.loads(body)


def readyz(port):
    code, _, body = curl(port, "/readyz")
    return code, body


class ImdsTestCase(unittest.TestCase):
    def setUp(self):
        self.upstream = FakeUpstream()
        self.fakes = []
        self.instances = []

    def tearDown(self):
        for hubdns in self.instances:
            code = hubdns.stop()
            self.assertEqual(code, 0, "hubdns exit code")
        for fake in self.fakes:
            fake.close()
        self.upstream.close()

    def fake(self, mode="ok"):
        fake = FakeImds(mode)
        self.fakes.append(fake)
        return fake

    def start(self, metadata_url, mode, ack=False, drain_grace="1s"):
        hubdns = Hubdns(lifecycle_config(self.upstream, metadata_url, mode, ack, drain_grace), env=PROXY_ENV)
        self.instances.append(hubdns)
        wait_for(lambda: readyz(hubdns.health_port)[0] == 200, message="ready")
        return hubdns

    def assert_direct_metadata_requests(self, fake):
        requests = fake.seen()
        self.assertTrue(requests)
        for _, method, path, headers, _ in requests:
            self.assertEqual(headers.get("metadata"), "true", f"{method} {path}")
            self.assertTrue(path.startswith("/metadata/"), f"origin-form path, not through a proxy: {path}")
            self.assertNotIn("via", headers)


class InstanceMetadataTest(ImdsTestCase):
    def test_instance_metadata_in_status_and_auto_polls(self):
        fake = self.fake()
        hubdns = self.start(fake.url, "auto")
        doc = wait_for(lambda: (lambda d: d if d["instance"]["state"] == "known" else None)(status(hubdns.health_port)),
                       message="instance metadata in /status")
        self.assertEqual(doc["instance"]["name"], INSTANCE_NAME)
        self.assertEqual(doc["instance"]["vm_scale_set"], "hubdns-vmss")
        self.assertEqual(doc["instance"]["zone"], "2")
        self.assertEqual(doc["instance"]["location"], "westeurope")
        # "auto" polls once the instance document arrived, about once a second.
        wait_for(lambda: len(fake.seen("GET", EVENTS_PATH)) >= 3, message="scheduled events polls")
        doc = status(hubdns.health_port)
        self.assertEqual(doc["scheduled_events"]["mode"], "auto")
        self.assertTrue(doc["scheduled_events"]["polling"])
        self.assertEqual(doc["scheduled_events"]["last_result"], "ok")
        self.assertEqual(len(fake.seen("GET", INSTANCE_PATH)), 1)
        self.assert_direct_metadata_requests(fake)
        self.assertEqual(metric(hubdns.health_port, 'hubdns_imds_requests_total{request="instance",result="ok"}'), 1)
        self.assertIn('msg="instance metadata" name="hubdns-vmss_3"', hubdns.log())

    def test_off_never_contacts_imds(self):
        fake = self.fake()
        hubdns = self.start(fake.url, "off")
        time.sleep(2.5)
        self.assertEqual(fake.seen(), [])
        doc = status(hubdns.health_port)
        self.assertEqual(doc["instance"]["state"], "off")
        self.assertIsNone(doc["instance"]["name"])
        self.assertEqual(doc["scheduled_events"]["mode"], "off")
        self.assertFalse(doc["scheduled_events"]["polling"])


class ScheduledEventTest(ImdsTestCase):
    def test_reboot_for_this_instance_drains_then_acks_once(self):
        fake = self.fake()
        hubdns = self.start(fake.url, "on", ack=True, drain_grace="1s")
        port = hubdns.health_port
        wait_for(lambda: status(port)["instance"]["state"] == "known", message="instance known")
        fake.set_events([event("A1B2C3D4-0000-4444-8888-0123456789AB")])
        published = time.monotonic()
        code, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(readyz(port)), timeout=5,
                              message="/readyz 503")
        self.assertIn("draining", body)
        drained_seen = time.monotonic()
        # DNS is still served while draining.
        st, answers, out = dig(hubdns.dns_port, "during-drain.example.com")
        self.assertEqual(st, "NOERROR", out)
        self.assertEqual(answers, ["10.9.9.9"])
        # The approval comes once drain_grace (1 s) has passed since the drain began.
        posts = wait_for(lambda: fake.seen("POST", EVENTS_PATH), timeout=8, message="StartRequests POST")
        post_time, _, _, headers, body = posts[0]
        self.assertEqual(json.loads(body), {"StartRequests": [{"EventId": "A1B2C3D4-0000-4444-8888-0123456789AB"}]})
        self.assertEqual(headers.get("metadata"), "true")
        self.assertIn("application/json", headers.get("content-type", ""))
        self.assertGreaterEqual(post_time - published, 0.95, "approved before drain_grace passed")
        self.assertLess(post_time - drained_seen, 4.0)
        # Once per EventId, however often the event is still listed.
        time.sleep(2.5)
        self.assertEqual(len(fake.seen("POST")), 1)
        self.assertEqual(readyz(port)[0], 503)
        doc = status(port)
        self.assertTrue(doc["draining"])
        [listed] = doc["scheduled_events"]["events"]
        self.assertTrue(listed["for_this_instance"])
        self.assertTrue(listed["drain_requested"])
        self.assertEqual(listed["ack"], "sent")
        self.assertEqual(metric(port, "hubdns_scheduled_events_seen_total"), 1)
        self.assertEqual(metric(port, "hubdns_scheduled_event_drains_total"), 1)
        self.assertEqual(metric(port, "hubdns_scheduled_event_acks_total"), 1)
        log = hubdns.log()
        self.assertIn('event_id="A1B2C3D4-0000-4444-8888-0123456789AB" event_type="Reboot"', log)
        self.assertIn('not_before="Mon, 19 Sep 2016 18:29:47 GMT"', log)
        self.assert_direct_metadata_requests(fake)

    def test_drain_ends_when_the_event_is_over_and_the_process_still_runs(self):
        # A Freeze pauses the VM for seconds and the same process carries on: once the event
        # is gone from the document, the instance takes traffic again. An operator's drain
        # is separate: it outlives the event, and POST /undrain ends both.
        fake = self.fake()
        hubdns = self.start(fake.url, "on", ack=True, drain_grace="500ms")
        port = hubdns.health_port
        wait_for(lambda: status(port)["instance"]["state"] == "known", message="instance known")
        fake.set_events([event("FREEZE-1", event_type="Freeze")])
        wait_for(lambda: readyz(port)[0] == 503, timeout=5, message="/readyz 503 (Freeze)")
        wait_for(lambda: fake.seen("POST", EVENTS_PATH), timeout=8, message="approval")
        fake.set_events([event("FREEZE-1", event_type="Freeze", status="Started")])
        time.sleep(1.5)
        self.assertEqual(readyz(port)[0], 503)  # under way: still drained
        fake.set_events([])  # over
        wait_for(lambda: readyz(port)[0] == 200, timeout=5, message="/readyz 200 after the Freeze")
        self.assertFalse(status(port)["draining"])
        self.assertEqual(metric(port, "hubdns_scheduled_event_drains_ended_total"), 1)
        self.assertIn("scheduled event over: drain ended", hubdns.log())

        # The operator drains; an event comes and goes: the operator's drain stays.
        self.assertEqual(curl(port, "/drain", method="POST")[0], 200)
        fake.set_events([event("REBOOT-2", event_type="Reboot")])
        wait_for(lambda: metric(port, "hubdns_scheduled_event_drains_total") == 2, message="second drain")
        fake.set_events([])
        wait_for(lambda: metric(port, "hubdns_scheduled_event_drains_ended_total") == 2, message="second end")
        self.assertEqual(readyz(port)[0], 503)
        # POST /undrain ends every drain, an event's included.
        fake.set_events([event("REBOOT-3", event_type="Reboot")])
        wait_for(lambda: metric(port, "hubdns_scheduled_event_drains_total") == 3, message="third drain")
        self.assertEqual(curl(port, "/undrain", method="POST")[0], 200)
        self.assertEqual(readyz(port)[0], 200)
        fake.set_events([])
        wait_for(lambda: metric(port, "hubdns_scheduled_event_drains_ended_total") == 3, message="third end")

        # An event listed again after its drain ended (withdrawn, then reissued) drains again.
        fake.set_events([event("REBOOT-3", event_type="Reboot")])
        wait_for(lambda: readyz(port)[0] == 503, timeout=5, message="/readyz 503 (REBOOT-3 again)")
        self.assertEqual(metric(port, "hubdns_scheduled_event_drains_total"), 4)
        fake.set_events([])
        wait_for(lambda: readyz(port)[0] == 200, timeout=5, message="/readyz 200 again")
        # An event first seen already over starts no drain at all.
        fake.set_events([event("REBOOT-4", event_type="Reboot", status="Completed")])
        polls = len(fake.seen("GET", EVENTS_PATH))
        wait_for(lambda: len(fake.seen("GET", EVENTS_PATH)) >= polls + 3, message="more polls")
        self.assertEqual(readyz(port)[0], 200)
        self.assertEqual(metric(port, "hubdns_scheduled_event_drains_total"), 4)

    def test_no_ack_unless_configured(self):
        fake = self.fake()
        hubdns = self.start(fake.url, "on", ack=False, drain_grace="0s")
        port = hubdns.health_port
        wait_for(lambda: status(port)["instance"]["state"] == "known", message="instance known")
        fake.set_events([event("E-TERMINATE", event_type="Terminate", resources=(INSTANCE_NAME.upper(),))])
        wait_for(lambda: readyz(port)[0] == 503, timeout=5, message="/readyz 503")
        time.sleep(1.5)
        self.assertEqual(fake.seen("POST"), [])

    def test_event_for_another_vm_does_nothing(self):
        fake = self.fake()
        hubdns = self.start(fake.url, "on", ack=True, drain_grace="0s")
        port = hubdns.health_port
        wait_for(lambda: status(port)["instance"]["state"] == "known", message="instance known")
        fake.set_events([event("OTHER-1", resources=("hubdns-vmss_7",)),
                         event("OTHER-2", event_type="Freeze", resources=("hubdns-vmss_8", "hubdns-vmss_9"))])
        polls = len(fake.seen("GET", EVENTS_PATH))
        wait_for(lambda: len(fake.seen("GET", EVENTS_PATH)) >= polls + 3, message="more polls")
        self.assertEqual(readyz(port)[0], 200)
        self.assertEqual(fake.seen("POST"), [])
        doc = status(port)
        self.assertFalse(doc["draining"])
        self.assertEqual(sorted(e["id"] for e in doc["scheduled_events"]["events"]), ["OTHER-1", "OTHER-2"])
        self.assertFalse(any(e["for_this_instance"] for e in doc["scheduled_events"]["events"]))
        self.assertEqual(metric(port, "hubdns_scheduled_events_seen_total"), 2)
        self.assertEqual(metric(port, "hubdns_scheduled_event_drains_total"), 0)


class ImdsFailureTest(ImdsTestCase):
    WINDOW = 8.0  # seconds of failures observed

    def test_failures_are_survived_with_backoff(self):
        fakes = {mode: self.fake(mode) for mode in ("500", "429", "garbage", "huge")}
        closed = closed_port()
        instances = {mode: self.start(fake.url, "on") for mode, fake in fakes.items()}
        down = self.start(f"http://127.0.0.1:{closed}", "on")
        auto_fake = self.fake("500")
        auto = self.start(auto_fake.url, "auto")
        started = time.monotonic()
        time.sleep(self.WINDOW)
        elapsed = time.monotonic() - started + 1.0  # requests may have begun before `started`
        # Polled about once a second without backoff, that would be ~elapsed requests; with
        # exponential backoff from 1 s (jittered), at most 1 + log2(elapsed) or so.
        limit = 6
        for mode, fake in fakes.items():
            hubdns = instances[mode]
            polls = len(fake.seen("GET", EVENTS_PATH))
            instance_requests = len(fake.seen("GET", INSTANCE_PATH))
            self.assertGreaterEqual(polls, 2, mode)
            self.assertLessEqual(polls, limit, f"{mode}: {polls} polls in {elapsed:.1f} s")
            self.assertGreaterEqual(instance_requests, 2, mode)
            self.assertLessEqual(instance_requests, limit, f"{mode}: {instance_requests} instance requests")
            self.assertEqual(hubdns.process.poll(), None, f"{mode}: hubdns exited")
            self.assertEqual(readyz(hubdns.health_port)[0], 200, mode)
            doc = status(hubdns.health_port)
            self.assertEqual(doc["instance"]["state"], "unreachable", mode)
            self.assertNotEqual(doc["scheduled_events"]["last_result"], "ok", mode)
            self.assertGreaterEqual(doc["scheduled_events"]["consecutive_failures"], 2, mode)
            self.assert_direct_metadata_requests(fake)
        expected = {"500": "http_5xx", "429": "http_429", "garbage": "bad_body", "huge": "too_large"}
        for mode, result in expected.items():
            value = metric(instances[mode].health_port,
                           f'hubdns_imds_requests_total{{request="scheduled_events",result="{result}"}}')
            self.assertGreaterEqual(value, 2, mode)
        # IMDS down (connection refused): the same bounded retries, seen through the metrics.
        refused = metric(down.health_port, 'hubdns_imds_requests_total{request="scheduled_events",result="connect_error"}')
        self.assertGreaterEqual(refused, 2)
        self.assertLessEqual(refused, limit)
        self.assertEqual(readyz(down.health_port)[0], 200)
        # "auto": a few instance requests, then it gives up and never polls.
        wait_for(lambda: "scheduled events are not watched" in auto.log(), timeout=5, message="auto gives up")
        self.assertEqual(status(auto.health_port)["instance"]["state"], "unreachable")
        self.assertLessEqual(len(auto_fake.seen("GET", INSTANCE_PATH)), 4)
        self.assertEqual(auto_fake.seen("GET", EVENTS_PATH), [])
        self.assertFalse(status(auto.health_port)["scheduled_events"]["polling"])
        # Warnings are rate limited: one per kind in this window, not one per failure.
        log = instances["500"].log()
        self.assertEqual(log.count('msg="scheduled events request failed"'), 1, log)


if __name__ == "__main__":
    unittest.main()
