#!/usr/bin/env python3
"""Soak: one hubdns instance under mixed load for a long bounded time (10 minutes by
default), with upstream faults switching, a reload every minute and a cache flush now and
then. Not part of the CI suite (too long); run it by hand before a release:

    python3 tests/soak/soak.py --binary build/daemon/hubdns --minutes 10

What it checks at the end, and prints along the way every 30 s:
- RSS flat: the mean of the last third of the samples is within 10 % (and 8 MiB) of the
  mean of the middle third (the first third is warm-up: cache filling);
- no file-descriptor leak: the count at the end is at most the count 30 s in (warm: the
  pooled upstream TCP connections of TCP clients are open) plus one per worker and
  upstream (connections that pool may still hold);
- counters consistent: every query dnsperf sent is counted by hubdns
  (hubdns_dns_queries_total grew by at least what dnsperf sent), in-flight and TCP
  client gauges back to 0, cache entries within max_entries, no query lost by dnsperf
  beyond the ones dropped on purpose (the "drop" fault with serve-stale off for its zone);
- the process is alive throughout and exits 0 on SIGTERM.

Traffic stays on loopback: the upstreams are fakes in this process.
"""

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402

CONFIG = """
[server]
listen = ["127.0.0.1:{{dns_port}}"]
workers = 2
query_timeout = "2s"
max_inflight = 2000
tcp_idle_timeout = "3s"
max_tcp_clients = 200

[health]
listen = ["127.0.0.1:{{health_port}}"]
interval = "1s"
timeout = "500ms"
rise = 2
fall = 2

[cache]
enabled = true
max_entries = {max_entries}
max_ttl = "20s"
stale_answer_ttl = "5s"

[lifecycle]
drain_grace = "0s"

[[forward]]
zone = "."
upstreams = ["{azure_a}", "{azure_b}"]
policy = "fastest"
critical = true
attempt_timeout = "700ms"

[[forward]]
zone = "onprem.example"
upstreams = ["{onprem}"]
critical = false
attempt_timeout = "700ms"
"""


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def metrics(port):
    code, _, body = harness.curl(port, "/metrics")
    values = {}
    if code != 200:
        return values
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def total(values, family):
    return sum(v for k, v in values.items() if k == family or k.startswith(family + "{"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default=os.environ.get("HUBDNS_BINARY", "build/daemon/hubdns"))
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=3000, help="dnsperf queries per second")
    parser.add_argument("--max-entries", type=int, default=20000)
    args = parser.parse_args()
    harness.BINARY = os.path.abspath(args.binary)
    seconds = int(args.minutes * 60)
    rng = random.Random(7)

    azure_a, azure_b = harness.PacedUpstream(0.001), harness.PacedUpstream(0.004)
    onprem = harness.PacedUpstream(0.002)
    upstreams = {"azure_a": azure_a, "azure_b": azure_b, "onprem": onprem}
    config = CONFIG.format(max_entries=args.max_entries, azure_a=azure_a.endpoint,
                           azure_b=azure_b.endpoint, onprem=onprem.endpoint)
    hubdns = harness.Hubdns(config)
    pid, health = hubdns.process.pid, hubdns.health_port
    harness.wait_until(lambda: harness.curl(health, "/readyz")[0] == 200, timeout=10)
    fds_warm = None
    before = metrics(health)

    # Names: a popular set (cache hits), a long tail (misses, evictions) and the on-premises
    # zone; 5 % AAAA.
    queries = tempfile.NamedTemporaryFile("w", prefix="hubdns-soak-", suffix=".txt", delete=False)
    for i in range(200000):
        roll = rng.random()
        if roll < 0.6:
            name = f"popular{rng.randrange(500)}.example.com"
        elif roll < 0.9:
            name = f"tail{rng.randrange(1000000)}.example.net"
        else:
            name = f"host{rng.randrange(2000)}.onprem.example"
        queries.write(f"{name} {'AAAA' if rng.random() < 0.05 else 'A'}\n")
    queries.close()

    dnsperf = subprocess.Popen(
        ["dnsperf", "-s", "127.0.0.1", "-p", str(hubdns.dns_port), "-d", queries.name, "-l", str(seconds),
         "-Q", str(args.rate), "-c", "8", "-t", "3", "-S", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    stop = threading.Event()
    tcp_results = {}  # dig status (None: no answer) -> count

    def tcp_client():
        n = 0
        while not stop.is_set():
            status, _, _ = harness.dig(hubdns.dns_port, f"popular{n % 500}.example.com", extra=["+tcp", "+time=3"])
            tcp_results[status] = tcp_results.get(status, 0) + 1
            n += 1
            stop.wait(0.2)

    threading.Thread(target=tcp_client, daemon=True).start()

    # Faults, switching every 20 s: one Azure upstream dropping, slow or SERVFAIL (the
    # other keeps the zone up), the on-premises server dropping (stale answers or SERVFAIL
    # for its zone), or everything healthy. A reload every 60 s, a cache flush every 90 s.
    faults = [("azure_a", "drop"), ("azure_b", "servfail"), ("onprem", "drop"), (None, None),
              ("azure_a", "slow"), ("onprem", "servfail"), (None, None)]
    samples = []
    started = time.time()
    next_fault, fault_index, next_report = started, 0, started + 30
    next_reload, next_flush = started + 60, started + 90
    alive = True
    while time.time() - started < seconds:
        now = time.time()
        if now >= next_fault:
            for upstream in upstreams.values():
                upstream.mode, upstream.delay = "answer", 0.001
            target, mode = faults[fault_index % len(faults)]
            if target:
                if mode == "slow":
                    upstreams[target].delay = 0.5
                else:
                    upstreams[target].mode = mode
            print(f"[{now - started:5.0f}s] fault: {target or 'none'} {mode or ''}", flush=True)
            fault_index += 1
            next_fault = now + 20
        if now >= next_reload:
            code, _, body = harness.curl(health, "/reload", method="POST")
            print(f"[{now - started:5.0f}s] reload: {code} {body.strip()[:80]}", flush=True)
            next_reload = now + 60
        if now >= next_flush:
            code, _, body = harness.curl(health, "/cache/flush", method="POST")
            print(f"[{now - started:5.0f}s] cache flush: {code} {body.strip()}", flush=True)
            next_flush = now + 90
        if hubdns.process.poll() is not None:
            alive = False
            print("hubdns died:\n" + hubdns.log()[-3000:], flush=True)
            break
        samples.append((now - started, harness.rss_kib(pid), fd_count(pid)))
        if fds_warm is None and now - started >= 30:
            fds_warm = samples[-1][2]
        if now >= next_report:
            m = metrics(health)
            print(f"[{now - started:5.0f}s] RSS {samples[-1][1]} KiB, fds {samples[-1][2]}, "
                  f"in flight {m.get('hubdns_dns_inflight_queries', -1):.0f}, "
                  f"cache entries {m.get('hubdns_cache_entries', -1):.0f}, "
                  f"queries {total(m, 'hubdns_dns_queries_total') - total(before, 'hubdns_dns_queries_total'):.0f}, "
                  f"ready {m.get('hubdns_ready', -1):.0f}", flush=True)
            next_report = now + 30
        time.sleep(1)

    out, _ = dnsperf.communicate(timeout=seconds + 60)
    stop.set()
    time.sleep(4)  # TCP idle timeout 3 s
    os.unlink(queries.name)
    failures = []
    if not alive:
        failures.append("hubdns died")
    sent = int(re.search(r"Queries sent:\s+(\d+)", out).group(1))
    completed = int(re.search(r"Queries completed:\s+(\d+)", out).group(1))
    lost = int(re.search(r"Queries lost:\s+(\d+)", out).group(1))
    codes = re.search(r"Response codes:\s+(.*)", out).group(1)
    after = metrics(health)
    counted = total(after, "hubdns_dns_queries_total") - total(before, "hubdns_dns_queries_total")
    third = max(1, len(samples) // 3)
    middle = sum(s[1] for s in samples[third:2 * third]) / max(1, len(samples[third:2 * third]))
    last = sum(s[1] for s in samples[2 * third:]) / max(1, len(samples[2 * third:]))
    fds_after = fd_count(pid)
    print(f"dnsperf: sent {sent}, completed {completed}, lost {lost}; codes {codes}")
    print(f"hubdns counted {counted:.0f} queries (dnsperf + TCP client + self-checks + loop probes)")
    print(f"TCP client: {tcp_results}")
    print(f"RSS mean: middle third {middle:.0f} KiB, last third {last:.0f} KiB; max {max(s[1] for s in samples)} KiB")
    pool_slack = 2 * len(upstreams)  # workers x upstreams
    print(f"fds: at 30 s {fds_warm}, at the end {fds_after} (allowed {fds_warm + pool_slack}), "
          f"max during {max(s[2] for s in samples)}")
    print(f"gauges after: in flight {after.get('hubdns_dns_inflight_queries')}, "
          f"TCP clients {after.get('hubdns_dns_tcp_clients')}, cache entries {after.get('hubdns_cache_entries')}")
    print(f"stale answers {total(after, 'hubdns_dns_stale_answers_total') - total(before, 'hubdns_dns_stale_answers_total'):.0f}, "
          f"SERVFAIL {total(after, 'hubdns_dns_servfail_total') - total(before, 'hubdns_dns_servfail_total'):.0f}, "
          f"reloads {total(after, 'hubdns_config_reloads_total'):.0f}")
    if counted < sent:
        failures.append(f"hubdns counted {counted:.0f} queries but dnsperf sent {sent}")
    # A query is "lost" to dnsperf only if nothing came back within 3 s; hubdns answers
    # every allowed query (SERVFAIL at worst) within query_timeout (2 s).
    if lost > sent * 0.0001:
        failures.append(f"dnsperf lost {lost} of {sent} queries")
    if last > middle * 1.10 and last - middle > 8 * 1024:
        failures.append(f"RSS grew: {middle:.0f} -> {last:.0f} KiB")
    if fds_after > fds_warm + pool_slack:
        failures.append(f"fd count {fds_warm} at 30 s -> {fds_after}")
    if after.get("hubdns_dns_inflight_queries") != 0 or after.get("hubdns_dns_tcp_clients") != 0:
        failures.append("gauges not back to 0")
    if after.get("hubdns_cache_entries", 0) > args.max_entries:
        failures.append("cache over max_entries")
    code = hubdns.stop()
    if code != 0:
        failures.append(f"exit code {code}")
    for upstream in upstreams.values():
        upstream.close()
    print("SOAK " + ("PASSED" if not failures else "FAILED: " + "; ".join(failures)))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
