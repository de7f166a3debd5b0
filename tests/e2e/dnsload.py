#!/usr/bin/env python3
"""A steady DNS client load for the end-to-end tests: the clients in the spokes behind the
load balancer. Python standard library only.

Queries go to one address (the load balancer's frontend) at a fixed rate, mostly over UDP
from a pool of sockets (each its own source port, so the load balancer's 5-tuple hash
spreads them over its backends) and some over TCP (a new connection per query, as stub
resolvers fall back to TCP). Each query is recorded (name class, hot or unique name,
transport, send time, answer time, rcode, first A address, whether it carried the Extended
DNS Error "Stale Answer"), so that a test can count, for any time window, the answers, the
SERVFAILs, the stale answers and the failures: no answer within the client's timeout, a
transport error, an unexpected rcode or address.

    python3 tests/e2e/dnsload.py --server 127.0.0.10:5353 --rate 200 --duration 10 \\
        --class azure=vm.hub.contoso.internal --class onprem=corp.contoso.com

prints a summary per class and outcome.
"""

import argparse
import collections
import os
import random
import selectors
import socket
import struct
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

# The integration harness's DNS wire helpers (also when run as a command from anywhere).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import encode_name  # noqa: E402

EDE_STALE_ANSWER = 3


def build_query(name, qid, qtype=1, edns_size=1232):
    msg = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 1 if edns_size else 0)
    msg += encode_name(name) + struct.pack("!HH", qtype, 1)
    if edns_size:
        msg += b"\0" + struct.pack("!HHIH", 41, edns_size, 0, 0)
    return msg


def _skip_name(msg, pos):
    while True:
        length = msg[pos]
        if length & 0xC0 == 0xC0:
            return pos + 2
        if length == 0:
            return pos + 1
        pos += 1 + length


def _read_name(msg, pos):
    labels = []
    while True:
        length = msg[pos]
        if length == 0:
            return ".".join(labels).lower() + "."
        if length & 0xC0:
            raise ValueError("compressed question")
        labels.append(msg[pos + 1:pos + 1 + length].decode("ascii", "replace"))
        pos += 1 + length


def parse_response(msg):
    """(id, rcode, qname, [A addresses], {EDE info codes}); raises ValueError if malformed."""
    try:
        qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", msg[:12])
        if not flags & 0x8000 or qd != 1:
            raise ValueError("not a response with one question")
        qname = _read_name(msg, 12)
        pos = _skip_name(msg, 12) + 4
        addresses, ede = [], set()
        for section, count in (("an", an), ("ns", ns), ("ar", ar)):
            for _ in range(count):
                pos = _skip_name(msg, pos)
                rtype, _, _, rdlen = struct.unpack("!HHIH", msg[pos:pos + 10])
                pos += 10
                rdata = msg[pos:pos + rdlen]
                if len(rdata) != rdlen:
                    raise ValueError("truncated record")
                pos += rdlen
                if section == "an" and rtype == 1 and rdlen == 4:
                    addresses.append(socket.inet_ntoa(rdata))
                elif section == "ar" and rtype == 41:
                    opt = 0
                    while opt + 4 <= len(rdata):
                        code, length = struct.unpack("!HH", rdata[opt:opt + 4])
                        if code == 15 and length >= 2:
                            ede.add(struct.unpack("!H", rdata[opt + 4:opt + 6])[0])
                        opt += 4 + length
        return qid, flags & 0x0F, qname, addresses, ede
    except (struct.error, IndexError) as exc:
        raise ValueError(str(exc)) from None


class Record:
    __slots__ = ("klass", "name", "hot", "transport", "sent", "answered", "rcode", "address",
                 "stale", "error")

    def __init__(self, klass, name, hot, transport):
        self.klass, self.name, self.hot, self.transport = klass, name, hot, transport
        self.sent = None
        self.answered = None
        self.rcode = None
        self.address = None
        self.stale = False
        self.error = None

    def latency(self):
        return None if self.answered is None else self.answered - self.sent


class NameClass:
    """Names under `suffix`, expected to be answered with one of `addresses` (empty: any)."""

    def __init__(self, name, suffix, weight=1.0, addresses=(), hot_names=10):
        self.name = name
        self.suffix = suffix.strip(".")
        self.weight = weight
        self.addresses = set(addresses)
        self.hot = [f"hot{i}.{self.suffix}" for i in range(hot_names)]


class SteadyLoad:
    """Sends `rate` queries a second to `server` until stop(); see the module docstring.

    classes: NameClass list. hot_share: the part of the queries that ask one of a class's few
    hot names (cached by the servers), the rest asks a new name each time. tcp_share: the
    part that goes over TCP. timeout: the client's patience per query (seconds)."""

    def __init__(self, server, classes, rate=150.0, tcp_share=0.05, hot_share=0.3, timeout=2.5,
                 sockets=64, source="127.0.0.1", seed=None):
        self.server = server
        self.classes = list(classes)
        self.rate = float(rate)
        self.tcp_share = tcp_share
        self.hot_share = hot_share
        self.timeout = timeout
        self.source = source
        self.random = random.Random(seed)
        self.records = []
        self.lock = threading.Lock()
        self.pending = {}  # (socket index, id) -> Record
        self.socks = []
        for _ in range(sockets):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((source, 0))
            s.setblocking(False)
            self.socks.append(s)
        self.next_id = [self.random.randrange(65536) for _ in self.socks]
        self.selector = selectors.DefaultSelector()
        for i, s in enumerate(self.socks):
            self.selector.register(s, selectors.EVENT_READ, i)
        self.tcp_pool = ThreadPoolExecutor(max_workers=48, thread_name_prefix="dnsload-tcp")
        self.stop_sending = threading.Event()
        self.stop_receiving = threading.Event()
        self.counter = 0
        self.sender = threading.Thread(target=self._send_loop, name="dnsload-send", daemon=True)
        self.receiver = threading.Thread(target=self._receive_loop, name="dnsload-recv", daemon=True)

    def start(self):
        self.receiver.start()
        self.sender.start()
        return self

    def stop(self):
        """Stops sending, waits out the client timeout for the last answers, closes."""
        self.stop_sending.set()
        self.sender.join()
        self.tcp_pool.shutdown(wait=True)  # each TCP query ends within the timeout
        deadline = time.monotonic() + self.timeout + 0.2
        while time.monotonic() < deadline:
            with self.lock:
                if not self.pending or all(time.monotonic() - r.sent > self.timeout + 0.1
                                           for r in self.pending.values()):
                    break
            time.sleep(0.05)
        self.stop_receiving.set()
        self.receiver.join()
        self.selector.close()
        for s in self.socks:
            s.close()
        return self

    # ---------------------------------------------------------------------------------

    def _choose(self):
        classes = self.classes
        klass = self.random.choices(classes, weights=[c.weight for c in classes])[0]
        hot = self.random.random() < self.hot_share
        if hot:
            name = self.random.choice(klass.hot)
        else:
            self.counter += 1
            name = f"q{self.counter}-{self.random.randrange(1 << 30):x}.{klass.suffix}"
        transport = "tcp" if self.random.random() < self.tcp_share else "udp"
        return Record(klass.name, name, hot, transport)

    def _send_loop(self):
        period = 1.0 / self.rate
        next_at = time.monotonic()
        index = 0
        while not self.stop_sending.is_set():
            record = self._choose()
            if record.transport == "tcp":
                self.tcp_pool.submit(self._tcp_query, record)
            else:
                index = (index + 1) % len(self.socks)
                self._udp_query(index, record)
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -1.0:  # fell far behind (a stalled machine): do not burst
                next_at = time.monotonic()

    def _udp_query(self, index, record):
        qid = self.next_id[index] = (self.next_id[index] + 1) & 0xFFFF
        msg = build_query(record.name, qid)
        with self.lock:
            record.sent = time.monotonic()
            self.records.append(record)
            self.pending[(index, qid)] = record
        try:
            self.socks[index].sendto(msg, self.server)
        except OSError as exc:
            record.error = f"send: {exc.strerror or exc}"

    def _receive_loop(self):
        while not self.stop_receiving.is_set():
            for key, _ in self.selector.select(timeout=0.1):
                index = key.data
                while True:
                    try:
                        data = self.socks[index].recv(65535)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    now = time.monotonic()
                    try:
                        qid, rcode, qname, addresses, ede = parse_response(data)
                    except ValueError:
                        continue
                    with self.lock:
                        record = self.pending.get((index, qid))
                        if record is None or record.name.lower() + "." != qname:
                            continue
                        del self.pending[(index, qid)]
                    self._fill(record, now, rcode, addresses, ede)

    @staticmethod
    def _fill(record, now, rcode, addresses, ede):
        record.rcode = rcode
        record.address = addresses[0] if addresses else None
        record.stale = EDE_STALE_ANSWER in ede
        record.answered = now

    def _tcp_query(self, record):
        qid = self.random.randrange(65536)
        msg = build_query(record.name, qid)
        with self.lock:
            record.sent = time.monotonic()
            self.records.append(record)
        deadline = record.sent + self.timeout
        try:
            with socket.create_connection(self.server, timeout=self.timeout,
                                          source_address=(self.source, 0)) as s:
                s.sendall(struct.pack("!H", len(msg)) + msg)
                buf = b""
                while len(buf) < 2 or len(buf) < 2 + struct.unpack("!H", buf[:2])[0]:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return  # timeout: no answer recorded
                    s.settimeout(remaining)
                    chunk = s.recv(65535)
                    if not chunk:
                        record.error = "tcp: closed without an answer"
                        return
                    buf += chunk
            now = time.monotonic()
            got_id, rcode, qname, addresses, ede = parse_response(buf[2:2 + struct.unpack("!H", buf[:2])[0]])
            if got_id != qid or qname != record.name.lower() + ".":
                record.error = "tcp: mismatched answer"
                return
            self._fill(record, now, rcode, addresses, ede)
        except socket.timeout:
            return
        except ValueError as exc:
            record.error = f"tcp: malformed answer ({exc})"
        except OSError as exc:
            record.error = f"tcp: {exc.strerror or exc}"

    # ---------------------------------------------------------------------------------
    # Judging

    def outcome(self, record):
        """ok | stale | servfail | timeout | error | rcodeN | wrong_address."""
        if record.error is not None:
            return "error"
        if record.answered is None or record.answered - record.sent > self.timeout:
            return "timeout"
        if record.rcode == 2:
            return "servfail"
        if record.rcode != 0:
            return f"rcode{record.rcode}"
        klass = next(c for c in self.classes if c.name == record.klass)
        if klass.addresses and record.address not in klass.addresses:
            return "wrong_address"
        return "stale" if record.stale else "ok"

    def select(self, since=None, until=None, klass=None, hot=None, transport=None):
        """Records sent in [since, until) (time.monotonic()), optionally of one class."""
        with self.lock:
            records = list(self.records)
        return [r for r in records
                if (since is None or r.sent >= since) and (until is None or r.sent < until)
                and (klass is None or r.klass == klass) and (hot is None or r.hot == hot)
                and (transport is None or r.transport == transport)]

    def tally(self, records):
        """{class: Counter(outcome)} plus "*" for all."""
        out = collections.defaultdict(collections.Counter)
        for r in records:
            o = self.outcome(r)
            out[r.klass][o] += 1
            out["*"][o] += 1
        return out

    def failures(self, records, allowed=None):
        """Records whose outcome is not allowed. allowed: {class: set of outcomes}; a class
        not named allows {"ok", "stale"} (an answer, fresh or stale, is not a failure)."""
        allowed = allowed or {}
        return [r for r in records if self.outcome(r) not in allowed.get(r.klass, {"ok", "stale"})]

    def describe(self, record):
        lat = record.latency()
        lat = f"{lat * 1000:.0f} ms" if lat is not None else "-"
        return (f"{self.outcome(record)} {record.transport} {record.name} sent {record.sent:.3f} "
                f"latency {lat} rcode {record.rcode} address {record.address} {record.error or ''}")


def percentile(values, p):
    values = sorted(values)
    if not values:
        return None
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def main(argv=None):
    parser = argparse.ArgumentParser(description="Steady DNS query load with a per-outcome summary.")
    parser.add_argument("--server", required=True, help="HOST:PORT")
    parser.add_argument("--rate", type=float, default=150)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--tcp-share", type=float, default=0.05)
    parser.add_argument("--hot-share", type=float, default=0.3)
    parser.add_argument("--timeout", type=float, default=2.5)
    parser.add_argument("--class", dest="classes", action="append", default=[],
                        help="NAME=SUFFIX (repeat); default: one class 'example' under example.com")
    args = parser.parse_args(argv)
    host, _, port = args.server.rpartition(":")
    classes = [NameClass(*c.split("=", 1)) for c in args.classes] or [NameClass("example", "example.com")]
    load = SteadyLoad((host, int(port)), classes, rate=args.rate, tcp_share=args.tcp_share,
                      hot_share=args.hot_share, timeout=args.timeout).start()
    time.sleep(args.duration)
    load.stop()
    records = load.select()
    for klass, counts in sorted(load.tally(records).items()):
        latencies = [r.latency() for r in records if (klass == "*" or r.klass == klass) and r.latency() is not None]
        p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
        lat = f" p50 {p50 * 1000:.1f} ms p99 {p99 * 1000:.1f} ms" if latencies else ""
        print(f"{klass}: {dict(counts)}{lat}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
