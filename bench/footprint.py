#!/usr/bin/env python3
"""The metadata footprint over time at 1,000 slow partitions: Stratus with WAL compaction
(its default), Stratus without it (`wal.compaction.interval.ms=0`, as before it existed),
and Apache Kafka, side by side in one run on this machine.

    cargo build --release -p stratus
    ~/.cache/stratus/venv/bin/python bench/footprint.py     # FOOTPRINT_MINUTES + ~1 min

Each broker gets a topic of FOOTPRINT_PARTITIONS partitions (default 1000) and its own
ProducerPerformance at FOOTPRINT_RATE records/s (default 2000, 200-byte records, acks=all,
the round-robin partitioner: every request spreads over many partitions, each of them far
from sealing by size) for FOOTPRINT_MINUTES (default 10). Every 30 s the report samples:

- Stratus: `stratus_wal_index_entries` and `stratus_wal_index_bytes` from /metrics (this
  broker's entries in the metadata store's WAL index, keys included);
- Kafka: the bytes of its KRaft metadata log (`__cluster_metadata-0`), its metadata store.

The report is bench/results/footprint.md: the curve, and each series' last value ÷ its
value at the end of the first third (1.0 is flat). The three producers must finish with
every record acknowledged, or the run fails.

An hour's curve (what issue 14 asks for; `segment.ms`, 1 h by default, seals what the
compacted entries hold), without the broker lacking compaction, written apart:

    FOOTPRINT_MINUTES=70 FOOTPRINT_WITHOUT_COMPACTION=0 BENCH_RESULTS=/tmp/fp-hour \
        ~/.cache/stratus/venv/bin/python bench/footprint.py"""

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
os.environ.setdefault("STRATUS_BIN", str(REPO / "target" / "release" / "stratus"))
sys.path.insert(0, str(REPO / "tests" / "clients"))
sys.path.insert(0, str(BENCH))

import report_parse  # noqa: E402
from conftest import Broker  # noqa: E402
from confluent_kafka.admin import NewTopic  # noqa: E402

PARTITIONS = int(os.environ.get("FOOTPRINT_PARTITIONS", "1000"))
RATE = int(os.environ.get("FOOTPRINT_RATE", "2000"))
MINUTES = float(os.environ.get("FOOTPRINT_MINUTES", "10"))
SAMPLE_S = 30
# The broker without WAL compaction grows its index ~580 KB/s: worth showing over minutes,
# not an hour (FOOTPRINT_WITHOUT_COMPACTION=0 leaves it out).
WITHOUT_COMPACTION = os.environ.get("FOOTPRINT_WITHOUT_COMPACTION", "1") != "0"
RESULTS = Path(os.environ.get("BENCH_RESULTS", BENCH / "results"))
RAW = RESULTS / "footprint-run"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def metric(broker, name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{broker.http_port}/metrics", timeout=5).read().decode()
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return int(float(m.group(1))) if m else 0


def kraft_bytes(broker):
    return sum(f.stat().st_size for d in broker.data_dir.rglob("__cluster_metadata-0")
               for f in d.iterdir() if f.is_file())


def main():
    if not Path(os.environ["STRATUS_BIN"]).exists():
        raise SystemExit(f"bench: {os.environ['STRATUS_BIN']} missing; cargo build --release -p stratus")
    RAW.mkdir(parents=True, exist_ok=True)
    setups = {
        "stratus": ("stratus", {}),
        "stratus-no-compaction": ("stratus", {"wal.compaction.interval.ms": "0"}),
        "kafka": ("kafka", {}),
    }
    if not WITHOUT_COMPACTION:
        del setups["stratus-no-compaction"]
    brokers, producers = {}, {}
    records = int(RATE * MINUTES * 60)
    try:
        for name, (target, settings) in setups.items():
            b = Broker(settings, name=f"bench-footprint-{name}")
            b.target = target
            b.start(timeout=120)
            brokers[name] = b
            admin = b.admin()
            for f in admin.create_topics([NewTopic("slow", PARTITIONS, 1)]).values():
                f.result(timeout=120)
            # Every partition led before producing: Kafka answered the first requests of a
            # run that started at once with NOT_LEADER_OR_FOLLOWER, then
            # OUT_OF_ORDER_SEQUENCE_NUMBER, and its producer lost 96 records of an hour's.
            deadline = time.time() + 120
            while True:
                md = admin.list_topics("slow", timeout=10).topics["slow"]
                if len(md.partitions) == PARTITIONS and all(p.leader >= 0 for p in md.partitions.values()):
                    break
                if time.time() > deadline:
                    raise SystemExit(f"bench: {name}: partitions without a leader after 120 s")
                time.sleep(0.5)
        time.sleep(2)
        for name, b in brokers.items():
            out = open(RAW / f"{name}-produce.txt", "w")
            producers[name] = (subprocess.Popen(
                [str(REPO / "scripts" / "kafka-cli"), "producer-perf", "--topic", "slow",
                 "--num-records", str(records), "--record-size", "200", "--throughput", str(RATE),
                 "--producer-props", f"bootstrap.servers={b.bootstrap}", "acks=all",
                 "partitioner.class=org.apache.kafka.clients.producer.RoundRobinPartitioner"],
                stdout=out, stderr=subprocess.STDOUT), out)
        log(f"{len(brokers)} producers at {RATE} records/s over {PARTITIONS} partitions for {MINUTES} min")
        samples = []
        start = time.time()
        while any(p.poll() is None for p, _ in producers.values()):
            time.sleep(SAMPLE_S)
            row = {"s": int(time.time() - start)}
            for name, b in brokers.items():
                if name == "kafka":
                    row[name] = kraft_bytes(b)
                else:
                    row[name] = (metric(b, "stratus_wal_index_entries"), metric(b, "stratus_wal_index_bytes"))
            samples.append(row)
            log(str(row))
        # A producer that fell short fails the run, after the report is written (an hour's
        # curve is worth keeping; the report says which fell short).
        short = []
        for name, (p, out) in producers.items():
            out.close()
            try:
                if p.returncode != 0:
                    raise report_parse.BenchError(f"exit status {p.returncode}")
                report_parse.produce_result(RAW / f"{name}-produce.txt", records, 0)
            except report_parse.BenchError as e:
                short.append(f"{name}'s producer failed ({str(e).splitlines()[0]}); see {name}-produce.txt")
        write_report(samples, short)
        if short:
            raise SystemExit("bench: " + "; ".join(short))
    finally:
        for p, _ in producers.values():
            if p.poll() is None:
                p.kill()
        for b in brokers.values():
            b.stop()
            b.cleanup(keep=False)


def write_report(samples, short=()):
    third = samples[max(0, len(samples) // 3 - 1)]
    last = samples[-1]

    def ratio(a, b):
        return f"{a / b:.2f}" if b else "–"

    lines = [
        "# Metadata footprint at 1,000 slow partitions",
        "",
        f"`python3 bench/footprint.py`: {PARTITIONS} partitions, {RATE} records/s of 200 bytes "
        f"(acks=all, round-robin partitioner) for {MINUTES:g} min, the three brokers side by side.",
        "Stratus: its entries in the WAL index and their bytes; Kafka: its KRaft metadata log.",
        "",
        "| s | Stratus entries | Stratus bytes | no compaction: entries | no compaction: bytes | Kafka metadata log bytes |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in samples:
        s, n = r["stratus"], r.get("stratus-no-compaction", ("–", "–"))
        lines.append(f"| {r['s']} | {s[0]} | {s[1]} | {n[0]} | {n[1]} | {r['kafka']} |")
    lines += [
        "",
        "Last sample ÷ the sample at the end of the first third (1.0: flat):",
        "",
        f"- Stratus: entries {ratio(last['stratus'][0], third['stratus'][0])}, "
        f"bytes {ratio(last['stratus'][1], third['stratus'][1])}",
    ]
    if WITHOUT_COMPACTION:
        lines += [
            f"- Stratus without compaction: entries "
            f"{ratio(last['stratus-no-compaction'][0], third['stratus-no-compaction'][0])}, bytes "
            f"{ratio(last['stratus-no-compaction'][1], third['stratus-no-compaction'][1])}",
        ]
    lines += [
        f"- Kafka: bytes {ratio(last['kafka'], third['kafka'])}",
        "",
    ]
    lines += [f"**Not every record was acknowledged:** {s}." for s in short] + ([""] if short else [])
    (RESULTS / "footprint.md").write_text("\n".join(lines))
    log(f"wrote {RESULTS / 'footprint.md'}")


if __name__ == "__main__":
    main()
