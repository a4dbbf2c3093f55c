#!/usr/bin/env python3
"""What telemetry costs: the same produce workload on Apache Kafka and on Stratus with its
telemetry off and on, on this machine, with Kafka's own perf tools; and how many series a
broker with 1,000 partitions and 100 groups serves.

    CARGO_TARGET_DIR=/tmp/bench-target cargo build --release
    ~/.cache/stratus/venv/bin/python bench/telemetry.py     # ~4 min per repeat on 2 cores

Brokers (one run; runs alternate the order):
  kafka        Apache Kafka 4.3.1 (the peer)
  stratus-off  no HTTP endpoint, no OTLP export (the instruments still count: they always do)
  stratus-on   /metrics scraped every second, OTLP metrics pushed every 5 s and traces at
               1 % sampling (otel.traces.sampler.arg=0.01) to an OpenTelemetry Collector
               (built by scripts/install-test-deps.sh) that discards them

Per broker:
  produce  ProducerPerformance, BENCH_RECORDS 1 KiB records (default 300000), acks=all,
           8 partitions, throughput unbounded; the first third is warm-up; and the broker
           process's CPU time over the whole produce, per GiB (steadier than throughput on a
           shared two-core machine)
  latency  ProducerPerformance at BENCH_LAT_RATE records/s (default 10240: 10 MiB/s) for
           BENCH_LAT_S s (default 15; the first 5 s are warm-up): p50 and p99, and the
           broker's CPU per GiB at that fixed rate (the same work off and on: the difference
           is what telemetry costs)

Then a Stratus broker with telemetry on gets 10 topics of 100 partitions, a record in each
partition, and 100 groups with committed offsets; its /metrics is counted (samples and
families), with metrics.partition.series off (the default) and on.

The report (bench/results/telemetry.md) gives medians over BENCH_REPEAT runs (default 1),
on ÷ off, and Stratus ÷ Kafka. With BENCH_OBJECT_STORE=memory:// Stratus keeps its objects
in memory (bench/results/telemetry-memory.md): the file store's fsyncs and directory churn
dominate broker CPU and swing with the file system's state, which hides a few percent."""

import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
os.environ.setdefault("STRATUS_BIN", "/tmp/bench-target/release/stratus")
sys.path.insert(0, str(REPO / "tests" / "clients"))
sys.path.insert(0, str(BENCH))

import report_parse  # noqa: E402
from tls import log, tool  # noqa: E402  (the same runner of Kafka's perf tools)
from conftest import CACHE, Broker, free_port  # noqa: E402
from confluent_kafka import Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from confluent_kafka import ConsumerGroupTopicPartitions  # noqa: E402

RECORDS = int(os.environ.get("BENCH_RECORDS", "300000"))
LAT_RATE = int(os.environ.get("BENCH_LAT_RATE", "10240"))
LAT_S = int(os.environ.get("BENCH_LAT_S", "15"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "1"))
# Stratus's object store: the default file store (fsync, directory churn) makes broker CPU
# swing with the file system's state; BENCH_OBJECT_STORE=memory:// isolates what telemetry
# itself costs.
OBJECT_STORE = os.environ.get("BENCH_OBJECT_STORE", "")
RESULTS = Path(os.environ.get("BENCH_RESULTS", BENCH / "results"))
RAW = RESULTS / "telemetry-run"
KEYS = ("produce MiB/s", "broker CPU s/GiB", "p50 ms", "p99 ms", "broker CPU s/GiB at 10 MiB/s")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU time of a process so far (its children included: Kafka's script
    execs the JVM, so the pid is the broker itself either way)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Collector:
    """An OpenTelemetry Collector that receives OTLP over gRPC and drops it."""

    def __init__(self, out):
        binary = CACHE / "bin" / "otelcol"
        if not binary.exists():
            raise SystemExit(f"bench: no collector at {binary} (run scripts/install-test-deps.sh)")
        self.port = free_port()
        config = out / "otelcol.yaml"
        config.write_text(f"""
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{self.port}"}}
exporters:
  debug: {{verbosity: basic}}
service:
  telemetry:
    metrics: {{level: none}}
    logs: {{level: warn}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [debug]}}
    metrics: {{receivers: [otlp], exporters: [debug]}}
""")
        self.log = open(out / "otelcol.log", "wb")
        self.proc = subprocess.Popen([str(binary), "--config", str(config)], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        time.sleep(1)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


class Scraper(threading.Thread):
    """GETs /metrics every second, as an impatient Prometheus would."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.url, self.stopped, self.scrapes = f"http://127.0.0.1:{port}/metrics", threading.Event(), 0

    def run(self):
        while not self.stopped.wait(1.0):
            with urllib.request.urlopen(self.url, timeout=10) as r:
                r.read()
            self.scrapes += 1


def settings(mode, collector):
    store = {"object.store.url": OBJECT_STORE} if OBJECT_STORE else {}
    if mode == "stratus-off":
        return {"http.listener": "", **store}
    if mode == "stratus-on":
        return {"otel.exporter.otlp.endpoint": f"http://127.0.0.1:{collector.port}",
                "otel.traces.sampler.arg": "0.01", "otel.metric.export.interval.ms": "5000", **store}
    return {}


def measure(mode, collector, out):
    b = Broker({"auto.create.topics.enable": "false", **settings(mode, collector)},
               name=f"bench-telemetry-{mode}")
    b.target = "kafka" if mode == "kafka" else "stratus"
    b.start(timeout=120)
    scraper = Scraper(b.http_port) if mode == "stratus-on" else None
    if scraper:
        scraper.start()
    try:
        admin = b.admin()
        topics = [f"tm-{uuid.uuid4().hex[:6]}" for _ in range(2)]
        for f in admin.create_topics([NewTopic(t, 8, 1) for t in topics]).values():
            f.result(timeout=30)
        time.sleep(1)
        log(f"{mode}: produce {RECORDS} records")
        warm = RECORDS // 3
        cpu0 = cpu_seconds(b.proc.pid)
        tool(out / "produce.txt", 900, "producer-perf", "--topic", topics[0], "--num-records",
             str(RECORDS), "--warmup-records", str(warm), "--record-size", "1024", "--throughput", "-1",
             "--producer-props", f"bootstrap.servers={b.bootstrap}", "acks=all")
        cpu = cpu_seconds(b.proc.pid) - cpu0
        produce = report_parse.produce_result(out / "produce.txt", RECORDS, warm)
        log(f"{mode}: {LAT_RATE} records/s for {LAT_S} s")
        n, warm = LAT_RATE * LAT_S, LAT_RATE * min(5, LAT_S // 3)
        cpu0 = cpu_seconds(b.proc.pid)
        tool(out / "latency.txt", 600, "producer-perf", "--topic", topics[1], "--num-records", str(n),
             "--warmup-records", str(warm), "--record-size", "1024", "--throughput", str(LAT_RATE),
             "--producer-props", f"bootstrap.servers={b.bootstrap}", "acks=all")
        lat_cpu = cpu_seconds(b.proc.pid) - cpu0
        lat = report_parse.produce_result(out / "latency.txt", n, warm)
        figures = {"produce MiB/s": produce["mibps"],
                   "broker CPU s/GiB": round(cpu / (RECORDS * 1024 / 2**30), 2),
                   "p50 ms": lat["p50"], "p99 ms": lat["p99"],
                   "broker CPU s/GiB at 10 MiB/s": round(lat_cpu / (n * 1024 / 2**30), 2)}
        if scraper:
            figures["scrapes"] = scraper.scrapes
        log(f"{mode}: {figures}")
        return figures
    finally:
        if scraper:
            scraper.stopped.set()
            scraper.join()
        b.stop()
        b.cleanup(keep=False)


def count_series(partition_series):
    """Samples and families on a broker with 10 × 100 partitions and 100 groups."""
    b = Broker({"auto.create.topics.enable": "false",
                "metrics.partition.series": "true" if partition_series else "false"},
               name="bench-series")
    b.start(timeout=120)
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        topics = [f"series-{i}" for i in range(10)]
        for f in admin.create_topics([NewTopic(t, 100, 1) for t in topics]).values():
            f.result(timeout=120)
        p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 20})
        for t in topics:
            for part in range(100):
                p.produce(t, b"x", partition=part)
        assert p.flush(120) == 0
        for g in range(100):
            t = topics[g % 10]
            req = ConsumerGroupTopicPartitions(f"group-{g}", [TopicPartition(t, part, 0) for part in range(100)])
            admin.alter_consumer_group_offsets([req])[f"group-{g}"].result(timeout=60)
        with urllib.request.urlopen(f"http://127.0.0.1:{b.http_port}/metrics", timeout=30) as r:
            text = r.read().decode()
        samples = [line for line in text.splitlines() if line and not line.startswith("#")]
        families = [line for line in text.splitlines() if line.startswith("# TYPE")]
        return {"samples": len(samples), "families": len(families), "bytes": len(text)}
    finally:
        b.stop()
        b.cleanup(keep=False)


def main():
    if not Path(os.environ["STRATUS_BIN"]).exists():
        raise SystemExit(f"bench: {os.environ['STRATUS_BIN']} missing; build it with "
                         "CARGO_TARGET_DIR=/tmp/bench-target cargo build --release")
    RAW.mkdir(parents=True, exist_ok=True)
    collector = Collector(RAW)
    runs = {m: [] for m in ("kafka", "stratus-off", "stratus-on")}
    try:
        for run in range(REPEAT):
            order = ["kafka", "stratus-off", "stratus-on"]
            if run % 2:
                order.reverse()
            for mode in order:
                out = RAW / f"run-{run + 1}" / mode
                out.mkdir(parents=True, exist_ok=True)
                runs[mode].append(measure(mode, collector, out))
    finally:
        collector.stop()
    log("series: 1,000 partitions and 100 groups")
    series = {"default": count_series(False), "metrics.partition.series=true": count_series(True)}
    write_report(runs, series)


def median(runs, mode, key):
    return statistics.median(r[key] for r in runs[mode])


def write_report(runs, series):
    lines = [f"# Telemetry cost: Stratus with telemetry off and on, and Apache Kafka ({time.strftime('%Y-%m-%d')})",
             "", f"`bench/telemetry.py`, {REPEAT} run(s), {RECORDS} records of 1 KiB, acks=all, 8 partitions; "
             f"latency at {LAT_RATE} records/s. On: /metrics scraped every second, OTLP metrics every 5 s and "
             "traces at 1 % sampling to an OpenTelemetry Collector. Stratus's object store: "
             f"{OBJECT_STORE or 'the local file store (default)'}. Medians over the runs.", "",
             "| figure | Kafka | Stratus off | Stratus on | on ÷ off | Stratus on ÷ Kafka |",
             "|---|---|---|---|---|---|"]
    for key in KEYS:
        k, off, on = (median(runs, m, key) for m in ("kafka", "stratus-off", "stratus-on"))
        lines.append(f"| {key} | {k:g} | {off:g} | {on:g} | {on / off:.3f} | {on / k:.2f}× |")
    lines += ["", "Series on one broker with 10 topics × 100 partitions (a record in each) and 100 groups "
              "with committed offsets:", "", "| metrics | samples | families | bytes |", "|---|---|---|---|"]
    for name, c in series.items():
        lines.append(f"| {name} | {c['samples']} | {c['families']} | {c['bytes']} |")
    lines += ["", "Every run:", ""]
    for m, rs in runs.items():
        for i, r in enumerate(rs):
            lines.append(f"- {m} run {i + 1}: {r}")
    name = "telemetry-memory.md" if OBJECT_STORE.startswith("memory") else "telemetry.md"
    (RESULTS / name).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
