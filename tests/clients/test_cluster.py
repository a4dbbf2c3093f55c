"""Stratus as a cluster: three brokers as processes over a real etcd and a real MinIO.

- partitions spread over every broker, and clients follow them;
- chaos: kill -9 brokers (and restart etcd and MinIO) under idempotent acks=all producers:
  every acknowledged record is read exactly once per partition, in order;
- a zombie (SIGSTOP past its lease) never gets a late write acknowledged or seen;
- SIGTERM hands partitions off: producers see only retriable errors and lose nothing.
A checker compares the producers' ack logs with what is consumed and prints the counts.
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
from confluent_kafka.admin import AdminClient

from conftest import CLIENTS_DIR
from test_crash import parse_log
from util import consumer, create_topic, producer, tp, wait_for

PARTITIONS = 12


def leaders(bootstrap, topic):
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    t = md.topics[topic]
    return {p.id: p.leader for p in t.partitions.values()}, sorted(md.brokers)


def read_everything(bootstrap, topic, partitions, timeout=90):
    """Every record of every partition, from the log start to the high watermark."""
    c = consumer(bootstrap)
    try:
        ends = {p: c.get_watermark_offsets(tp(topic, p), timeout=20) for p in range(partitions)}
        c.assign([tp(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        want = sum(hi - lo for lo, hi in ends.values())
        out, got = defaultdict(list), 0
        deadline = time.time() + timeout
        while got < want and time.time() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    continue
                out[m.partition()].append((m.offset(), m.value().decode()))
                got += 1
        assert got >= want, f"read {got} of {want} records up to the high watermarks {ends}"
        return ends, out
    finally:
        c.close()


def check_exactly_once(bootstrap, topic, partitions, acked):
    """Every acked record is in the log exactly once, at the offset it was acked with, and
    each partition's offsets are contiguous. Returns a list of problems (empty: fine)."""
    ends, log = read_everything(bootstrap, topic, partitions)
    problems = []
    where = {}
    dups = 0
    for p, recs in log.items():
        offsets = [o for o, _ in recs]
        lo = ends[p][0]
        if offsets != list(range(lo, lo + len(recs))):
            problems.append(f"partition {p}: offsets not contiguous")
        for o, v in recs:
            if v in where:
                dups += 1
            where[v] = (p, o)
    missing = [a for a in acked if where.get(a[2]) != (a[0], a[1])]
    total = sum(len(v) for v in log.values())
    print(f"checker: acked {len(acked)}, consumed {total}, missing or misplaced {len(missing)}, "
          f"duplicated {dups}")
    if missing:
        problems.append(f"{len(missing)} acknowledged records missing or misplaced, e.g. {missing[:3]}")
    if dups:
        problems.append(f"{dups} records appear twice")
    return problems


class Producers:
    """Idempotent acks=all producer processes (crash_producer.py) logging every ack."""

    def __init__(self, bootstrap, topic, tmp_path, tags=("A", "B"), rate=400):
        self.tmp, self.stop_file, self.procs = tmp_path, tmp_path / "stop", {}
        for tag in tags:
            self.procs[tag] = subprocess.Popen(
                [sys.executable, str(CLIENTS_DIR / "crash_producer.py"), "--bootstrap", bootstrap,
                 "--topic", topic, "--tag", tag, "--partitions", str(PARTITIONS),
                 "--out", str(tmp_path / f"{tag}.log"), "--stop", str(self.stop_file),
                 "--rate", str(rate)],
                stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"{tag}.stderr", "wb"))

    def finish(self):
        self.stop_file.touch()
        acked, problems = [], []
        for tag, proc in self.procs.items():
            try:
                proc.wait(timeout=200)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            a, errors, fatal, done = parse_log(self.tmp / f"{tag}.log")
            print(f"producer {tag}: exit {proc.returncode}, {done}, acked {len(a)}, failed {len(errors)}")
            acked += a
            if proc.returncode != 0:
                problems.append(f"producer {tag} exited {proc.returncode}")
            if fatal or errors:
                problems.append(f"producer {tag}: non-retriable failures {(fatal + errors)[:3]}")
            if len(a) < 100:
                problems.append(f"producer {tag}: only {len(a)} records acked")
        return acked, problems


def test_partitions_spread_and_clients_follow(cluster, topic):
    c = cluster(3)
    create_topic(AdminClient({"bootstrap.servers": c.bootstrap}), topic, partitions=PARTITIONS)
    owners, brokers = leaders(c.bootstrap, topic)
    assert brokers == [1, 2, 3], "Metadata lists every broker"
    assert sorted(set(owners.values())) == [1, 2, 3], f"partitions on every broker: {owners}"
    assert max(list(owners.values()).count(n) for n in (1, 2, 3)) <= PARTITIONS // 3 + 1

    # A client that knows only one broker reaches all of them.
    p = producer(c.brokers[0].bootstrap, **{"enable.idempotence": True, "acks": "all"})
    for i in range(1200):
        p.produce(topic, value=f"v{i}".encode(), partition=i % PARTITIONS)
    assert p.flush(60) == 0

    # A group consumer (its coordinator lives on one of the brokers) reads everything once.
    group = f"g-{topic}"
    cons = consumer(c.brokers[2].bootstrap, **{"group.id": group, "auto.offset.reset": "earliest",
                                               "enable.auto.commit": False,
                                               "enable.auto.offset.store": True})
    cons.subscribe([topic])
    seen = defaultdict(list)
    deadline = time.time() + 60
    while sum(len(v) for v in seen.values()) < 1200 and time.time() < deadline:
        for m in cons.consume(num_messages=500, timeout=0.5):
            if not m.error():
                seen[m.partition()].append(m.value().decode())
    committed = cons.commit(asynchronous=False)
    cons.close()
    assert sum(t.offset for t in committed) == 1200, "offsets committed through the coordinator"
    values = [v for vs in seen.values() for v in vs]
    assert sorted(values) == sorted(f"v{i}" for i in range(1200)), "every record exactly once"
    for part, vs in seen.items():
        assert [int(v[1:]) for v in vs] == sorted(int(v[1:]) for v in vs), f"partition {part} in order"


class GroupWatch:
    """Auto-committing group members (librdkafka, in threads) and a watcher that polls the
    group's committed offsets all along (kafka-python: librdkafka's admin client aborts when
    requests time out during the outages)."""

    def __init__(self, bootstrap, topic, members=2):
        from test_groups_crash import Background
        self.bootstrap, self.topic, self.group = bootstrap, topic, f"g-{topic}"
        self.consumed, self.observed = [], []
        self.threads = [Background(self.watch)] + [Background(self.member) for _ in range(members)]
        for t in self.threads:
            t.start()

    def member(self, stop):
        from confluent_kafka import Consumer
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group,
                      "auto.offset.reset": "earliest", "enable.auto.commit": True,
                      "auto.commit.interval.ms": 200, "session.timeout.ms": 10000,
                      "heartbeat.interval.ms": 1000})
        c.subscribe([self.topic])
        try:
            while not stop.is_set():
                m = c.poll(0.2)
                if m is not None and not m.error():
                    self.consumed.append((m.partition(), m.offset(), m.value().decode()))
        finally:
            c.close()

    def watch(self, stop):
        import logging
        from kafka import KafkaAdminClient
        from kafka import TopicPartition as KpTopicPartition
        from kafka.errors import KafkaError
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
        tps = [KpTopicPartition(self.topic, p) for p in range(PARTITIONS)]
        admin = None
        while not stop.is_set():
            try:
                if admin is None:
                    admin = KafkaAdminClient(bootstrap_servers=self.bootstrap.split(","),
                                             request_timeout_ms=3000, reconnect_backoff_max_ms=200)
                res = admin.list_group_offsets({self.group: tps})[self.group]
                self.observed.append((time.time(), {tp.partition: res[tp].offset for tp in tps
                                                    if tp in res and res[tp].offset >= 0}))
            except (KafkaError, OSError, KeyError):
                if admin is not None:
                    admin.close()
                    admin = None
            time.sleep(0.2)
        if admin is not None:
            admin.close()

    def finish(self, acked):
        """Waits until every acked record was consumed and the commits reached the end;
        returns problems, including any committed offset that went backwards."""
        from group_util import end_offsets, missing
        problems = []
        try:
            wait_for(lambda: not missing(acked, list(self.consumed)), timeout=120, interval=0.5,
                     what="the group to consume every acknowledged record")
            ends = end_offsets(acked)
            wait_for(lambda: self.observed and all(self.observed[-1][1].get(p) == o for p, o in ends.items()),
                     timeout=60, interval=0.5, what=f"committed offsets to reach {ends}")
        except AssertionError as e:
            problems.append(str(e)[:500])
        for t in self.threads:
            t.stop.set()
        for t in self.threads:
            t.join(60)
        problems += [f"group thread: {t.error}" for t in self.threads if t.error is not None]
        last, back = {}, []
        for t, offs in self.observed:
            for p, o in offs.items():
                if p in last and o < last[p]:
                    back.append(f"partition {p}: committed {last[p]} then {o}")
                last[p] = o
        print(f"group: consumed {len(self.consumed)} (at least once), {len(self.observed)} commit "
              f"snapshots, {len(back)} went backwards")
        if back:
            problems.append(f"committed offsets went backwards: {back[:5]}")
        return problems


@pytest.mark.crash
@pytest.mark.timeout(500)
def test_chaos_kill9_and_store_restarts(cluster, infra, topic, tmp_path):
    c = cluster(3)
    create_topic(AdminClient({"bootstrap.servers": c.bootstrap}), topic, partitions=PARTITIONS)
    prods = Producers(c.bootstrap, topic, tmp_path)
    group = GroupWatch(c.bootstrap, topic)
    rnd = random.Random()
    try:
        time.sleep(3)
        for k in range(3):
            victim = c.broker(rnd.choice([1, 2, 3]))
            victim.kill(signal.SIGKILL)
            print(f"kill -9 broker {victim.node_id} (#{k + 1})")
            time.sleep(rnd.uniform(1.0, 5.0))
            victim.start(timeout=60)
            time.sleep(2)
        print("restart etcd")
        infra.restart_etcd(down_s=3.0)
        time.sleep(3)
        print("restart MinIO")
        infra.restart_minio(down_s=5.0)
        time.sleep(3)
    finally:
        acked, problems = prods.finish()
    problems += group.finish(acked)
    problems += check_exactly_once(c.bootstrap, topic, PARTITIONS, acked)
    assert not problems, "\n".join(problems)


@pytest.mark.crash
@pytest.mark.timeout(300)
def test_zombie_broker_never_acks_late_writes(cluster, topic, tmp_path):
    c = cluster(3)
    create_topic(AdminClient({"bootstrap.servers": c.bootstrap}), topic, partitions=PARTITIONS)
    prods = Producers(c.bootstrap, topic, tmp_path)
    zombie = c.broker(2)
    try:
        time.sleep(3)
        os.kill(zombie.proc.pid, signal.SIGSTOP)
        # Past its 3 s lease the others take its partitions.
        wait_for(lambda: 2 not in leaders(c.brokers[0].bootstrap, topic)[0].values(), timeout=30,
                 what="partitions moved off the stopped broker")
        time.sleep(2)
        os.kill(zombie.proc.pid, signal.SIGCONT)
        time.sleep(5)
    finally:
        os.kill(zombie.proc.pid, signal.SIGCONT)
        acked, problems = prods.finish()
    problems += check_exactly_once(c.bootstrap, topic, PARTITIONS, acked)
    assert not problems, "\n".join(problems)


@pytest.mark.timeout(300)
def test_sigterm_hands_partitions_off(cluster, topic, tmp_path):
    c = cluster(3)
    create_topic(AdminClient({"bootstrap.servers": c.bootstrap}), topic, partitions=PARTITIONS)
    prods = Producers(c.bootstrap, topic, tmp_path)
    leaving = c.broker(3)
    try:
        time.sleep(3)
        t0 = time.time()
        leaving.stop()
        print(f"broker 3 stopped in {time.time() - t0:.2f}s, exit {leaving.proc.returncode}")
        assert leaving.proc.returncode == 0
        wait_for(lambda: all(o in (1, 2) for o in leaders(c.brokers[0].bootstrap, topic)[0].values()),
                 timeout=10, what="every partition owned by broker 1 or 2")
        # Its registration is gone; the others' Metadata drops it as their watch sees that.
        wait_for(lambda: 3 not in leaders(c.brokers[0].bootstrap, topic)[1], timeout=10,
                 what="broker 3 gone from Metadata")
        time.sleep(3)
    finally:
        acked, problems = prods.finish()
    problems += check_exactly_once(c.bootstrap, topic, PARTITIONS, acked)
    assert not problems, "\n".join(problems)


def test_consumer_reads_from_a_broker_in_its_rack(cluster, topic):
    """KIP-392: every broker can serve committed data from the object store, so the owner
    points a consumer with client.rack to a broker of that rack (preferred read replica),
    which serves it — also records committed after the consumer moved there."""
    import io
    import logging
    c = cluster(3, {}, racks=["zone-a", "zone-b", "zone-c"])
    create_topic(AdminClient({"bootstrap.servers": c.bootstrap}), topic, partitions=6)
    owners, _ = leaders(c.bootstrap, topic)
    p = producer(c.bootstrap, **{"enable.idempotence": True, "acks": "all"})
    for i in range(600):
        p.produce(topic, value=f"v{i}".encode(), partition=i % 6)
    assert p.flush(60) == 0
    buf = io.StringIO()
    log = logging.getLogger(f"rdkafka-{topic}")
    log.addHandler(logging.StreamHandler(buf))
    log.setLevel(logging.DEBUG)
    cons = consumer(c.bootstrap, **{"client.rack": "zone-b", "debug": "fetch", "logger": log})
    cons.assign([tp(topic, i, OFFSET_BEGINNING) for i in range(6)])
    seen = defaultdict(list)

    def drain(n, timeout=30):
        deadline = time.time() + timeout
        while sum(len(v) for v in seen.values()) < n and time.time() < deadline:
            for m in cons.consume(num_messages=500, timeout=0.5):
                if not m.error():
                    seen[m.partition()].append(int(m.value().decode()[1:]))

    drain(600)
    for i in range(600, 1200):
        p.produce(topic, value=f"v{i}".encode(), partition=i % 6)
    assert p.flush(60) == 0
    drain(1200)
    cons.close()
    for part in range(6):
        assert seen[part] == list(range(part, 1200, 6)), f"partition {part}: every record once, in order"
    moved = {int(m.group(1)) for m in re.finditer(
        r"Topic \S+ \[(\d+)\]: migrating from broker \d+ to 2 .*preferred replica updated", buf.getvalue())}
    remote = {part for part, owner in owners.items() if owner != 2}
    assert remote and moved == remote, \
        f"partitions owned outside zone-b ({sorted(remote)}) are read from broker 2 ({sorted(moved)})"


def test_every_broker_sees_topic_changes_made_on_another(cluster, topic):
    """Topics created, reconfigured and deleted through one broker are known to all,
    including brokers that own none of their partitions."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
    c = cluster(3)
    first = AdminClient({"bootstrap.servers": c.brokers[0].bootstrap})
    create_topic(first, topic, partitions=1)

    def seen_by(b):
        md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(topic, timeout=10)
        t = md.topics.get(topic)
        return t is not None and t.error is None and len(t.partitions) == 1

    for b in c.brokers:
        wait_for(lambda b=b: seen_by(b), timeout=10, what=f"topic known to broker {b.node_id}")
    res = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("retention.ms", "123456", incremental_operation=AlterConfigOpType.SET)])
    for f in first.incremental_alter_configs([res]).values():
        f.result(20)

    def retention_on(b):
        a = AdminClient({"bootstrap.servers": b.bootstrap})
        got = a.describe_configs([ConfigResource("topic", topic)])
        cfg = list(got.values())[0].result(20)
        return cfg["retention.ms"].value

    for b in c.brokers:
        wait_for(lambda b=b: retention_on(b) == "123456", timeout=10,
                 what=f"new retention.ms seen by broker {b.node_id}")
    last = AdminClient({"bootstrap.servers": c.brokers[2].bootstrap})
    for f in last.delete_topics([topic]).values():
        f.result(20)
    for b in c.brokers:
        wait_for(lambda b=b: topic not in AdminClient({"bootstrap.servers": b.bootstrap})
                 .list_topics(timeout=10).topics, timeout=10, what=f"topic gone on broker {b.node_id}")
