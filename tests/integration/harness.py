"""Test harness for hubdns integration tests.

Starts the real hubdns binary (HUBDNS_BINARY) against fake upstream DNS servers on
loopback that the test controls, and talks to it with real clients (dig, kdig, curl).
Only loopback addresses are ever used. Python standard library only.
"""

import heapq
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

BINARY = os.environ.get("HUBDNS_BINARY", "hubdns")
SOURCE_DIR = os.environ.get(
    "HUBDNS_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
)


# --------------------------------------------------------------------------------------
# Ports


def free_port(host="127.0.0.1"):
    """A port that is free for both UDP and TCP on host right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        udp.bind((host, 0))
        port = udp.getsockname()[1]
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            tcp.bind((host, port))
        except OSError:
            continue
        finally:
            tcp.close()
            udp.close()
        return port
    raise RuntimeError("no free port")


def closed_port(host="127.0.0.1"):
    """A port with nothing bound on it (UDP and TCP), for "connection refused" cases. Drawn
    below the kernel's ephemeral range, so that no socket bound to port 0 elsewhere (a
    hubdns worker's upstream sockets, another test's server) can take it meanwhile."""
    import random
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(100):
        port = low - 1 - random.randrange(min(10000, low // 2))
        try:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                with socket.socket(family, kind) as s:
                    s.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no closed port")


# --------------------------------------------------------------------------------------
# DNS wire helpers (just enough for a fake upstream and raw-socket tests)


def encode_name(name):
    out = b""
    for label in name.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def build_query(name, qtype=1, qid=0x1234, rd=True, edns_size=None, do=False):
    flags = 0x0100 if rd else 0
    arcount = 1 if edns_size is not None else 0
    msg = struct.pack("!HHHHHH", qid, flags, 1, 0, 0, arcount)
    msg += encode_name(name) + struct.pack("!HH", qtype, 1)
    if edns_size is not None:
        msg += b"\0" + struct.pack("!HHIH", 41, edns_size, 0x8000 if do else 0, 0)
    return msg


def parse_question(msg):
    """Returns (id, flags, qname_wire, qtype, qclass, question_end) or None."""
    if len(msg) < 12:
        return None
    qid, flags, qdcount = struct.unpack("!HHH", msg[:6])
    if qdcount != 1:
        return None
    pos = 12
    while True:
        if pos >= len(msg):
            return None
        length = msg[pos]
        if length == 0:
            pos += 1
            break
        if length & 0xC0:
            return None
        pos += 1 + length
    if pos + 4 > len(msg):
        return None
    qtype, qclass = struct.unpack("!HH", msg[pos : pos + 4])
    return qid, flags, msg[12:pos], qtype, qclass, pos + 4


def wire_to_name(wire):
    labels = []
    pos = 0
    while wire[pos] != 0:
        labels.append(wire[pos + 1 : pos + 1 + wire[pos]].decode(errors="replace"))
        pos += 1 + wire[pos]
    return ".".join(labels) + "."


def rcode_of(msg):
    return msg[3] & 0x0F


def _query_opt(query, qend):
    """The DO bit of the query's OPT record (True/False), or None without EDNS. Only the
    simple shape hubdns sends upstream is understood: the OPT right after the question."""
    if len(query) < qend + 11 or struct.unpack("!H", query[10:12])[0] == 0:
        return None
    if query[qend] != 0 or struct.unpack("!H", query[qend + 1 : qend + 3])[0] != 41:
        return None
    return bool(struct.unpack("!H", query[qend + 7 : qend + 9])[0] & 0x8000)


def tcp_frames(conn):
    """The DNS messages a TCP connection carries (2-byte length prefix each), as they
    arrive, until the peer closes or the connection fails."""
    buf = b""
    while True:
        try:
            chunk = conn.recv(65535)
        except OSError:
            return
        if not chunk:
            return
        buf += chunk
        while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
            length = struct.unpack("!H", buf[:2])[0]
            message, buf = buf[2:2 + length], buf[2 + length:]
            yield message


class FakeUpstream:
    """A DNS server on loopback (UDP and TCP on the same port) whose behaviour the test sets.

    mode:
      "answer"   A record `address` (TTL `ttl`) for every A question; NOERROR/empty otherwise
      "drop"     never answer
      "servfail" answer SERVFAIL
      "refused"  answer REFUSED
      "truncate" over UDP answer with TC set and no records; over TCP answer normally
      "garbage"  answer random bytes
      "wrong_id" answer with the ID changed
      "nxdomain" NXDOMAIN with the zone's SOA in the authority section (TTL `soa_ttl`,
                 MINIMUM `soa_minimum`), as RFC 2308 negative answers are
      "nodata"   NOERROR, no answer, the same SOA
    A query with EDNS gets an OPT record back (UDP size 1232, its DO bit), as real servers do.
    delay: seconds to wait before answering.
    big_answer: number of A records to put in each answer (to exceed UDP limits).
    """

    def __init__(self, address="10.9.9.9", host="127.0.0.1", port=None, mode="answer",
                 ttl=300, big_answer=0, soa_ttl=3600, soa_minimum=60):
        self.host = host
        self.address = address
        self.mode = mode
        self.delay = 0.0
        self.ttl = ttl
        self.big_answer = big_answer
        self.soa_ttl = soa_ttl
        self.soa_minimum = soa_minimum
        self.queries = []  # (transport, name, qtype)
        self.records = []  # (transport, name, qtype, raw bytes, udp peer or None) per query
        self.tcp_connections = 0  # TCP connections accepted
        self.delays = {}  # lower-case name ("a.example.com.") -> seconds, over `delay`
        self.lock = threading.Lock()
        self.port = port or free_port(host)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.udp = socket.socket(family, socket.SOCK_DGRAM)
        self.udp.bind((host, self.port))
        self.tcp = socket.socket(family, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((host, self.port))
        self.tcp.listen(64)
        self.stopping = False
        self.threads = [
            threading.Thread(target=self._serve_udp, daemon=True),
            threading.Thread(target=self._serve_tcp, daemon=True),
        ]
        for t in self.threads:
            t.start()

    @property
    def endpoint(self):
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    # hubdns's health checks ask each upstream its zone's SOA (the rule's `probe`); the
    # tests' own queries never use SOA, so counting leaves the probes out. The same goes
    # for the forwarding-loop probes ("<token>._hubdns-loop.<zone>" TXT), once per upstream
    # at start.
    PROBE_QTYPE = 6
    LOOP_PROBE_LABEL = "._hubdns-loop."

    def _is_probe(self, name, qtype):
        return qtype == self.PROBE_QTYPE or self.LOOP_PROBE_LABEL in name

    def query_count(self, transport=None):
        with self.lock:
            return sum(1 for q in self.queries
                       if (transport is None or q[0] == transport) and not self._is_probe(q[1], q[2]))

    def client_queries(self):
        """(transport, name, qtype, raw bytes, udp peer or None) of each non-probe query."""
        with self.lock:
            return [q for q in self.records if not self._is_probe(q[1], q[2])]

    def loop_probes(self):
        """The names of the forwarding-loop probes that reached this upstream, in order."""
        with self.lock:
            return [q[1] for q in self.records if self.LOOP_PROBE_LABEL in q[1]]

    def close(self):
        self.stopping = True
        for s in (self.udp, self.tcp):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def answer_for(self, query, transport, peer=None):
        parsed = parse_question(query)
        if parsed is None:
            return None
        qid, flags, qname, qtype, qclass, qend = parsed
        with self.lock:
            name = wire_to_name(qname).lower()
            self.queries.append((transport, name, qtype))
            self.records.append((transport, name, qtype, bytes(query), peer))
        mode = self.mode
        if mode == "drop":
            return None
        if mode == "garbage":
            return os.urandom(40)
        rd = flags & 0x0100
        header_flags = 0x8000 | 0x0080 | rd
        answers = b""
        ancount = 0
        rcode = 0
        if mode == "servfail":
            rcode = 2
        elif mode == "refused":
            rcode = 5
        elif mode == "truncate" and transport == "udp":
            header_flags |= 0x0200
        elif qtype == 1:
            count = max(1, self.big_answer)
            for i in range(count):
                octets = [int(x) for x in self.address.split(".")]
                if count > 1:
                    octets[3] = (octets[3] + i) % 256
                answers += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, self.ttl, 4) + bytes(octets)
            ancount = count
        authority = b""
        nscount = 0
        if mode in ("nxdomain", "nodata"):
            rcode = 3 if mode == "nxdomain" else 0
            # SOA of the question's parent (good enough for a fake): MNAME, RNAME, 5 numbers.
            rdata = (encode_name("ns.fake.") + encode_name("hostmaster.fake.")
                     + struct.pack("!IIIII", 2024010101, 7200, 900, 1209600, self.soa_minimum))
            authority = b"\xc0\x0c" + struct.pack("!HHIH", 6, 1, self.soa_ttl, len(rdata)) + rdata
            nscount = 1
            answers, ancount = b"", 0
        header_flags |= rcode
        if mode == "wrong_id":
            qid ^= 0x5555
        additional, arcount = b"", 0
        opt = _query_opt(query, qend)
        if opt is not None:
            do_bit = opt
            additional = b"\x00" + struct.pack("!HHBBHH", 41, 1232, 0, 0, 0x8000 if do_bit else 0, 0)
            arcount = 1
        header = struct.pack("!HHHHHH", qid, header_flags, 1, ancount, nscount, arcount)
        return header + query[12:qend] + answers + authority + additional

    def _serve_udp(self):
        while not self.stopping:
            try:
                data, peer = self.udp.recvfrom(65535)
            except OSError:
                return
            threading.Thread(target=self._answer_udp, args=(data, peer), daemon=True).start()

    def delay_for(self, query):
        parsed = parse_question(query)
        if parsed is not None:
            name = wire_to_name(parsed[2]).lower()
            if name in self.delays:
                return self.delays[name]
        return self.delay

    def _answer_udp(self, data, peer):
        answer = self.answer_for(data, "udp", peer)
        if answer is None:
            return
        delay = self.delay_for(data)
        if delay:
            time.sleep(delay)
        try:
            self.udp.sendto(answer, peer)
        except OSError:
            pass

    def _serve_tcp(self):
        while not self.stopping:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            with self.lock:
                self.tcp_connections += 1
            threading.Thread(target=self._handle_tcp, args=(conn,), daemon=True).start()

    def _send_tcp_answer(self, conn, write_lock, answer, delay):
        if delay:
            time.sleep(delay)
        with write_lock:
            try:
                conn.sendall(struct.pack("!H", len(answer)) + answer)
            except OSError:
                pass

    def _handle_tcp(self, conn):
        write_lock = threading.Lock()
        with conn:
            for query in tcp_frames(conn):
                answer = self.answer_for(query, "tcp")
                if answer is None:
                    continue
                # Each answer on its own thread, after its own delay: answers to
                # pipelined queries leave in whatever order their delays give.
                threading.Thread(target=self._send_tcp_answer,
                                 args=(conn, write_lock, answer, self.delay_for(query)),
                                 daemon=True).start()


class PacedUpstream:
    """A UDP DNS server on loopback that answers every query after `delay` seconds with one
    A record (10.1.1.1), from a single thread: a timer queue instead of a thread per query
    (FakeUpstream's way), so it keeps its pace under a flood of tens of thousands of
    queries a second. TCP (same port, a thread per connection: TCP clients are few) answers
    the same way. For overload and attack tests; FakeUpstream for everything else."""

    def __init__(self, delay=0.0):
        self.delay = delay
        self.mode = "answer"
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.port = free_port()
        self.sock.bind(("127.0.0.1", self.port))
        self.endpoint = f"127.0.0.1:{self.port}"
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(64)
        self.received = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        threading.Thread(target=self._serve_tcp, daemon=True).start()

    def _serve_tcp(self):
        while not self.stopping:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            threading.Thread(target=self._answer_tcp, args=(conn,), daemon=True).start()

    def _answer_tcp(self, conn):
        with conn:
            for query in tcp_frames(conn):
                if self.stopping:
                    return
                if len(query) < 17:
                    continue
                self.received += 1
                time.sleep(self.delay)
                answer = self.answer(query)
                if answer is None:
                    continue
                try:
                    conn.sendall(struct.pack("!H", len(answer)) + answer)
                except OSError:
                    return

    def answer(self, query):
        """The answer to send, or None (mode "drop"). Header: same ID, QR and RA set, RD
        copied; the question as asked (hubdns checks it); then one A record for the
        question's name, 10.1.1.1 with TTL 300 (or nothing, with SERVFAIL)."""
        if self.mode == "drop":
            return None
        end = 12
        while end < len(query) and query[end] != 0:
            end += query[end] + 1
        question = query[12:end + 5]
        if self.mode == "servfail":
            flags = bytes([0x80 | (query[2] & 0x01), 0x82])
            return query[:2] + flags + b"\x00\x01\x00\x00\x00\x00\x00\x00" + question
        flags = bytes([0x80 | (query[2] & 0x01), 0x80])
        header = query[:2] + flags + b"\x00\x01\x00\x01\x00\x00\x00\x00"
        record = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04\x0a\x01\x01\x01"
        return header + question + record

    def _serve(self):
        due = []  # (time, sequence, answer, peer)
        sequence = 0
        while not self.stopping:
            timeout = max(0.0, due[0][0] - time.monotonic()) if due else 0.1
            readable, _, _ = select.select([self.sock], [], [], min(timeout, 0.1))
            if readable:
                for _ in range(256):  # drain what is queued, without blocking
                    try:
                        data, peer = self.sock.recvfrom(4096, socket.MSG_DONTWAIT)
                    except (BlockingIOError, OSError):
                        break
                    if len(data) < 17:
                        continue
                    self.received += 1
                    answer = self.answer(data)
                    if answer is None:
                        continue
                    sequence += 1
                    heapq.heappush(due, (time.monotonic() + self.delay, sequence, answer, peer))
            now = time.monotonic()
            while due and due[0][0] <= now:
                _, _, answer, peer = heapq.heappop(due)
                try:
                    self.sock.sendto(answer, peer)
                except OSError:
                    pass

    def close(self):
        self.stopping = True
        self.thread.join(timeout=2)
        self.sock.close()
        self.tcp.close()


# --------------------------------------------------------------------------------------
# The hubdns process


class Hubdns:
    """Runs the hubdns binary with a configuration written from `config_text`.

    The text may use {dns_port} and {health_port}, which are filled with free ports
    (dns_port: a given one instead, for instances that must know each other's port first).
    binary: another hubdns executable than HUBDNS_BINARY (the one a package installs, say).
    """

    def __init__(self, config_text, args=None, wait_ready=True, env=None, dns_port=None, binary=None):
        self.dns_port = dns_port or free_port()
        self.health_port = free_port()
        self.dir = tempfile.TemporaryDirectory(prefix="hubdns-test-")
        self.config_path = os.path.join(self.dir.name, "hubdns.toml")
        self.write_config(config_text)
        self.stderr_path = os.path.join(self.dir.name, "stderr.log")
        self.stderr_file = open(self.stderr_path, "w")
        cmd = [binary or BINARY, "--config", self.config_path] + (args or [])
        self.process = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=self.stderr_file, env=env
        )
        if wait_ready:
            self.wait_listening()

    def write_config(self, config_text):
        """(Re)writes the configuration file, with the same ports; a reload reads it."""
        text = config_text.format(dns_port=self.dns_port, health_port=self.health_port)
        # A stop drains for lifecycle.drain_grace (15 s by default) before it exits; tests
        # that do not set it stop at once (test_lifecycle.py tests the drain itself).
        if "drain_grace" not in text:
            if "[lifecycle]" in text:
                text = text.replace("[lifecycle]", '[lifecycle]\ndrain_grace = "0s"', 1)
            else:
                text += '\n[lifecycle]\ndrain_grace = "0s"\n'
        with open(self.config_path, "w") as f:
            f.write(text)

    def wait_listening(self, timeout=10.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"hubdns exited with {self.process.returncode}: {self.log()}")
            if "hubdns started" in self.log():
                return
            time.sleep(0.02)
        raise RuntimeError("hubdns did not start: " + self.log())

    def log(self):
        if not self.stderr_file.closed:
            self.stderr_file.flush()
        with open(self.stderr_path) as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise RuntimeError("hubdns did not stop on " + str(sig) + ": " + self.log())
        self.stderr_file.close()
        code = self.process.returncode
        if "did not close cleanly" in self.log():
            code = code or 99  # a leaked libuv handle at shutdown is a failure too
        if code != 0:
            # Keep the evidence (a sanitizer report, say) in the test's output.
            print(f"hubdns exited with {code}; its log:\n{self.log()}", file=sys.stderr)
        self.dir.cleanup()
        return code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.stop()


# --------------------------------------------------------------------------------------
# Real clients


class LoadClient:
    """Sends one UDP query every `interval` seconds (unique ID and name) until stopped, and
    records which got an answer with their ID."""

    def __init__(self, port, interval=0.004, name="load.example"):
        self.port = port
        self.interval = interval
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.sent = {}       # id -> send time
        self.answered = {}   # id -> (receive time, rcode)
        self.stop_sending = threading.Event()
        self.stop_receiving = threading.Event()
        self.lock = threading.Lock()
        self.sender = threading.Thread(target=self._send, daemon=True)
        self.receiver = threading.Thread(target=self._receive, daemon=True)
        self.receiver.start()
        self.sender.start()

    def _send(self):
        qid = 0
        while not self.stop_sending.is_set():
            qid = (qid + 1) & 0xFFFF
            with self.lock:
                self.sent[qid] = time.time()
            try:
                self.sock.sendto(build_query(f"q{qid}.{self.name}", qid=qid), ("127.0.0.1", self.port))
            except OSError:
                pass
            time.sleep(self.interval)

    def _receive(self):
        while not self.stop_receiving.is_set():
            try:
                data = self.sock.recv(4096)
            except (socket.timeout, OSError):
                continue
            if len(data) >= 4:
                qid = struct.unpack("!H", data[:2])[0]
                with self.lock:
                    self.answered[qid] = (time.time(), data[3] & 0x0F)

    def finish(self, wait=1.0):
        self.stop_sending.set()
        self.sender.join()
        time.sleep(wait)
        self.stop_receiving.set()
        self.receiver.join()
        self.sock.close()

    def unanswered(self):
        with self.lock:
            return sorted(set(self.sent) - set(self.answered))

    def answered_after(self, moment):
        with self.lock:
            return sum(1 for t, _ in self.answered.values() if t > moment)


def rss_kib(pid):
    """A process's resident set size in KiB (VmRSS of /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_until(predicate, timeout=5.0, step=0.05):
    """Polls predicate() until it is true or `timeout` seconds have passed; its last value."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def run(cmd, timeout=30, check=False):
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}): {result.stdout}{result.stderr}")
    return result


def response_status(out):
    """The first 'status: X' of dig or kdig output ('NOERROR', 'SERVFAIL', ...), or None."""
    for line in out.splitlines():
        if "status:" in line:
            return line.split("status:")[1].split(";")[0].split(",")[0].strip()
    return None


def dig_section(out, section):
    """The record lines of one section of dig's output ("ANSWER", "AUTHORITY", ...)."""
    lines, inside = [], False
    for line in out.splitlines():
        if line.startswith(f";; {section} SECTION"):
            inside = True
            continue
        if inside:
            if not line.strip():
                break
            lines.append(line)
    return lines


def dig(port, name, qtype="A", extra=(), server="127.0.0.1"):
    """Runs dig and returns (status, answers, full output). status is e.g. 'NOERROR'."""
    result = run(["dig", f"@{server}", "-p", str(port), name, qtype, "+tries=1", "+time=8",
                  *extra])
    out = result.stdout
    return response_status(out), [line.split()[-1] for line in dig_section(out, "ANSWER")], out


IN_PRIVATE_NAMESPACE = os.environ.get("HUBDNS_TEST_IN_NAMESPACE") == "1"


def rerun_in_private_network_namespace(test, test_name):
    """Runs `test_name` (module.Class) again with python in a private network namespace
    (unshare --net), where the test may give lo a non-loopback address without touching
    the host, and checks that it passed there. `test` is the calling TestCase."""
    if IN_PRIVATE_NAMESPACE:
        test.skipTest("inner run")
    env = dict(os.environ, HUBDNS_TEST_IN_NAMESPACE="1")
    result = subprocess.run(
        ["unshare", "--net", sys.executable, "-m", "unittest", "-v", test_name],
        capture_output=True, text=True, timeout=120, env=env,
        cwd=os.path.dirname(os.path.abspath(__file__)))
    sys.stderr.write(result.stderr)
    test.assertEqual(result.returncode, 0, result.stdout + result.stderr)
    test.assertIn("OK", result.stderr)
    test.assertNotIn("skipped", result.stderr)


def kdig(port, name, qtype="A", extra=(), server="127.0.0.1"):
    result = run(["kdig", f"@{server}", "-p", str(port), name, qtype, "+retry=0", "+time=8",
                  *extra])
    return response_status(result.stdout), result.stdout


def metric(port, name_and_labels):
    """The value of one sample of the real /metrics endpoint (curl), or None."""
    code, _, body = curl(port, "/metrics")
    if code != 200:
        return None
    for line in body.splitlines():
        if line.startswith(name_and_labels + " "):
            return float(line.split()[-1])
    return None


def curl(port, path, method="GET", extra=(), host="127.0.0.1"):
    """Returns (status_code, headers_text, body) using the real curl client."""
    # Bytes, not text: text mode would turn the CRLFs that separate head and body into LFs.
    result = subprocess.run(["curl", "-s", "-i", "-X", method, "--max-time", "5", *extra,
                             f"http://{host}:{port}{path}"], capture_output=True, timeout=30)
    raw = result.stdout.decode("utf-8", errors="replace")
    head, _, body = raw.partition("\r\n\r\n")
    status_line = head.split("\r\n")[0] if head else ""
    code = int(status_line.split()[1]) if status_line.startswith("HTTP/") else 0
    return code, head, body


def udp_exchange(port, payload, timeout=3.0, host="127.0.0.1"):
    """Sends raw bytes over UDP and returns the answer bytes or None on timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(payload, (host, port))
        try:
            return s.recv(65535)
        except socket.timeout:
            return None


BASE_CONFIG = """
[server]
listen = ["127.0.0.1:{{dns_port}}"]
workers = 2
query_timeout = "{query_timeout}"

[health]
listen = ["127.0.0.1:{{health_port}}"]

# The relay tests count what reaches the fake upstreams; the cache has tests of its own
# (test_cache.py), which turn it on.
[cache]
enabled = false

{forward}
"""


def config_with(forward, query_timeout="3s"):
    return BASE_CONFIG.format(forward=forward, query_timeout=query_timeout)
