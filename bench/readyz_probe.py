#!/usr/bin/env python3
"""Times sequential GET /readyz requests, one new TCP connection each (as a load balancer
probe does), and prints one line: count=N ok=N fail=N p50_ms=.. p99_ms=.. max_ms=..

Usage: readyz_probe.py HOST PORT [--count 200] [--timeout 2] [--deadline 30] [--path /readyz]

Bounded: at most --count requests, each at most --timeout seconds, all within --deadline.
Loopback only: HOST must be in 127.0.0.0/8.
"""
import argparse
import http.client
import ipaddress
import sys
import time


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    i = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[i]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--deadline", type=float, default=30.0)
    ap.add_argument("--path", default="/readyz")
    args = ap.parse_args()
    if not ipaddress.ip_address(args.host) in ipaddress.ip_network("127.0.0.0/8"):
        print("readyz_probe: loopback addresses only", file=sys.stderr)
        return 2

    times, ok, fail = [], 0, 0
    end = time.monotonic() + args.deadline
    for _ in range(args.count):
        if time.monotonic() > end:
            break
        t0 = time.perf_counter()
        try:
            c = http.client.HTTPConnection(args.host, args.port, timeout=args.timeout)
            c.request("GET", args.path)
            r = c.getresponse()
            r.read()
            c.close()
            dt = time.perf_counter() - t0
            times.append(dt * 1000.0)
            if r.status == 200:
                ok += 1
            else:
                fail += 1
        except (OSError, http.client.HTTPException):
            fail += 1
    times.sort()
    print(f"count={ok + fail} ok={ok} fail={fail} p50_ms={pct(times, 50):.3f} "
          f"p99_ms={pct(times, 99):.3f} max_ms={(times[-1] if times else float('nan')):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
