"""Truthful readiness with the real binary: active upstream checks with rise/fall hysteresis,
critical and non-critical zones, the data-path self-check, /status, /metrics (read by a
strict Prometheus text-format parser), drain/undrain and who may call them, the TCP probe
port, and malformed or oversized HTTP requests.

Health checks run with short intervals (interval 200ms, timeout 100ms, rise 2, fall 2), and
every timing assertion allows generous slack: the point is "within fall x interval, give or
take a loaded CI machine", never a tight bound. Loopback only, except the non-loopback
admin test, which runs in a private network namespace it creates (root only)."""

import json
import math
import os
import re
import socket
import subprocess
import time
import unittest

from harness import (IN_PRIVATE_NAMESPACE, FakeUpstream, Hubdns, closed_port, curl, dig, free_port,
                     rerun_in_private_network_namespace)

INTERVAL = 0.2
RISE = 2
FALL = 2
SLACK = 3.0  # seconds on top of every expected delay: CI machines stall, sanitizers are slow



def health_config(forwards, extra_health="", workers=2, health_listen='"127.0.0.1:{health_port}"'):
    """A configuration with fast health checks; `forwards` are (zone, [upstreams], critical)."""
    rules = ""
    for zone, upstreams, critical in forwards:
        quoted = ", ".join(f'"{u}"' for u in upstreams)
        rules += f"""
[[forward]]
zone = "{zone}"
upstreams = [{quoted}]
critical = {"true" if critical else "false"}
attempt_timeout = "500ms"
"""
    return f"""
[server]
listen = ["127.0.0.1:{{dns_port}}"]
workers = {workers}
query_timeout = "1s"

[health]
listen = [{health_listen}]
interval = "200ms"
timeout = "100ms"
rise = {RISE}
fall = {FALL}
{extra_health}
{rules}
"""


def wait_for(predicate, timeout, step=0.02):
    """Polls predicate() until it returns a true value; returns (value, seconds waited)."""
    started = time.time()
    deadline = started + timeout
    value = predicate()
    while not value and time.time() < deadline:
        time.sleep(step)
        value = predicate()
    return value, time.time() - started


def readyz(port):
    code, _, body = curl(port, "/readyz")
    return code, body


def status(port):
    code, head, body = curl(port, "/status")
    assert code == 200, f"/status answered {code}: {head}\n{body}"
    assert "Content-Type: application/json" in head, head
    return json.loads(body)


def upstream_status(doc, zone, address):
    for z in doc["zones"]:
        if z["zone"] == zone:
            for u in z["upstreams"]:
                if u["address"] == address:
                    return u
    raise AssertionError(f"{zone} / {address} not in /status: {json.dumps(doc, indent=1)}")


def readyz_when(port, code, timeout):
    """Polls /readyz until it answers `code`; returns ((code, body) or None, seconds waited)."""
    def poll():
        result = readyz(port)
        return result if result[0] == code else None
    return wait_for(poll, timeout)


def wait_ready(port, timeout=10.0):
    result, _ = readyz_when(port, 200, timeout)
    if result is None:
        raise AssertionError(f"not ready within {timeout} s: {readyz(port)}")


def tcp_connects(port, host="127.0.0.1"):
    """True if a TCP connection to host:port completes, False if refused or reset (a
    connection that reached the accept queue just as the probe port closed its listener is
    reset: a load balancer counts that as a failed probe too)."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except (ConnectionRefusedError, ConnectionResetError):
        return False


def raw_http(port, data, timeout=5.0):
    """Sends raw bytes to the health listener; returns everything read until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", errors="replace")


def status_code_of(raw):
    first = raw.split("\r\n", 1)[0]
    return int(first.split()[1]) if first.startswith("HTTP/1.1 ") else 0


# --------------------------------------------------------------------------------------
# A strict parser of the Prometheus text exposition format 0.0.4


METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
FLOAT = re.compile(r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|Inf|NaN)\Z")


class ExpositionError(AssertionError):
    pass


def parse_value(text, line_number):
    if not FLOAT.match(text):
        raise ExpositionError(f"line {line_number}: bad value {text!r}")
    return float(text.replace("Inf", "inf").replace("NaN", "nan"))


def parse_labels(text, line_number):
    """Parses `a="x",b="y"` (the inside of the braces); returns a dict."""
    labels = {}
    pos = 0
    while pos < len(text):
        eq = text.find("=", pos)
        if eq < 0:
            raise ExpositionError(f"line {line_number}: label without '='")
        name = text[pos:eq]
        if not LABEL_NAME.match(name) or name.startswith("__"):
            raise ExpositionError(f"line {line_number}: bad label name {name!r}")
        if name in labels:
            raise ExpositionError(f"line {line_number}: label {name} twice")
        if eq + 1 >= len(text) or text[eq + 1] != '"':
            raise ExpositionError(f"line {line_number}: label value not quoted")
        pos = eq + 2
        value = []
        while True:
            if pos >= len(text):
                raise ExpositionError(f"line {line_number}: unterminated label value")
            c = text[pos]
            if c == "\\":
                if pos + 1 >= len(text) or text[pos + 1] not in '\\"n':
                    raise ExpositionError(f"line {line_number}: bad escape in label value")
                value.append({"\\": "\\", '"': '"', "n": "\n"}[text[pos + 1]])
                pos += 2
            elif c == '"':
                pos += 1
                break
            elif c == "\n":
                raise ExpositionError(f"line {line_number}: raw newline in label value")
            else:
                value.append(c)
                pos += 1
        labels[name] = "".join(value)
        if pos < len(text):
            if text[pos] != ",":
                raise ExpositionError(f"line {line_number}: expected ',' between labels")
            pos += 1
            if pos >= len(text):
                raise ExpositionError(f"line {line_number}: trailing ',' in labels")
    return labels


def split_sample(line, line_number):
    """'name{labels} value [timestamp]' -> (name, labels dict, value)."""
    brace = line.find("{")
    space = line.find(" ")
    if brace >= 0 and (space < 0 or brace < space):
        name = line[:brace]
        # The closing brace is the first '}' outside a quoted label value.
        pos, in_quotes = brace + 1, False
        while pos < len(line):
            c = line[pos]
            if in_quotes and c == "\\":
                pos += 2
                continue
            if c == '"':
                in_quotes = not in_quotes
            elif c == "}" and not in_quotes:
                break
            pos += 1
        else:
            raise ExpositionError(f"line {line_number}: unclosed '{{'")
        labels = parse_labels(line[brace + 1:pos], line_number)
        rest = line[pos + 1:]
    else:
        if space < 0:
            raise ExpositionError(f"line {line_number}: sample without a value")
        name, labels, rest = line[:space], {}, line[space:]
    if not METRIC_NAME.match(name):
        raise ExpositionError(f"line {line_number}: bad metric name {name!r}")
    if not rest.startswith(" ") or rest.startswith("  "):
        raise ExpositionError(f"line {line_number}: expected one space before the value")
    fields = rest[1:].split(" ")
    if len(fields) not in (1, 2):
        raise ExpositionError(f"line {line_number}: expected 'value [timestamp]'")
    value = parse_value(fields[0], line_number)
    if len(fields) == 2 and not re.match(r"-?\d+\Z", fields[1]):
        raise ExpositionError(f"line {line_number}: bad timestamp")
    return name, labels, value


def parse_exposition(text):
    """Returns {family: {"type", "help", "samples": [(name, labels, value)]}}; raises on any
    violation of the format (and of what Prometheus' own parser would reject)."""
    if text and not text.endswith("\n"):
        raise ExpositionError("exposition does not end with a newline")
    families = {}
    current = None  # the family whose samples are being read
    finished = set()  # families whose sample group has ended
    seen_series = set()
    for number, line in enumerate(text.split("\n")[:-1], start=1):
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not METRIC_NAME.match(name):
                    raise ExpositionError(f"line {number}: bad name in {parts[1]}")
                family = families.setdefault(name, {"type": None, "help": None, "samples": []})
                if name in finished or (family["samples"] and current != name):
                    raise ExpositionError(f"line {number}: {parts[1]} for {name} after its samples")
                if parts[1] == "TYPE":
                    if family["type"] is not None:
                        raise ExpositionError(f"line {number}: second TYPE for {name}")
                    if len(parts) != 4 or parts[3] not in ("counter", "gauge", "histogram", "summary", "untyped"):
                        raise ExpositionError(f"line {number}: bad TYPE line")
                    family["type"] = parts[3]
                else:
                    if family["help"] is not None:
                        raise ExpositionError(f"line {number}: second HELP for {name}")
                    help_text = parts[3] if len(parts) == 4 else ""
                    if re.search(r"\\[^\\n]", help_text.replace("\\\\", "")):
                        raise ExpositionError(f"line {number}: bad escape in HELP")
                    family["help"] = help_text
                if current is not None and current != name:
                    finished.add(current)
                current = name
            continue  # other comments are allowed
        name, labels, value = split_sample(line, number)
        family_name = name
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[: -len(suffix)]
            if name.endswith(suffix) and families.get(base, {}).get("type") == "histogram":
                family_name = base
        family = families.get(family_name)
        if family is None or family["type"] is None:
            raise ExpositionError(f"line {number}: sample {name} without a TYPE")
        if family_name != current:
            if family_name in finished or current is None or family["samples"]:
                raise ExpositionError(f"line {number}: samples of {family_name} are not contiguous")
            finished.add(current)
            current = family_name
        key = (name, tuple(sorted(labels.items())))
        if key in seen_series:
            raise ExpositionError(f"line {number}: duplicate series {key}")
        seen_series.add(key)
        if family["type"] == "counter" and (value < 0 or math.isnan(value)):
            raise ExpositionError(f"line {number}: counter {name} is {value}")
        if family["type"] == "histogram" and name == family_name:
            raise ExpositionError(f"line {number}: histogram sample without _bucket/_sum/_count")
        if name.endswith("_bucket") and family["type"] == "histogram" and "le" not in labels:
            raise ExpositionError(f"line {number}: bucket without le")
        family["samples"].append((name, labels, value))
    for name, family in families.items():
        if family["type"] == "histogram":
            check_histogram(name, family["samples"])
    return families


def check_histogram(name, samples):
    groups = {}
    for sample_name, labels, value in samples:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        group = groups.setdefault(key, {"buckets": [], "sum": None, "count": None})
        if sample_name == name + "_bucket":
            group["buckets"].append((float(labels["le"].replace("Inf", "inf")), value))
        elif sample_name == name + "_sum":
            group["sum"] = value
        elif sample_name == name + "_count":
            group["count"] = value
    for key, group in groups.items():
        bounds = [b for b, _ in group["buckets"]]
        counts = [c for _, c in group["buckets"]]
        if not bounds or bounds[-1] != math.inf:
            raise ExpositionError(f"{name}{key}: no le=\"+Inf\" bucket")
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise ExpositionError(f"{name}{key}: bucket bounds not increasing")
        if counts != sorted(counts):
            raise ExpositionError(f"{name}{key}: bucket counts not cumulative")
        if group["count"] is None or group["sum"] is None:
            raise ExpositionError(f"{name}{key}: _sum or _count missing")
        if group["count"] != counts[-1]:
            raise ExpositionError(f"{name}{key}: _count != +Inf bucket")


def sample(families, family, name=None, **labels):
    for sample_name, sample_labels, value in families[family]["samples"]:
        if sample_name == (name or family) and all(sample_labels.get(k) == v for k, v in labels.items()):
            return value
    return None


# --------------------------------------------------------------------------------------


class ParserSelfTest(unittest.TestCase):
    """The parser must reject what Prometheus rejects, or passing it would prove nothing."""

    GOOD = ('# HELP a_total Things.\n# TYPE a_total counter\na_total{x="1"} 3\na_total{x="q\\"\\\\\\n"} 4\n'
            '# HELP h Hist.\n# TYPE h histogram\nh_bucket{le="0.5"} 1\nh_bucket{le="+Inf"} 2\nh_sum 0.7\nh_count 2\n')

    def test_accepts_valid(self):
        families = parse_exposition(self.GOOD)
        self.assertEqual(sample(families, "a_total", x='q"\\\n'), 4)
        self.assertEqual(families["h"]["type"], "histogram")

    def test_rejects_invalid(self):
        bad = [
            "a 1\n",                                             # no TYPE
            "# TYPE a gauge\na{x=1} 1\n",                        # unquoted label value
            "# TYPE a gauge\na{x=\"1\",} 1\n",                   # trailing comma
            "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n",   # not contiguous
            "# TYPE a gauge\na 1\na 1\n",                        # duplicate series
            "# TYPE a gauge\na one\n",                           # bad value
            "# TYPE a gauge\na  1\n",                            # two spaces
            "# TYPE a gauge\na 1",                               # no final newline
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",  # no +Inf
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            "# TYPE a counter\na -1\n",
            "# TYPE a gauge\n# TYPE a gauge\na 1\n",
            "# TYPE a gauge\na{x=\"\\q\"} 1\n",                   # bad escape
        ]
        for text in bad:
            with self.assertRaises(ExpositionError, msg=text):
                parse_exposition(text)


class ReadinessTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = FakeUpstream(address="10.1.1.1")
        cls.corp = FakeUpstream(address="10.2.2.2")
        cls.probe_port = free_port()
        cls.hubdns = Hubdns(health_config(
            [(".", [cls.root.endpoint], True), ("corp.example", [cls.corp.endpoint], False)],
            extra_health=f'tcp_listen = ["127.0.0.1:{cls.probe_port}"]'))
        cls.port = cls.hubdns.health_port
        wait_ready(cls.port)

    @classmethod
    def tearDownClass(cls):
        code = cls.hubdns.stop()
        cls.root.close()
        cls.corp.close()
        assert code == 0, f"hubdns exit code {code}"

    def setUp(self):
        # Every test starts from a ready instance with both upstreams answering.
        self.root.mode = "answer"
        self.corp.mode = "answer"
        curl(self.port, "/undrain", method="POST")
        wait_ready(self.port)
        wait_for(lambda: upstream_status(status(self.port), "corp.example", self.corp.endpoint)["status"] == "up",
                 RISE * INTERVAL + SLACK)

    def test_critical_upstream_down_then_back(self):
        self.root.mode = "drop"
        result, waited = readyz_when(self.port, 503, FALL * INTERVAL + SLACK)
        self.assertIsNotNone(result, "still ready after the critical upstream stopped answering")
        code, body = result
        self.assertLessEqual(waited, FALL * INTERVAL + SLACK)
        self.assertRegex(body, rf"zone \.: no upstream up \({re.escape(self.root.endpoint)}: timeout( x\d+)?\)\n")
        doc = status(self.port)
        self.assertFalse(doc["ready"])
        self.assertIn(body.strip(), doc["reasons"])
        root = upstream_status(doc, ".", self.root.endpoint)
        self.assertEqual(root["status"], "down")
        self.assertEqual(root["last_error"], "timeout")
        # DNS is still served for the other zone while the critical one is down.
        st, answers, out = dig(self.hubdns.dns_port, "host.corp.example")
        self.assertEqual(answers, ["10.2.2.2"], out)

        self.root.mode = "answer"
        result, waited = readyz_when(self.port, 200, RISE * INTERVAL + SLACK)
        self.assertIsNotNone(result, "not ready again after the upstream came back")
        self.assertLessEqual(waited, RISE * INTERVAL + SLACK)
        self.assertEqual(upstream_status(status(self.port), ".", self.root.endpoint)["status"], "up")

    def test_failure_kinds_are_named(self):
        for mode, expected in (("servfail", "SERVFAIL"), ("refused", "REFUSED"),
                               ("wrong_id", "mismatched answer"),
                               ("garbage", "(garbled|mismatched) answer")):
            self.root.mode = mode
            result, _ = readyz_when(self.port, 503, FALL * INTERVAL + SLACK)
            self.assertIsNotNone(result, mode)
            self.assertRegex(result[1], rf"zone \.: no upstream up \({re.escape(self.root.endpoint)}: {expected}( x\d+)?\)",
                             mode)
            self.root.mode = "answer"
            wait_ready(self.port)

    def test_non_critical_zone_down_leaves_ready(self):
        self.corp.mode = "servfail"
        (down, _) = wait_for(
            lambda: upstream_status(status(self.port), "corp.example", self.corp.endpoint)["status"] == "down",
            FALL * INTERVAL + SLACK)
        self.assertTrue(down, "the non-critical upstream was not marked down")
        # Well past fall x interval: still ready, every time we ask.
        for _ in range(5):
            code, body = readyz(self.port)
            self.assertEqual(code, 200, body)
            time.sleep(INTERVAL)
        doc = status(self.port)
        self.assertTrue(doc["ready"])
        corp_zone = [z for z in doc["zones"] if z["zone"] == "corp.example"][0]
        self.assertFalse(corp_zone["critical"])
        self.assertEqual(corp_zone["upstreams_up"], 0)
        corp = corp_zone["upstreams"][0]
        self.assertEqual(corp["last_error"], "SERVFAIL")
        self.assertGreaterEqual(corp["probes"]["servfail"], FALL)
        families = parse_exposition(curl(self.port, "/metrics")[2])
        self.assertEqual(sample(families, "hubdns_upstream_up", zone="corp.example", upstream=self.corp.endpoint), 0)
        self.assertEqual(sample(families, "hubdns_upstream_up", zone=".", upstream=self.root.endpoint), 1)
        self.assertEqual(sample(families, "hubdns_ready"), 1)

    def test_drain_and_undrain_from_loopback(self):
        code, head, body = curl(self.port, "/drain", method="POST")
        self.assertEqual(code, 200, body)
        code, body = readyz(self.port)
        self.assertEqual(code, 503)
        self.assertEqual(body, "draining\n")
        self.assertTrue(status(self.port)["draining"])
        families = parse_exposition(curl(self.port, "/metrics")[2])
        self.assertEqual(sample(families, "hubdns_draining"), 1)
        self.assertEqual(sample(families, "hubdns_ready"), 0)
        # DNS is still served while draining.
        st, answers, out = dig(self.hubdns.dns_port, "drain.example.com")
        self.assertEqual((st, answers), ("NOERROR", ["10.1.1.1"]), out)
        code, _, body = curl(self.port, "/undrain", method="POST")
        self.assertEqual(code, 200, body)
        self.assertEqual(readyz(self.port), (200, "ok\n"))
        # Only POST: a GET is 405 with Allow.
        code, head, _ = curl(self.port, "/drain")
        self.assertEqual(code, 405)
        self.assertIn("Allow: POST", head)

    def test_tcp_probe_port_follows_readiness(self):
        self.assertTrue(wait_for(lambda: tcp_connects(self.probe_port), SLACK)[0], "probe port closed while ready")
        curl(self.port, "/drain", method="POST")
        refused, _ = wait_for(lambda: not tcp_connects(self.probe_port), 1.0 + SLACK)
        self.assertTrue(refused, "TCP probe port still accepts while not ready")
        curl(self.port, "/undrain", method="POST")
        accepted, _ = wait_for(lambda: tcp_connects(self.probe_port), 1.0 + SLACK)
        self.assertTrue(accepted, "TCP probe port does not accept again once ready")
        # Also when readiness goes because of an upstream, not only a drain.
        self.root.mode = "drop"
        refused, _ = wait_for(lambda: not tcp_connects(self.probe_port), FALL * INTERVAL + 1.0 + SLACK)
        self.assertTrue(refused, "TCP probe port still accepts with the critical zone down")
        self.root.mode = "answer"
        accepted, _ = wait_for(lambda: tcp_connects(self.probe_port), RISE * INTERVAL + 1.0 + SLACK)
        self.assertTrue(accepted)

    def test_self_check_is_answered_by_the_workers(self):
        doc = status(self.port)
        checks = {c["listener"]: c for c in doc["self_check"]}
        dns = f"127.0.0.1:{self.hubdns.dns_port}"
        self.assertEqual(set(checks), {f"{dns}/udp", f"{dns}/tcp"})
        for check in checks.values():
            self.assertEqual(check["state"], "passing", check)
            # Answered by a worker itself, not relayed: the upstreams never saw the name.
            self.assertRegex(check["answered_by"] or "", r"^worker \d+$", check)
        for upstream in (self.root, self.corp):
            with upstream.lock:
                names = [q[1] for q in upstream.queries]
            self.assertNotIn("_selfcheck.hubdns.invalid.", names)
        families = parse_exposition(curl(self.port, "/metrics")[2])
        self.assertEqual(sample(families, "hubdns_self_check_up", listener=dns, proto="udp"), 1)
        self.assertEqual(sample(families, "hubdns_self_check_up", listener=dns, proto="tcp"), 1)

    def test_status_document(self):
        doc = status(self.port)
        for key in ("version", "uptime_seconds", "ready", "reasons", "draining", "config", "workers",
                    "zones", "listeners", "self_check", "health_check"):
            self.assertIn(key, doc)
        self.assertEqual(doc["config"]["generation"], 1)
        self.assertEqual(doc["config"]["source"], self.hubdns.config_path)
        self.assertEqual(len(doc["workers"]), 2)
        self.assertTrue(all(w["alive"] for w in doc["workers"]))
        self.assertTrue(doc["health_check"]["first_round_done"])
        self.assertEqual(doc["listeners"]["tcp_probe"]["addresses"], [f"127.0.0.1:{self.probe_port}"])
        root = upstream_status(doc, ".", self.root.endpoint)
        self.assertEqual(root["status"], "up")
        self.assertGreaterEqual(root["probes"]["ok"], 1)
        self.assertIsNotNone(root["last_probe_latency_ms"])
        # HEAD: same status and headers, no body.
        code, head, body = curl(self.port, "/status", method="HEAD", extra=["-I"])
        self.assertEqual(code, 200)
        self.assertEqual(body, "")

    def test_metrics_parse_strictly(self):
        dig(self.hubdns.dns_port, "metrics.example.com")  # traffic for the latency histogram
        text = curl(self.port, "/metrics")[2]
        families = parse_exposition(text)
        for name, family in families.items():
            self.assertTrue(name.startswith("hubdns_"), name)
            self.assertTrue(family["help"], f"{name} has no HELP")
            if family["type"] == "counter":
                self.assertTrue(name.endswith("_total"), name)
        self.assertEqual(sample(families, "hubdns_config_generation"), 1)
        self.assertGreaterEqual(sample(families, "hubdns_upstream_probes_total", zone=".",
                                       upstream=self.root.endpoint, result="ok"), 1)
        self.assertGreaterEqual(sample(families, "hubdns_upstream_attempts_total", zone=".",
                                       upstream=self.root.endpoint, result="answer"), 1)
        self.assertGreaterEqual(sample(families, "hubdns_upstream_latency_seconds",
                                       name="hubdns_upstream_latency_seconds_count", zone=".",
                                       upstream=self.root.endpoint), 1)
        self.assertEqual(families["hubdns_upstream_latency_seconds"]["type"], "histogram")
        self.assertEqual(sample(families, "hubdns_tcp_probe_listening"), 1)

    def test_malformed_and_oversized_requests(self):
        self.assertEqual(status_code_of(raw_http(self.port, b"GARBAGE\r\n\r\n")), 400)
        self.assertEqual(status_code_of(raw_http(self.port, b"GET /status HTTP/1.1\r\nX: \x01\r\n\r\n")), 400)
        big = b"GET /status HTTP/1.1\r\nX-Big: " + b"a" * 10000 + b"\r\n\r\n"
        self.assertEqual(status_code_of(raw_http(self.port, big)), 431)
        self.assertEqual(status_code_of(raw_http(
            self.port, b"POST /drain HTTP/1.1\r\nContent-Length: 100000\r\n\r\n")), 413)
        self.assertEqual(status_code_of(raw_http(
            self.port, b"POST /drain HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")), 501)
        self.assertEqual(status_code_of(raw_http(self.port, b"GET /status HTTP/2.0\r\n\r\n")), 505)
        # None of that drained the instance or harmed it.
        self.assertEqual(readyz(self.port), (200, "ok\n"))


class StartupTest(unittest.TestCase):
    def test_not_ready_while_the_only_critical_upstream_is_dead(self):
        dead = FakeUpstream(mode="drop")
        with Hubdns(health_config([(".", [dead.endpoint], True)])) as hubdns:
            def down_reason():
                result = readyz(hubdns.health_port)
                return result if "timeout x" in result[1] else None
            result, _ = wait_for(down_reason, FALL * INTERVAL + SLACK)
            self.assertIsNotNone(result, readyz(hubdns.health_port))
            self.assertEqual(result[0], 503)
            self.assertRegex(result[1], rf"zone \.: no upstream up \({re.escape(dead.endpoint)}: timeout x\d+\)")
            self.assertIn("not ready", hubdns.log())
            self.assertIn('msg="upstream down"', hubdns.log())
            self.assertEqual(hubdns.stop(), 0)
        dead.close()

    def test_closed_port_is_a_network_error(self):
        # Nothing listens there: the connected UDP socket gets the ICMP port unreachable.
        answering = FakeUpstream()
        closed = f"127.0.0.1:{closed_port()}"
        with Hubdns(health_config([(".", [answering.endpoint], True), ("corp.example", [closed], False)])) as hubdns:
            wait_ready(hubdns.health_port)
            def corp_down():
                corp = upstream_status(status(hubdns.health_port), "corp.example", closed)
                return corp if corp["status"] == "down" else None
            corp, _ = wait_for(corp_down, FALL * INTERVAL + SLACK)
            self.assertIsNotNone(corp)
            self.assertEqual(corp["last_error"], "network: ECONNREFUSED")
            self.assertEqual(hubdns.stop(), 0)
        answering.close()


class AdminTokenTest(unittest.TestCase):
    def test_token_is_accepted_and_loopback_needs_none(self):
        upstream = FakeUpstream()
        with Hubdns(health_config([(".", [upstream.endpoint], True)],
                                  extra_health='admin_token = "s3cret-token"')) as hubdns:
            port = hubdns.health_port
            wait_ready(port)
            # Loopback: no token needed; a wrong one does not matter.
            self.assertEqual(curl(port, "/drain", method="POST")[0], 200)
            self.assertEqual(curl(port, "/undrain", method="POST",
                                  extra=["-H", "Authorization: Bearer wrong"])[0], 200)
            self.assertEqual(curl(port, "/drain", method="POST",
                                  extra=["-H", "Authorization: Bearer s3cret-token"])[0], 200)
            self.assertEqual(readyz(port)[0], 503)
            self.assertEqual(curl(port, "/undrain", method="POST",
                                  extra=["-H", "Authorization: bearer s3cret-token"])[0], 200)
            wait_ready(port)
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()


@unittest.skipUnless(os.geteuid() == 0, "needs root for a private network namespace (CI runs as root)")
class NonLoopbackAdminTest(unittest.TestCase):
    """Re-runs NonLoopbackInNamespace in a private network namespace, where the test may give
    the loopback interface a non-loopback address (192.0.2.1, TEST-NET-1) without touching
    the host: requests from there reach hubdns from a non-loopback peer."""

    def test_in_private_namespace(self):
        rerun_in_private_network_namespace(self, "test_readiness.NonLoopbackInNamespace")


@unittest.skipUnless(IN_PRIVATE_NAMESPACE, "runs inside the namespace made by NonLoopbackAdminTest")
class NonLoopbackInNamespace(unittest.TestCase):
    OUTSIDE = "192.0.2.1"

    def test_admin_needs_the_token_from_a_non_loopback_peer(self):
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "addr", "add", f"{self.OUTSIDE}/32", "dev", "lo"], check=True)
        upstream = FakeUpstream()
        config = health_config([(".", [upstream.endpoint], True)], extra_health='admin_token = "s3cret-token"',
                               health_listen='"127.0.0.1:{health_port}", "' + self.OUTSIDE + ':{health_port}"')
        with Hubdns(config) as hubdns:
            port = hubdns.health_port
            wait_ready(port)
            outside = ["--interface", self.OUTSIDE]
            # The peer really is non-loopback: without the token, 403 and nothing changes.
            code, _, body = curl(port, "/drain", method="POST", host=self.OUTSIDE, extra=outside)
            self.assertEqual(code, 403, body)
            self.assertIn("Authorization: Bearer", body)
            code, _, _ = curl(port, "/drain", method="POST", host=self.OUTSIDE,
                              extra=outside + ["-H", "Authorization: Bearer wrong-token!"])
            self.assertEqual(code, 403)
            self.assertEqual(readyz(port)[0], 200)
            self.assertFalse(status(port)["draining"])
            # GET endpoints are open to anyone who reaches the listener.
            self.assertEqual(curl(port, "/readyz", host=self.OUTSIDE, extra=outside)[0], 200)
            # With the token: allowed.
            code, _, body = curl(port, "/drain", method="POST", host=self.OUTSIDE,
                                 extra=outside + ["-H", "Authorization: Bearer s3cret-token"])
            self.assertEqual(code, 200, body)
            self.assertEqual(readyz(port)[0], 503)
            code, _, _ = curl(port, "/undrain", method="POST", host=self.OUTSIDE,
                              extra=outside + ["-H", "Authorization: Bearer s3cret-token"])
            self.assertEqual(code, 200)
            wait_ready(port)
            self.assertIn('msg="admin request refused"', hubdns.log())
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()

    def test_without_a_token_only_loopback_may_drain(self):
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "addr", "replace", f"{self.OUTSIDE}/32", "dev", "lo"], check=True)
        upstream = FakeUpstream()
        config = health_config([(".", [upstream.endpoint], True)],
                               health_listen='"' + self.OUTSIDE + ':{health_port}"')
        with Hubdns(config) as hubdns:
            port = hubdns.health_port
            code, _, body = curl(port, "/drain", method="POST", host=self.OUTSIDE,
                                 extra=["--interface", self.OUTSIDE, "-H", "Authorization: Bearer "])
            self.assertEqual(code, 403, body)
            self.assertIn("loopback clients only", body)
            # From loopback to the same listener: allowed.
            code, _, _ = curl(port, "/drain", method="POST", host=self.OUTSIDE, extra=["--interface", "127.0.0.1"])
            self.assertEqual(code, 200)
            self.assertEqual(hubdns.stop(), 0)
        upstream.close()


if __name__ == "__main__":
    unittest.main()
