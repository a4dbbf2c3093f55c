#!/usr/bin/env python3
"""Samples a process once a second until it exits (or SIGTERM):
    sampler.py PID OUT.csv
Columns: epoch_s, rss_kb (VmRSS), cpu_ticks (utime+stime of the process, all threads),
machine_busy_ticks, machine_total_ticks (from /proc/stat, all CPUs; to see background load).
"""
import signal
import sys
import time


def proc_sample(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = next((int(l.split()[1]) for l in f if l.startswith("VmRSS:")), 0)
    with open(f"/proc/{pid}/stat") as f:
        # comm may contain spaces; fields after the closing paren start at field 3 (state)
        rest = f.read().rsplit(")", 1)[1].split()
    ticks = int(rest[11]) + int(rest[12])  # utime (14), stime (15)
    return rss, ticks


def machine():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    total = sum(v[:8])  # user nice system idle iowait irq softirq steal
    idle = v[3] + v[4]
    return total - idle, total


def main():
    pid, out = int(sys.argv[1]), sys.argv[2]
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    with open(out, "a", buffering=1) as f:
        nxt = time.time()
        while not stop:
            try:
                rss, ticks = proc_sample(pid)
            except (FileNotFoundError, ProcessLookupError, StopIteration):
                break
            busy, total = machine()
            f.write(f"{time.time():.3f},{rss},{ticks},{busy},{total}\n")
            nxt += 1.0
            time.sleep(max(0.0, nxt - time.time()))


if __name__ == "__main__":
    main()
