#!/usr/bin/env python3
"""Probe: Kafka's default producer (16 KiB batches, linger.ms=5, 5 requests in flight,
acks=all) at full speed (or RATE records/s) into one Stratus broker on MinIO and etcd (the
cluster benchmark's helpers, 12 partitions), RECORDS (default 300,000) records of 1 KiB after
a warm-up of 30,000. Prints the producer's MiB/s and latencies, the CPU seconds of the broker, MinIO and
the producer over the measured run, and the broker's WAL flushes: how many, their mean
size, the mean time of their PUT and commit stages, and the objects in flight when each
began.

    python3 bench/probes/produce_minio.py [--set k=v ...]   (run with the test venv's python;
                                                           STRATUS_BIN as the other probes)
    python3 bench/probes/produce_minio.py --kafka           Apache Kafka on its local disk,
                                                           the figure issue 14 compares with
    python3 bench/probes/produce_minio.py --https           MinIO over https (a CA of its own)
"""
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cold_minio import Target, metric, options, tree_cpu  # noqa: E402
import cluster as C  # noqa: E402  (cold_minio put bench/ on the path)

RECORDS = int(os.environ.get("RECORDS", "300000"))
# RATE (records/s; default -1, full speed): a fixed rate compares CPU per byte without the
# contention of a saturated machine.
RATE = int(os.environ.get("RATE", "-1"))


def wal(port):
    """Counters of the WAL flushes so far."""
    m = {}
    for name in ("stratus_wal_flushes_total", "stratus_wal_flush_size_bytes_sum",
                 "stratus_wal_flush_size_bytes_count"):
        m[name] = metric(port, name)
    for stage in ("put", "commit", "total"):
        m[f"{stage}_sum"] = metric(port, "stratus_wal_flush_time_seconds_sum", f'stage="{stage}"')
        m[f"{stage}_count"] = metric(port, "stratus_wal_flush_time_seconds_count", f'stage="{stage}"')
    m["puts"] = metric(port, "stratus_object_store_requests_total", 'operation="put"')
    return m


def main():
    sets, kafka, https = options(__doc__)
    with Target("probe-produce", sets, kafka, https) as t:
        bootstrap, b, pids = t.bootstrap, t.broker, t.pids
        C.create(bootstrap, "p", C.PARTITIONS)
        C.producer_perf(bootstrap, "p", 30000, -1)
        before = {n: tree_cpu(p) for n, p in pids.items()}
        w0 = None if kafka else wal(b.http_port)
        producer = [0.0]
        done = threading.Event()

        def watch():
            # The producer's JVM: the newest java process under kafka-cli.
            while not done.is_set():
                out = subprocess.run(["pgrep", "-n", "-f", "ProducerPerformance"], capture_output=True, text=True).stdout.split()
                if out:
                    producer[0] = max(producer[0], tree_cpu(int(out[0])))
                time.sleep(0.2)
        t = threading.Thread(target=watch)
        t.start()
        try:
            p = C.producer_perf(bootstrap, "p", RECORDS, RATE)
        finally:
            done.set()
            t.join()
        used = {n: tree_cpu(pid) - before[n] for n, pid in pids.items()}
        print(f"produce: {p['mib_s']:.1f} MiB/s, p50 {p['p50']} ms, p99 {p['p99']} ms; CPU s: "
              + ", ".join(f"{n} {v:.1f}" for n, v in used.items()) + f", producer {producer[0]:.1f}")
        if not kafka:
            w1 = wal(b.http_port)
            d = {key: w1[key] - w0[key] for key in w1}
            n = max(d["total_count"], 1)
            print(f"WAL: {d['total_count']:.0f} flushes of {d['stratus_wal_flush_size_bytes_sum'] / max(d['stratus_wal_flush_size_bytes_count'], 1) / 1024:.0f} KiB; "
                  f"mean put {d['put_sum'] / max(d['put_count'], 1) * 1000:.1f} ms, commit {d['commit_sum'] / max(d['commit_count'], 1) * 1000:.1f} ms, "
                  f"total {d['total_sum'] / n * 1000:.1f} ms; object PUTs {d['puts']:.0f}")


if __name__ == "__main__":
    main()
