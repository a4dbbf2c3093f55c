#!/usr/bin/env python3
"""Samples a process once a second until it exits (or SIGTERM):
    sampler.py PID OUT.csv [OURS_ROOT_PID]
Columns: epoch_s, rss_kb (VmRSS of PID), cpu_ticks (utime+stime of PID, all threads),
machine_busy_ticks, machine_total_ticks (from /proc/stat, all CPUs), ours_ticks.
ours_ticks accumulates the CPU of PID and of OURS_ROOT_PID (the benchmark script) and all its
descendants (the clients), counting reaped children through cutime/cstime, so that
machine_busy - ours is the load of other users of the machine.
"""
import os
import signal
import sys
import time


def stat_of(pid, children=False):
    """ppid, utime+stime (+ cutime+cstime: CPU of children it has reaped, with children=True)"""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    ticks = int(rest[11]) + int(rest[12])
    if children:
        ticks += int(rest[13]) + int(rest[14])
    return int(rest[1]), ticks


def proc_sample(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = next((int(l.split()[1]) for l in f if l.startswith("VmRSS:")), 0)
    return rss, stat_of(pid)[1]


def machine():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    total = sum(v[:8])  # user nice system idle iowait irq softirq steal
    idle = v[3] + v[4]
    return total - idle, total


def ours(root, extra):
    """{pid: ticks} of extra and of every descendant of root."""
    procs = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                procs[int(d)] = stat_of(d, children=True)
            except (OSError, IndexError, ValueError):
                pass  # the process ended between listdir and the read: it has no CPU left to count
    children = {}
    for p, (pp, _) in procs.items():
        children.setdefault(pp, []).append(p)
    out, todo = {}, [root, extra]
    while todo:
        p = todo.pop()
        if p in procs and p not in out:
            out[p] = procs[p][1]
            todo.extend(children.get(p, []))
    return out


def main():
    pid, out = int(sys.argv[1]), sys.argv[2]
    root = int(sys.argv[3]) if len(sys.argv) > 3 else pid
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    prev, acc = {}, 0
    with open(out, "a", buffering=1) as f:
        nxt = time.time()
        while not stop:
            try:
                rss, ticks = proc_sample(pid)
            except (FileNotFoundError, ProcessLookupError, StopIteration):
                break
            busy, total = machine()
            cur = ours(root, pid)
            acc += sum(t - prev.get(p, 0) if t >= prev.get(p, 0) else t for p, t in cur.items())
            prev = cur
            f.write(f"{time.time():.3f},{rss},{ticks},{busy},{total},{acc}\n")
            nxt += 1.0
            time.sleep(max(0.0, nxt - time.time()))


if __name__ == "__main__":
    main()
