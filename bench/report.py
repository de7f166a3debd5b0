#!/usr/bin/env python3
"""Reads the measurements bench/run.sh wrote (WORKDIR/results.txt, one `key=value ...` line
per measurement, plus the dnsperf -v latency files it names) and prints the comparison
table as Markdown, with the hubdns/dnsdist ratios.

Usage: report.py WORKDIR
"""
import math
import os
import statistics
import sys

FWDS = ("hubdns", "dnsdist")


def parse(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            row = {}
            for tok in line.split():
                k, _, v = tok.partition("=")
                row[k] = v
            rows.append(row)
    return rows


def fnum(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def pct(sorted_vals, p):
    """Nearest-rank percentile."""
    if not sorted_vals:
        return float("nan")
    rank = math.ceil(p / 100.0 * len(sorted_vals))
    return sorted_vals[min(len(sorted_vals), max(1, rank)) - 1]


def latencies(files):
    vals, lost = [], 0
    for fn in files:
        if not os.path.exists(fn):
            continue
        with open(fn, errors="replace") as f:
            for line in f:
                if line.startswith("> "):
                    parts = line.split()
                    try:
                        vals.append(float(parts[-1]))
                    except (ValueError, IndexError):
                        pass
                elif line.startswith("[Timeout]"):
                    lost += 1
    vals.sort()
    return vals, lost


def fmt(v, digits=1):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def ratio(a, b):
    if a is None or b is None or math.isnan(a) or math.isnan(b) or b == 0:
        return "n/a"
    return f"{a / b:.2f}x"


def wall(r):
    """Wall time around a dnsperf run (older results: dnsperf's run time)."""
    return fnum(r.get("wall_s", r.get("runtime")))


def med(xs):
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.median(xs) if xs else float("nan")


def spread(xs, digits=1):
    xs = [x for x in xs if not math.isnan(x)]
    if len(xs) < 2:
        return ""
    return f" ({fmt(min(xs), digits)}–{fmt(max(xs), digits)})"


def main() -> int:
    workdir = sys.argv[1]
    rows = parse(os.path.join(workdir, "results.txt"))
    m = {f: collect(workdir, rows, f, "sat", "rate") for f in FWDS}
    h, k = m["hubdns"], m["dnsdist"]
    print_main_table(rows, h, k)
    print_floor(rows, h, k)
    print_syscalls(rows, m)
    print_cache(workdir, rows)
    print_readyz(rows)
    return 0


def collect(workdir, rows, f, sat_kind, rate_kind):
    """Per-round figures of one forwarder: saturation rounds of kind sat_kind, fixed-rate
    rounds of kind rate_kind, syscall counts."""
    sat = [r for r in rows if r.get("kind") == sat_kind and r.get("fwd") == f]
    rate = [r for r in rows if r.get("kind") == rate_kind and r.get("fwd") == f]
    sysr = {r.get("mode"): r for r in rows if r.get("kind") == "sys" and r.get("fwd") == f}
    d = {}
    d["rounds"] = len(sat)
    d["qps"] = [fnum(r["qps"]) for r in sat]
    d["cpu_us"] = [fnum(r["cpu_s"]) * 1e6 / fnum(r["queries"]) for r in sat if fnum(r["queries"]) > 0]
    d["soft_us"] = [fnum(r.get("soft0_s")) * 1e6 / fnum(r["queries"]) for r in sat if fnum(r["queries"]) > 0]
    d["util"] = [100.0 * fnum(r["cpu_s"]) / fnum(r["runtime"]) for r in sat if fnum(r["runtime"]) > 0]
    d["lost_sat"] = [100.0 * fnum(r["lost"]) / max(1.0, fnum(r["sent"])) for r in sat]
    d["other"] = [100.0 * fnum(r.get("other_s")) / wall(r) for r in sat if wall(r) > 0]
    # dnsperf's own life (start-up, reading the query file, waiting for the last
    # answers) is longer than its "Run time": divide by the wall time around it.
    d["load_util"] = [100.0 * (fnum(r.get("knot_s")) + fnum(r.get("dnsperf_s"))) / wall(r)
                      for r in sat if wall(r) > 0]
    d["rate_other"] = [100.0 * fnum(r.get("other_s")) / wall(r) for r in rate if wall(r) > 0]
    d["rate_cpu_us"] = [fnum(r["cpu_s"]) * 1e6 / fnum(r["queries"]) for r in rate if fnum(r["queries"]) > 0]
    d["rate_qps"] = [fnum(r["qps"]) for r in rate]
    lat, lost = latencies([os.path.join(workdir, r["latfile"]) for r in rate if "latfile" in r])
    d["lat_n"] = len(lat)
    d["lat_lost"] = lost
    d["p50"] = pct(lat, 50) * 1e6
    d["p99"] = pct(lat, 99) * 1e6
    d["p999"] = pct(lat, 99.9) * 1e6
    d["lat_max"] = (lat[-1] * 1e6) if lat else float("nan")
    d["sys"] = sysr
    for mode in ("sat", "rate"):
        r = sysr.get(mode)
        if r and fnum(r.get("queries")) > 0:
            d[f"sys_{mode}"] = fnum(r["total"]) / fnum(r["queries"])
        else:
            d[f"sys_{mode}"] = float("nan")
    return d


def print_main_table(rows, h, k):
    rate = next((r.get("rate") for r in rows if r.get("kind") == "rate"), "?")
    sys_rate = next((r["rate"] for r in rows if r.get("kind") == "sys" and r.get("mode") == "rate" and "rate" in r), rate)
    rounds = h["rounds"]
    lines = []
    lines.append(f"| measure | hubdns | dnsdist | hubdns/dnsdist |")
    lines.append(f"|---|---:|---:|---:|")

    def row(label, key, digits=1, per_round=True, show_ratio=True):
        hv = med(h[key]) if per_round else h[key]
        kv = med(k[key]) if per_round else k[key]
        hs = spread(h[key], digits) if per_round else ""
        ks = spread(k[key], digits) if per_round else ""
        rt = ratio(hv, kv) if show_ratio else ""
        lines.append(f"| {label} | {fmt(hv, digits)}{hs} | {fmt(kv, digits)}{ks} | {rt} |")

    row(f"queries/s at saturation (median of {rounds} rounds, range)", "qps", 0)
    row("CPU time per query at saturation, µs (forwarder process utime+stime)", "cpu_us", 2)
    row("softirq+irq time on the forwarder's CPU per query at saturation, µs (tick-sampled)", "soft_us", 2)
    row("forwarder CPU use at saturation, % of one core", "util", 0)
    row("load side (dnsperf + knotd) CPU use at saturation, % of one core", "load_util", 0, show_ratio=False)
    row("queries lost at saturation, %", "lost_sat", 3, show_ratio=False)
    row("noise: CPU used by other processes during the saturation rounds, % of one core", "other", 0, show_ratio=False)
    row("syscalls per query at saturation", "sys_sat", 2, per_round=False)
    row(f"syscalls per query at {sys_rate} q/s", "sys_rate", 2, per_round=False)
    row(f"CPU time per query at {rate} q/s, µs", "rate_cpu_us", 2)
    row(f"noise during the {rate} q/s rounds, % of one core", "rate_other", 0, show_ratio=False)
    row(f"latency p50 at {rate} q/s, µs", "p50", 0, per_round=False)
    row(f"latency p99 at {rate} q/s, µs", "p99", 0, per_round=False)
    row(f"latency p99.9 at {rate} q/s, µs", "p999", 0, per_round=False)
    row(f"latency max at {rate} q/s, µs", "lat_max", 0, per_round=False)
    lines.append(f"| latency samples / lost at {rate} q/s | {h['lat_n']:,} / {h['lat_lost']} | "
                 f"{k['lat_n']:,} / {k['lat_lost']} | |")
    print("\n".join(lines))


def print_floor(rows, h, k):
    # The floor: what the kernel alone costs per relayed query (bench/floor_relay.c).
    floor_sat = [r for r in rows if r.get("kind") == "sat" and r.get("fwd") == "floor"]
    floor_cpu = [fnum(r["cpu_s"]) * 1e6 / fnum(r["queries"]) for r in floor_sat if fnum(r["queries"]) > 0]
    if floor_cpu:
        fv, hv, kv = med(floor_cpu), med(h["cpu_us"]), med(k["cpu_us"])
        fq = med([fnum(r["qps"]) for r in floor_sat])
        print()
        print("The floor (bench/floor_relay.c: the same four datagrams per query with batched system calls, "
              "a connected upstream socket and no user-space work to speak of):")
        print()
        print("| measure | floor | floor/dnsdist | hubdns/floor | dnsdist/floor |")
        print("|---|---:|---:|---:|---:|")
        print(f"| CPU time per query at saturation, µs | {fmt(fv, 2)}{spread(floor_cpu, 2)} | {ratio(fv, kv)} | "
              f"{ratio(hv, fv)} | {ratio(kv, fv)} |")
        print(f"| queries/s at saturation | {fmt(fq, 0)} | {ratio(fq, med(k['qps']))} | {ratio(med(h['qps']), fq)} | "
              f"{ratio(med(k['qps']), fq)} |")



def print_syscalls(rows, m):
    # Syscall breakdown.
    sys_rate = next((r["rate"] for r in rows if r.get("kind") == "sys" and r.get("mode") == "rate" and "rate" in r), "?")
    print()
    method = next((r.get("method") for r in rows if r.get("kind") == "sys"), "none")
    print(f"Syscalls per query by name (method: {method}; 'other' = total minus the named ones):")
    print()
    names = set()
    for f in FWDS:
        for r in m[f]["sys"].values():
            names.update(k2[3:] for k2 in r if k2.startswith("sc_"))
    modes = [("sat", "saturation"), ("rate", f"{sys_rate} q/s")]
    hdr = "| syscall | " + " | ".join(f"{f} {lab}" for f in FWDS for _, lab in modes) + " |"
    print(hdr)
    print("|---|" + "---:|" * (len(FWDS) * len(modes)))

    def per_q(f, mode, name):
        r = m[f]["sys"].get(mode)
        if not r or fnum(r.get("queries")) <= 0:
            return float("nan")
        if name == "other":
            named = sum(fnum(v) for k2, v in r.items() if k2.startswith("sc_"))
            return (fnum(r["total"]) - named) / fnum(r["queries"])
        return fnum(r.get("sc_" + name, "0")) / fnum(r["queries"])

    shown = []
    for name in sorted(names):
        vals = [per_q(f, mo, name) for f in FWDS for mo, _ in modes]
        if any((not math.isnan(v)) and v >= 0.005 for v in vals):
            shown.append(name)
    for name in shown + ["other"]:
        vals = [per_q(f, mo, name) for f in FWDS for mo, _ in modes]
        print(f"| {name} | " + " | ".join(fmt(v, 3) for v in vals) + " |")
    print("| total | " + " | ".join(fmt(m[f][f'sys_{mo}'], 3) for f in FWDS for mo, _ in modes) + " |")
    qps_notes = []
    for f in FWDS:
        for mo, lab in modes:
            r = m[f]["sys"].get(mo)
            if r:
                qps_notes.append(f"{f} {lab}: {fmt(fnum(r.get('qps')), 0)} q/s")
    if qps_notes:
        print()
        print("(throughput during these counting rounds, with the counter attached: " + "; ".join(qps_notes) + ")")



def print_cache(workdir, rows):
    hc = collect(workdir, rows, "hubdns_cache", "csat", "crate")
    kc = collect(workdir, rows, "dnsdist_cache", "csat", "crate")
    if not hc["cpu_us"]:
        return
    fl = collect(workdir, rows, "floor_echo", "csat", "crate")
    rate = next((r.get("rate") for r in rows if r.get("kind") == "crate"), "?")
    print()
    print("The cache-hit path (every query answered from the cache; dnsdist with its packet cache):")
    print()
    print("| measure | hubdns | dnsdist | hubdns/dnsdist | floor_echo |")
    print("|---|---:|---:|---:|---:|")

    def row(label, key, digits=1, per_round=True, floor=True):
        hv = med(hc[key]) if per_round else hc[key]
        kv = med(kc[key]) if per_round else kc[key]
        fv = (med(fl[key]) if per_round else fl[key]) if floor else None
        hs = spread(hc[key], digits) if per_round else ""
        ks = spread(kc[key], digits) if per_round else ""
        fs = f"{fmt(fv, digits)}{spread(fl[key], digits) if per_round else ''}" if floor and fl[key] else ""
        print(f"| {label} | {fmt(hv, digits)}{hs} | {fmt(kv, digits)}{ks} | {ratio(hv, kv)} | {fs} |")

    row(f"queries/s at saturation (median of {hc['rounds']} rounds, range)", "qps", 0)
    row("CPU time per query at saturation, µs", "cpu_us", 2)
    row("forwarder CPU use at saturation, % of one core", "util", 0)
    row("queries lost at saturation, %", "lost_sat", 3)
    row("syscalls per query at saturation", "sys_sat", 2, per_round=False, floor=False)
    row(f"CPU time per query at {rate} q/s, µs", "rate_cpu_us", 2, floor=False)
    row(f"latency p50 at {rate} q/s, µs", "p50", 0, per_round=False, floor=False)
    row(f"latency p99 at {rate} q/s, µs", "p99", 0, per_round=False, floor=False)
    row(f"latency p99.9 at {rate} q/s, µs", "p999", 0, per_round=False, floor=False)
    print(f"| latency samples / lost at {rate} q/s | {hc['lat_n']:,} / {hc['lat_lost']} | "
          f"{kc['lat_n']:,} / {kc['lat_lost']} | | |")

    zipf = [r for r in rows if r.get("kind") == "zipf"]
    total = next((r for r in rows if r.get("kind") == "zipf_total"), None)
    if zipf and total:
        ups = [fnum(r["upstream"]) for r in zipf]
        clients = [fnum(r["clients"]) for r in zipf]
        last = ups[len(ups) // 2:]
        print()
        print(f"Upstream queries per second while clients send {total.get('rate')} q/s of a Zipf mix "
              f"over {total.get('names')} names (cache emptied at the start; Azure DNS drops beyond 1000/s):")
        print()
        print("| second | " + " | ".join(str(int(fnum(r["second"]))) for r in zipf) + " |")
        print("|---|" + "---:|" * len(zipf))
        print("| client q/s | " + " | ".join(fmt(v, 0) for v in clients) + " |")
        print("| upstream q/s | " + " | ".join(fmt(v, 0) for v in ups) + " |")
        print()
        print(f"Upstream: {fmt(sum(ups), 0)} queries for {fmt(sum(clients), 0)} client queries "
              f"({fmt(100.0 * sum(ups) / max(1.0, sum(clients)), 1)}%); peak {fmt(max(ups), 0)}/s (second "
              f"{1 + ups.index(max(ups))}), mean over the second half {fmt(sum(last) / max(1, len(last)), 0)}/s; "
              f"dnsperf: {fmt(fnum(total.get('qps')), 0)} q/s answered, {total.get('lost')} lost.")


def print_readyz(rows):
    rz = [r for r in rows if r.get("kind") == "readyz"]
    if rz:
        print()
        print("GET /readyz latency (sequential requests, a new TCP connection each; http_floor is the "
              "minimal responder on hubdns's CPU, the yardstick for what the scheduler allows):")
        print()
        print("| target | while | requests | 200 | failed | p50 ms | p90 ms | p99 ms | max ms |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in rz:
            print(f"| {r.get('target', 'hubdns')} | {r.get('phase', '?').replace('_', ' ')} | {r.get('count')} | "
                  f"{r.get('ok')} | {r.get('fail')} | {r.get('p50_ms')} | {r.get('p90_ms', 'n/a')} | "
                  f"{r.get('p99_ms')} | {r.get('max_ms')} |")
        for target in ("hubdns", "http_floor"):
            p99 = [fnum(r.get("p99_ms")) for r in rz if r.get("target") == target and r.get("phase") == "saturated"]
            if p99:
                print()
                print(f"{target}: p99 under saturation, median of {len(p99)} rounds: {fmt(med(p99), 3)} ms"
                      f"{spread(p99, 3)}")
        load = next((r for r in rows if r.get("kind") == "readyz_load"), None)
        if load:
            print()
            print(f"(dnsperf's rate against hubdns during the loaded rounds: {fmt(fnum(load.get('qps')), 0)} q/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
