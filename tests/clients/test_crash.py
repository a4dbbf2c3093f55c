"""Crash recovery: kill -9 the broker while idempotent acks=all producers run.

Stratus only (the reference Kafka keeps data in the page cache across kill -9, so it says
little there); set STRATUS_CRASH_ON_KAFKA=1 to run it against Kafka to check the test itself.
"""

import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict

import pytest
from confluent_kafka import OFFSET_BEGINNING

from conftest import CLIENTS_DIR, TARGET
from util import consumer, create_topic, tp

PARTITIONS = 4
PRODUCERS = ("A", "B")
KILLS = int(os.environ.get("STRATUS_CRASH_KILLS", "4"))


def read_all(bootstrap, topic, timeout=60):
    """Consume every partition from the earliest offset up to its high watermark."""
    c = consumer(bootstrap)
    try:
        ends = {}
        for p in range(PARTITIONS):
            lo, hi = c.get_watermark_offsets(tp(topic, p), timeout=10)
            ends[p] = (lo, hi)
        c.assign([tp(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        out = defaultdict(list)
        want = sum(hi - lo for lo, hi in ends.values())
        got = 0
        deadline = time.time() + timeout
        while got < want and time.time() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    raise AssertionError(f"consume error: {m.error()}")
                out[m.partition()].append((m.offset(), m.value().decode()))
                got += 1
        assert got >= want, f"read {got} of {want} records up to the high watermarks {ends}"
        return ends, out
    finally:
        c.close()


def parse_log(path):
    acked, errors, fatal, done = [], [], [], None
    for line in open(path):
        kind, _, rest = line.rstrip("\n").partition(" ")
        if kind == "OK":
            p, o, v = rest.split(" ", 2)
            acked.append((int(p), int(o), v))
        elif kind == "ERR":
            errors.append(rest)
        elif kind == "FATAL":
            fatal.append(rest)
        elif kind == "DONE":
            done = rest
    return acked, errors, fatal, done


@pytest.mark.crash
@pytest.mark.timeout(400)
def test_kill9_during_idempotent_produce_loses_and_duplicates_nothing(make_broker, topic, tmp_path):
    if TARGET == "kafka" and os.environ.get("STRATUS_CRASH_ON_KAFKA") != "1":
        pytest.skip("crash test targets Stratus (STRATUS_CRASH_ON_KAFKA=1 runs it on Kafka)")
    broker = make_broker({"auto.create.topics.enable": "false"})
    create_topic(broker.admin(), topic, partitions=PARTITIONS)

    stop = tmp_path / "stop"
    procs = {}
    for tag in PRODUCERS:
        procs[tag] = subprocess.Popen(
            [sys.executable, str(CLIENTS_DIR / "crash_producer.py"), "--bootstrap", broker.bootstrap,
             "--topic", topic, "--tag", tag, "--partitions", str(PARTITIONS),
             "--out", str(tmp_path / f"{tag}.log"), "--stop", str(stop)],
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"{tag}.stderr", "wb"))
    rnd = random.Random()
    try:
        time.sleep(2)
        for k in range(KILLS):
            time.sleep(rnd.uniform(0.5, 3.0))
            broker.kill(signal.SIGKILL)
            down = rnd.uniform(1.0, 2.0)
            print(f"kill -9 #{k + 1}, down for {down:.1f}s")
            time.sleep(down)
            broker.start(timeout=60)
        time.sleep(2)
    finally:
        stop.touch()
        for tag, proc in procs.items():
            try:
                proc.wait(timeout=180)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    problems = []
    acked_by_tag = {}
    for tag, proc in procs.items():
        acked, errors, fatal, done = parse_log(tmp_path / f"{tag}.log")
        acked_by_tag[tag] = acked
        print(f"producer {tag}: exit {proc.returncode}, {done}, acked {len(acked)}, "
              f"failed {len(errors)}, fatal {len(fatal)}")
        if proc.returncode != 0:
            problems.append(f"producer {tag} exited {proc.returncode}")
        if fatal:
            problems.append(f"producer {tag} fatal errors: {fatal[:3]}")
        if errors:
            problems.append(f"producer {tag}: {len(errors)} deliveries failed, e.g. {errors[:3]}")
        if len(acked) < 200:
            problems.append(f"producer {tag}: only {len(acked)} records acked")

    ends, log = read_all(broker.bootstrap, topic)
    total = sum(len(v) for v in log.values())
    print(f"consumed {total} records; watermarks {ends}")

    position = {}  # value -> (partition, offset)
    dups = []
    for p, recs in log.items():
        lo = ends[p][0]
        offsets = [o for o, _ in recs]
        if offsets != list(range(lo, lo + len(recs))):
            gaps = [(a, b) for a, b in zip(offsets, offsets[1:]) if b != a + 1][:5]
            problems.append(f"partition {p}: offsets not contiguous from {lo}: {gaps}")
        last_seq = {}
        for o, v in recs:
            if v in position:
                dups.append((v, position[v], (p, o)))
            position[v] = (p, o)
            tag, seq = v.split(":")
            seq = int(seq)
            if seq <= last_seq.get(tag, -1):
                problems.append(f"partition {p}: {v} at offset {o} after {tag}:{last_seq[tag]} (reordered)")
            last_seq[tag] = max(seq, last_seq.get(tag, -1))
            if seq % PARTITIONS != p:
                problems.append(f"{v} found in partition {p}")
    if dups:
        problems.append(f"{len(dups)} duplicated values, e.g. {dups[:3]}")

    missing, misplaced = [], []
    for tag, acked in acked_by_tag.items():
        for p, o, v in acked:
            if v not in position:
                missing.append(v)
            elif position[v] != (p, o):
                misplaced.append((v, (p, o), position[v]))
    if missing:
        problems.append(f"{len(missing)} acked values missing, e.g. {missing[:5]}")
    if misplaced:
        problems.append(f"{len(misplaced)} acked offsets differ from where the record is "
                        f"(value, acked, actual), e.g. {misplaced[:3]}")
    print(f"acked {sum(len(a) for a in acked_by_tag.values())}, consumed {total}, "
          f"missing {len(missing)}, duplicated {len(dups)}, misplaced {len(misplaced)}, kills {KILLS}")
    assert not problems, "\n".join(problems[:20])
