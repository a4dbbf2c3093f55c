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
import time
from collections import Counter, defaultdict

import pytest
from confluent_kafka import OFFSET_BEGINNING
from confluent_kafka.admin import AdminClient

from test_crash import (DELETING_BROKER, DELETING_TOPIC, RETENTION_MS, check_log, finish_producers,
                        start_producers, stop_retention)
from util import consumer, create_topic, producer, tp, wait_for

PARTITIONS = 12


def leaders(bootstrap, topic):
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    t = md.topics[topic]
    return {p.id: p.leader for p in t.partitions.values()}, sorted(md.brokers)


def read_everything(bootstrap, topic, partitions, timeout=90):
    """Every record of every partition, from the log start to the high watermark, and the
    leader epochs the records were written under, per partition."""
    c = consumer(bootstrap)
    try:
        ends = {p: c.get_watermark_offsets(tp(topic, p), timeout=20) for p in range(partitions)}
        c.assign([tp(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        want = sum(hi - lo for lo, hi in ends.values())
        out, epochs, got, errors = defaultdict(list), defaultdict(set), 0, []
        deadline = time.time() + timeout
        while got < want and time.time() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    errors.append(str(m.error()))
                    continue
                out[m.partition()].append((m.offset(), m.value().decode()))
                epochs[m.partition()].add(m.leader_epoch())
                got += 1
        short = {p: (len(out[p]), hi - lo) for p, (lo, hi) in ends.items() if len(out[p]) < hi - lo}
        assert got >= want, (f"read {got} of {want} records up to the high watermarks {ends}; "
                             f"short partitions {{p: (read, want)}} {short}; errors {errors[:5]}")
        return ends, out, epochs
    finally:
        c.close()


def check_topic(bootstrap, topic, logs, retention_ms=None, checked_at=None):
    """check_log (test_crash.py) over everything the topic holds. Returns (problems, leader
    epochs per partition, {partition: (log start, high watermark)})."""
    ends, log, epochs = read_everything(bootstrap, topic, PARTITIONS)
    return check_log(ends, log, logs, retention_ms, checked_at), epochs, ends


class Producers:
    """Idempotent acks=all producer processes (crash_producer.py) logging every ack."""

    def __init__(self, bootstrap, topic, tmp_path, tags=("A", "B"), rate=400):
        self.tmp = tmp_path
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.procs = start_producers(bootstrap, topic, tmp_path, tags, PARTITIONS, rate)

    def finish(self):
        """Stops them; returns ({tag: ProducerLog}, problems)."""
        return finish_producers(self.procs, self.tmp, min_acked=100)


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
        self.consumed, self.observed, self.commit_acks = [], [], []
        self.threads = [Background(self.watch)] + [Background(self.member) for _ in range(members)]
        for t in self.threads:
            t.start()

    def member(self, stop):
        from confluent_kafka import Consumer

        def on_commit(err, parts):
            if err is None:
                now = time.time()
                self.commit_acks.extend((now, p.partition, p.offset) for p in parts
                                        if p.error is None and p.offset >= 0)
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group,
                      "auto.offset.reset": "earliest", "enable.auto.commit": True,
                      "auto.commit.interval.ms": 200, "session.timeout.ms": 10000,
                      "heartbeat.interval.ms": 1000, "on_commit": on_commit})
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
                # Every partition, None where no offset is committed: one that vanishes is a loss.
                self.observed.append((time.time(), {tp.partition: (res[tp].offset if tp in res and res[tp].offset >= 0
                                                                   else None) for tp in tps}))
            except (KafkaError, OSError, KeyError):
                if admin is not None:
                    admin.close()
                    admin = None
            time.sleep(0.2)
        if admin is not None:
            admin.close()

    def finish(self, acked, faults):
        """Waits until every acked record was consumed and the commits reached the end;
        returns problems: a committed offset that went backwards or vanished, or a commit
        acknowledged before a fault (start, end, what) that is not there after it."""
        from group_util import end_offsets, missing, resolved
        problems = []
        try:
            wait_for(lambda: not missing(acked, list(self.consumed)), timeout=120, interval=0.5,
                     what="the group to consume every acknowledged record")
            ends = end_offsets(resolved(acked, list(self.consumed)))
            wait_for(lambda: self.observed and all(self.observed[-1][1].get(p) == o for p, o in ends.items()),
                     timeout=60, interval=0.5, what=f"committed offsets to reach {ends}")
        except AssertionError as e:
            problems.append(str(e)[:500])
        for t in self.threads:
            t.stop.set()
        for t in self.threads:
            t.join(60)
        problems += [f"group thread: {t.error}" for t in self.threads if t.error is not None]
        # A committed offset may go back only through a commit of that lower offset that a
        # member saw acknowledged after the higher one was seen: librdkafka retries a commit
        # that failed with NOT_COORDINATOR, and a retry can land after a newer commit (so it
        # would on Kafka). The broker reverting to older state has no such acknowledgement.
        last, back, late = {}, [], []
        for t, offs in self.observed:
            for p, o in offs.items():
                if o is not None and p in last and o < last[p][0]:
                    retried = [ta for ta, ap, ao in self.commit_acks if ap == p and ao == o and ta >= last[p][1]]
                    if retried:
                        late.append(f"partition {p}: {last[p][0]} then {o} (acked again at {retried[0]:.3f})")
                    else:
                        back.append(f"partition {p}: committed {last[p][0]} then {o} at {t:.3f}")
                if o is not None and (p not in last or o != last[p][0]):
                    last[p] = (o, t)
                elif o is None and p in last:
                    back.append(f"partition {p}: committed offset {last[p][0]} vanished at {t:.3f}")
        if late:
            print(f"group: {len(late)} committed offsets moved back by a late retried client commit: {late[:5]}")
        lost = []
        for start, end, what in faults:
            before = {}
            for t, p, o in self.commit_acks:
                if t < start:
                    before[p] = max(before.get(p, -1), o)
            after = next((offs for t, offs in self.observed if t > end + 0.5), None)
            if not before or after is None:
                problems.append(f"{what}: no commit acknowledged before it, or none observed after it")
                continue
            gone = {p: (o, after.get(p)) for p, o in before.items() if after.get(p) is None or after[p] < o}
            if gone:
                lost.append(f"{what}: {{partition: (acked, after)}} {gone}")
        print(f"group: consumed {len(self.consumed)} (at least once), {len(self.commit_acks)} commits acked, "
              f"{len(self.observed)} commit snapshots, {len(back)} went backwards or vanished, "
              f"{len(lost)} faults lost acknowledged commits")
        if back:
            problems.append(f"committed offsets went backwards or vanished: {back[:5]}")
        if lost:
            problems.append(f"acknowledged commits lost: {lost[:5]}")
        return problems


def assert_faults_happened(counts, want):
    print("faults performed: " + ", ".join(f"{k} x{v}" for k, v in counts.items()))
    assert counts == want, f"faults performed {dict(counts)}, planned {want}"


# The chaos topic seals about twice a second (WAL objects are then collected); a second topic
# also loses its segments to retention, so kill -9 lands in all the code that deletes objects.
SEALING_TOPIC = {k: v for k, v in DELETING_TOPIC.items() if k != "retention.ms"}
BROKER_KILLS = 3
STORE_FAULTS = [("etcd", signal.SIGTERM, 3.0), ("minio", signal.SIGTERM, 5.0),
                ("etcd", signal.SIGKILL, 3.0), ("minio", signal.SIGKILL, 5.0)]


@pytest.mark.crash
@pytest.mark.timeout(600)
def test_chaos_kill9_and_store_restarts(cluster, infra, topic, tmp_path):
    c = cluster(3, DELETING_BROKER)
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    rtopic = f"{topic}-retained"
    create_topic(admin, topic, partitions=PARTITIONS, config=SEALING_TOPIC)
    create_topic(admin, rtopic, partitions=PARTITIONS, config=DELETING_TOPIC)
    prods = Producers(c.bootstrap, topic, tmp_path / "main")
    rprods = Producers(c.bootstrap, rtopic, tmp_path / "retained", tags=("R",))
    group = GroupWatch(c.bootstrap, topic)
    rnd = random.Random()
    faults, done = [], Counter()  # (start, end, what); what was performed
    try:
        time.sleep(3)
        for k in range(BROKER_KILLS):
            victim = c.broker(rnd.choice([1, 2, 3]))
            c.assert_healthy()
            assert victim.alive(), f"broker {victim.node_id} runs before the kill"
            t0 = time.time()
            victim.kill(signal.SIGKILL)
            done["kill -9 broker"] += 1
            print(f"kill -9 broker {victim.node_id} (#{k + 1})")
            time.sleep(rnd.uniform(1.0, 5.0))
            victim.start(timeout=60)
            faults.append((t0, time.time(), f"kill -9 broker {victim.node_id}"))
            time.sleep(2)
        for name, sig, down in STORE_FAULTS:
            c.assert_healthy()
            how = "kill -9" if sig == signal.SIGKILL else "SIGTERM"
            print(f"{how} {name}, down {down}s")
            t0 = time.time()
            (infra.restart_etcd if name == "etcd" else infra.restart_minio)(down_s=down, sig=sig)
            done[f"{how} {name}"] += 1
            faults.append((t0, time.time(), f"{how} {name}"))
            time.sleep(3)
        c.assert_healthy()
    finally:
        logs, problems = prods.finish()
        rlogs, rproblems = rprods.finish()
    problems += rproblems
    last_fault = faults[-1][1] if faults else time.time()
    after = {tag: plog.acks_after(last_fault) for tag, plog in {**logs, **rlogs}.items()}
    print(f"acks after the last fault, per producer: {after}")
    if not all(after.values()):
        problems.append(f"a producer got no ack after the last fault: {after}")
    acked = [a for plog in logs.values() for a in plog.acked]
    problems += group.finish(acked, faults)
    found, epochs, _ = check_topic(c.bootstrap, topic, logs.values())
    problems += found
    moved = {p: sorted(e) for p, e in epochs.items() if len(e) > 1}
    print(f"partitions written under more than one leader epoch: {len(moved)} of {PARTITIONS}")
    if not moved:
        problems.append(f"no partition changed leader epoch: {dict(epochs)}")
    checked_at = time.time()
    stop_retention(admin, rtopic)
    found, _, ends = check_topic(c.bootstrap, rtopic, rlogs.values(), RETENTION_MS, checked_at)
    problems += found
    starts = {p: lo for p, (lo, _) in ends.items()}
    print(f"retained topic log starts: {starts}")
    if not all(lo > 0 for lo in starts.values()):
        problems.append(f"retention deleted nothing from some partition of {rtopic}: {starts}")
    assert_faults_happened(done, {"kill -9 broker": BROKER_KILLS, "SIGTERM etcd": 1, "SIGTERM minio": 1,
                                  "kill -9 etcd": 1, "kill -9 minio": 1})
    assert not problems, "\n".join(problems)


ZOMBIE_ATTEMPTS = 3


@pytest.mark.crash
@pytest.mark.timeout(400)
def test_zombie_broker_never_acks_late_writes(cluster, topic, tmp_path):
    """A broker stopped past its lease (SIGSTOP) wakes up with produce requests it read
    before; it writes them, its commit is fenced, and none of them is acked or seen. The
    pause is repeated until the zombie's log shows such a fenced write."""
    c = cluster(3)
    create_topic(AdminClient({"bootstrap.servers": c.bootstrap}), topic, partitions=PARTITIONS)
    prods = Producers(c.bootstrap, topic, tmp_path)
    zombie = c.broker(2)
    fenced, pauses = [], 0
    try:
        time.sleep(3)
        while not fenced and pauses < ZOMBIE_ATTEMPTS:
            wait_for(lambda: 2 in leaders(c.brokers[0].bootstrap, topic)[0].values(), timeout=30,
                     what="the zombie-to-be to own partitions")
            c.assert_healthy()
            time.sleep(1)
            log_at = zombie.log_path.stat().st_size
            os.kill(zombie.proc.pid, signal.SIGSTOP)
            pauses += 1
            try:
                # Past its 3 s lease the others take its partitions.
                wait_for(lambda: 2 not in leaders(c.brokers[0].bootstrap, topic)[0].values(), timeout=30,
                         what="partitions moved off the stopped broker")
                time.sleep(2)
            finally:
                os.kill(zombie.proc.pid, signal.SIGCONT)

            def fenced_lines():
                with open(zombie.log_path, "rb") as f:
                    f.seek(log_at)
                    text = f.read().decode(errors="replace")
                return [l for l in text.splitlines() if "wal ranges fenced out" in l]
            try:
                fenced = wait_for(fenced_lines, timeout=5, what="a fenced write by the zombie")
            except AssertionError:
                fenced = []
            print(f"pause #{pauses}: {len(fenced)} fenced WAL commits by the resumed zombie")
        time.sleep(3)
    finally:
        os.kill(zombie.proc.pid, signal.SIGCONT)
        logs, problems = prods.finish()
    assert fenced, f"the zombie never attempted a write after resuming ({pauses} pauses)"
    found, _, _ = check_topic(c.bootstrap, topic, logs.values())
    problems += found
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
        logs, problems = prods.finish()
    found, _, _ = check_topic(c.bootstrap, topic, logs.values())
    problems += found
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
