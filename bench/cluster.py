#!/usr/bin/env python3
"""Cluster benchmark, one run on this machine: Stratus on MinIO with 1 and 3 brokers,
Stratus on a local directory, and Apache Kafka (single-node KRaft, default configs) as the
peer. Run it with bench/cluster.sh, which builds the release binary first.

Measured (Kafka's own tools, 1 KiB records, acks=all):
  produce      ProducerPerformance --throughput -1, 12 partitions: MiB/s
  latency      ProducerPerformance at a fixed rate: p50 / p99 ms
  e2e          EndToEndLatency: p50 / p99 ms
  failover     3 brokers on MinIO: kill -9 the owner of a partition; seconds until a write
               to that partition is acknowledged again
  move         `stratus admin move` of a partition under no load; seconds until the move
               returned and until a write to it is acknowledged
  puts         3 brokers on MinIO at a fixed rate, 100 and 1000 partitions: object PUTs per
               second and per GB written (WAL objects and sealed segments, from the brokers'
               logs)
  cost         request cost per GB written and read at S3 Standard list prices
Writes bench/results/cluster.md (and prints it). BENCH_SCALE scales record counts and
durations (0.3 for a smoke run)."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "clients"))
os.environ.setdefault("STRATUS_BIN", "/tmp/bench-target/release/stratus")

from cluster_infra import Infra, Cluster, free_port, free_port_pair  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
CACHE = Path(os.environ.get("STRATUS_CACHE", Path.home() / ".cache" / "stratus"))
KAFKA_CLI = str(REPO / "scripts" / "kafka-cli")
RECORD = 1024
PARTITIONS = 12
# S3 Standard, us-east-1 list prices.
PUT_PRICE = 0.005 / 1000
GET_PRICE = 0.0004 / 1000
BLOCK = 1 << 20  # cache.block.bytes: one ranged GET per MiB read from the object store
LOG_LEVEL = "info,stratus::wal=debug,stratus::maintenance=debug"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd, timeout=900):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    return r.stdout + r.stderr


def create(bootstrap, topic, partitions):
    a = AdminClient({"bootstrap.servers": bootstrap})
    for f in a.create_topics([NewTopic(topic, partitions, 1)]).values():
        f.result(30)
    deadline = time.time() + 30
    while time.time() < deadline:
        md = a.list_topics(topic, timeout=10).topics[topic]
        if md.partitions and all(p.leader >= 0 for p in md.partitions.values()):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{topic}: partitions without leader")


def producer_perf(bootstrap, topic, records, throughput, props=("linger.ms=5",)):
    out = run([KAFKA_CLI, "producer-perf", "--topic", topic, "--num-records", str(records),
               "--record-size", str(RECORD), "--throughput", str(throughput),
               "--command-property", f"bootstrap.servers={bootstrap}", "acks=all", *props])
    m = re.findall(r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
                   r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th", out)
    if not m:
        raise RuntimeError(f"producer-perf failed:\n{out[-2000:]}")
    sent, rps, mbs, avg, mx, p50, p95, p99 = m[-1]
    return {"mib_s": float(rps) * RECORD / (1 << 20), "p50": int(p50), "p99": int(p99), "records": int(sent)}


def e2e(bootstrap, topic, n):
    out = run([KAFKA_CLI, "e2e-latency", bootstrap, topic, str(n), "all", str(RECORD)])
    m = re.search(r"Percentiles: 50th = ([\d.]+), 99th = ([\d.]+)", out)
    if not m:
        raise RuntimeError(f"e2e-latency failed:\n{out[-2000:]}")
    return float(m.group(1)), float(m.group(2))


def suite(name, bootstrap):
    """Throughput, latency at a fixed rate and end-to-end latency against one target."""
    log(f"{name}: produce throughput")
    create(bootstrap, "bench-tp", PARTITIONS)
    producer_perf(bootstrap, "bench-tp", int(30000 * SCALE) + 2000, -1)  # warm-up (JIT, connections)
    tp = producer_perf(bootstrap, "bench-tp", int(150000 * SCALE) + 10000, -1)
    # Producers for object-storage brokers batch more (WarpStream and AutoMQ advise the
    # same): 1 MiB batches, 50 ms linger.
    big = producer_perf(bootstrap, "bench-tp", int(300000 * SCALE) + 10000, -1,
                        ("linger.ms=50", "batch.size=1048576", "max.request.size=10485760",
                         "buffer.memory=268435456"))
    log(f"{name}: {tp['mib_s']:.1f} MiB/s, {big['mib_s']:.1f} MiB/s with big batches; latency at a fixed rate")
    create(bootstrap, "bench-lat", PARTITIONS)
    lat = producer_perf(bootstrap, "bench-lat", int(100000 * SCALE) + 5000, 5000)
    log(f"{name}: p50 {lat['p50']} ms p99 {lat['p99']} ms; end-to-end")
    create(bootstrap, "bench-e2e", 1)
    # EndToEndLatency is sequential (one record at a time), so its count is kept small.
    e = e2e(bootstrap, "bench-e2e", max(300, int(1000 * SCALE)))
    log(f"{name}: e2e p50 {e[0]} p99 {e[1]}")
    return {"tp": tp, "big": big, "lat": lat, "e2e": e}


def count_puts(brokers):
    n = 0
    for b in brokers:
        try:
            text = b.log_path.read_text(errors="replace")
        except OSError:
            continue
        n += len(re.findall(r"wal flushed", text)) + len(re.findall(r"sealed segment", text))
    return n


class Kafka:
    def __init__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-kafka-"))
        self.port, self.cport = free_port(), free_port()
        self.proc = None

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        self.proc = subprocess.Popen(
            [str(REPO / "scripts" / "run-kafka.sh"), "--foreground", "--data-dir", str(self.tmp / "data"),
             "--port", str(self.port), "--controller-port", str(self.cport)],
            stdout=open(self.tmp / "kafka.log", "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=2).brokers:
                    return self
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.5)
        raise RuntimeError("Kafka did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def stratus_cluster(infra, n, name, local=False):
    settings = {"log.segment.bytes": str(8 << 20)}
    c = Cluster(infra, n, settings, name=name, admin=True)
    for b in c.brokers:
        b.extra_env["RUST_LOG"] = LOG_LEVEL
        if local:
            b.settings["metadata.store.url"] = "embedded"
            b.settings["object.store.url"] = ""
    return c.start()


def wait_ack(bootstrap, topic, partition, timeout=120):
    """Seconds until one record to `partition` is acknowledged."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": 2000,
                  "retry.backoff.ms": 20, "retry.backoff.max.ms": 100, "reconnect.backoff.ms": 20,
                  "reconnect.backoff.max.ms": 100, "topic.metadata.refresh.interval.ms": 200})
    t0 = time.time()
    done = []
    while time.time() - t0 < timeout:
        p.produce(topic, b"x", partition=partition, on_delivery=lambda e, m: done.append(e is None))
        p.flush(3)
        if done and done[-1]:
            return time.time() - t0
    raise RuntimeError("no acknowledgement")


def owner_of(bootstrap, topic, partition):
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return md.topics[topic].partitions[partition].leader


def failover_and_move(infra):
    c = stratus_cluster(infra, 3, "bench-failover")
    try:
        create(c.bootstrap, "bench-fo", PARTITIONS)
        wait_ack(c.bootstrap, "bench-fo", 0)
        victim = c.broker(owner_of(c.bootstrap, "bench-fo", 0))
        victim.kill(signal.SIGKILL)
        failover = wait_ack(c.bootstrap, "bench-fo", 0)
        log(f"failover: {failover:.2f} s (broker.session.timeout.ms={victim.settings['broker.session.timeout.ms']})")
        victim.start()
        time.sleep(3)
        owner = owner_of(c.bootstrap, "bench-fo", 1)
        target = next(b.node_id for b in c.brokers if b.node_id != owner)
        t0 = time.time()
        out = run([os.environ["STRATUS_BIN"], "admin", "--server", c.admin_address(target),
                   "move", "bench-fo", "1", str(target)])
        moved = time.time() - t0
        writable = wait_ack(c.bootstrap, "bench-fo", 1) + moved
        log(f"move: {out.strip()} in {moved:.2f} s, writable after {writable:.2f} s")
        return failover, moved, writable, victim.settings["broker.session.timeout.ms"]
    finally:
        c.cleanup()


def puts_per_partition_count(infra, partitions):
    c = stratus_cluster(infra, 3, f"bench-puts-{partitions}")
    try:
        create(c.bootstrap, "bench-puts", partitions)
        before = count_puts(c.brokers)
        t0 = time.time()
        r = producer_perf(c.bootstrap, "bench-puts", int(100000 * SCALE) + 5000, 5000)
        secs = time.time() - t0
        time.sleep(3)
        puts = count_puts(c.brokers) - before
        gb = r["records"] * RECORD / 1e9
        log(f"{partitions} partitions: {puts} PUTs in {secs:.1f} s for {gb:.3f} GB")
        return puts / secs, puts / gb
    finally:
        c.cleanup()


def main():
    if not Path(os.environ["STRATUS_BIN"]).exists():
        sys.exit(f"no Stratus binary at {os.environ['STRATUS_BIN']} (bench/cluster.sh builds it)")
    infra = Infra(CACHE)
    infra.start()
    results = {}
    try:
        k = Kafka().start()
        try:
            results["kafka"] = suite("kafka", k.bootstrap)
        finally:
            k.stop()
        for name, n, local in (("stratus-local", 1, True), ("stratus-minio-1", 1, False),
                               ("stratus-minio-3", 3, False)):
            c = stratus_cluster(infra, n, name, local=local)
            try:
                before = count_puts(c.brokers)
                results[name] = suite(name, c.bootstrap)
                results[name]["puts"] = count_puts(c.brokers) - before
            finally:
                c.cleanup()
        failover, moved, writable, lease = failover_and_move(infra)
        puts = {n: puts_per_partition_count(infra, n) for n in (100, 1000)}
    finally:
        infra.stop()
    report(results, failover, moved, writable, lease, puts)


def report(r, failover, moved, writable, lease, puts):
    k = r["kafka"]
    rows = []
    for name in ("stratus-local", "stratus-minio-1", "stratus-minio-3"):
        s = r[name]
        rows.append(f"| {name} | {s['tp']['mib_s']:.1f} | {s['tp']['mib_s'] / k['tp']['mib_s']:.2f}x | "
                    f"{s['big']['mib_s']:.1f} | {s['big']['mib_s'] / k['big']['mib_s']:.2f}x | "
                    f"{s['lat']['p50']} / {s['lat']['p99']} | {s['e2e'][0]:.0f} / {s['e2e'][1]:.0f} |")
    per_gb_100 = puts[100][1]
    read_gets_per_gb = 1e9 / BLOCK
    md = f"""# Cluster benchmark

Command: `bench/cluster.sh` (BENCH_SCALE={SCALE}), {time.strftime('%Y-%m-%d %H:%M')}, commit
{run(['git', '-C', str(REPO), 'rev-parse', '--short', 'HEAD']).strip()}, this 2-core machine; MinIO and etcd on
loopback (built from their Go modules), Apache Kafka 4.3.1 single-node KRaft with default
configs (no fsync) as the peer. 1 KiB records, acks=all, {PARTITIONS} partitions. "produce":
ProducerPerformance with linger.ms=5 and the default 16 KiB batches; "big batches": 1 MiB
batches and linger.ms=50. Latency at 5000 records/s (5 MiB/s). Stratus on MinIO flushes its
WAL every 100 ms (`wal.flush.interval.ms`, the s3:// default: the knob between PUT cost and
latency); on the local directory every 2 ms.

| target | produce MiB/s | ÷ Kafka | big batches MiB/s | ÷ Kafka | produce p50 / p99 ms | end-to-end p50 / p99 ms |
|---|---:|---:|---:|---:|---:|---:|
| kafka | {k['tp']['mib_s']:.1f} | 1.00x | {k['big']['mib_s']:.1f} | 1.00x | {k['lat']['p50']} / {k['lat']['p99']} | {k['e2e'][0]:.0f} / {k['e2e'][1]:.0f} |
{chr(10).join(rows)}

| cluster operation (3 brokers on MinIO) | seconds |
|---|---:|
| kill -9 of a partition's owner → the partition takes writes again (lease {lease} ms) | {failover:.2f} |
| planned move (`stratus admin move`) returns | {moved:.2f} |
| planned move → the partition takes writes again | {writable:.2f} |

| object PUTs at 5 MiB/s, 3 brokers | per second | per GB written |
|---|---:|---:|
| 100 partitions | {puts[100][0]:.1f} | {puts[100][1]:.0f} |
| 1000 partitions | {puts[1000][0]:.1f} | {puts[1000][1]:.0f} |

Cost at S3 Standard list prices (PUT $0.005 / 1000, GET $0.0004 / 1000; storage
$0.023 / GB-month is the same for any layout and not included):

| | requests per GB | $ per GB |
|---|---:|---:|
| written (WAL objects + sealed segments, 100 partitions) | {per_gb_100:.0f} PUTs | {per_gb_100 * PUT_PRICE:.4f} |
| read from the object store (1 MiB ranged GETs; reads served from the cache cost nothing) | {read_gets_per_gb:.0f} GETs | {read_gets_per_gb * GET_PRICE:.5f} |

PUTs are WAL objects (one per flush for all partitions of a broker) and sealed segments
(one per `segment.bytes` of a partition; 8 MiB here), counted from the brokers' logs.
"""
    out = REPO / "bench" / "results" / "cluster.md"
    out.write_text(md)
    print(md)


if __name__ == "__main__":
    main()
