#!/usr/bin/env python3
"""lbsim: a small simulator of an Azure Standard internal load balancer in front of DNS servers.

It stands in for the load balancer of the reference architecture (hubdns instances in a
scale set behind a Standard ILB, UDP and TCP 53, HTTP probe of /readyz) so that the
end-to-end tests, and anyone at a terminal, can watch what clients behind the load balancer
would see. Python standard library only; one asyncio loop. Usable as a library (the e2e
tests start it on a thread) and as a command:

    python3 tests/e2e/lbsim.py --frontend 127.0.0.10:5353 \\
        --backend 127.0.0.11:5301,http://127.0.0.11:8301/readyz \\
        --backend 127.0.0.12:5302,http://127.0.0.12:8302/readyz \\
        --interval 5 --threshold 2 --all-down drop

What it models, after Azure's documentation of the Standard SKU (load-balancer-custom-probe-
overview, distribution-mode-concepts, the probeThreshold and noHealthyBackendsBehavior
properties of the probe); docs/e2e.md has the details and what is left out:

  * HTTP probe: GET <path> every `interval` (each backend on its own random phase, as the
    probes of a real load balancer are not synchronised with anything); healthy only on
    status 200 within the probe timeout (min(interval, --timeout)); any other status, a
    refused or reset connection or no answer in time is a failure.
  * probeThreshold: `threshold` consecutive failures take a backend out of the pool, the same
    number of consecutive successes put it back. A backend not yet probed is "unknown" (not
    in the pool) and enters on its first success (Azure: "successful once after the VM
    boots"). --non200-immediate takes a backend out on its first non-200 answer instead (one
    reading of the documentation's "marked down immediately" for HTTP status failures).
  * Distribution: 5-tuple hash (source IP and port, frontend IP and port, protocol) over the
    backends in the pool. Rendezvous hashing, so that a backend leaving the pool moves only its
    own flows.
  * UDP: no flow state decides where a datagram goes: each is hashed over the pool as it is
    now, so when a backend leaves, its flows move to the others at once (Azure: "UDP is
    connection-less ... existing UDP flows will move to another healthy instance"). Answers
    coming back from a backend are relayed to the client even after the backend left the pool
    (they are return traffic of a flow, not new flows); per (client, backend) relay sockets
    idle out after --udp-idle seconds.
  * TCP: the backend is chosen when the connection opens; an established connection stays on
    its backend even once that backend is probed down, until either side closes it (Standard
    SKU: "established TCP connections ... continue").
  * No backend in the pool: --all-down drop (AllProbedDown, Azure's default) drops UDP
    datagrams and leaves new TCP connections unanswered (accepted here, never read or
    answered, so the client times out as it would on an unanswered SYN); --all-down all
    (AllProbedUp) spreads new flows over every backend as if all were up.

Every probe-state change is logged with a monotonic timestamp and kept in `transitions`, so
that detection times can be measured; per-backend counters are kept in `stats()`.
"""

import argparse
import asyncio
import hashlib
import random
import signal
import socket
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

UP = "up"
DOWN = "down"
UNKNOWN = "unknown"

ALL_DOWN_MODES = {
    "drop": "AllProbedDown",  # Azure's default: no new flows when every backend is probed down
    "all": "AllProbedUp",     # new flows go to every backend when every backend is probed down
}


@dataclass
class Transition:
    """One probe-state change of one backend; `time` is time.monotonic()."""
    time: float
    backend: str
    old: str
    new: str
    detail: str


@dataclass
class ProbeResult:
    time: float  # when the probe ended (time.monotonic())
    ok: bool
    detail: str  # "200", "HTTP 503: draining", "timeout", "refused", ...


@dataclass
class Backend:
    """One backend pool member: where its DNS service is and what the probe asks."""
    name: str
    dns: tuple  # (host, port)
    probe_url: str
    state: str = UNKNOWN
    successes: int = 0   # consecutive
    failures: int = 0    # consecutive
    probes: list = field(default_factory=list)  # ProbeResult, most recent last (bounded)
    counters: dict = field(default_factory=lambda: {
        "probes_ok": 0, "probes_failed": 0,
        "udp_to_backend": 0, "udp_from_backend": 0, "udp_relay_sockets": 0, "udp_errors": 0,
        "udp_flows_moved_in": 0,
        "tcp_connections": 0, "tcp_active": 0, "tcp_connect_failures": 0,
    })

    def __post_init__(self):
        url = urllib.parse.urlsplit(self.probe_url)
        if url.scheme != "http" or not url.hostname:
            raise ValueError(f"probe URL must be http://HOST:PORT/PATH: {self.probe_url}")
        self.probe_host = url.hostname
        self.probe_port = url.port or 80
        self.probe_path = (url.path or "/") + (f"?{url.query}" if url.query else "")


def parse_hostport(text, default_port=None):
    """'127.0.0.1:53' -> ('127.0.0.1', 53); '[::1]:53' -> ('::1', 53)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            host, port = text, ""
    if not port:
        if default_port is None:
            raise ValueError(f"no port in {text!r}")
        port = default_port
    return host, int(port)


def flow_score(five_tuple, backend_name):
    digest = hashlib.blake2b(f"{five_tuple}|{backend_name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def pick_backend(five_tuple, candidates):
    """Rendezvous hash: the candidate with the highest score for this 5-tuple."""
    return max(candidates, key=lambda b: flow_score(five_tuple, b.name)) if candidates else None


class LoadBalancer:
    """The simulator. start() runs it on a thread of its own (library use); run() in the
    calling thread (the command). All times are time.monotonic()."""

    def __init__(self, frontend, backends, interval=5.0, threshold=2, timeout=None,
                 all_down="drop", udp_idle=60.0, non200_immediate=False, stagger=True,
                 source_host=None, log=None, tcp_blackhole_hold=60.0):
        if all_down not in ALL_DOWN_MODES:
            raise ValueError(f"all_down must be one of {sorted(ALL_DOWN_MODES)}")
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self.frontend = frontend
        self.backends = list(backends)
        self.by_name = {b.name: b for b in self.backends}
        self.interval = float(interval)
        # Azure: the probe must answer within min(interval, 30 s).
        self.timeout = min(self.interval, 30.0, float("inf") if timeout is None else float(timeout))
        self.threshold = int(threshold)
        self.all_down = all_down
        self.udp_idle = float(udp_idle)
        self.non200_immediate = non200_immediate
        self.stagger = stagger
        self.source_host = source_host if source_host is not None else frontend[0]
        self.tcp_blackhole_hold = tcp_blackhole_hold
        self.log = log or (lambda line: None)
        self.transitions = []  # Transition
        self.counters = {"udp_from_clients": 0, "udp_dropped_all_down": 0, "udp_to_clients": 0,
                         "tcp_accepted": 0, "tcp_blackholed": 0}
        self._cond = threading.Condition()
        self._udp_relays = {}      # (client addr, backend name) -> _UdpRelay
        self._udp_last_backend = {}  # client addr -> backend name of its last datagram
        self._loop = None
        self._thread = None
        self._ready = threading.Event()
        self._stopping = None
        self._start_error = None

    # ----------------------------------------------------------------------------------
    # Control (any thread)

    def start(self, timeout=10.0):
        """Runs the load balancer on a daemon thread; returns once the frontend listens."""
        self._thread = threading.Thread(target=self._thread_main, name="lbsim", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("lbsim did not start")
        if self._start_error is not None:
            raise self._start_error
        return self

    def close(self):
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=10)

    def set_all_down(self, mode):
        if mode not in ALL_DOWN_MODES:
            raise ValueError(mode)
        self.all_down = mode
        self.log(f"{time.monotonic():.3f} all-down behaviour: {mode} ({ALL_DOWN_MODES[mode]})")

    def state(self, name):
        with self._cond:
            return self.by_name[name].state

    def in_pool(self):
        with self._cond:
            return [b.name for b in self.backends if b.state == UP]

    def transitions_of(self, name=None, since=None):
        with self._cond:
            return [t for t in self.transitions
                    if (name is None or t.backend == name) and (since is None or t.time >= since)]

    def probes_of(self, name, since=None):
        with self._cond:
            return [p for p in self.by_name[name].probes if since is None or p.time >= since]

    def wait_for(self, name, state, timeout, since=None):
        """Waits until backend `name` is in `state` through a transition at or after `since`
        (at any time if None); returns that Transition, or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self.by_name[name].state == state:
                    last = next((t for t in reversed(self.transitions) if t.backend == name), None)
                    if last is not None and (since is None or last.time >= since):
                        return last
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def stats(self):
        with self._cond:
            return {
                "frontend": f"{self.frontend[0]}:{self.frontend[1]}",
                "all_down": self.all_down,
                "counters": dict(self.counters),
                "backends": {b.name: dict(b.counters, state=b.state) for b in self.backends},
                "udp_relays": len(self._udp_relays),
            }

    # ----------------------------------------------------------------------------------
    # The loop

    def _thread_main(self):
        try:
            asyncio.run(self._main())
        except Exception as exc:  # reported to start()
            self._start_error = exc
            self._ready.set()

    def run(self):
        """Runs in the calling thread until SIGINT/SIGTERM (the command)."""
        asyncio.run(self._main(install_signals=True))

    async def _main(self, install_signals=False):
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._loop.add_signal_handler(sig, self._stopping.set)
        family = socket.AF_INET6 if ":" in self.frontend[0] else socket.AF_INET
        self._udp = socket.socket(family, socket.SOCK_DGRAM)
        self._udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._udp.bind(self.frontend)
        self._udp.setblocking(False)
        self._loop.add_reader(self._udp.fileno(), self._on_client_datagram)
        server = await asyncio.start_server(self._on_tcp_client, self.frontend[0], self.frontend[1],
                                            reuse_address=True, backlog=512)
        tasks = [asyncio.create_task(self._probe_loop(b)) for b in self.backends]
        tasks.append(asyncio.create_task(self._sweep_loop()))
        self.log(f"{time.monotonic():.3f} listening on {self.frontend[0]}:{self.frontend[1]} (udp+tcp); "
                 f"probe interval {self.interval:g}s timeout {self.timeout:g}s threshold {self.threshold}; "
                 f"all-down {self.all_down} ({ALL_DOWN_MODES[self.all_down]})")
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            server.close()
            self._loop.remove_reader(self._udp.fileno())
            self._udp.close()
            for relay in list(self._udp_relays.values()):
                relay.close()
            self._udp_relays.clear()
            # Established TCP connections end with the process (or the thread).

    # ----------------------------------------------------------------------------------
    # Probes

    async def _probe_loop(self, b):
        if self.stagger:
            await asyncio.sleep(random.uniform(0, self.interval))
        next_at = self._loop.time()
        while True:
            ok, detail = await self._probe_once(b)
            self._record_probe(b, ok, detail)
            next_at += self.interval
            delay = next_at - self._loop.time()
            if delay < 0:  # the loop stalled: keep the cadence from now
                next_at = self._loop.time()
                delay = 0
            await asyncio.sleep(delay)

    async def _probe_once(self, b):
        writer = None
        try:
            async def exchange():
                nonlocal writer
                reader, writer = await asyncio.open_connection(b.probe_host, b.probe_port)
                host = f"[{b.probe_host}]" if ":" in b.probe_host else b.probe_host
                writer.write((f"GET {b.probe_path} HTTP/1.1\r\nHost: {host}:{b.probe_port}\r\n"
                              "User-Agent: Load Balancer Agent\r\nConnection: close\r\n\r\n").encode())
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
                parts = status_line.split()
                if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
                    return False, f"bad status line {status_line!r}"
                code = int(parts[1])
                if code == 200:
                    return True, "200"
                body = b""
                try:
                    body = await asyncio.wait_for(reader.read(512), 0.2)
                except (asyncio.TimeoutError, OSError):
                    pass
                reason = body.decode("utf-8", "replace").strip().replace("\n", "; ")
                return False, f"HTTP {code}" + (f": {reason}" if reason else "")
            return await asyncio.wait_for(exchange(), self.timeout)
        except asyncio.TimeoutError:
            return False, "timeout"
        except ConnectionRefusedError:
            return False, "refused"
        except ConnectionResetError:
            return False, "reset"
        except asyncio.IncompleteReadError:
            return False, "closed before an answer"
        except OSError as exc:
            return False, f"error: {exc.strerror or exc}"
        finally:
            if writer is not None:
                writer.close()

    def _record_probe(self, b, ok, detail):
        now = time.monotonic()
        with self._cond:
            b.probes.append(ProbeResult(now, ok, detail))
            del b.probes[:-2000]
            if ok:
                b.successes += 1
                b.failures = 0
                b.counters["probes_ok"] += 1
            else:
                b.failures += 1
                b.successes = 0
                b.counters["probes_failed"] += 1
            new = b.state
            if b.state == UNKNOWN:
                if ok:
                    new = UP
                elif b.failures >= self.threshold:
                    new = DOWN
            elif b.state == UP and not ok:
                if b.failures >= self.threshold or (self.non200_immediate and detail.startswith("HTTP ")):
                    new = DOWN
            elif b.state == DOWN and ok and b.successes >= self.threshold:
                new = UP
            if new != b.state:
                streak = b.successes if ok else b.failures
                t = Transition(now, b.name, b.state, new, f"{detail} (x{streak})")
                b.state = new
                self.transitions.append(t)
                self._cond.notify_all()
                self.log(f"{now:.3f} backend {b.name} {t.old} -> {t.new}: last probe {t.detail}; "
                         f"in pool: {[x.name for x in self.backends if x.state == UP]}")

    def _pool(self):
        """Where new flows go now: the probed-up backends, or per the all-down behaviour."""
        up = [b for b in self.backends if b.state == UP]
        if up:
            return up
        return list(self.backends) if self.all_down == "all" else []

    # ----------------------------------------------------------------------------------
    # UDP

    def _on_client_datagram(self):
        for _ in range(64):
            try:
                data, client = self._udp.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.counters["udp_from_clients"] += 1
            pool = self._pool()
            five_tuple = (client[0], client[1], self.frontend[0], self.frontend[1], 17)
            b = pick_backend(five_tuple, pool)
            if b is None:
                self.counters["udp_dropped_all_down"] += 1
                continue
            previous = self._udp_last_backend.get(client)
            if previous is not None and previous != b.name:
                b.counters["udp_flows_moved_in"] += 1
            self._udp_last_backend[client] = b.name
            relay = self._udp_relays.get((client, b.name))
            if relay is None:
                try:
                    relay = _UdpRelay(self, client, b)
                except OSError:
                    b.counters["udp_errors"] += 1
                    continue
                self._udp_relays[(client, b.name)] = relay
                b.counters["udp_relay_sockets"] += 1
            relay.send(data)

    def _to_client(self, client, data):
        try:
            self._udp.sendto(data, client)
            self.counters["udp_to_clients"] += 1
        except OSError:
            pass

    async def _sweep_loop(self):
        while True:
            await asyncio.sleep(min(1.0, self.udp_idle / 2))
            now = time.monotonic()
            for key, relay in list(self._udp_relays.items()):
                if now - relay.last_active > self.udp_idle:
                    relay.close()
                    del self._udp_relays[key]
                    if self._udp_last_backend.get(key[0]) == key[1]:
                        del self._udp_last_backend[key[0]]

    # ----------------------------------------------------------------------------------
    # TCP

    async def _on_tcp_client(self, client_reader, client_writer):
        try:
            await self._tcp_flow(client_reader, client_writer)
        except asyncio.CancelledError:  # the load balancer stops: connections end with it
            client_writer.transport.abort()

    async def _tcp_flow(self, client_reader, client_writer):
        self.counters["tcp_accepted"] += 1
        peer = client_writer.get_extra_info("peername")
        pool = self._pool()
        b = pick_backend((peer[0], peer[1], self.frontend[0], self.frontend[1], 6), pool)
        if b is None:
            # Like an unanswered SYN: nothing is read or answered; the client gives up.
            self.counters["tcp_blackholed"] += 1
            try:
                await asyncio.wait_for(client_reader.read(), self.tcp_blackhole_hold)
            except (asyncio.TimeoutError, OSError):
                pass
            client_writer.transport.abort()
            return
        try:
            backend_reader, backend_writer = await asyncio.wait_for(
                asyncio.open_connection(b.dns[0], b.dns[1], local_addr=(self.source_host, 0)), 3.0)
        except (OSError, asyncio.TimeoutError):
            b.counters["tcp_connect_failures"] += 1
            client_writer.transport.abort()  # a reset, as the backend's own would be
            return
        b.counters["tcp_connections"] += 1
        b.counters["tcp_active"] += 1
        try:
            await asyncio.gather(_splice(client_reader, backend_writer),
                                 _splice(backend_reader, client_writer))
        finally:
            b.counters["tcp_active"] -= 1
            for w in (client_writer, backend_writer):
                w.close()


async def _splice(reader, writer):
    """Copies until EOF, then half-closes the other side; a reset aborts both."""
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.transport.abort()


class _UdpRelay:
    """The socket one client's datagrams go to one backend from (a connected UDP socket, so
    only that backend's answers come back); answers are relayed to the client."""

    def __init__(self, lb, client, backend):
        self.lb = lb
        self.client = client
        self.backend = backend
        family = socket.AF_INET6 if ":" in backend.dns[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.sock.bind((lb.source_host, 0))
            self.sock.connect(backend.dns)
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise
        self.last_active = time.monotonic()
        lb._loop.add_reader(self.sock.fileno(), self._on_answer)

    def send(self, data):
        self.last_active = time.monotonic()
        try:
            self.sock.send(data)
            self.backend.counters["udp_to_backend"] += 1
        except OSError:
            self.backend.counters["udp_errors"] += 1

    def _on_answer(self):
        for _ in range(64):
            try:
                data = self.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ECONNREFUSED from an ICMP port unreachable
                self.backend.counters["udp_errors"] += 1
                return
            self.last_active = time.monotonic()
            self.backend.counters["udp_from_backend"] += 1
            self.lb._to_client(self.client, data)

    def close(self):
        try:
            self.lb._loop.remove_reader(self.sock.fileno())
        except (ValueError, OSError):
            pass
        self.sock.close()


# --------------------------------------------------------------------------------------
# The command


def parse_backend(text, index):
    """'DNSHOST:PORT,http://HOST:PORT/PATH[,NAME]' -> Backend."""
    parts = text.split(",")
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"--backend wants DNSADDR:PORT,PROBE_URL[,NAME]: {text}")
    name = parts[2] if len(parts) == 3 else f"backend{index}"
    return Backend(name=name, dns=parse_hostport(parts[0], 53), probe_url=parts[1])


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Simulate an Azure Standard internal load balancer (HTTP probes, 5-tuple hash, "
                    "UDP and TCP) in front of DNS servers.")
    parser.add_argument("--frontend", required=True, help="HOST:PORT to listen on (UDP and TCP)")
    parser.add_argument("--backend", action="append", required=True,
                        help="DNSHOST:PORT,http://HOST:PORT/readyz[,NAME] (repeat per backend)")
    parser.add_argument("--interval", type=float, default=5.0, help="probe interval, seconds (Azure: 5 to 120)")
    parser.add_argument("--threshold", type=int, default=1,
                        help="consecutive probe results to change state (probeThreshold)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="probe timeout, seconds (default and cap: min(interval, 30))")
    parser.add_argument("--all-down", choices=sorted(ALL_DOWN_MODES), default="drop",
                        help="drop = AllProbedDown (default), all = AllProbedUp")
    parser.add_argument("--non200-immediate", action="store_true",
                        help="a non-200 probe answer takes the backend out at once")
    parser.add_argument("--udp-idle", type=float, default=60.0, help="idle timeout of UDP relay sockets")
    parser.add_argument("--source", default=None, help="source address towards the backends (default: frontend's)")
    parser.add_argument("--stats", type=float, default=10.0, help="print counters every N seconds (0: never)")
    args = parser.parse_args(argv)
    backends = [parse_backend(text, i) for i, text in enumerate(args.backend)]
    started = time.monotonic()

    def log(line):
        print(line, file=sys.stderr, flush=True)

    lb = LoadBalancer(parse_hostport(args.frontend), backends, interval=args.interval,
                      threshold=args.threshold, timeout=args.timeout, all_down=args.all_down,
                      udp_idle=args.udp_idle, non200_immediate=args.non200_immediate,
                      source_host=args.source, log=log)
    if args.stats > 0:
        def report():
            while True:
                time.sleep(args.stats)
                s = lb.stats()
                per = "; ".join(f"{name}: {c['state']} udp {c['udp_to_backend']}/{c['udp_from_backend']} "
                                f"tcp {c['tcp_connections']} probes {c['probes_ok']}ok/{c['probes_failed']}fail"
                                for name, c in s["backends"].items())
                log(f"{time.monotonic() - started:8.1f}s {s['counters']} | {per}")
        threading.Thread(target=report, daemon=True).start()
    lb.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
