"""Crash recovery: kill -9 the broker while idempotent acks=all producers run.

Stratus only (the reference Kafka keeps data in the page cache across kill -9, so it says
little there); set STRATUS_CRASH_ON_KAFKA=1 to run it against Kafka to check the test itself.
"""

import os
import random
import re
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
if KILLS < 1:
    raise pytest.UsageError("STRATUS_CRASH_KILLS must be at least 1: a crash test must crash")


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


class ProducerLog:
    """What a crash_producer.py run logged: acked (partition, offset, value) records with the
    time of each ack and each record's timestamp (s), failed deliveries, fatal errors and
    its DONE line."""

    def __init__(self, path):
        self.acked, self.ack_times, self.errors, self.fatal, self.done = [], [], [], [], None
        self.timestamps = []
        for line in open(path):
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "OK":
                p, o, v, t, ts = rest.split(" ")
                # None: librdkafka acknowledged it implicitly (a later batch of the same
                # producer was acknowledged while this one's request had failed with an
                # unknown outcome), so the record is written but its offset is unknown.
                self.acked.append((int(p), None if o == "None" else int(o), v))
                self.ack_times.append(float(t))
                self.timestamps.append(int(ts) / 1000)
            elif kind == "ERR":
                self.errors.append(rest)
            elif kind == "FATAL":
                self.fatal.append(rest)
            elif kind == "DONE":
                self.done = rest

    def acks_after(self, t):
        return sum(1 for a in self.ack_times if a > t)


# Topic settings under which kill -9 lands in the code that deletes objects: a partition is
# sealed about twice a second (segment.ms) or every 16 KiB, its WAL objects are then
# collected, and retention deletes segments older than RETENTION_MS.
RETENTION_MS = 8000
DELETING_TOPIC = {"segment.ms": "500", "segment.bytes": "16384", "retention.ms": str(RETENTION_MS)}
DELETING_BROKER = {"seal.check.interval.ms": "100", "log.retention.check.interval.ms": "300"}
# Broker settings under which kill -9 lands in WAL compaction: a run every 200 ms rewrites
# the flushes of the one before (nothing seals: every partition's data stays in the WAL).
COMPACTING_BROKER = {"wal.compaction.interval.ms": "200"}


def check_log(ends, log, logs, retention_ms=None, checked_at=None):
    """Problems with what was read back (`ends`, `log` from read_all) given the producers'
    ProducerLogs: offsets contiguous from the log start, each producer's records in order in
    every partition, nothing twice, every acked record at its acked offset. With retention,
    an acked record below the log start may be gone, but not one acked within the last
    `retention_ms` before `checked_at` by its timestamp (its segment is too young to be
    deleted; the timestamp, not the ack: a record may be acked long after it was created)."""
    problems, position, dups, reordered = [], {}, [], []
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
            tag, _, seq = v.partition(":")
            if not seq.isdigit():
                continue  # not a crash_producer.py record (one the test wrote itself)
            seq = int(seq)
            if seq <= last_seq.get(tag, -1):
                reordered.append(f"partition {p}: {v} at offset {o} after {tag}:{last_seq[tag]}")
            last_seq[tag] = max(seq, last_seq.get(tag, -1))
    if reordered:
        problems.append(f"{len(reordered)} records out of their producer's order, e.g. {reordered[:3]}")
    if dups:
        problems.append(f"{len(dups)} duplicated values, e.g. {dups[:3]}")
    missing, misplaced, expired = [], [], 0
    for plog in logs:
        for (p, o, v), t in zip(plog.acked, plog.timestamps):
            if v in position:
                if position[v] != (p, o) and not (o is None and position[v][0] == p):
                    misplaced.append((v, (p, o), position[v]))
            elif (retention_ms is not None and (o is None or o < ends[p][0])
                  and t < checked_at - retention_ms / 1000 + 1.0):
                expired += 1  # deleted by retention, as configured
            else:
                missing.append((v, (p, o), f"log start {ends.get(p, ('?',))[0]}"))
    if missing:
        problems.append(f"{len(missing)} acked values missing, e.g. {missing[:5]}")
    if misplaced:
        problems.append(f"{len(misplaced)} acked offsets differ from where the record is "
                        f"(value, acked, actual), e.g. {misplaced[:3]}")
    acked = sum(len(pl.acked) for pl in logs)
    total = sum(len(v) for v in log.values())
    print(f"checker: acked {acked}, consumed {total}, expired by retention {expired}, missing {len(missing)}, "
          f"duplicated {len(dups)}, misplaced {len(misplaced)}, reordered {len(reordered)}")
    return problems


def stop_retention(admin, topic):
    """Keeps everything from now on, so that what is read back stays put while it is read."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
    res = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("retention.ms", "-1", incremental_operation=AlterConfigOpType.SET)])
    for f in admin.incremental_alter_configs([res]).values():
        f.result(30)
    time.sleep(1.5)  # a retention pass that started before the change finishes


def start_producers(bootstrap, topic, tmp_path, tags, partitions, rate=800, debug=None):
    """One crash_producer.py per tag; `debug` (or $PRODUCER_DEBUG, default "eos": the
    idempotence events, so that an epoch bump and its reason are in <tag>.stderr):
    librdkafka debug contexts."""
    debug = os.environ.get("PRODUCER_DEBUG", "eos") if debug is None else debug
    procs = {}
    for tag in tags:
        procs[tag] = subprocess.Popen(
            [sys.executable, str(CLIENTS_DIR / "crash_producer.py"), "--bootstrap", bootstrap,
             "--topic", topic, "--tag", tag, "--partitions", str(partitions),
             "--out", str(tmp_path / f"{tag}.log"), "--stop", str(tmp_path / "stop"), "--rate", str(rate),
             "--debug", debug],
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"{tag}.stderr", "wb"))
    return procs


def finish_producers(procs, tmp_path, min_acked=200):
    """Stops the producers; returns their logs and the problems they report."""
    (tmp_path / "stop").touch()
    logs, problems = {}, []
    for tag, proc in procs.items():
        try:
            proc.wait(timeout=200)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        plog = logs[tag] = ProducerLog(tmp_path / f"{tag}.log")
        # An epoch bump renumbers every batch without an ack: a broker that answers
        # OUT_OF_ORDER_SEQUENCE_NUMBER where Kafka would not causes them (and duplicates).
        bumps = [line.split("epoch bump", 1)[1].strip()[:160]
                 for line in (tmp_path / f"{tag}.stderr").read_text(errors="replace").splitlines()
                 if "DRAIN" in line and "epoch bump" in line]
        print(f"producer {tag}: exit {proc.returncode}, {plog.done}, acked {len(plog.acked)}, "
              f"failed {len(plog.errors)}, fatal {len(plog.fatal)}, epoch bumps {len(bumps)} {bumps[:2]}")
        if proc.returncode != 0:
            problems.append(f"producer {tag} exited {proc.returncode}")
        if plog.fatal:
            problems.append(f"producer {tag} fatal errors: {plog.fatal[:3]}")
        if plog.errors:
            problems.append(f"producer {tag}: {len(plog.errors)} deliveries failed, e.g. {plog.errors[:3]}")
        if len(plog.acked) < min_acked:
            problems.append(f"producer {tag}: only {len(plog.acked)} records acked")
    return logs, problems


@pytest.mark.crash
@pytest.mark.timeout(400)
@pytest.mark.parametrize("mode", ["defaults", "sealing_gc_retention", "compacting"])
def test_kill9_during_idempotent_produce_loses_and_duplicates_nothing(make_broker, topic, tmp_path, mode):
    if TARGET == "kafka" and os.environ.get("STRATUS_CRASH_ON_KAFKA") != "1":
        pytest.skip("crash test targets Stratus (STRATUS_CRASH_ON_KAFKA=1 runs it on Kafka)")
    deleting = mode == "sealing_gc_retention"
    extra = {"sealing_gc_retention": DELETING_BROKER, "compacting": COMPACTING_BROKER}.get(mode, {})
    broker = make_broker({"auto.create.topics.enable": "false", **extra})
    create_topic(broker.admin(), topic, partitions=PARTITIONS, config=DELETING_TOPIC if deleting else None)

    procs = start_producers(broker.bootstrap, topic, tmp_path, PRODUCERS, PARTITIONS)
    rnd = random.Random()
    kills, restarted = 0, None
    try:
        time.sleep(2)
        for k in range(KILLS):
            time.sleep(rnd.uniform(0.5, 3.0))
            broker.assert_healthy()
            assert broker.alive(), "the broker runs before each kill"
            broker.kill(signal.SIGKILL)
            kills += 1
            down = rnd.uniform(1.0, 2.0)
            print(f"kill -9 #{k + 1}, down for {down:.1f}s")
            time.sleep(down)
            broker.start(timeout=60)
            restarted = time.time()
        time.sleep(2)
    finally:
        logs, problems = finish_producers(procs, tmp_path)

    checked_at = time.time()
    if deleting:
        stop_retention(broker.admin(), topic)
    ends, log = read_all(broker.bootstrap, topic)
    total = sum(len(v) for v in log.values())
    print(f"consumed {total} records; watermarks {ends}")
    problems += check_log(ends, log, logs.values(), RETENTION_MS if deleting else None, checked_at)
    for p, recs in log.items():
        problems += [f"{v} found in partition {p}" for _, v in recs if int(v.split(":")[1]) % PARTITIONS != p][:3]
    after = {tag: plog.acks_after(restarted) for tag, plog in logs.items()}
    if not all(after.values()):
        problems.append(f"acks after the last restart, per producer: {after}")
    if deleting:
        starts = {p: lo for p, (lo, _) in ends.items()}
        if not all(lo > 0 for lo in starts.values()):
            problems.append(f"retention deleted nothing from some partition: log starts {starts}")
        wal = list((broker.objects_dir() / "wal").rglob("*.wal"))
        segs = list((broker.objects_dir() / "topics").rglob("*.seg"))
        print(f"objects left: {len(wal)} WAL, {len(segs)} segments; log starts {starts}")
        if not segs:
            problems.append("no sealed segment left: sealing did not run")
    if mode == "compacting":
        compacted = [f for f in (broker.objects_dir() / "wal").rglob("*.wal")
                     if re.fullmatch(r"[0-9a-f]{16}-c[0-9]{19}\.wal", f.name)]
        print(f"compacted WAL objects left: {len(compacted)}")
        if not compacted:
            problems.append("no compacted WAL object: compaction did not run")
    if TARGET == "stratus":
        # The embedded store fsyncs the WAL's commits within 200 ms, not before the ack: a
        # kill -9 loses the last ones, which the broker commits again from the objects at
        # start. Acked data survived (checked above); this checks the path was taken.
        text = re.sub(r"\x1b\[[0-9;]*m", "", broker.log_path.read_text(errors="replace"))
        rebuilt = [int(m.group(1)) for line in text.splitlines()
                   if "committed again from their objects" in line
                   for m in [re.search(r"objects=(\d+)", line)] if m]
        print(f"WAL commits rebuilt after the kills: {rebuilt}")
        if not rebuilt:
            problems.append("no kill -9 lost a WAL commit to rebuild: the crash did not test the rebuild")
    print(f"faults: {kills} kill -9 of the broker")
    assert kills == KILLS >= 1
    assert not problems, "\n".join(problems[:20])
