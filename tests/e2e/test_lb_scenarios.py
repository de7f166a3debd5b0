"""End to end: three hubdns instances behind a simulated Azure Standard internal load balancer,
with fake Azure DNS, spoke DNS and on-premises DNS servers whose faults the test switches,
and a steady client load through the load balancer's frontend. Issue 8, "Prove it".

The instances run the production configuration (conf/hub-and-spoke.toml) with only these
changes: listen addresses on 127.0.0.11-13, upstreams pointed at loopback fakes, the instance
metadata service at a per-VM loopback fake, and every timer scaled to a quarter (health
interval 2 s -> 500 ms, ...) so that the suite runs in about two minutes; drain_grace is
derived from the load balancer's settings (see DRAIN_GRACE). Nothing is ever sent to a
non-loopback address.

Each scenario prints one line of figures ("FIGURE scenario N: ..."); docs/e2e.md records
them. With HUBDNS_E2E_RESULTS=FILE each figure is also appended to FILE as a JSON line.
"""

import email.utils
import gc
import http.client
import json
import os
import random
import re
import signal
import sys
import threading
import time
import tomllib
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from harness import SOURCE_DIR, FakeUpstream, Hubdns, build_query, curl, free_port, udp_exchange  # noqa: E402
from test_scheduled_events import EVENTS_PATH, PROXY_ENV, FakeImds, event  # noqa: E402

import dnsload  # noqa: E402
import lbsim  # noqa: E402
from lbsim import DOWN, UP  # noqa: E402

PRODUCTION_CONFIG = os.path.join(SOURCE_DIR, "conf", "hub-and-spoke.toml")

# --------------------------------------------------------------------------------------
# Timing. Production durations are scaled by SCALE; rise and fall stay as in production.

SCALE = 0.25


def seconds(duration):
    """'4500ms' / '2s' / '2m' -> seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", duration)
    if not match:
        raise ValueError(duration)
    factor = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return float(match.group(1)) * factor


def ms(value):
    return f'"{round(value * 1000)}ms"'


with open(PRODUCTION_CONFIG, "rb") as _f:
    PRODUCTION = tomllib.load(_f)

H_INTERVAL = seconds(PRODUCTION["health"]["interval"]) * SCALE   # 0.5 s
H_TIMEOUT = seconds(PRODUCTION["health"]["timeout"]) * SCALE     # 0.25 s
RISE = PRODUCTION["health"]["rise"]                              # 2
FALL = PRODUCTION["health"]["fall"]                              # 3
QUERY_TIMEOUT = seconds(PRODUCTION["server"]["query_timeout"]) * SCALE  # 1.25 s

# The load balancer: Azure allows a 5 s interval at least; scaled here to 1 s.
LB_INTERVAL = 1.0
LB_THRESHOLD = 2
LB_TIMEOUT = 1.0  # min(interval, 30 s) in Azure

# Scheduling allowance on top of every computed bound: a loaded 2-CPU CI machine, an
# ASan+UBSan build, and Python threads for the load balancer, the fakes and the clients.
SLACK = float(os.environ.get("HUBDNS_E2E_SLACK", "2.0"))

# How long the load balancer may take to stop sending new flows to an instance whose
# /readyz turned 503: the next probe comes within one interval, `threshold` of them in a row
# are needed, and a probe may take up to its timeout. drain_grace must exceed it, with a
# margin, or queries sent between the end of the grace and the load balancer's reaction
# would find closed listeners.
LB_NOTICE = LB_THRESHOLD * LB_INTERVAL + LB_TIMEOUT  # 3 s
DRAIN_GRACE = float(os.environ.get("HUBDNS_E2E_DRAIN_GRACE", LB_NOTICE + 1.5))  # 4.5 s
# (HUBDNS_E2E_DRAIN_GRACE: to watch what a grace shorter than LB_NOTICE costs, scenario 3.)

CLIENT_TIMEOUT = 2.5  # > query_timeout (1.25 s): hubdns answers before a client gives up
RATE = float(os.environ.get("HUBDNS_E2E_RATE", "150"))  # client queries per second, in total

ZONE_SPOKE = PRODUCTION["forward"][1]["zone"]   # az-spoke-1-internal.net
ZONE_ONPREM = PRODUCTION["forward"][2]["zone"]  # corp.contoso.com
AZURE_SUFFIX = "hub.contoso.internal"           # a private DNS zone: Azure DNS answers it

# Where the fakes answer from: which instance's Azure DNS answered shows in the address.
AZURE_ADDRESSES = ["10.100.0.1", "10.100.0.2", "10.100.0.3"]
SPOKE_ADDRESS = "10.1.0.99"
ONPREM_ADDRESSES = ["192.168.50.1", "192.168.50.2", "192.168.50.3"]
RECORD_TTL = 2  # short, so that cached names go stale within a scenario


def derive_config(template, overrides):
    """The production file with some keys' values replaced, comments and all. overrides:
    {(table, key): toml value}, table "server", "health", ... or "forward#N" for the Nth
    [[forward]]. Every override must match exactly one line. Braces are doubled for
    Hubdns.write_config's str.format."""
    out, table, forward_index, used = [], None, -1, set()
    for line in template.splitlines():
        stripped = line.strip()
        if stripped.startswith("[[forward]]"):
            forward_index += 1
            table = f"forward#{forward_index}"
        elif stripped.startswith("["):
            table = stripped.strip("[]").strip()
        elif "=" in stripped and not stripped.startswith("#"):
            key = stripped.split("=", 1)[0].strip()
            if (table, key) in overrides:
                if (table, key) in used:
                    raise AssertionError(f"{table}.{key} twice in {PRODUCTION_CONFIG}")
                used.add((table, key))
                line = f"{key} = {overrides[(table, key)]}"
        out.append(line)
    missing = set(overrides) - used
    if missing:
        raise AssertionError(f"not in {PRODUCTION_CONFIG}: {sorted(missing)}")
    return ("\n".join(out) + "\n").replace("{", "{{").replace("}", "}}")


def quoted_list(items):
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


# --------------------------------------------------------------------------------------
# Fakes


class TimedFakeUpstream(FakeUpstream):
    """FakeUpstream that also notes when each name arrived (for failure messages)."""

    def __init__(self, *args, **kwargs):
        self.arrivals = {}  # lower-case name -> [(time.monotonic(), transport, mode)]
        super().__init__(*args, **kwargs)

    def answer_for(self, query, transport, peer=None):
        try:
            name = dnsload._read_name(query, 12)
        except (ValueError, IndexError):
            name = None
        if name is not None:
            with self.lock:
                self.arrivals.setdefault(name, []).append((time.monotonic(), transport, self.mode))
        return super().answer_for(query, transport, peer)


def _serve_fakes(conn, specs):
    """The child process of RemoteFakes: the fakes, and commands from the pipe."""
    fakes = {label: TimedFakeUpstream(**kwargs) for label, kwargs in specs.items()}
    conn.send({label: fake.endpoint for label, fake in fakes.items()})
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            break
        op, label, args = request[0], request[1], request[2:]
        fake = fakes.get(label)
        if op == "set":
            setattr(fake, args[0], args[1])
            conn.send(None)
        elif op == "get":
            conn.send(getattr(fake, args[0]))
        elif op == "arrivals":
            with fake.lock:
                conn.send(list(fake.arrivals.get(args[0], [])))
        elif op == "seen_qtype":
            with fake.lock:
                conn.send(any(q[2] == args[0] for q in fake.queries))
        elif op == "clear":
            for f in fakes.values():
                with f.lock:
                    f.queries.clear()
                    f.records.clear()
                    f.arrivals.clear()
            conn.send(None)
        elif op == "close":
            for f in fakes.values():
                f.close()
            conn.send(None)
            break
    os._exit(0)


class RemoteFakes:
    """The fake upstreams (harness.FakeUpstream, a thread per query) in a child process of
    their own, so that they keep their pace whatever this process's threads (load balancer,
    clients) do with the interpreter lock: a fake that answers late makes hubdns time out
    an attempt (500 ms for the spoke zone here), which is not what a scenario is about.
    Forked at the start of setUpClass, before this process has other threads."""

    def __init__(self, specs):
        import multiprocessing
        self.lock = threading.Lock()
        self.conn, child = multiprocessing.Pipe()
        self.process = multiprocessing.get_context("fork").Process(
            target=_serve_fakes, args=(child, specs), name="e2e-fakes", daemon=True)
        self.process.start()
        child.close()
        endpoints = self.conn.recv()
        self.fakes = {label: RemoteFake(self, label, endpoints[label], specs[label]["address"])
                      for label in specs}

    def call(self, *request):
        with self.lock:
            self.conn.send(request)
            return self.conn.recv()

    def clear(self):
        self.call("clear", None)

    def close(self):
        try:
            self.call("close", None)
        except (EOFError, OSError):
            pass
        self.process.join(timeout=5)


class RemoteFake:
    """One fake upstream of RemoteFakes, with FakeUpstream's switches: mode, delay."""

    def __init__(self, remote, label, endpoint, address):
        self.remote, self.label, self.endpoint, self.address = remote, label, endpoint, address

    mode = property(lambda self: self.remote.call("get", self.label, "mode"),
                    lambda self, value: self.remote.call("set", self.label, "mode", value))
    delay = property(lambda self: self.remote.call("get", self.label, "delay"),
                     lambda self, value: self.remote.call("set", self.label, "delay", value))

    def arrivals(self, name):
        """[(time.monotonic(), transport, mode)] of each query for `name` (lower case, final dot)."""
        return self.remote.call("arrivals", self.label, name)

    def saw_qtype(self, qtype):
        return self.remote.call("seen_qtype", self.label, qtype)


class FakeImdsFleet:
    """The instance metadata service as each VM of a scale set sees it: one endpoint per VM
    (each VM has its own 169.254.169.254; here a loopback port each) answering that VM's own
    instance document, and one scheduled-events document shared by all (events name the VMs
    they are for in Resources). StartRequests approvals are recorded by each endpoint."""

    def __init__(self, names):
        self.lock = threading.Lock()
        self.events = []
        self.incarnation = 1
        self.vms = {name: FakeImds(instance_name=name, events_from=self) for name in names}

    def url(self, name):
        return self.vms[name].url

    def set_events(self, events):
        with self.lock:
            self.events = events
            self.incarnation += 1

    def approvals_for(self, event_id):
        """[(time.monotonic(), vm name, body dict)] of the StartRequests naming event_id."""
        found = []
        for vm, endpoint in self.vms.items():
            for at, _, _, _, body in endpoint.seen("POST", EVENTS_PATH):
                request = json.loads(body or b"{}")
                if any(r.get("EventId") == event_id for r in request.get("StartRequests", [])):
                    found.append((at, vm, request))
        return sorted(found, key=lambda approval: approval[0])

    def close(self):
        for endpoint in self.vms.values():
            endpoint.close()


class Instance:
    """One VM of the scale set: a hubdns process on its own loopback address (127.0.0.11 and
    up) with fixed ports, so that a restart comes back where the load balancer probes."""

    def __init__(self, index, azure, imds_url):
        self.index = index
        self.name = f"hubdns-vmss_{index}"
        self.host = f"127.0.0.{11 + index}"
        self.dns_port = free_port(self.host)
        self.health_port = free_port(self.host)
        self.azure = azure
        self.imds_url = imds_url
        self.proc = None
        self.exit_codes = []  # of every stop, for the final check

    def running(self):
        return self.proc is not None and self.proc.process.poll() is None

    def start(self, config_text):
        self.proc = Hubdns(config_text, env=PROXY_ENV, dns_port=self.dns_port)
        self.proc.health_port = self.health_port  # the text names its ports itself

    def write_config(self, config_text):
        self.proc.write_config(config_text)

    def stop(self):
        code = self.proc.stop()
        self.exit_codes.append(code)
        self.proc = None
        return code

    def kill(self):
        """SIGKILL: the VM goes away under the process (a reboot); nothing is drained."""
        self.proc.process.kill()
        self.proc.process.wait()
        self.proc.stderr_file.close()
        self.proc.dir.cleanup()
        self.proc = None

    def readyz(self):
        return curl(self.health_port, "/readyz", host=self.host)

    def status(self):
        code, _, body = curl(self.health_port, "/status", host=self.host)
        return json.loads(body) if code == 200 else None


class ReadyzWatcher:
    """Polls one instance's /readyz every `period` seconds on a thread of its own and records
    each change of the answer's status (0: no connection), to time hubdns's own reaction
    apart from the load balancer's."""

    def __init__(self, host, port, period=0.05):
        self.host, self.port, self.period = host, port, period
        self.changes = []  # (time.monotonic(), status)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        last = None
        while not self.stopping.is_set():
            try:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=1.0)
                conn.request("GET", "/readyz")
                code = conn.getresponse().status
                conn.close()
            except (OSError, http.client.HTTPException):
                code = 0
            if code != last:
                self.changes.append((time.monotonic(), code))
                last = code
            self.stopping.wait(self.period)

    def first(self, predicate, since):
        """When the status first satisfied predicate(status) at or after `since`, or None."""
        return next((t for t, code in self.changes if t >= since and predicate(code)), None)

    def stop(self):
        self.stopping.set()
        self.thread.join()


# Pauses of this process's garbage collector (the load balancer, the fakes and the clients
# all run in it), for failure messages: (start, seconds, generation), the long ones only.
GC_PAUSES = []
_gc_started = [0.0]


def _gc_callback(phase, info):
    if phase == "start":
        _gc_started[0] = time.monotonic()
    else:
        took = time.monotonic() - _gc_started[0]
        if took > 0.02:
            GC_PAUSES.append((_gc_started[0], took, info.get("generation")))


gc.callbacks.append(_gc_callback)


def wait_for(predicate, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)


def ms_text(value):
    return f"{value * 1000:.0f} ms"


# --------------------------------------------------------------------------------------


class LoadBalancerScenarios(unittest.TestCase):
    figures = []

    @classmethod
    def setUpClass(cls):
        cls.started = time.monotonic()
        specs = {f"azure{i}": dict(address=a, ttl=RECORD_TTL) for i, a in enumerate(AZURE_ADDRESSES)}
        specs["spoke"] = dict(address=SPOKE_ADDRESS, ttl=RECORD_TTL)
        specs.update({f"onprem{i}": dict(address=a, ttl=RECORD_TTL) for i, a in enumerate(ONPREM_ADDRESSES)})
        cls.remote = RemoteFakes(specs)  # first: forked while this process has one thread
        cls.azure = [cls.remote.fakes[f"azure{i}"] for i in range(len(AZURE_ADDRESSES))]
        cls.spoke = cls.remote.fakes["spoke"]
        cls.onprem = [cls.remote.fakes[f"onprem{i}"] for i in range(len(ONPREM_ADDRESSES))]
        cls.fakes = cls.azure + [cls.spoke] + cls.onprem
        names = [f"hubdns-vmss_{i}" for i in range(3)]
        cls.imds = FakeImdsFleet(names)
        cls.instances = [Instance(i, cls.azure[i], cls.imds.url(names[i])) for i in range(3)]
        with open(PRODUCTION_CONFIG) as f:
            cls.template = f.read()
        cls.lb = None
        try:
            cls._start_fleet()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _start_fleet(cls):
        for inst in cls.instances:
            inst.start(cls.config_for(inst))
        cls.lb_log = []
        frontend = ("127.0.0.10", free_port("127.0.0.10"))
        backends = [lbsim.Backend(name=inst.name, dns=(inst.host, inst.dns_port),
                                  probe_url=f"http://{inst.host}:{inst.health_port}/readyz")
                    for inst in cls.instances]
        cls.lb = lbsim.LoadBalancer(frontend, backends, interval=LB_INTERVAL, threshold=LB_THRESHOLD,
                                    timeout=LB_TIMEOUT, all_down="drop", log=cls._lb_log).start()
        cls.frontend = frontend
        for inst in cls.instances:
            assert wait_for(lambda: (inst.status() or {}).get("instance", {}).get("state") == "known", 10), \
                f"{inst.name}: instance metadata not known"

    @classmethod
    def _lb_log(cls, line):
        cls.lb_log.append(line)
        if os.environ.get("HUBDNS_E2E_VERBOSE"):
            print("lbsim:", line, file=sys.stderr, flush=True)

    @classmethod
    def tearDownClass(cls):
        if cls.lb is not None:
            cls.lb.close()
        codes = {}
        for inst in cls.instances:
            if inst.running():
                inst.stop()
            codes[inst.name] = inst.exit_codes
        cls.remote.close()
        cls.imds.close()
        print(f"\nE2E total {time.monotonic() - cls.started:.1f} s; figures:", file=sys.stderr)
        for line in cls.figures:
            print("  " + line, file=sys.stderr)
        bad = {name: c for name, c in codes.items() if any(code != 0 for code in c)}
        assert not bad, f"hubdns exit codes (0 expected for every stop): {bad}"

    @classmethod
    def config_for(cls, inst, onprem=None, drain_grace=DRAIN_GRACE, extra=None):
        onprem = onprem if onprem is not None else cls.onprem[:2]
        prod_forward = PRODUCTION["forward"]
        overrides = {
            ("server", "listen"): quoted_list([f"{inst.host}:{inst.dns_port}"]),
            ("server", "query_timeout"): ms(QUERY_TIMEOUT),
            ("server", "tcp_idle_timeout"): ms(seconds(PRODUCTION["server"]["tcp_idle_timeout"]) * SCALE),
            ("health", "listen"): quoted_list([f"{inst.host}:{inst.health_port}"]),
            ("health", "interval"): ms(H_INTERVAL),
            ("health", "timeout"): ms(H_TIMEOUT),
            ("lifecycle", "drain_grace"): ms(drain_grace),
            ("lifecycle", "metadata_url"): f'"{inst.imds_url}"',
            ("forward#0", "upstreams"): quoted_list([inst.azure.endpoint]),
            ("forward#1", "upstreams"): quoted_list([cls.spoke.endpoint]),
            ("forward#2", "upstreams"): quoted_list([u.endpoint for u in onprem]),
        }
        for i, rule in enumerate(prod_forward):
            overrides[(f"forward#{i}", "attempt_timeout")] = ms(seconds(rule["attempt_timeout"]) * SCALE)
        overrides.update(extra or {})
        return derive_config(cls.template, overrides)

    def setUp(self):
        for fake in self.fakes:
            fake.mode = "answer"
            fake.delay = 0.0
        self.remote.clear()  # what each scenario looks at is its own; keeps memory flat
        self.lb.set_all_down("drop")
        self.imds.set_events([])
        for inst in self.instances:
            if not inst.running():
                inst.start(self.config_for(inst))
        for inst in self.instances:
            self.assertTrue(wait_for(lambda: inst.readyz()[0] == 200, 15), f"{inst.name} not ready: {inst.readyz()}")
            self.assertIsNotNone(self.lb.wait_for(inst.name, UP, 15), f"{inst.name} not in the pool")
        # Non-critical upstreams do not hold readiness back: wait for them too, so that an
        # earlier scenario's outage (down until `rise` good probes) does not leak into this one.
        self.assertTrue(wait_for(self.all_upstreams_up, 15, step=0.1), "not every upstream is up")
        self.lb_log_mark = len(self.lb_log)

    def tearDown(self):
        self.load = None  # unittest keeps every TestCase: let the records go

    # ----------------------------------------------------------------------------------
    # Helpers

    def all_upstreams_up(self):
        for inst in self.instances:
            doc = inst.status() or {}
            zones = doc.get("zones", [])
            if not zones or any(z["upstreams_up"] != len(z["upstreams"]) for z in zones):
                return False
        return True

    def start_load(self):
        classes = [
            dnsload.NameClass("azure", AZURE_SUFFIX, weight=0.5, addresses=AZURE_ADDRESSES),
            dnsload.NameClass("spoke", ZONE_SPOKE, weight=0.25, addresses=[SPOKE_ADDRESS]),
            dnsload.NameClass("onprem", ZONE_ONPREM, weight=0.25, addresses=ONPREM_ADDRESSES),
        ]
        self.load = dnsload.SteadyLoad(self.frontend, classes, rate=RATE, tcp_share=0.05, hot_share=0.3,
                                       timeout=CLIENT_TIMEOUT)
        return self.load.start()

    def warm(self, klass):
        """Asks each instance directly for the class's hot names, so that each has them cached."""
        for inst in self.instances:
            for name in next(c for c in self.load.classes if c.name == klass).hot:
                answer = udp_exchange(inst.dns_port, build_query(name, edns_size=1232), host=inst.host)
                self.assertIsNotNone(answer, f"{inst.name}: no answer for {name}")
                self.assertEqual(answer[3] & 0x0F, 0, f"{inst.name}: {name}")

    def figure(self, scenario, text, **data):
        line = f"scenario {scenario}: {text}"
        print(f"\nFIGURE {line}", file=sys.stderr, flush=True)
        type(self).figures.append(line)
        path = os.environ.get("HUBDNS_E2E_RESULTS")
        if path:
            with open(path, "a") as f:
                f.write(json.dumps(dict(data, scenario=scenario, text=text,
                                        binary=os.environ.get("HUBDNS_BINARY", ""))) + "\n")

    def lb_events(self):
        return "\n".join(self.lb_log[self.lb_log_mark:])

    def explain(self, records, limit=15):
        """What a failure message shows: the failed queries, which fake upstreams saw each
        name (none: it never left hubdns), the load balancer's transitions, and the warnings
        and errors of each instance's log."""
        lines = []
        fakes = {f"azure{i}": f for i, f in enumerate(self.azure)}
        fakes.update({"spoke": self.spoke}, **{f"onprem{i}": f for i, f in enumerate(self.onprem)})
        for r in records[:limit]:
            name = r.name.lower() + "."
            seen = []
            for label, fake in fakes.items():
                hits = fake.arrivals(name)
                if hits:
                    seen.append(f"{label}: " + ", ".join(f"{transport} at +{(t - r.sent) * 1000:.0f} ms ({mode})"
                                                         for t, transport, mode in hits))
            lines.append(self.load.describe(r) + " | upstream saw it: " + ("; ".join(seen) or "no"))
        lines.append("--- garbage-collector pauses over 20 ms: " + (", ".join(
            f"{took * 1000:.0f} ms (gen {gen}) at {start:.3f}" for start, took, gen in GC_PAUSES) or "none"))
        lines.append("--- lbsim:")
        lines.append(self.lb_events())
        for inst in self.instances:
            if inst.proc is not None:
                log = [line for line in inst.proc.log().splitlines()
                       if line.startswith(("level=warn", "level=error"))]
                lines.append(f"--- {inst.name} log (warnings and errors, last 20):")
                lines.extend(log[-20:])
        return "\n".join(lines)

    # ----------------------------------------------------------------------------------
    # Scenarios

    def test_1_instance_that_loses_its_critical_upstream_leaves_the_pool(self):
        victim = self.instances[0]
        watcher = ReadyzWatcher(victim.host, victim.health_port)
        load = self.start_load()
        time.sleep(2.0)
        t0 = time.monotonic()
        victim.azure.mode = "drop"
        # hubdns: a health round may still count answers real traffic got just before t0
        # (passive evidence), so the first failing probe goes out within 2 intervals; fall
        # of them, each failing after the timeout. Then the load balancer: the next probe
        # within an interval, threshold probes in a row (503 is answered at once).
        not_ready_bound = (FALL + 1) * H_INTERVAL + H_TIMEOUT
        bound = not_ready_bound + LB_THRESHOLD * LB_INTERVAL
        left = self.lb.wait_for(victim.name, DOWN, bound + SLACK + 10, since=t0)
        self.assertIsNotNone(left, f"{victim.name} never left the pool\n{self.lb_events()}")
        not_ready_at = watcher.first(lambda code: code != 200, since=t0)
        # (A random extra wait: `left` is a probe instant, and the time back would otherwise
        # always be measured from the same phase of the probe cadence.)
        time.sleep(3.0 + random.uniform(0, LB_INTERVAL))
        t_restore = time.monotonic()
        victim.azure.mode = "answer"
        back = self.lb.wait_for(victim.name, UP, (RISE + 1) * H_INTERVAL + H_TIMEOUT
                                + LB_THRESHOLD * LB_INTERVAL + SLACK + 10, since=t_restore)
        time.sleep(1.0)
        load.stop()
        watcher.stop()

        detection = left.time - t0
        window = load.select(since=t0 - 0.1, until=left.time)
        after = load.select(since=left.time)
        failed_window = load.failures(window)
        failed_after = load.failures(after)
        # (A query sent a moment before t0 may reach the fake after it: 100 ms of margin.)
        before = load.failures(load.select(until=t0 - 0.1))
        # Only the victim's Azure DNS answers with its address: after it left, no new query
        # reached it (until it came back).
        reached_victim = [r for r in load.select(since=left.time, until=back.time if back else None)
                          if r.address == victim.azure.address]
        not_ready = (not_ready_at - t0) if not_ready_at is not None else float("nan")
        window_tally = dict(load.tally(failed_window)["*"])
        came_back = (f"back in the pool {back.time - t_restore:.2f} s after the upstream recovered"
                     if back else "never came back")
        self.figure(1, f"not ready after {not_ready:.2f} s (bound {not_ready_bound:.2f} s), "
                       f"left the pool after {detection:.2f} s (bound {bound:.2f} s + {SLACK:g} s allowance); "
                       f"{len(failed_window)} failed of {len(window)} in the window {window_tally}, "
                       f"{len(failed_after)} failed of {len(after)} after; {came_back}",
                    detection=detection, not_ready=not_ready, bound=bound,
                    failed_window=len(failed_window), window=len(window),
                    failed_after=len(failed_after), after=len(after),
                    back=(back.time - t_restore) if back else None)
        self.assertEqual(before, [], self.explain(before))
        self.assertLessEqual(not_ready, not_ready_bound + SLACK)
        self.assertLessEqual(detection, bound + SLACK, self.lb_events())
        self.assertEqual(failed_after, [], self.explain(failed_after))
        self.assertEqual(reached_victim, [], self.explain(reached_victim))
        self.assertIsNotNone(back, f"{victim.name} did not come back\n{self.lb_events()}")
        # The other two stayed in the pool throughout.
        others = [t for t in self.lb.transitions_of(since=t0) if t.backend != victim.name]
        self.assertEqual(others, [], self.lb_events())

    def test_2_onprem_down_for_all_keeps_every_instance_in_the_pool(self):
        load = self.start_load()
        time.sleep(1.0)
        self.warm("onprem")
        time.sleep(1.0)
        t0 = time.monotonic()
        for fake in self.onprem[:2]:
            fake.mode = "drop"  # the VPN / ExpressRoute link is down

        def onprem_down_everywhere():
            for inst in self.instances:
                doc = inst.status() or {}
                zone = next((z for z in doc.get("zones", []) if z["zone"] == ZONE_ONPREM), None)
                if zone is None or zone["upstreams_up"] != 0:
                    return False
            return True

        detect_bound = (FALL + 1) * H_INTERVAL + H_TIMEOUT
        self.assertTrue(wait_for(onprem_down_everywhere, detect_bound + SLACK + 10, step=0.1),
                        "hubdns did not mark the on-premises servers down")
        t_detect = time.monotonic()
        time.sleep(4.0)
        t_end = time.monotonic()
        for fake in self.onprem[:2]:
            fake.mode = "answer"
        # Back: rise good probes in a row, the first within an interval.
        recover_bound = (RISE + 1) * H_INTERVAL + H_TIMEOUT
        self.assertTrue(wait_for(self.all_upstreams_up, recover_bound + SLACK + 10, step=0.1),
                        "the on-premises servers were not marked up again")
        t_recovered = time.monotonic()
        time.sleep(1.5)
        load.stop()

        records = load.select()
        allowed = {"onprem": {"ok", "stale", "servfail"}}
        failed = load.failures(records, allowed)
        timeouts = [r for r in records if load.outcome(r) == "timeout"]
        # Once hubdns knows, the on-premises zone is answered at once: stale where cached,
        # SERVFAIL otherwise, without waiting for an attempt to time out.
        onprem_after = [r for r in load.select(since=t_detect, until=t_end, klass="onprem")]
        tally = load.tally(onprem_after)["onprem"]
        latencies = [r.latency() for r in onprem_after if r.latency() is not None]
        p50 = dnsload.percentile(latencies, 50)
        p95 = dnsload.percentile(latencies, 95)
        worst = max(latencies)
        others = load.select(klass="azure") + load.select(klass="spoke")
        transitions = self.lb.transitions_of(since=t0)
        # Once marked up again, the zone is answered normally.
        recovered = load.select(since=t_recovered, klass="onprem")
        recovered_failed = load.failures(recovered)
        self.figure(2, f"on-premises down marked on all 3 instances after {t_detect - t0:.2f} s "
                       f"(bound {detect_bound:.2f} s); {len(transitions)} pool changes; "
                       f"Azure and spoke names: {len(load.failures(others))} failed of {len(others)}; "
                       f"on-premises names afterwards: {tally['stale']} stale, {tally['servfail']} SERVFAIL, "
                       f"{tally['ok']} fresh, {tally['timeout']} timeouts, p50 {ms_text(p50)} "
                       f"p95 {ms_text(p95)} max {ms_text(worst)}; {len(timeouts)} client timeouts in all "
                       f"{len(records)}; answered again {t_recovered - t_end:.2f} s after the link came back "
                       f"(bound {recover_bound:.2f} s), then {len(recovered_failed)} failed of {len(recovered)}",
                    detect=t_detect - t0, pool_changes=len(transitions), failed=len(failed),
                    total=len(records), stale=tally["stale"], servfail=tally["servfail"],
                    p50=p50, p95=p95, max=worst)
        self.assertEqual(transitions, [], self.lb_events())
        self.assertEqual(failed, [], self.explain(failed))
        self.assertEqual(timeouts, [], self.explain(timeouts))
        self.assertEqual(recovered_failed, [], self.explain(recovered_failed))
        self.assertGreater(tally["stale"], 0, "no stale answer for cached on-premises names")
        self.assertGreater(tally["servfail"], 0, "no SERVFAIL for uncached on-premises names")
        # "At once": well under one attempt_timeout (what a query waits while hubdns still
        # tries the server); the largest value is printed, not asserted (one stall of a
        # loaded machine would fail it).
        onprem_attempt = seconds(PRODUCTION["forward"][2]["attempt_timeout"]) * SCALE
        self.assertLess(p95, onprem_attempt / 2, f"p95 {p95:.3f} s")

    def test_3_rolling_restart_with_sigterm_drain_loses_no_query(self):
        load = self.start_load()
        time.sleep(1.5)
        t0 = time.monotonic()
        steps = []
        for inst in self.instances:
            watcher = ReadyzWatcher(inst.host, inst.health_port)
            time.sleep(0.2)
            signalled = time.monotonic()
            inst.proc.process.send_signal(signal.SIGTERM)
            left = self.lb.wait_for(inst.name, DOWN, LB_NOTICE + SLACK + 10, since=signalled)
            self.assertIsNotNone(left, f"{inst.name} did not leave the pool\n{self.lb_events()}")
            inst.proc.process.wait(timeout=DRAIN_GRACE + 15)
            exited = time.monotonic()
            self.assertEqual(inst.stop(), 0)
            started = time.monotonic()
            inst.start(self.config_for(inst))
            back = self.lb.wait_for(inst.name, UP, LB_THRESHOLD * LB_INTERVAL + SLACK + 15, since=started)
            self.assertIsNotNone(back, f"{inst.name} did not come back\n{self.lb_events()}")
            watcher.stop()
            not_ready = watcher.first(lambda code: code != 200, since=signalled)
            steps.append((inst.name, left.time - signalled, exited - signalled, back.time - started,
                          not_ready - signalled))
        time.sleep(1.5)
        load.stop()
        records = load.select(since=t0)
        failed = load.failures(load.select())
        worst_left = max(s[1] for s in steps)
        self.figure(3, f"503 {', '.join(f'{s[4] * 1000:.0f}' for s in steps)} ms after SIGTERM, "
                       f"left the pool {', '.join(f'{s[1]:.2f}' for s in steps)} s after SIGTERM "
                       f"(bound {LB_NOTICE:.2f} s, drain_grace {DRAIN_GRACE:g} s), exited "
                       f"{', '.join(f'{s[2]:.2f}' for s in steps)} s after, back in the pool "
                       f"{', '.join(f'{s[3]:.2f}' for s in steps)} s after the restart; "
                       f"{len(failed)} failed of {len(load.select())} ({len(records)} during the restarts)",
                    steps=steps, failed=len(failed), total=len(load.select()))
        self.assertEqual(failed, [], self.explain(failed))
        for name, left, exited, _, _ in steps:
            self.assertLess(left, exited, f"{name}: exited before the load balancer took it out")
        self.assertLessEqual(worst_left, LB_NOTICE + SLACK)

    def test_4_scheduled_event_drains_the_instance_before_not_before(self):
        target = self.instances[1]
        watcher = ReadyzWatcher(target.host, target.health_port)
        load = self.start_load()
        time.sleep(1.5)
        # Azure gives 5 to 15 minutes of notice; scaled down here, but still more than the
        # drain (event noticed within about 1 s of polling, LB_NOTICE, then drain_grace).
        notice = 12.0
        not_before_wall = time.time() + notice
        not_before = time.monotonic() + notice
        scheduled = event("E2E-REBOOT-1", event_type="Reboot", resources=(target.name,))
        scheduled["NotBefore"] = email.utils.formatdate(not_before_wall, usegmt=True)
        published = time.monotonic()
        self.imds.set_events([scheduled])
        left = self.lb.wait_for(target.name, DOWN, notice + 5, since=published)
        self.assertIsNotNone(left, f"{target.name} did not leave the pool\n{self.lb_events()}")
        approval = wait_for(lambda: self.imds.approvals_for("E2E-REBOOT-1"), notice + 5)
        approved = approval[0][0] if approval else None
        # The platform: the reboot starts once approved, or at NotBefore.
        reboot_at = min(approved or not_before, not_before)
        time.sleep(max(0.0, reboot_at - time.monotonic()))
        rebooted = time.monotonic()
        target.kill()
        watcher.stop()
        draining = watcher.first(lambda code: code != 200, since=published)
        time.sleep(2.0)  # the VM is away
        self.imds.set_events([])
        target.start(self.config_for(target))
        back = self.lb.wait_for(target.name, UP, LB_THRESHOLD * LB_INTERVAL + SLACK + 15, since=rebooted)
        time.sleep(1.0)
        load.stop()
        failed = load.failures(load.select())
        others = [t for t in self.lb.transitions_of(since=published) if t.backend != target.name]
        self.figure(4, f"503 (draining) {draining - published:.2f} s after the event was published, "
                       f"left the pool {left.time - published:.2f} s after it, "
                       f"{not_before - left.time:.2f} s before NotBefore; approved (StartRequests) "
                       + (f"{approved - published:.2f} s after publication" if approved else "never")
                       + f"; rebooted (SIGKILL) at {rebooted - published:.2f} s; "
                       f"{len(failed)} failed of {len(load.select())}",
                    left=left.time - published, before_not_before=not_before - left.time,
                    approved=(approved - published) if approved else None, failed=len(failed),
                    total=len(load.select()))
        self.assertLess(left.time, not_before)
        self.assertIsNotNone(approved, "the event was never approved")
        self.assertLess(left.time, approved, "approved before the load balancer took the instance out")
        self.assertGreaterEqual(approved - left.time, 0.0)
        self.assertEqual(others, [], "another instance reacted to an event that was not for it\n"
                         + self.lb_events())
        self.assertEqual(failed, [], self.explain(failed))
        self.assertIsNotNone(back, f"{target.name} did not come back\n{self.lb_events()}")

    # After a Freeze the VM pauses for seconds and the same process carries on: once the
    # event is gone, hubdns ends the drain it started and the instance rejoins the pool
    # (until this was fixed, it stayed drained for good: docs/e2e.md, "Findings").
    def test_4b_instance_drained_for_a_freeze_returns_to_the_pool_after_it(self):
        target = self.instances[2]
        load = self.start_load()
        back = None
        try:
            time.sleep(1.0)
            freeze = event("E2E-FREEZE-1", event_type="Freeze", resources=(target.name,))
            freeze["NotBefore"] = email.utils.formatdate(time.time() + 10, usegmt=True)
            published = time.monotonic()
            self.imds.set_events([freeze])
            left = self.lb.wait_for(target.name, DOWN, 15, since=published)
            self.assertIsNotNone(left, f"{target.name} did not leave the pool\n{self.lb_events()}")
            approval = wait_for(lambda: self.imds.approvals_for("E2E-FREEZE-1"), 15)
            self.assertTrue(approval, "the Freeze was never approved")
            # The platform: the VM is paused for a few seconds, then runs on; the event is gone.
            target.proc.process.send_signal(signal.SIGSTOP)
            time.sleep(2.0)
            target.proc.process.send_signal(signal.SIGCONT)
            thawed = time.monotonic()
            self.imds.set_events([])
            # Back once hubdns sees the event gone (polled about once a second) and the load
            # balancer has threshold good probes.
            back_bound = 1.0 + LB_THRESHOLD * LB_INTERVAL
            back = self.lb.wait_for(target.name, UP, back_bound + SLACK + 5, since=thawed)
            time.sleep(1.0)
        finally:
            load.stop()
            if back is None and target.running():
                curl(target.health_port, "/undrain", method="POST", host=target.host)  # for what follows
        failed = load.failures(load.select())
        self.figure("4b", f"Freeze: left the pool {left.time - published:.2f} s after publication; "
                          + (f"back {back.time - thawed:.2f} s after the VM was thawed and the event gone"
                             if back else "still drained (503) 10 s after the freeze was over and the event gone")
                          + f"; {len(failed)} failed of {len(load.select())}",
                    back=(back.time - thawed) if back else None, failed=len(failed))
        self.assertEqual(failed, [], self.explain(failed))
        self.assertIsNotNone(back, f"{target.name} stays drained after the Freeze: {target.readyz()}")

    def test_5_sighup_reload_on_all_three_under_load(self):
        load = self.start_load()
        time.sleep(1.5)
        t0 = time.monotonic()
        generations = {inst.name: inst.status()["config"]["generation"] for inst in self.instances}
        # A real change: a third on-premises server and a longer stale TTL, then back.
        for step, onprem in enumerate((self.onprem, self.onprem[:2]), start=1):
            for inst in self.instances:
                extra = {("cache", "stale_answer_ttl"): '"45s"'} if step == 1 else None
                inst.write_config(self.config_for(inst, onprem=onprem, extra=extra))
            for inst in self.instances:
                inst.proc.process.send_signal(signal.SIGHUP)
            for inst in self.instances:
                want = generations[inst.name] + step
                self.assertTrue(wait_for(lambda: (inst.status() or {}).get("config", {}).get("generation") == want,
                                         10), f"{inst.name}: reload {step} not taken: {inst.status()}")
            if step == 1:
                self.assertTrue(wait_for(lambda: self.onprem[2].saw_qtype(6), 5),
                                "the added on-premises server was never probed")
            time.sleep(2.0)
        t_end = time.monotonic()
        load.stop()
        failed = load.failures(load.select())
        probe_failures = {inst.name: [p.detail for p in self.lb.probes_of(inst.name, since=t0) if not p.ok]
                          for inst in self.instances}
        transitions = self.lb.transitions_of(since=t0)
        reloads = {inst.name: inst.status()["config"]["reloads"] for inst in self.instances}
        self.figure(5, f"2 reloads x 3 instances in {t_end - t0:.1f} s: "
                       f"{sum(len(v) for v in probe_failures.values())} failed LB probes, "
                       f"{len(transitions)} pool changes, {len(failed)} failed of {len(load.select())}",
                    probe_failures=sum(len(v) for v in probe_failures.values()),
                    pool_changes=len(transitions), failed=len(failed), total=len(load.select()))
        for name, r in reloads.items():
            self.assertGreaterEqual(r["ok"], 2, f"{name}: {r}")
            self.assertTrue(r["last_ok"], f"{name}: {r}")
        self.assertEqual(transitions, [], self.lb_events())
        self.assertEqual(probe_failures, {inst.name: [] for inst in self.instances})
        self.assertEqual(failed, [], self.explain(failed))

    def test_6_azure_dns_down_for_all(self):
        self.lb.set_all_down("all")  # AllProbedUp: what a hubdns tier should configure
        load = self.start_load()
        time.sleep(1.0)
        self.warm("azure")
        time.sleep(1.0)
        t0 = time.monotonic()
        for fake in self.azure:
            fake.mode = "drop"
        lefts = [self.lb.wait_for(inst.name, DOWN,
                                  (FALL + 1) * H_INTERVAL + H_TIMEOUT + LB_THRESHOLD * LB_INTERVAL + SLACK + 10,
                                  since=t0)
                 for inst in self.instances]
        self.assertTrue(all(lefts), f"not every instance probed down\n{self.lb_events()}")
        t_all_down = max(t.time for t in lefts)
        time.sleep(4.0)
        # The same outage with Azure's default, AllProbedDown, for contrast.
        t_drop = time.monotonic()
        self.lb.set_all_down("drop")
        time.sleep(2.0)
        t_drop_end = time.monotonic()
        self.lb.set_all_down("all")
        for fake in self.azure:
            fake.mode = "answer"
        backs = [self.lb.wait_for(inst.name, UP, (RISE + 1) * H_INTERVAL + H_TIMEOUT
                                  + LB_THRESHOLD * LB_INTERVAL + SLACK + 10, since=t_drop_end)
                 for inst in self.instances]
        time.sleep(1.0)
        load.stop()

        allowed = {"azure": {"ok", "stale", "servfail"}}
        # (50 ms either side of the switches: a datagram sent just before one may be
        # handled by the load balancer just after it.)
        all_up_phase = load.select(until=t_drop - 0.05) + load.select(since=t_drop_end + 0.05)
        failed = load.failures(all_up_phase, allowed)
        outage = load.select(since=t_all_down, until=t_drop)
        tally = load.tally(outage)
        azure_lat = [r.latency() for r in outage if r.klass == "azure" and r.latency() is not None]
        p50, p95 = dnsload.percentile(azure_lat, 50), dnsload.percentile(azure_lat, 95)
        dropped = load.select(since=t_drop + 0.05, until=t_drop_end)
        dropped_timeouts = sum(1 for r in dropped if load.outcome(r) in ("timeout", "error"))
        self.figure(6, f"all 3 probed down {t_all_down - t0:.2f} s after Azure DNS went down; "
                       f"AllProbedUp: {len(failed)} failed of {len(all_up_phase)}; while all down: Azure names "
                       f"{tally['azure']['stale']} stale + {tally['azure']['servfail']} SERVFAIL "
                       f"(p50 {ms_text(p50)}, p95 {ms_text(p95)}), spoke/on-premises "
                       f"{tally['spoke']['ok'] + tally['onprem']['ok']} answered, "
                       f"{tally['*']['timeout']} timeouts; AllProbedDown for comparison: "
                       f"{dropped_timeouts} of {len(dropped)} black-holed",
                    all_down=t_all_down - t0, failed=len(failed), total=len(all_up_phase),
                    stale=tally["azure"]["stale"], servfail=tally["azure"]["servfail"], p50=p50, p95=p95,
                    blackholed=dropped_timeouts, blackholed_of=len(dropped))
        self.assertEqual(failed, [], self.explain(failed))
        self.assertGreater(tally["azure"]["stale"], 0, "cached Azure names were not answered stale")
        self.assertGreater(tally["azure"]["servfail"], 0, "uncached Azure names were not answered SERVFAIL")
        self.assertGreater(tally["spoke"]["ok"], 0)
        self.assertGreater(tally["onprem"]["ok"], 0)
        self.assertLess(p95, 0.5, f"Azure names not answered at once while all down: p95 {p95:.3f} s")
        # With AllProbedDown every client is black-holed: the reason to set AllProbedUp.
        self.assertGreater(dropped_timeouts, 0.9 * len(dropped))
        self.assertTrue(all(backs), f"not every instance came back\n{self.lb_events()}")


if __name__ == "__main__":
    unittest.main()
