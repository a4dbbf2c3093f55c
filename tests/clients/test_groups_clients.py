"""Group consumers of three more client libraries, each with its own protocol implementation:
franz-go (Go, go/groupconsumer), kafka-python (pure Python) and kafkajs (Node,
node/group_consumer.js). Each reads part of a topic in a group, commits exactly what it
processed, stops, and a restarted consumer continues where it left off: no committed record
is read again and nothing is skipped."""

import os
import shutil
import subprocess
import time
from collections import defaultdict

import pytest
from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition

from conftest import CACHE, CLIENTS_DIR
from group_util import committed_offsets, end_offsets, produce_numbered
from util import create_topic

PARTITIONS = 3
FRANZ_BIN = CACHE / "bin" / "franz-group-consumer"
NODE_MODULES = CACHE / "node_modules"


def run_franz(bootstrap, topic, group, n):
    if not FRANZ_BIN.exists():
        pytest.fail(f"{FRANZ_BIN} missing (run scripts/install-test-deps.sh)")
    r = subprocess.run([str(FRANZ_BIN), "-brokers", bootstrap, "-topic", topic, "-group", group,
                        "-max", str(n), "-timeout-ms", "60000"],
                       capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)
    return parse_output("franz-go", r, n)


def run_kafkajs(bootstrap, topic, group, n):
    if not (NODE_MODULES / "kafkajs").exists():
        pytest.fail(f"kafkajs missing under {NODE_MODULES} (run scripts/install-test-deps.sh)")
    if shutil.which("node") is None:
        pytest.fail("node not found (run scripts/install-test-deps.sh)")
    r = subprocess.run(["node", str(CLIENTS_DIR / "node" / "group_consumer.js"), bootstrap, topic, group,
                        str(n), "60000"], capture_output=True, text=True, timeout=90,
                       stdin=subprocess.DEVNULL, env={**os.environ, "NODE_PATH": str(NODE_MODULES)})
    return parse_output("kafkajs", r, n)


def parse_output(name, r, n):
    assert r.returncode == 0, f"{name} exited {r.returncode}\nstdout: {r.stdout[-3000:]}\nstderr: {r.stderr[-3000:]}"
    lines = r.stdout.splitlines()
    assert lines and lines[-1] == f"DONE {n}", f"{name}: {r.stdout[-3000:]}\nstderr: {r.stderr[-3000:]}"
    out = []
    for line in lines:
        if line.startswith("R "):
            _, p, o, v = line.split(" ", 3)
            out.append((int(p), int(o), v))
    return out


def run_kafka_python(bootstrap, topic, group, n):
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                      auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=1000,
                      request_timeout_ms=10000, fetch_max_wait_ms=500)
    out, nxt = [], {}
    try:
        deadline = time.time() + 60
        while len(out) < n and time.time() < deadline:
            for tp, recs in c.poll(timeout_ms=500, max_records=n - len(out)).items():
                for m in recs:
                    out.append((m.partition, m.offset, m.value.decode()))
                    nxt[tp] = OffsetAndMetadata(m.offset + 1, "", -1)
        assert len(out) == n, f"kafka-python read {len(out)} of {n} records within 60s"
        c.commit(nxt)  # synchronous; exactly the processed records
    finally:
        c.close()  # leaves the group
    return out


CLIENTS = {"franz-go": run_franz, "kafka-python": run_kafka_python, "kafkajs": run_kafkajs}


@pytest.mark.parametrize("client", list(CLIENTS))
def test_group_consumer_restart_continues_from_committed_offsets(group_broker, topic, client):
    b = group_broker.bootstrap
    admin = group_broker.admin()
    create_topic(admin, topic, partitions=PARTITIONS)
    group = f"g-{topic}"
    run = CLIENTS[client]
    acked = produce_numbered(b, topic, 90, PARTITIONS, tag="a")

    first = run(b, topic, group, 40)
    by_part = defaultdict(list)
    for p, o, _ in first:
        by_part[p].append(o)
    # each partition is read in order from its beginning
    for p, offs in by_part.items():
        assert offs == list(range(len(offs))), f"partition {p} read as {offs}"
    read = {p: len(by_part.get(p, [])) for p in range(PARTITIONS)}
    committed = committed_offsets(admin, group, topic, PARTITIONS)
    assert {p: committed[p] or 0 for p in committed} == read, f"committed {committed}, processed {read}"

    acked += produce_numbered(b, topic, 30, PARTITIONS, tag="b", start=90)
    second = run(b, topic, group, len(acked) - 40)  # restarted: the rest, and only the rest
    by_part2 = defaultdict(list)
    for p, o, _ in second:
        by_part2[p].append(o)
    ends = end_offsets(acked)
    for p in range(PARTITIONS):
        assert by_part2.get(p, []) == list(range(read[p], ends[p])), (
            f"partition {p}: committed {read[p]}, the restarted consumer read {by_part2.get(p)}")
    assert sorted(first + second) == sorted(acked)
    assert committed_offsets(admin, group, topic, PARTITIONS) == ends
