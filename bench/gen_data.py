#!/usr/bin/env python3
"""Writes the benchmark's zone file and dnsperf query files (deterministic: fixed seed).

Usage: gen_data.py OUTDIR [--records N] [--queries N] [--nx-percent P]

OUTDIR/bench.test.zone   zone bench.test: SOA, NS, and N A records h0..h(N-1)
OUTDIR/queries.txt       dnsperf input: random A queries, P% of them for names that do
                         not exist (NXDOMAIN), the others for names of the zone
OUTDIR/one.txt           a single query, for start-up checks
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


if __name__ == "__main__":
    main()
