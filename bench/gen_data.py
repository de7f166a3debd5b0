#!/usr/bin/env python3
"""Writes the benchmark's zone file and dnsperf query files (deterministic: fixed seed).

Usage: gen_data.py OUTDIR [--records N] [--queries N] [--nx-percent P]

OUTDIR/bench.test.zone   zone bench.test: SOA, NS, and N A records h0..h(N-1)
OUTDIR/queries.txt       dnsperf input: random A queries, P% of them for names that do
                         not exist (NXDOMAIN), the others for names of the zone
OUTDIR/one.txt           a single query, for start-up checks
OUTDIR/hits.txt          dnsperf input for the cache-hit rounds: 1,000 names of the zone,
                         each many times (after a warm-up every query is a cache hit)
OUTDIR/zipf.txt          dnsperf input for the upstream-rate round: names of the zone drawn
                         from a Zipf distribution (s = 1) over all N records, the usual shape
                         of real DNS traffic (a few names very often, a long tail rarely)
"""
import argparse
import os
import random


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--records", type=int, default=10000)
    ap.add_argument("--queries", type=int, default=100000)
    ap.add_argument("--nx-percent", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=20240501)
    args = ap.parse_args()

    os.makedirs(args.outdir, exist_ok=True)
    with open(os.path.join(args.outdir, "bench.test.zone"), "w") as f:
        f.write("$ORIGIN bench.test.\n$TTL 300\n")
        f.write("@ SOA ns.bench.test. hostmaster.bench.test. 1 3600 600 86400 300\n")
        f.write("@ NS ns\nns A 127.0.0.1\n")
        for i in range(args.records):
            # 10.0.0.0/8 addresses are zone data only: nothing is ever sent to them.
            f.write(f"h{i} A 10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}\n")

    rng = random.Random(args.seed)
    nx = args.nx_percent / 100.0
    with open(os.path.join(args.outdir, "queries.txt"), "w") as f:
        for _ in range(args.queries):
            if rng.random() < nx:
                f.write(f"nx{rng.randrange(10**7)}.bench.test A\n")
            else:
                f.write(f"h{rng.randrange(args.records)}.bench.test A\n")
    with open(os.path.join(args.outdir, "one.txt"), "w") as f:
        f.write("h1.bench.test A\n")
    with open(os.path.join(args.outdir, "hits.txt"), "w") as f:
        for _ in range(args.queries):
            f.write(f"h{rng.randrange(1000)}.bench.test A\n")
    # Zipf over the records by inverse transform sampling on the cumulative weights 1/k.
    weights = [1.0 / k for k in range(1, args.records + 1)]
    total = sum(weights)
    cumulative, running = [], 0.0
    for w in weights:
        running += w / total
        cumulative.append(running)
    import bisect
    ranks = list(range(args.records))
    rng.shuffle(ranks)  # which name is popular is random, not h0, h1, ...
    with open(os.path.join(args.outdir, "zipf.txt"), "w") as f:
        for _ in range(args.queries * 4):
            k = min(bisect.bisect_left(cumulative, rng.random()), args.records - 1)
            f.write(f"h{ranks[k]}.bench.test A\n")


if __name__ == "__main__":
    main()
