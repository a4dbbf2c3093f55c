"""Cluster behaviour over the real MinIO and etcd that the other cluster tests do not reach:

- retention by time and by bytes deletes segment objects from the bucket and drops them
  from the partition records in etcd (nothing dangling, nothing leaked);
- DeleteRecords survives a hand-off, and the high watermark never moves backwards while
  partitions move and a broker is killed;
- a slow (not failing) object store and a slow etcd: everything acked is read back once,
  in order, with only retriable errors;
- a burst into thousands of partitions, whose WAL flush would hold an index entry over
  etcd's request limit, is acked and read back;
- forty thousand partitions are placed, though their assignments would pass that limit;
- the brokers compact etcd's history (etcd keeps every revision until told otherwise).
"""

import json
import signal
import subprocess
import threading
import time

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from conftest import STRATUS_BIN
from delay_proxy import DelayProxy
from test_cluster import PARTITIONS, Producers, check_topic, leaders
from util import consume, create_topic, produce_sync, producer, tp, wait_for


def topic_id(admin, topic):
    from confluent_kafka import TopicCollection
    return str(admin.describe_topics(TopicCollection([topic]))[topic].result(10).topic_id)


def topic_uuid(c, infra, topic):
    """The topic id as Stratus spells it in keys and object names (a hyphenated UUID)."""
    rec = infra.etcd_get(f"/{c.namespace}/topics/{topic}")
    return json.loads(rec[""])["id"]


def partition_state(c, infra, tid, partition):
    """(partition record from etcd, segment object names under the partition in MinIO)."""
    rec = json.loads(infra.etcd_get(f"/{c.namespace}/partitions/{tid}/{partition:06}")[""])
    objects = infra.objects(f"{c.namespace}/topics/{tid}/{partition}/")
    return rec, objects


@pytest.mark.timeout(180)
def test_retention_on_minio_deletes_objects_and_record_entries(cluster, infra, topic):
    c = cluster(1, {"seal.check.interval.ms": "100", "log.retention.check.interval.ms": "300",
                    "wal.flush.interval.ms": "20"})
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    by_time, by_bytes = f"{topic}-time", f"{topic}-bytes"
    create_topic(admin, by_time, config={"retention.ms": "2000", "segment.ms": "300"})
    create_topic(admin, by_bytes, config={"retention.bytes": "20000", "segment.ms": "300"})
    p = producer(c.bootstrap, acks="all")
    deadline = time.time() + 60
    n = 0

    def earliest(t):
        part = TopicPartition(t, 0)
        return admin.list_offsets({part: OffsetSpec.earliest()}, request_timeout=10)[part].result(10).offset

    while time.time() < deadline:
        for t in (by_time, by_bytes):
            produce_sync(p, t, [{"value": f"r{n + i}".encode() * 10, "partition": 0} for i in range(50)])
        n += 50
        if n >= 1500 and earliest(by_time) > 0 and earliest(by_bytes) > 0:
            break
        time.sleep(0.1)
    starts = {t: earliest(t) for t in (by_time, by_bytes)}
    print(f"produced {n} per topic; log starts {starts}")
    assert all(s > 0 for s in starts.values()), f"retention deleted nothing: {starts}"
    # Stop retention, let the last seal and retention pass finish: then the records and the
    # bucket hold still while they are compared.
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
    for t in (by_time, by_bytes):
        res = ConfigResource("topic", t, incremental_configs=[
            ConfigEntry(k, "-1", incremental_operation=AlterConfigOpType.SET)
            for k in ("retention.ms", "retention.bytes")])
        for f in admin.incremental_alter_configs([res]).values():
            f.result(30)
    time.sleep(2)
    starts = {t: earliest(t) for t in (by_time, by_bytes)}

    for t in (by_time, by_bytes):
        tid = topic_uuid(c, infra, t)
        rec, objects = partition_state(c, infra, tid, 0)
        named = sorted(g["key"].rsplit("/", 1)[1] for g in rec["segments"])
        print(f"{t}: record log start {rec['log_start_offset']}, {len(named)} segments named, "
              f"{len(objects)} segment objects")
        assert rec["log_start_offset"] >= starts[t]
        assert all(g["end_offset"] > rec["log_start_offset"] for g in rec["segments"]), \
            "the record names no segment wholly below the log start"
        missing = sorted(set(named) - set(objects))
        leaked = sorted(set(objects) - set(named))
        assert not missing, f"{t}: segments named by the record but gone from the bucket: {missing}"
        assert not leaked, f"{t}: segment objects no record names (retention left them): {leaked}"
        first_kept = min(int(k.split(".")[0].split("-")[0]) for k in objects) if objects else None
        assert first_kept is None or first_kept <= rec["log_start_offset"] < \
            max(g["end_offset"] for g in rec["segments"]) + 1
        if t == by_bytes:
            # (How much retention.bytes keeps is checked on one broker, test_gaps_single.py;
            # here the tail sealed after retention was turned off adds to it.)
            # What is left reads back from the log start on.
            got = consume(c.bootstrap, [tp(t, 0, starts[t])], 10, timeout=30)
            assert got[0].offset() == starts[t]


def stratus_admin(c, node, *args):
    r = subprocess.run([str(STRATUS_BIN), "admin", "--server", c.admin_address(node), *map(str, args)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"stratus admin {args}: {r.stderr}"
    return r.stdout


class WatermarkWatch:
    """Polls every partition's high watermark (ListOffsets latest, from its leader) all along;
    `backwards()` lists each time one was lower than before."""

    def __init__(self, bootstrap, topic, partitions):
        from confluent_kafka import Consumer
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": "hw-watch", "enable.auto.commit": False})
        self.topic, self.partitions = topic, partitions
        self.seen, self.stop = [], threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            for p in range(self.partitions):
                try:
                    _, hi = self.c.get_watermark_offsets(tp(self.topic, p), timeout=2, cached=False)
                    self.seen.append((time.time(), p, hi))
                except Exception:  # noqa: BLE001 — a leader moving or down; polled again
                    pass
            time.sleep(0.05)

    def finish(self):
        self.stop.set()
        self.thread.join(30)
        self.c.close()
        last, back = {}, []
        for t, p, hi in self.seen:
            if p in last and hi < last[p]:
                back.append(f"partition {p}: {last[p]} then {hi} at {t:.3f}")
            last[p] = max(hi, last.get(p, hi))
        print(f"high watermarks: {len(self.seen)} observations, {len(back)} backwards")
        return back


@pytest.mark.crash
@pytest.mark.timeout(300)
def test_delete_records_and_high_watermarks_across_hand_offs(cluster, topic, tmp_path):
    c = cluster(3, admin=True)
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    create_topic(admin, topic, partitions=PARTITIONS)
    p = producer(c.bootstrap, acks="all", **{"enable.idempotence": True})
    produce_sync(p, topic, [{"value": f"pre:{i}".encode(), "partition": 0} for i in range(300)])
    part = TopicPartition(topic, 0, 100)
    res = admin.delete_records([part])[part].result(20)
    assert res.low_watermark == 100, res

    watch = WatermarkWatch(c.bootstrap, topic, PARTITIONS)
    prods = Producers(c.bootstrap, topic, tmp_path)
    moves = 0
    try:
        time.sleep(2)
        # Planned moves of partition 0 around the cluster, each to a broker not owning it.
        for _ in range(3):
            owner = leaders(c.bootstrap, topic)[0][0]
            to = next(n for n in (1, 2, 3) if n != owner)
            out = stratus_admin(c, to, "move", topic, 0, to)
            assert f"now owned by broker {to}" in out, out
            moves += 1
            wait_for(lambda: leaders(c.bootstrap, topic)[0][0] == to, timeout=20,
                     what=f"Metadata to show partition 0 on broker {to}")
            lo, _ = consumer_watermarks(c.bootstrap, topic, 0)
            assert lo == 100, f"log start {lo} after the move to broker {to}; DeleteRecords set 100"
            time.sleep(1)
        # And an unplanned one: kill -9 the owner of partition 0.
        owner = c.broker(leaders(c.bootstrap, topic)[0][0])
        c.assert_healthy()
        assert owner.alive()
        owner.kill(signal.SIGKILL)
        wait_for(lambda: leaders(c.brokers[(owner.node_id % 3)].bootstrap, topic)[0][0] not in
                 (owner.node_id, -1), timeout=30, what="partition 0 to fail over")
        lo, _ = consumer_watermarks(c.bootstrap, topic, 0)
        assert lo == 100, f"log start {lo} after the failover; DeleteRecords set 100"
        owner.start(timeout=60)
        time.sleep(2)
        # DeleteRecords through the new owner still works, and later than the first.
        part = TopicPartition(topic, 0, 150)
        assert admin.delete_records([part])[part].result(20).low_watermark == 150
        time.sleep(1)
    finally:
        logs, problems = prods.finish()
        back = watch.finish()
    assert moves == 3
    assert not back, f"high watermark went backwards: {back[:10]}"
    found, _, ends = check_topic(c.bootstrap, topic, logs.values(), retention_ms=0, checked_at=time.time())
    assert ends[0][0] == 150, f"log start of partition 0: {ends[0]}"
    problems += found
    assert not problems, "\n".join(problems)


def consumer_watermarks(bootstrap, topic, partition):
    """A new consumer's watermarks. Right after a move, its metadata may still name the
    previous owner, which answers NOT_LEADER_OR_FOLLOWER, as Kafka's previous leader does;
    librdkafka's query does not retry it (Kafka's AdminClient.listOffsets does), so this
    retries retriable errors, as an application would."""
    from confluent_kafka import KafkaError, KafkaException
    from util import consumer
    retriable = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                 KafkaError.UNKNOWN_TOPIC_OR_PART)
    deadline = time.time() + 15
    while True:
        c = consumer(bootstrap)
        try:
            return c.get_watermark_offsets(tp(topic, partition), timeout=10, cached=False)
        except KafkaException as e:
            if e.args[0].code() not in retriable or time.time() > deadline:
                raise
        finally:
            c.close()
        time.sleep(0.2)


@pytest.mark.timeout(300)
def test_slow_object_store_and_slow_etcd(cluster, infra, topic, tmp_path):
    """Every request to MinIO and to etcd takes 100 ms longer each way (a loaded or distant
    store, not a failing one): producers only see latency, never an error, and everything
    acked is read back once, in order."""
    delay = 0.1
    with DelayProxy(infra.minio.port, delay) as s3, DelayProxy(infra.etcd.port, delay) as etcd:
        c = cluster(2, etcd_endpoint=f"127.0.0.1:{etcd.port}",
                    env={"AWS_ENDPOINT": f"http://127.0.0.1:{s3.port}"})
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        create_topic(admin, topic, partitions=PARTITIONS, timeout=60)
        p = producer(c.bootstrap, acks="all", **{"enable.idempotence": True})
        t0 = time.time()
        produce_sync(p, topic, [{"value": b"probe", "partition": 0}])
        one = time.time() - t0
        prods = Producers(c.bootstrap, topic, tmp_path, rate=200)
        try:
            time.sleep(10)
        finally:
            logs, problems = prods.finish()
        found, _, _ = check_topic(c.bootstrap, topic, logs.values())
        problems += found
        print(f"one acks=all produce took {one * 1000:.0f} ms; proxies carried {s3.chunks} chunks to MinIO "
              f"over {s3.connections} connections and {etcd.chunks} to etcd over {etcd.connections}")
        # Proof that the stores were slow: a PUT and a commit each wait twice the delay.
        assert one >= 4 * delay, f"an acked produce took only {one:.3f}s through the slow stores"
        assert s3.chunks > 0 and etcd.chunks > 0
        assert not problems, "\n".join(problems)


@pytest.mark.timeout(300)
def test_a_burst_into_thousands_of_partitions_stays_within_etcds_request_limit(cluster, infra, topic):
    """etcd refuses a request over 1.5 MiB (its default `--max-request-bytes`, which the
    test's etcd keeps). A range of 6,000 partitions in one WAL flush, each with a producer
    batch, is an index entry of about 1.7 MB: its commit was refused and retried forever,
    and no producer got an ack. The WAL now cuts its flushes within the limit."""
    n = 6000
    # A long interval: after the first flush, the burst lingers into one buffer.
    c = cluster(1, {"wal.flush.interval.ms": "8000", "wal.flush.min.bytes": str(256 << 20)})
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    create_topic(admin, topic, partitions=n, timeout=120)
    # kafka-python puts every partition's batch in one request once the first batch has
    # lingered (librdkafka sends a request per partition); its idempotent batches add to
    # each range's index bytes.
    from kafka import KafkaProducer
    p = KafkaProducer(bootstrap_servers=c.bootstrap, acks="all", enable_idempotence=True,
                      linger_ms=5000, max_request_size=8 << 20, request_timeout_ms=60000)
    try:
        sent = [p.send(topic, value=f"v{i}".encode(), partition=i) for i in range(n)]
        p.flush(120)
    finally:
        p.close(10)
    failed = [f.exception for f in sent if not f.succeeded()]
    assert not failed, f"{len(failed)} of {n} not acked: {failed[:3]}"
    assert sorted(f.value.partition for f in sent) == list(range(n))
    # Acked at the first try: no flush was refused and retried (the producer's retries
    # would hide it, behind one refused flush per interval).
    metrics = c.brokers[0].metrics_text().splitlines()
    failures = [l for l in metrics if l.startswith("stratus_wal_flush_failures_total")]
    assert failures and all(l.split()[-1] == "0" for l in failures), failures
    # The burst was cut: one buffer would have held it, past the limit.
    cut = [l for l in metrics if l.startswith("stratus_wal_flushes_index_full_total")]
    assert cut and float(cut[0].split()[-1]) >= 1, cut
    parts = [TopicPartition(topic, i) for i in range(n)]
    ends = admin.list_offsets({t: OffsetSpec.latest() for t in parts}, request_timeout=60)
    assert sorted({f.result(60).offset for f in ends.values()}) == [1]
    sample = [0, 1, n // 2, n - 1]
    got = consume(c.bootstrap, [TopicPartition(topic, i, 0) for i in sample], len(sample))
    assert sorted(m.value() for m in got) == sorted(f"v{i}".encode() for i in sample)
    c.assert_healthy()


@pytest.mark.timeout(300)
def test_forty_thousand_partitions_are_placed_within_etcds_request_limit(cluster, topic):
    """The controller writes every changed broker's assignment in one transaction, about
    46 bytes a partition: past about 30,000 partitions etcd refused it whole ("request is
    too large"), every round, and nothing was placed. Past 1 MiB the assignments are now
    written compact (a few bytes a partition)."""
    n, topics = 10_000, [f"{topic}-{k}" for k in range(4)]
    c = cluster(2)
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    for t in topics:
        create_topic(admin, t, partitions=n, timeout=120)
    p = producer(c.bootstrap, acks="all")
    sample = [0, 1, n // 2, n - 1]
    for t in topics:
        produce_sync(p, t, [{"value": f"{t}/{i}".encode(), "partition": i} for i in sample], timeout=120)
    for t in topics:
        got = consume(c.bootstrap, [TopicPartition(t, i, 0) for i in sample], len(sample), timeout=60)
        assert sorted(m.value() for m in got) == sorted(f"{t}/{i}".encode() for i in sample)
    owners = {b for t in topics for b in leaders(c.bootstrap, t)[0].values()}
    assert owners == {1, 2}, f"partitions owned by {owners}"
    c.assert_healthy()


@pytest.mark.timeout(120)
def test_the_brokers_compact_etcds_history(cluster, infra, topic):
    """etcd keeps every revision of every key until it is compacted, and refuses writes
    once they fill its quota: at 50 MB/s of produce that was about 25 minutes. The brokers
    compact it every metadata.store.compaction.interval.ms."""
    c = cluster(1, {"metadata.store.compaction.interval.ms": "1000"})
    etcdctl = [str(infra.cache / "bin" / "etcdctl"), "--endpoints", infra.etcd_endpoint]
    key = f"/{c.namespace}/cluster/id"

    def get(*extra):
        return subprocess.run(etcdctl + ["get", key, "-w", "json", *extra],
                              capture_output=True, timeout=30, text=True)

    start = json.loads(get().stdout)["header"]["revision"]
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    create_topic(admin, topic, partitions=4)
    p = producer(c.bootstrap, acks="all")
    produce_sync(p, topic, [{"value": f"v{i}".encode(), "partition": i % 4} for i in range(2000)])
    # The history before the produce is compacted away; the current values stay.
    wait_for(lambda: "compacted" in get(f"--rev={start}").stderr, 30,
             what=f"etcd's revision {start} compacted")
    assert json.loads(get().stdout)["kvs"], "the cluster id is still there"
    got = consume(c.bootstrap, [TopicPartition(topic, i, 0) for i in range(4)], 2000)
    assert len(got) == 2000
    c.assert_healthy()
