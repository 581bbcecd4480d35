"""Benchmark: how long the SYNTHETIC phantom generator takes (speed belongs here, not in a timed test).

    python bench/phantoms.py                  # 200 images of 128 px, 5 repetitions
    python bench/phantoms.py --n 500 --size 256 --repeat 3

Prints the machine, the settings and the median / min / max seconds. The former unit test asked for
200 images of 128 px in under 3 s on the 2-core CI machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from sikd_core.data import phantom_arrays


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domain", default="vendor_b")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    times = []
    for i in range(args.repeat):
        t = time.perf_counter()
        phantom_arrays(args.domain, args.n, seed=i, size=args.size)
        times.append(time.perf_counter() - t)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"phantom_arrays({args.domain!r}, n={args.n}, size={args.size}) x{args.repeat}: "
          f"median {statistics.median(times):.3f} s, min {min(times):.3f} s, max {max(times):.3f} s")


if __name__ == "__main__":
    main()
