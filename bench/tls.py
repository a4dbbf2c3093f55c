#!/usr/bin/env python3
"""What TLS and SASL cost: Stratus and Apache Kafka on this machine, each with a PLAINTEXT
listener and a SASL_SSL one (SCRAM-SHA-512, the same certificates), the same workload on
both listeners of both brokers, with Kafka's own perf tools.

    CARGO_TARGET_DIR=/tmp/bench-target cargo build --release
    ~/.cache/stratus/venv/bin/python bench/tls.py          # ~8 min on 2 cores

Per broker, per listener (in one run; runs alternate which broker goes first):
  produce  ProducerPerformance, BENCH_RECORDS 1 KiB records (default 300000), acks=all,
           8 partitions, throughput unbounded; the first third is --warmup-records and the
           steady-state line is reported
  consume  ConsumerPerformance reads them back (a group member)
  latency  ProducerPerformance at a fixed BENCH_LAT_RATE records/s (default 10240: 10 MiB/s)
           for BENCH_LAT_S s (default 15; the first 5 s are warm-up): p50 and p99

The report (bench/results/tls.md) gives each figure per broker and listener as the median
over BENCH_REPEAT runs (default 1), Stratus ÷ Kafka per listener, and each broker's TLS cost:
its SASL_SSL figure ÷ its own PLAINTEXT one. Raw tool outputs stay in bench/results/tls-run/.
A tool that fails, times out or has records unacknowledged or unread fails the run."""

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
os.environ.setdefault("STRATUS_BIN", "/tmp/bench-target/release/stratus")
sys.path.insert(0, str(REPO / "tests" / "clients"))
sys.path.insert(0, str(BENCH))

import report_parse  # noqa: E402
from certs import CA, server_dn  # noqa: E402
from conftest import Broker  # noqa: E402
from confluent_kafka.admin import (NewTopic, ScramCredentialInfo, ScramMechanism,  # noqa: E402
                                   UserScramCredentialUpsertion)

RECORDS = int(os.environ.get("BENCH_RECORDS", "300000"))
LAT_RATE = int(os.environ.get("BENCH_LAT_RATE", "10240"))
LAT_S = int(os.environ.get("BENCH_LAT_S", "15"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "1"))
RESULTS = Path(os.environ.get("BENCH_RESULTS", BENCH / "results"))
RAW = RESULTS / "tls-run"
PASSWORD = "bench-secret"
SCRAM_JAAS = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def tool(out, timeout, *args):
    """Runs a Kafka CLI tool; its output goes to `out`; a failure stops the benchmark."""
    with open(out, "w") as f:
        r = subprocess.run([str(REPO / "scripts" / "kafka-cli"), *args], stdout=f,
                           stderr=subprocess.STDOUT, timeout=timeout)
    if r.returncode != 0:
        raise SystemExit(f"bench: {args[0]} failed (exit {r.returncode}); see {out}")


def client_props(path, listener, ca):
    lines = ["acks=all"]
    if listener == "SASL_SSL":
        lines += ["security.protocol=SASL_SSL", "sasl.mechanism=SCRAM-SHA-512",
                  "ssl.truststore.type=PEM", f"ssl.truststore.location={ca.pem}",
                  "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule "
                  f'required username="bench" password="{PASSWORD}";']
    path.write_text("\n".join(lines) + "\n")
    return path


def measure(target, pki, out):
    """One broker: start it, measure both listeners, stop it. Returns {listener: figures}."""
    b = Broker({
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(pki["server"].pem),
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": SCRAM_JAAS,
        "auto.create.topics.enable": "false",
    }, name=f"bench-tls-{target}", listeners={"SASL_SSL": "SASL_SSL"})
    b.target = target
    b.start(timeout=120)
    try:
        admin = b.admin()
        up = [UserScramCredentialUpsertion("bench", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
                                           PASSWORD.encode())]
        for f in admin.alter_user_scram_credentials(up).values():
            f.result(timeout=30)
        figures = {}
        for listener in ("PLAINTEXT", "SASL_SSL"):
            boot = b.bootstrap if listener == "PLAINTEXT" else f"127.0.0.1:{b.ports['SASL_SSL']}"
            props = client_props(out / f"{listener}.properties", listener, pki["ca"])
            topics = [f"tls-{listener.lower()}-{uuid.uuid4().hex[:6]}" for _ in range(2)]
            for f in admin.create_topics([NewTopic(t, 8, 1) for t in topics]).values():
                f.result(timeout=30)
            time.sleep(1)
            log(f"{target} {listener}: produce {RECORDS} records")
            warm = RECORDS // 3
            tool(out / f"{listener}-produce.txt", 900, "producer-perf", "--topic", topics[0],
                 "--num-records", str(RECORDS), "--warmup-records", str(warm), "--record-size", "1024",
                 "--throughput", "-1", "--producer-props", f"bootstrap.servers={boot}",
                 "--producer.config", str(props))
            produce = report_parse.produce_result(out / f"{listener}-produce.txt", RECORDS, warm)
            log(f"{target} {listener}: consume")
            tool(out / f"{listener}-consume.txt", 600, "consumer-perf", "--bootstrap-server", boot,
                 "--topic", topics[0], "--messages", str(RECORDS), "--group", f"g-{topics[0]}",
                 "--timeout", "60000", "--consumer.config", str(props))
            consume = report_parse.consumer_perf_result(out / f"{listener}-consume.txt", RECORDS)
            log(f"{target} {listener}: {LAT_RATE} records/s for {LAT_S} s")
            n, warm = LAT_RATE * LAT_S, LAT_RATE * min(5, LAT_S // 3)
            tool(out / f"{listener}-latency.txt", 600, "producer-perf", "--topic", topics[1],
                 "--num-records", str(n), "--warmup-records", str(warm), "--record-size", "1024",
                 "--throughput", str(LAT_RATE), "--producer-props", f"bootstrap.servers={boot}",
                 "--producer.config", str(props))
            lat = report_parse.produce_result(out / f"{listener}-latency.txt", n, warm)
            figures[listener] = {"produce MiB/s": produce["mibps"], "consume MiB/s": consume["mibps"],
                                 "p50 ms": lat["p50"], "p99 ms": lat["p99"]}
            log(f"{target} {listener}: {figures[listener]}")
        return figures
    finally:
        b.stop()
        b.cleanup(keep=False)


def main():
    if not Path(os.environ["STRATUS_BIN"]).exists():
        raise SystemExit(f"bench: {os.environ['STRATUS_BIN']} missing; build it with "
                         "CARGO_TARGET_DIR=/tmp/bench-target cargo build --release")
    RAW.mkdir(parents=True, exist_ok=True)
    pki_dir = Path(tempfile.mkdtemp(prefix="stratus-bench-pki-"))
    ca = CA(pki_dir / "ca")
    pki = {"ca": ca, "server": ca.issue("server", server_dn(), server=True)}
    runs = {"kafka": [], "stratus": []}
    for run in range(REPEAT):
        order = ("kafka", "stratus") if run % 2 == 0 else ("stratus", "kafka")
        for target in order:
            out = RAW / f"run-{run + 1}" / target
            out.mkdir(parents=True, exist_ok=True)
            runs[target].append(measure(target, pki, out))
    write_report(runs)


def median(runs, target, listener, key):
    return statistics.median(r[listener][key] for r in runs[target])


def write_report(runs):
    keys = ("produce MiB/s", "consume MiB/s", "p50 ms", "p99 ms")
    lines = [f"# TLS and SASL cost: Stratus vs Apache Kafka ({time.strftime('%Y-%m-%d')})", "",
             f"`bench/tls.py`, {REPEAT} run(s), {RECORDS} records of 1 KiB, acks=all, 8 partitions; "
             f"latency at {LAT_RATE} records/s. SASL_SSL is SCRAM-SHA-512 over TLS with the same "
             "certificate on both brokers. Medians over the runs.", "",
             "| figure | listener | Kafka | Stratus | Stratus ÷ Kafka |", "|---|---|---|---|---|"]
    for key in keys:
        for listener in ("PLAINTEXT", "SASL_SSL"):
            k, s = median(runs, "kafka", listener, key), median(runs, "stratus", listener, key)
            lines.append(f"| {key} | {listener} | {k:g} | {s:g} | {s / k:.2f}× |" if k else
                         f"| {key} | {listener} | {k:g} | {s:g} | – |")
    lines += ["", "Each broker's TLS cost: its SASL_SSL figure ÷ its PLAINTEXT one (throughput: "
              "below 1 is a cost; latency: above 1 is a cost).", "",
              "| figure | Kafka | Stratus |", "|---|---|---|"]
    for key in keys:
        cost = {}
        for t in ("kafka", "stratus"):
            plain = median(runs, t, "PLAINTEXT", key)
            cost[t] = f"{median(runs, t, 'SASL_SSL', key) / plain:.2f}" if plain else "–"
        lines.append(f"| {key} | {cost['kafka']} | {cost['stratus']} |")
    lines += ["", "Every run:", ""]
    for t in ("kafka", "stratus"):
        for i, r in enumerate(runs[t]):
            lines.append(f"- {t} run {i + 1}: {r}")
    (RESULTS / "tls.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
