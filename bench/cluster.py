#!/usr/bin/env python3
"""Cluster benchmark, on this machine: Stratus on MinIO with 1 and 3 brokers, Stratus on a
local directory, and Apache Kafka (single-node KRaft, default configs) as the peer, repeated
BENCH_REPEAT times (default 3). Run it with bench/cluster.sh, which builds the release binary
first.

Measured (Kafka's own tools, 1 KiB records, acks=all), the same record counts on every target:
  produce      ProducerPerformance --throughput -1, 12 partitions: MiB/s in its steady state
               (the same producer first sends tp_warm records, left out, while its JVM compiles)
  big batches  the same with 1 MiB batches and linger.ms=50 (big_warm records first)
  latency      ProducerPerformance at 5000 records/s (5 MiB/s): p50 / p99 ms
  e2e          EndToEndLatency: p50 / p99 ms
  cold         the produce topic (warm-up, produce and big batches: about 720 MiB) read back
               from the start by bench/AssignConsumerPerf.java after the broker's caches are
               dropped: Kafka's data files evicted from the page cache (evict.py); Stratus's
               brokers restarted (which empties their memory and disk caches) and MinIO's files
               evicted, so every byte comes from the object store: MiB/s over the whole read
               and over its last two thirds
  failover     3 brokers on MinIO: kill -9 the owner of a partition; seconds until a write
               to that partition is acknowledged again
  move         `stratus admin move` of a partition under no load; seconds until the move
               returned and until a write to it is acknowledged
  puts         3 brokers on MinIO at a fixed rate, 100 and 1000 partitions: object PUTs per
               second and per GB written (WAL objects and sealed segments, from the brokers'
               logs)
  cost         request cost per GB written and read at S3 Standard list prices
Each repetition runs every target on a fresh cluster (fresh data dirs, namespace and bucket
prefix), in alternating order (run 1: kafka, stratus-local, stratus-minio-1, stratus-minio-3;
run 2 the reverse; ...), then the failover/move and PUT measurements. Every figure is reported
as median [min–max] over the runs, with the Stratus ÷ Kafka ratio of the medians.

A run FAILS (no report) when a tool exits non-zero or times out, when a producer had fewer
records acknowledged than it sent, when a broker dies or logs a panic, or when a broker does
not report (DescribeConfigs) the settings it was given.

    cluster.py                    the benchmark (via bench/cluster.sh)
    cluster.py --render RAW.json  the report again from a run's raw results
    cluster.py --self-test        the report's arithmetic on synthetic results (no broker)

Writes bench/results/cluster.md (and prints it), and the raw results to
bench/results/cluster-last-run.json. BENCH_SCALE scales record counts (0.3 for a smoke run);
BENCH_REPEAT the repetitions."""

import gc
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO / "tests" / "clients"))
os.environ.setdefault("STRATUS_BIN", "/tmp/bench-target/release/stratus")
os.environ["STRATUS_TEST_TARGET"] = "stratus"  # the cluster helpers start Stratus, never Kafka, as "broker"

from report import BenchError, cell, fmt, ratio_cell, stratus_effective, tail  # noqa: E402

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
CACHE = Path(os.environ.get("STRATUS_CACHE", Path.home() / ".cache" / "stratus"))
KAFKA_CLI = str(REPO / "scripts" / "kafka-cli")
RECORD = 1024
PARTITIONS = 12
# S3 Standard, us-east-1 list prices.
PUT_PRICE = 0.005 / 1000
GET_PRICE = 0.0004 / 1000
BLOCK = 1 << 20  # cache.block.bytes: one ranged GET per MiB read from the object store
LOG_LEVEL = "info,stratus::wal=debug,stratus::upkeep=debug"
TARGETS = ("kafka", "stratus-local", "stratus-minio-1", "stratus-minio-3")
# Record counts: the same for every target and repetition.
COUNTS = {
    "warmup": int(30000 * SCALE) + 2000,
    "tp": int(150000 * SCALE) + 10000,
    "big": int(300000 * SCALE) + 10000,
    # Records a measured producer sends first and leaves out of its figure (its JVM compiles
    # the send path meanwhile: the C2 compiler thread took ~40 % of a core over the first
    # seconds of a cold producer, on a 2-core machine also running the brokers).
    "tp_warm": int(75000 * SCALE) + 5000,
    "big_warm": int(150000 * SCALE) + 5000,
    "lat": int(100000 * SCALE) + 5000,
    "e2e": max(300, int(1000 * SCALE)),
    "puts": int(100000 * SCALE) + 5000,
}
LAT_RATE = 5000
DEFAULT_PROPS = ("linger.ms=5",)
# Producers for object-storage brokers batch more (WarpStream and AutoMQ advise the same).
BIG_PROPS = ("linger.ms=50", "batch.size=1048576", "max.request.size=10485760", "buffer.memory=268435456")
SEGMENT_BYTES = 8 << 20
CLASSES = None  # java_tools(): where bench/*.java were compiled


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd, timeout=900):
    """Runs a tool; its output, or BenchError if it fails or times out."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        raise BenchError(f"{' '.join(cmd[:3])} timed out after {timeout} s:\n{tail(out)}") from None
    out = r.stdout + r.stderr
    if r.returncode != 0:
        raise BenchError(f"{' '.join(cmd[:3])} exited with status {r.returncode}:\n{tail(out, 25)}")
    return out


def create(bootstrap, topic, partitions):
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient({"bootstrap.servers": bootstrap})
    for f in a.create_topics([NewTopic(topic, partitions, 1)]).values():
        f.result(30)
    wait_leaders(bootstrap, topic, 30)


def producer_perf(bootstrap, topic, records, throughput, props=DEFAULT_PROPS, warmup=0):
    """ProducerPerformance's figures for `records`; with `warmup`, that many more are sent
    first by the same producer and left out (its steady-state line)."""
    extra = ["--warmup-records", str(warmup)] if warmup else []
    out = run([KAFKA_CLI, "producer-perf", "--topic", topic, "--num-records", str(records + warmup),
               "--record-size", str(RECORD), "--throughput", str(throughput), *extra,
               "--command-property", f"bootstrap.servers={bootstrap}", "acks=all", *props])
    steady = " steady state" if warmup else ""
    m = re.findall(rf"^(\d+){steady} records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
                   r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th", out, re.M)
    if not m:
        raise BenchError(f"producer-perf printed no summary:\n{tail(out)}")
    sent, rps, mbs, avg, mx, p50, p95, p99 = m[-1]
    if int(sent) != records:
        # ProducerPerformance counts only acknowledged records
        raise BenchError(f"producer-perf on {topic}: {sent} of {records} records acknowledged:\n{tail(out)}")
    return {"mib_s": float(rps) * RECORD / (1 << 20), "p50": int(p50), "p99": int(p99), "records": int(sent)}


def produced(c=COUNTS):
    """Records the produce tests leave in their topic (what the cold read reads)."""
    return c["warmup"] + c["tp"] + c.get("tp_warm", 0) + c["big"] + c.get("big_warm", 0)


def e2e(bootstrap, topic, n):
    out = run([KAFKA_CLI, "e2e-latency", bootstrap, topic, str(n), "all", str(RECORD)])
    m = re.search(r"Percentiles: 50th = ([\d.]+), 99th = ([\d.]+)", out)
    if not m:
        raise BenchError(f"e2e-latency printed no percentiles:\n{tail(out)}")
    return float(m.group(1)), float(m.group(2))


def healthy(brokers):
    """A Stratus broker that died on its own or logged a panic fails the run."""
    problems = [p for b in brokers for p in b.problems()]
    if problems:
        raise BenchError("\n".join(problems) + "\n" + brokers[0].log_tail(40))


def suite(name, bootstrap, brokers=(), drop_caches=None):
    """Throughput, latency at a fixed rate, end-to-end latency and a cold read against one
    target; drop_caches() empties its caches and returns its (new) bootstrap."""
    log(f"{name}: produce throughput")
    create(bootstrap, "bench-tp", PARTITIONS)
    producer_perf(bootstrap, "bench-tp", COUNTS["warmup"], -1)  # warm-up (the brokers' JIT, metadata)
    tp = producer_perf(bootstrap, "bench-tp", COUNTS["tp"], -1, warmup=COUNTS["tp_warm"])
    big = producer_perf(bootstrap, "bench-tp", COUNTS["big"], -1, BIG_PROPS, warmup=COUNTS["big_warm"])
    healthy(brokers)
    log(f"{name}: {tp['mib_s']:.1f} MiB/s, {big['mib_s']:.1f} MiB/s with big batches; latency at a fixed rate")
    create(bootstrap, "bench-lat", PARTITIONS)
    lat = producer_perf(bootstrap, "bench-lat", COUNTS["lat"], LAT_RATE)
    log(f"{name}: p50 {lat['p50']} ms p99 {lat['p99']} ms; end-to-end")
    create(bootstrap, "bench-e2e", 1)
    # EndToEndLatency is sequential (one record at a time), so its count is kept small.
    e = e2e(bootstrap, "bench-e2e", COUNTS["e2e"])
    healthy(brokers)
    log(f"{name}: e2e p50 {e[0]} p99 {e[1]}; dropping caches for the cold read")
    bootstrap = drop_caches()
    wait_leaders(bootstrap, "bench-tp")
    total = produced()
    cold = consume(bootstrap, "bench-tp", total)
    healthy(brokers)
    log(f"{name}: cold read {cold['mib_s']:.1f} MiB/s, last two thirds {cold['steady']:.1f} MiB/s")
    return {"tp": tp["mib_s"], "big": big["mib_s"], "lat_p50": lat["p50"], "lat_p99": lat["p99"],
            "e2e_p50": e[0], "e2e_p99": e[1], "cold": cold["mib_s"], "cold_steady": cold["steady"]}


def java_tools():
    """bench/AssignConsumerPerf.java compiled against Kafka's jars (once per run)."""
    global CLASSES
    if CLASSES is None:
        out = Path(tempfile.mkdtemp(prefix="bench-classes-"))
        run(["javac", "-nowarn", "-cp", f"{kafka_home()}/lib/*", "-d", str(out), str(BENCH / "AssignConsumerPerf.java")])
        CLASSES = out
    return ["java", "-Xmx1g", f"-Dlog4j2.configurationFile={kafka_home()}/config/log4j2.properties",
            "-cp", f"{CLASSES}:{kafka_home()}/lib/*"]


def consume(bootstrap, topic, records):
    """Every record of the topic, from the start, by one consumer assigned all partitions."""
    out = run([*java_tools(), "AssignConsumerPerf", bootstrap, topic, str(records), "15000"])
    m = re.search(r"^RESULT records=(\d+) bytes=(\d+) seconds=([\d.]+) MBps=([\d.]+) .*steady_MBps=([\d.]+)", out, re.M)
    if not m or int(m.group(1)) != records:
        raise BenchError(f"AssignConsumerPerf on {topic}: expected {records} records:\n{tail(out)}")
    return {"mib_s": float(m.group(4)), "steady": float(m.group(5))}


def evict(*dirs):
    """Drops the page cache of every file under dirs (bench/evict.py); fails if pages stay."""
    out = run([sys.executable, str(BENCH / "evict.py"), *map(str, dirs)], timeout=300)
    m = re.search(r"resident_before=(\d+) resident_after=(\d+)", out)
    if not m:
        raise BenchError(f"evict.py printed no summary:\n{tail(out)}")
    log(f"evicted: {int(m.group(1)) >> 20} MiB were resident, {int(m.group(2)) >> 20} MiB are")


def wait_leaders(bootstrap, topic, timeout=60):
    from confluent_kafka.admin import AdminClient
    a = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.time() + timeout
    while time.time() < deadline:
        md = a.list_topics(topic, timeout=10).topics[topic]
        if md.partitions and all(p.leader >= 0 for p in md.partitions.values()):
            return
        time.sleep(0.2)
    raise BenchError(f"{topic}: partitions without leader after {timeout} s")


def count_puts(brokers):
    n = 0
    for b in brokers:
        text = b.log_path.read_text(errors="replace")  # a missing log is an error, not 0 PUTs
        n += len(re.findall(r"wal flushed", text)) + len(re.findall(r"sealed segment", text))
    return n


def kafka_home():
    """The Kafka scripts/kafka-cli and run-kafka.sh use: KAFKA_HOME, else the newest kafka-* in the cache."""
    if os.environ.get("KAFKA_HOME"):
        return Path(os.environ["KAFKA_HOME"])
    homes = sorted(CACHE.glob("kafka-*/"), key=lambda p: [int(x) for x in re.findall(r"\d+", p.name)])
    return homes[-1] if homes else Path("kafka-?")


class Kafka:
    def __init__(self):
        from cluster_infra import free_port
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-kafka-"))
        self.port, self.cport = free_port(), free_port()
        self.proc = None

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient
        self.proc = subprocess.Popen(
            [str(REPO / "scripts" / "run-kafka.sh"), "--foreground", "--data-dir", str(self.tmp / "data"),
             "--port", str(self.port), "--controller-port", str(self.cport)],
            stdout=open(self.tmp / "kafka.log", "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"Kafka exited with {self.proc.returncode}:\n{tail((self.tmp / 'kafka.log').read_text(errors='replace'))}")
            try:
                if AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=2).brokers:
                    return self
            except KafkaException:  # not up yet
                pass
            time.sleep(0.5)
        raise BenchError("Kafka did not start within 90 s")

    def check(self):
        if self.proc.poll() is not None:
            raise BenchError(f"Kafka exited with {self.proc.returncode} during the test")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def target_settings(local):
    """The Stratus settings of a target besides those Cluster gives every broker."""
    s = {"log.segment.bytes": str(SEGMENT_BYTES)}
    if local:
        s["metadata.store.url"] = "embedded"
        s["object.store.url"] = ""
    return s


def stratus_cluster(infra, n, name, local=False, settings=None):
    from cluster_infra import Cluster
    c = Cluster(infra, n, {**target_settings(local), **(settings or {})}, name=name, admin=True)
    for b in c.brokers:
        if b.target != "stratus":
            raise BenchError(f"the cluster helpers would start {b.target}, not Stratus")
        b.extra_env["RUST_LOG"] = LOG_LEVEL
        if local:
            b.settings["metadata.store.url"] = "embedded"
            b.settings["object.store.url"] = ""
    return c.start()


def restart_cold(infra, c):
    """Stops every broker (their memory and disk caches go with them: the disk tier is
    emptied at start), evicts the files under them and MinIO's from the page cache, and
    starts them again; returns the bootstrap."""
    for b in c.brokers:
        b.stop()
    evict(infra.minio.data, *(b.data_dir for b in c.brokers))
    for b in c.brokers:
        b.start()
    # Broker.start's readiness polls leave admin clients in reference cycles (through the
    # exception they keep); collected now, not while the brokers stop (which they log).
    gc.collect()
    return c.bootstrap


def verify_settings(c):
    """Every setting given to a broker must be what it reports (DescribeConfigs); returns the
    settings of the first broker without the per-broker ones (ports, node id, namespace)."""
    from confluent_kafka.admin import AdminClient, ConfigResource
    for b in c.brokers:
        res = ConfigResource(ConfigResource.Type.BROKER, str(b.node_id))
        # The client must outlive its futures: a temporary one is destroyed at once, and its
        # pending requests then fail with _DESTROY.
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        got = admin.describe_configs([res], request_timeout=30)[res].result(30)
        for k, v in b.settings.items():
            if k not in got or (got[k].value or "") != v:
                raise BenchError(f"broker {b.node_id} reports {k}={got[k].value if k in got else None!r}, was given {v!r}")
    return {k: v.replace(c.namespace, "<namespace>") for k, v in c.brokers[0].settings.items()
            if k not in ("node.id", "admin.listener")}


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
        # The restarted broker gets its share back (the controller rebalances when a broker
        # joins): wait for that before the planned move, or the rebalance may move the
        # partition again after it.
        deadline = time.time() + 60
        while victim.node_id not in owners_of(c.bootstrap, "bench-fo") and time.time() < deadline:
            time.sleep(0.5)
        time.sleep(3)
        owner = owner_of(c.bootstrap, "bench-fo", 1)
        target = next(b.node_id for b in c.brokers if b.node_id != owner)
        t0 = time.time()
        out = run([os.environ["STRATUS_BIN"], "admin", "--server", c.admin_address(target),
                   "move", "bench-fo", "1", str(target)], timeout=120)
        moved = time.time() - t0
        writable = wait_ack(c.bootstrap, "bench-fo", 1) + moved
        # Each broker learns the new owner from its watch of the store, so the one that
        # answers this metadata request may lag the move by a moment (as a Kafka broker's
        # metadata lags the controller's): a few seconds' grace, no more. Once, the check
        # without it failed right after the write was acknowledged.
        deadline = time.time() + 5
        while (seen := owner_of(c.bootstrap, "bench-fo", 1)) != target and time.time() < deadline:
            time.sleep(0.2)
        if seen != target:
            raise BenchError(f"after the move, partition 1 is owned by broker {seen}, not {target}")
        healthy(c.brokers)
        log(f"move: {out.strip()} in {moved:.2f} s, writable after {writable:.2f} s")
        return {"failover": failover, "moved": moved, "writable": writable,
                "lease_ms": int(victim.settings["broker.session.timeout.ms"])}
    finally:
        c.cleanup()


def wait_ack(bootstrap, topic, partition, timeout=120):
    """Seconds until one record to `partition` is acknowledged."""
    from confluent_kafka import Producer
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
    raise BenchError(f"no acknowledgement from {topic}-{partition} within {timeout} s")


def owners_of(bootstrap, topic):
    from confluent_kafka.admin import AdminClient
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return {p.leader for p in md.topics[topic].partitions.values()}


def owner_of(bootstrap, topic, partition):
    from confluent_kafka.admin import AdminClient
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return md.topics[topic].partitions[partition].leader


def puts_per_partition_count(infra, partitions):
    c = stratus_cluster(infra, 3, f"bench-puts-{partitions}")
    try:
        create(c.bootstrap, "bench-puts", partitions)
        before = count_puts(c.brokers)
        t0 = time.time()
        r = producer_perf(c.bootstrap, "bench-puts", COUNTS["puts"], LAT_RATE)
        secs = time.time() - t0
        time.sleep(3)
        puts = count_puts(c.brokers) - before
        healthy(c.brokers)
        gb = r["records"] * RECORD / 1e9
        log(f"{partitions} partitions: {puts} PUTs in {secs:.1f} s for {gb:.3f} GB")
        return {"per_s": puts / secs, "per_gb": puts / gb}
    finally:
        c.cleanup()


def machine():
    def sh(*cmd):
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
    mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal:")), 0)
    dirty = sh("git", "-C", str(REPO), "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock")
    binary = Path(os.environ["STRATUS_BIN"])
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": sh("git", "-C", str(REPO), "rev-parse", "--short=10", "HEAD") + ("+dirty(src)" if dirty else ""),
        "cpus": os.cpu_count(),
        "mem_gib": round(mem / 1048576, 1),
        "kafka": kafka_home().name,
        "java": subprocess.run(["java", "-version"], capture_output=True, text=True, check=False).stderr.splitlines()[0],
        "stratus_version": sh(str(binary), "--version") if binary.exists() else "?",
        "stratus_built": (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(binary.stat().st_mtime)) if binary.exists() else "?")
        + (f" from {os.environ['STRATUS_BUILD_COMMIT']}" if os.environ.get("STRATUS_BUILD_COMMIT") else ""),
        "scale": SCALE,
        "repeat": REPEAT,
        "counts": COUNTS,
    }


def main():
    if len(sys.argv) > 1:
        if sys.argv[1] == "--self-test":
            sys.exit(self_test())
        if sys.argv[1] == "--render":
            raw = json.loads(Path(sys.argv[2]).read_text())
            report(raw, BENCH / "results" / "cluster.md")
            return
        sys.exit(__doc__)
    if not Path(os.environ["STRATUS_BIN"]).exists():
        sys.exit(f"no Stratus binary at {os.environ['STRATUS_BIN']} (bench/cluster.sh builds it)")
    if REPEAT < 1:
        sys.exit("BENCH_REPEAT must be at least 1")
    from cluster_infra import Infra
    raw = {"machine": machine(), "runs": [], "settings": {}}
    infra = Infra(CACHE)
    infra.start()
    try:
        for rep in range(1, REPEAT + 1):
            order = TARGETS if rep % 2 else tuple(reversed(TARGETS))
            log(f"run {rep} of {REPEAT}: {', '.join(order)}")
            results = {"order": list(order)}
            for name in order:
                if name == "kafka":
                    k = Kafka().start()
                    try:
                        def drop_kafka(k=k):
                            evict(k.tmp / "data")
                            return k.bootstrap
                        results[name] = suite(name, k.bootstrap, drop_caches=drop_kafka)
                        k.check()
                    finally:
                        k.stop()
                    continue
                n = 3 if name.endswith("-3") else 1
                c = stratus_cluster(infra, n, name, local=name == "stratus-local")
                try:
                    raw["settings"][name] = verify_settings(c)
                    before = count_puts(c.brokers)
                    results[name] = suite(name, c.bootstrap, c.brokers, drop_caches=lambda c=c: restart_cold(infra, c))
                    results[name]["puts"] = count_puts(c.brokers) - before
                finally:
                    c.cleanup()
            results["ops"] = failover_and_move(infra)
            results["puts"] = {str(n): puts_per_partition_count(infra, n) for n in (100, 1000)}
            raw["runs"].append(results)
    finally:
        infra.stop()
    raw["machine"]["date_end"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out = BENCH / "results" / "cluster-last-run.json"
    out.write_text(json.dumps(raw, indent=1) + "\n")
    report(raw, BENCH / "results" / "cluster.md")


def warm_note(c):
    """How the produce figures were taken (runs before the warm-up in the same producer had none)."""
    if not c.get("tp_warm"):
        return ""
    return (f" The produce and big-batch figures are ProducerPerformance's steady state: the same producer first"
            f" sent {c['tp_warm']:,} and {c['big_warm']:,} records (`--warmup-records`) while its JVM compiled.")


def report(raw, out):
    runs, m = raw["runs"], raw["machine"]
    n = len(runs)
    if not n:
        raise BenchError("no runs")

    def vals(target, key):
        return [r[target][key] for r in runs]

    def pair(target, a, b):
        return f"{cell(vals(target, a), True)} / {cell(vals(target, b), True)}"

    targets = [t for t in TARGETS if t in runs[0]]
    rows, cold_rows = [], []
    for name in targets:
        ratio_tp = "1.00×" if name == "kafka" else ratio_cell(vals("kafka", "tp"), vals(name, "tp"))
        ratio_big = "1.00×" if name == "kafka" else ratio_cell(vals("kafka", "big"), vals(name, "big"))
        rows.append(f"| {name} | {cell(vals(name, 'tp'))} | {ratio_tp} | {cell(vals(name, 'big'))} | {ratio_big} | "
                    f"{pair(name, 'lat_p50', 'lat_p99')} | {pair(name, 'e2e_p50', 'e2e_p99')} |")
        if all("cold" in r[name] for r in runs):
            ratio_cold = "1.00×" if name == "kafka" else ratio_cell(vals("kafka", "cold"), vals(name, "cold"))
            ratio_steady = ("1.00×" if name == "kafka"
                            else ratio_cell(vals("kafka", "cold_steady"), vals(name, "cold_steady")))
            cold_rows.append(f"| {name} | {cell(vals(name, 'cold'))} | {ratio_cold} | "
                             f"{cell(vals(name, 'cold_steady'))} | {ratio_steady} |")
    ops = {k: [r["ops"][k] for r in runs] for k in ("failover", "moved", "writable")}
    lease = sorted({r["ops"]["lease_ms"] for r in runs})
    puts = {p: {k: [r["puts"][p][k] for r in runs] for k in ("per_s", "per_gb")} for p in ("100", "1000")}
    per_gb_100 = statistics.median(puts["100"]["per_gb"])
    read_gets_per_gb = 1e9 / BLOCK
    each = ["| run | order | " + " | ".join(f"{t} produce / big / cold MiB/s" for t in targets)
            + " | failover s | move→writable s |",
            "|---|---|" + "---:|" * (len(targets) + 2)]
    for i, r in enumerate(runs, 1):
        each.append(f"| {i} | {' → '.join(r['order'])} | "
                    + " | ".join(f"{fmt(r[t]['tp'])} / {fmt(r[t]['big'])} / {fmt(r[t]['cold']) if 'cold' in r[t] else '—'}"
                                 for t in targets)
                    + f" | {r['ops']['failover']:.2f} | {r['ops']['writable']:.2f} |")
    settings = []
    for name, s in raw["settings"].items():
        eff = stratus_effective(s)
        settings.append(f"- {name}: " + ", ".join(f"`{k}={v}`" for k, v in sorted(s.items()))
                        + f"; object store: {eff['object store']}; wal.flush.interval.ms {eff['wal.flush.interval.ms']}; "
                        f"cache.disk.bytes {eff['cache.disk.bytes']} (every value confirmed by the brokers' DescribeConfigs)")
    c = m["counts"]
    runs_word = f"{n} run{'s' if n != 1 else ''}"
    warn = ("**" + runs_word + " only: no trustworthy spread; use BENCH_REPEAT=3 or more for figures to quote.**\n\n"
            if n < 3 else "")
    md = f"""# Cluster benchmark

{warn}Command: `bench/cluster.sh` (BENCH_SCALE={m['scale']}, BENCH_REPEAT={m['repeat']}), {m['date']} to
{m.get('date_end', '?')}, commit {m['commit']}, {m['cpus']} CPUs, {m['mem_gib']} GiB; MinIO and etcd on loopback
(built from their Go modules), {m['kafka']} single-node KRaft with default configs (no fsync) as the peer;
Stratus {m['stratus_version']} built {m['stratus_built']}; {m['java']}. 1 KiB records, acks=all,
{PARTITIONS} partitions. "produce": ProducerPerformance with {', '.join(DEFAULT_PROPS)} and the default 16 KiB
batches; "big batches": {', '.join(BIG_PROPS)}. Latency at {LAT_RATE} records/s (5 MiB/s). Record counts, the same
on every target and run: warm-up {c['warmup']:,}, produce {c['tp']:,}, big batches {c['big']:,}, latency
{c['lat']:,}, end-to-end {c['e2e']:,}; PUT counts {c['puts']:,}.{warm_note(c)}

Every figure: median [min–max] over {runs_word} (each on fresh brokers; the order of the targets alternates
between runs); ÷ Kafka is the ratio of the medians.

| target | produce MiB/s | ÷ Kafka | big batches MiB/s | ÷ Kafka | produce p50 / p99 ms | end-to-end p50 / p99 ms |
|---|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

Cold read: the produce topic ({produced(c):,} records of 1 KiB) read from the start by
`bench/AssignConsumerPerf.java` (one consumer assigned every partition, `max.partition.fetch.bytes` 1 MiB) after
the caches were dropped: Kafka's data files evicted from the page cache; Stratus's brokers restarted (their memory
and disk caches start empty) and their files and MinIO's evicted, so on MinIO every byte is a GET.

| target | cold read MiB/s | ÷ Kafka | last two thirds MiB/s | ÷ Kafka |
|---|---:|---:|---:|---:|
{chr(10).join(cold_rows) if cold_rows else '| (not measured in these runs) | | | | |'}

| cluster operation (3 brokers on MinIO) | seconds |
|---|---:|
| kill -9 of a partition's owner → the partition takes writes again (lease {'/'.join(map(str, lease))} ms) | {cell(ops['failover'], places=2)} |
| planned move (`stratus admin move`) returns | {cell(ops['moved'], places=2)} |
| planned move → the partition takes writes again | {cell(ops['writable'], places=2)} |

| object PUTs at 5 MiB/s, 3 brokers | per second | per GB written |
|---|---:|---:|
| 100 partitions | {cell(puts['100']['per_s'])} | {cell(puts['100']['per_gb'])} |
| 1000 partitions | {cell(puts['1000']['per_s'])} | {cell(puts['1000']['per_gb'])} |

Cost at S3 Standard list prices (PUT $0.005 / 1000, GET $0.0004 / 1000; storage
$0.023 / GB-month is the same for any layout and not included), from the medians:

| | requests per GB | $ per GB |
|---|---:|---:|
| written (WAL objects + sealed segments, 100 partitions) | {per_gb_100:.0f} PUTs | {per_gb_100 * PUT_PRICE:.4f} |
| read from the object store (1 MiB ranged GETs; reads served from the cache cost nothing) | {read_gets_per_gb:.0f} GETs | {read_gets_per_gb * GET_PRICE:.5f} |

PUTs are WAL objects (one per flush for all partitions of a broker) and sealed segments
(one per `segment.bytes` of a partition; {SEGMENT_BYTES >> 20} MiB here), counted from the brokers' logs
(RUST_LOG={LOG_LEVEL}).

## Settings

Stratus brokers (besides node.id and admin.listener; no STRATUS_* environment variables reach them):
{chr(10).join(settings)}

## Each run

{chr(10).join(each)}
"""
    Path(out).write_text(md)
    print(md)
    return md


def self_test():
    """The report's arithmetic on synthetic results."""
    def suite_vals(tp):
        return {"tp": tp, "big": tp * 2, "lat_p50": 3, "lat_p99": 30, "e2e_p50": 2.0, "e2e_p99": 11.0, "puts": 10,
                "cold": tp * 10, "cold_steady": tp * 12}
    runs = []
    for i, (k, s) in enumerate(((48.0, 8.0), (50.0, 7.0), (46.0, 7.5)), 1):
        runs.append({"order": list(TARGETS if i % 2 else reversed(TARGETS)), "kafka": suite_vals(k),
                     "stratus-local": suite_vals(k), "stratus-minio-1": suite_vals(s), "stratus-minio-3": suite_vals(s),
                     "ops": {"failover": 2.5 + i / 10, "moved": 0.07, "writable": 0.18, "lease_ms": 3000},
                     "puts": {"100": {"per_s": 25.0, "per_gb": 5000.0 + i}, "1000": {"per_s": 25.1, "per_gb": 5100.0}}})
    raw = {"machine": {"date": "2030-01-01T00:00:00Z", "commit": "abc", "cpus": 2, "mem_gib": 23.5, "kafka": "kafka-4.3.1",
                       "java": "openjdk 17", "stratus_version": "stratus 0.1.0", "stratus_built": "?", "scale": 1.0,
                       "repeat": 3, "counts": COUNTS},
           "runs": runs,
           "settings": {"stratus-minio-1": {"object.store.url": "s3://b/<namespace>", "log.segment.bytes": "8388608"}}}
    tmp = tempfile.mkdtemp()
    failures = []
    try:
        import contextlib
        import io
        with contextlib.redirect_stdout(io.StringIO()):
            md = report(raw, Path(tmp) / "cluster.md")
        line = next((l for l in md.splitlines() if l.startswith("| stratus-minio-1 |")), "")
        want = "| stratus-minio-1 | 7.5 [7.0–8.0] | 0.16× | 15.0 [14.0–16.0] | 0.16× | 3 [3–3] / 30 [30–30] | 2 [2–2] / 11 [11–11] |"
        if line != want:
            failures.append(f"minio row: {line}")
        cold = [l for l in md.splitlines() if l.startswith("| stratus-minio-1 |")][1:]
        if cold != ["| stratus-minio-1 | 75.0 [70.0–80.0] | 0.16× | 90.0 [84.0–96.0] | 0.16× |"]:
            failures.append(f"cold row: {cold}")
        if "| 2.70 [2.60–2.80] |" not in md:
            failures.append("failover spread")
        if "5002 PUTs" not in md:
            failures.append("cost from the median")
        if "S3-compatible s3://b/<namespace>" not in md:
            failures.append("settings")
    finally:
        shutil.rmtree(tmp)
    print("cluster.py self-test: " + ("FAILED:\n  " + "\n  ".join(failures) if failures else "0 failed"))
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print(f"cluster.py: ERROR: {e}", file=sys.stderr)
        sys.exit(1)
