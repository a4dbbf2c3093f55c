#!/usr/bin/env python3
"""Waits for the machine to be quiet (it may be shared with other users):
    quiet.py ROOT_PID EXTRA_PID MAX_WAIT_S THRESHOLD_CORES
Measures, over 3 s windows, the CPU used by processes other than ROOT_PID's tree and EXTRA_PID
(the benchmark and its broker), until it is below THRESHOLD_CORES or MAX_WAIT_S have passed.
Prints the last measurement (cores) on stdout; progress on stderr.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sampler import machine, ours  # noqa: E402


def foreign(root, extra, secs=3.0):
    b0, t0 = machine()
    o0 = ours(root, extra)
    time.sleep(secs)
    b1, t1 = machine()
    o1 = ours(root, extra)
    d_ours = sum(t - o0.get(p, 0) if t >= o0.get(p, 0) else t for p, t in o1.items())
    return max(0.0, (b1 - b0 - d_ours) / max(1, t1 - t0) * (os.cpu_count() or 1))


def main():
    root, extra, max_wait, threshold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    deadline = time.time() + max_wait
    while True:
        f = foreign(root, extra)
        if f < threshold or time.time() >= deadline:
            print(f"{f:.2f}")
            return
        print(f"  other processes use {f:.2f} cores; waiting for < {threshold}", file=sys.stderr)
        time.sleep(2)


if __name__ == "__main__":
    main()
