"""Single-broker behaviours a Kafka user checks that the rest of the suite did not cover:
retention by bytes, LogAppendTime timestamp lookups across sealed segments, a topic
max.message.bytes below the broker's message.max.bytes, OffsetForLeaderEpoch, acks=0 / acks=1
producers, DescribeLogDirs, and deleting a topic while it is being produced to.

Each test runs against Stratus and, with STRATUS_TEST_TARGET=kafka, against the reference
Apache Kafka; where a test looks at storage it looks at Stratus' objects (sealed segments
under objects/topics/, WAL objects under objects/wal/) or at Kafka's log directory.
"""

import json
import logging
import os
import re
import subprocess
import threading
import time

import pytest
from confluent_kafka import (OFFSET_BEGINNING, OFFSET_INVALID, TIMESTAMP_LOG_APPEND_TIME, KafkaError,
                             KafkaException, TopicCollection, TopicPartition)
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, OffsetSpec
from kafka import KafkaAdminClient
from kafka.protocol.consumer import OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse

from conftest import TARGET
from util import (consume, consume_quiet, consumer, create_topic, produce_sync, producer,
                  round_trip, tp, wait_for)


def topic_id(admin, topic):
    return admin.describe_topics(TopicCollection([topic]))[topic].result(timeout=10).topic_id


def list_offset(admin, topic, partition, spec):
    part = TopicPartition(topic, partition)
    return admin.list_offsets({part: spec}, request_timeout=10)[part].result(timeout=10)


# -- 1. retention.bytes ---------------------------------------------------------------------

RECORD = 1000  # value bytes
ROUND = 20  # records per produce round (each round ends up in its own segment)


@pytest.mark.timeout(120)
def test_retention_bytes_deletes_oldest_segments_and_moves_log_start(make_broker, topic):
    """retention.bytes: the oldest segments are deleted (objects / .log files gone), the log start
    offset moves to the first remaining segment, and what is kept is retention.bytes plus at
    most one segment."""
    broker = make_broker({"log.retention.check.interval.ms": "300", "seal.check.interval.ms": "100",
                          "wal.flush.interval.ms": "20"})
    admin = broker.admin()
    retention = 3 * ROUND * RECORD  # about three rounds
    create_topic(admin, topic, config={"retention.bytes": str(retention), "segment.ms": "300"})
    tid = topic_id(admin, topic)
    p = producer(broker.bootstrap, **{"compression.type": "none"})

    def value(i):
        return f"{i:08d}".encode() + bytes([i % 251]) * (RECORD - 8)

    produced = 0
    seen, gone = {}, set()  # segment file name -> base offset; names deleted since
    start = time.time()
    while time.time() - start < 60:
        produce_sync(p, topic, [{"value": value(produced + i), "partition": 0} for i in range(ROUND)])
        produced += ROUND
        now = {f.name: int(f.stem.split("-")[0]) for f in broker.segment_files(topic, tid, 0)}
        gone |= set(seen) - set(now)
        seen.update(now)
        if produced >= 10 * ROUND and gone:
            break
        time.sleep(0.45)
    print(f"produced {produced} in {time.time() - start:.1f}s, segments seen {len(seen)}, deleted {len(gone)}")
    assert len(seen) >= 3, f"segments did not roll with segment.ms=300: {sorted(seen)}"
    assert gone, f"no segment was deleted with retention.bytes={retention}: {sorted(seen)}"

    # once the last round is sealed (Stratus seals the tail after segment.ms; Kafka keeps it in
    # the active segment) and retention has caught up: what is kept is at least retention.bytes
    # and less than retention.bytes plus one segment, and the log starts at the first segment kept
    def snapshot():
        files = broker.segment_files(topic, tid, 0)
        return ([(f.name, f.stat().st_size) for f in files],
                list_offset(admin, topic, 0, OffsetSpec.earliest()).offset)

    def settled():
        first = snapshot()
        time.sleep(1.0)  # longer than segment.ms + seal and retention check intervals
        if snapshot() != first:
            return None
        files, earliest = first
        sizes = [size for _, size in files]
        total = sum(sizes)
        # (+1 KiB: a Stratus segment object also holds its index)
        ok = files and retention <= total <= retention + max(sizes) + 1024 and earliest == int(files[0][0].split(".")[0].split("-")[0])
        return (files, sizes, earliest) if ok else None

    try:
        files, sizes, earliest = wait_for(settled, 30, interval=0.1, what="retention to settle")
    except AssertionError:
        files, earliest = snapshot()
        pytest.fail(f"kept segments {files} (total {sum(s for _, s in files)}), retention.bytes={retention}, "
                    f"earliest offset {earliest}")
    print(f"kept {len(files)} segments, {sum(sizes)} bytes, log start {earliest}")
    assert earliest > 0
    for name in gone:
        assert seen[name] < earliest, f"deleted segment {name} starts at or after log start {earliest}"
    assert list_offset(admin, topic, 0, OffsetSpec.latest()).offset == produced
    kept_records = produced - earliest
    assert retention // (RECORD + 100) <= kept_records <= (retention + max(sizes)) // RECORD, kept_records

    # a consumer from the beginning starts at the log start offset and reads everything after it
    got = consume(broker.bootstrap, [tp(topic, 0, OFFSET_BEGINNING)], kept_records)
    assert [(m.offset(), m.value()) for m in got] == [(i, value(i)) for i in range(earliest, produced)]
    # an offset below the log start is out of range
    c = consumer(broker.bootstrap, **{"auto.offset.reset": "error"})
    try:
        c.assign([tp(topic, 0, 0)])
        err = None
        deadline = time.time() + 10
        while err is None and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None:
                assert m.error() is not None, f"read offset {m.offset()} below the log start {earliest}"
                err = m.error()
        assert err is not None and err.code() == KafkaError._AUTO_OFFSET_RESET, err
        assert "out of range" in str(err).lower(), str(err)
    finally:
        c.close()


# -- 3. LogAppendTime: timestamp lookups -----------------------------------------------------

@pytest.mark.timeout(120)
def test_log_append_time_timestamp_lookups_across_sealed_segments(make_broker, topic):
    """On a LogAppendTime topic, offsets_for_times / ListOffsets by timestamp use the broker's
    append times (not the producer's), from sealed segments and after a restart."""
    broker = make_broker({"seal.check.interval.ms": "100", "wal.flush.interval.ms": "20"})
    admin = broker.admin()
    create_topic(admin, topic, config={"message.timestamp.type": "LogAppendTime", "segment.ms": "300"})
    tid = topic_id(admin, topic)
    old = int(time.time() * 1000) - 3_600_000  # producer timestamps: an hour ago, 10 ms apart
    # One batch per produce call: a batch is sent only once it holds all five records (or at
    # flush, after all five are queued). With a short linger librdkafka may send the first
    # record alone (CI saw [t, t+4, t+4, t+4, t+4]): two batches, two append times, as in Kafka.
    p = producer(broker.bootstrap, **{"linger.ms": 2000, "batch.num.messages": 5})
    batches = []  # first offset of each produce call (one batch each)
    n = 0
    for rnd in range(3):
        if rnd:
            time.sleep(0.8)  # older than segment.ms: the previous round is sealed
        for _ in range(4):
            msgs = produce_sync(p, topic, [{"value": f"v{i}".encode(), "timestamp": old + 10 * i, "partition": 0}
                                           for i in range(n, n + 5)])
            assert [m.offset() for m in msgs] == list(range(n, n + 5))
            batches.append(n)
            n += 5
            time.sleep(0.03)  # the next batch gets a later broker timestamp

    time.sleep(0.8)  # the last round is sealed too (Stratus; Kafka keeps it in the active segment)
    wait_for(lambda: len(broker.segment_files(topic, tid, 0)) >= 3, 20, interval=0.2,
             what="three segments (one per round)")
    got = consume(broker.bootstrap, [tp(topic, 0, OFFSET_BEGINNING)], n)
    assert [m.value() for m in got] == [f"v{i}".encode() for i in range(n)]
    for m in got:
        assert m.timestamp()[0] == TIMESTAMP_LOG_APPEND_TIME, f"offset {m.offset()}: {m.timestamp()}"
    stamps = [m.timestamp()[1] for m in got]
    for b in batches:  # one append time per batch, later batches later
        assert len(set(stamps[b:b + 5])) == 1, f"batch at {b}: {stamps[b:b + 5]}"
    batch_ts = [stamps[b] for b in batches]
    assert batch_ts == sorted(batch_ts) and len(set(batch_ts)) == len(batch_ts), batch_ts
    assert batch_ts[0] > old + 10 * n + 3_000_000, "broker timestamps are not the append times"

    def check():
        c = consumer(broker.bootstrap)
        try:
            def lookup(ts):
                [r] = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)
                assert r.error is None, r.error
                return r.offset
            for k, b in enumerate(batches):
                assert lookup(batch_ts[k]) == b, f"lookup of batch {k}'s append time {batch_ts[k]}"
                assert lookup(batch_ts[k] - 1) == b, f"lookup of just before batch {k}'s append time"
                following = batches[k + 1] if k + 1 < len(batches) else -1
                assert lookup(batch_ts[k] + 1) == following, f"lookup of just after batch {k}'s append time"
            # the producer's timestamps play no part: they are all before the first append time
            assert lookup(old + 10 * (n - 1)) == 0
            assert lookup(old) == 0
        finally:
            c.close()
        assert list_offset(admin, topic, 0, OffsetSpec.for_timestamp(batch_ts[5])).offset == batches[5]
        mx = list_offset(admin, topic, 0, OffsetSpec.max_timestamp())
        assert mx.timestamp == batch_ts[-1], (mx.offset, mx.timestamp, batch_ts[-1])
        assert batches[-1] <= mx.offset < n, (mx.offset, batches[-1])

    check()
    broker.restart()  # nothing cached: the lookups read the sealed segments' indexes
    admin = broker.admin()
    check()


# -- 4. topic max.message.bytes below the broker's message.max.bytes --------------------------

def deliver(p, topic, values, **kw):
    """Produce values (one flush) and return [(err, msg)] in order."""
    out = [None] * len(values)
    for i, v in enumerate(values):
        p.produce(topic, value=v, partition=0, on_delivery=lambda err, msg, i=i: out.__setitem__(i, (err, msg)), **kw)
    assert p.flush(30) == 0
    return out


def test_topic_max_message_bytes_below_broker_limit(broker, topic):
    """A topic's max.message.bytes (10000) below the broker's message.max.bytes (1 MiB default)
    limits the record batch: a larger batch is refused with MSG_SIZE_TOO_LARGE and stored
    nowhere, a smaller one (or one that compresses below the limit) is accepted; raising the
    topic limit lets the large batch in."""
    admin = broker.admin()
    limit = 10_000
    create_topic(admin, topic, config={"max.message.bytes": str(limit)})
    # a long linger: every batch is sent by deliver()'s flush, once all its records are queued
    conf = {"message.max.bytes": 2_000_000, "message.send.max.retries": 0, "linger.ms": 2000,
            "compression.type": "none"}
    p = producer(broker.bootstrap, **conf)

    big = os.urandom(20_000)
    [(err, _)] = deliver(p, topic, [big])
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err
    assert err.retriable() is False

    small = os.urandom(5_000)
    [(err, m)] = deliver(p, topic, [small])
    assert err is None and m.offset() == 0, err

    # four 4000-byte records in one batch: 16 KB, above the limit, all refused together
    parts = [os.urandom(4_000) for _ in range(4)]
    res = deliver(p, topic, parts)
    assert [e.code() if e else None for e, _ in res] == [KafkaError.MSG_SIZE_TOO_LARGE] * 4, res

    # the limit is on the batch as stored: 50 KB of zeros compress far below it
    zp = producer(broker.bootstrap, **{**conf, "compression.type": "gzip"})
    zeros = bytes(50_000)
    [(err, m)] = deliver(zp, topic, [zeros])
    assert err is None and m.offset() == 1, err

    got = consume(broker.bootstrap, [tp(topic, 0, OFFSET_BEGINNING)], 2)
    assert [(m.offset(), m.value()) for m in got] == [(0, small), (1, zeros)]
    assert list_offset(admin, topic, 0, OffsetSpec.latest()).offset == 2

    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("max.message.bytes", "100000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res], request_timeout=10)[res].result(timeout=10)

    def accepted():
        [(err, m)] = deliver(p, topic, [big])
        if err is not None:
            assert err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err
            return None
        return m

    m = wait_for(accepted, 10, interval=0.2, what="the raised max.message.bytes to apply")
    assert m.offset() == 2
    [last] = consume(broker.bootstrap, [tp(topic, 0, 2)], 1)
    assert last.value() == big


# -- 5. OffsetForLeaderEpoch ---------------------------------------------------------------

NONE, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH, UNKNOWN_TOPIC_OR_PARTITION = 0, 74, 75, 3


def offset_for_leader_epoch(bootstrap, topic, partition, leader_epoch, current_leader_epoch=-1, version=4):
    """One raw OffsetForLeaderEpoch request (as a consumer sends it: replica_id -1); returns
    (error_code, leader_epoch, end_offset) of the partition."""
    T = OffsetForLeaderEpochRequest.OffsetForLeaderTopic
    P = T.OffsetForLeaderPartition
    req = OffsetForLeaderEpochRequest(replica_id=-1, topics=[T(topic=topic, partitions=[
        P(partition=partition, current_leader_epoch=current_leader_epoch, leader_epoch=leader_epoch)])])
    req.with_header(correlation_id=42, client_id="gaps-test")
    raw = round_trip(bootstrap, req.encode(version=version, header=True, framed=True))
    resp = OffsetForLeaderEpochResponse.decode(raw, version=version, header=True)
    assert resp.header.correlation_id == 42
    [t] = resp.topics
    [r] = t.partitions
    assert (t.topic, r.partition) == (topic, partition)
    return r.error_code, r.leader_epoch, r.end_offset


@pytest.mark.timeout(120)
def test_offset_for_leader_epoch(make_broker, topic):
    """OffsetForLeaderEpoch (KIP-320) as Kafka answers it: the current epoch ends at the log end,
    an older epoch ends where the next one starts, an epoch newer than any is undefined, and a
    current_leader_epoch that is too old / too new is FENCED / UNKNOWN_LEADER_EPOCH. A consumer
    that validates its position with it across a broker restart neither rewinds nor skips."""
    broker = make_broker({"wal.flush.interval.ms": "20"})
    b = broker.bootstrap
    create_topic(broker.admin(), topic)
    produce_sync(producer(b), topic, [{"value": f"a{i}".encode(), "partition": 0} for i in range(10)])

    # a consumer reads the 10 records and stays assigned through the restart
    c = consumer(b, **{"auto.offset.reset": "error", "topic.metadata.refresh.interval.ms": 1000})
    read, errors = [], []
    try:
        c.assign([tp(topic, 0, 0)])
        deadline = time.time() + 20
        while len(read) < 10 and time.time() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                read.append(m)
        assert [m.offset() for m in read] == list(range(10))
        e0 = read[-1].leader_epoch()
        assert e0 is not None and e0 >= 0, e0
        assert {m.leader_epoch() for m in read} == {e0}

        assert offset_for_leader_epoch(b, topic, 0, e0) == (NONE, e0, 10)
        assert offset_for_leader_epoch(b, topic, 0, e0, current_leader_epoch=e0) == (NONE, e0, 10)
        # the end offset of the current epoch is never below what the consumer has read
        assert offset_for_leader_epoch(b, topic, 0, e0)[2] >= read[-1].offset() + 1
        # an epoch newer than any the partition had: undefined (no error), as in Kafka
        assert offset_for_leader_epoch(b, topic, 0, e0 + 5) == (NONE, -1, -1)
        # the client thinks the leader is newer than it is
        assert offset_for_leader_epoch(b, topic, 0, e0, current_leader_epoch=e0 + 1)[0] == UNKNOWN_LEADER_EPOCH
        assert offset_for_leader_epoch(b, topic + "-nope", 0, e0)[0] == UNKNOWN_TOPIC_OR_PARTITION
        assert offset_for_leader_epoch(b, topic, 7, e0)[0] == UNKNOWN_TOPIC_OR_PARTITION

        broker.restart()  # a new leader epoch, under which nothing is written
        broker.restart()  # and another one
        produce_sync(producer(b), topic, [{"value": f"b{i}".encode(), "partition": 0} for i in range(5)])
        deadline = time.time() + 30
        while len(read) < 15 and time.time() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error() is None:
                read.append(m)
            elif m.error().code() not in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
                errors.append(m.error())
        # librdkafka validated its position (offset 10, epoch e0) against the new leader
        assert not errors, errors
        assert [(m.offset(), m.value()) for m in read] == \
            [(i, f"a{i}".encode()) for i in range(10)] + [(10 + i, f"b{i}".encode()) for i in range(5)]
    finally:
        c.close()
    e1 = read[-1].leader_epoch()
    print(f"leader epochs: {e0} before the restarts, {e1} after")
    assert e1 >= e0 + 2, f"leader epoch did not grow with each restart: {e0} -> {e1}"
    assert {m.leader_epoch() for m in read[10:]} == {e1}

    assert offset_for_leader_epoch(b, topic, 0, e1, current_leader_epoch=e1) == (NONE, e1, 15)
    assert offset_for_leader_epoch(b, topic, 0, e0) == (NONE, e0, 10)  # ends where the next one starts
    assert offset_for_leader_epoch(b, topic, 0, e1 + 1) == (NONE, -1, -1)
    assert offset_for_leader_epoch(b, topic, 0, e1, current_leader_epoch=e0)[0] == FENCED_LEADER_EPOCH
    assert offset_for_leader_epoch(b, topic, 0, e1, current_leader_epoch=e1 + 1)[0] == UNKNOWN_LEADER_EPOCH
    # epochs in between wrote nothing, so the log has no such epoch: Kafka answers with the
    # largest epoch below that the log has (its leader-epoch cache drops an epoch that starts
    # where the next one starts), e0, and where it ends
    between = {k: offset_for_leader_epoch(b, topic, 0, k) for k in range(e0 + 1, e1)}
    assert between == {k: (NONE, e0, 10) for k in range(e0 + 1, e1)}, between


# -- 6. acks=0 and acks=1 ------------------------------------------------------------------

def test_acks_1_and_acks_0_producers_deliver_everything_in_order(broker, topic):
    """acks=1: every record is acknowledged with its offset, in order; acks=0: no offsets come
    back, yet every record lands, in order, after the acks=1 ones."""
    admin = broker.admin()
    create_topic(admin, topic)
    n = 400
    p1 = producer(broker.bootstrap, acks=1, **{"enable.idempotence": False, "batch.num.messages": 25})
    acked = produce_sync(p1, topic, [{"value": f"one-{i}".encode(), "partition": 0} for i in range(n)])
    assert [m.offset() for m in acked] == list(range(n))

    # several requests in flight: nothing waits for the broker
    p0 = producer(broker.bootstrap, acks=0, **{"enable.idempotence": False, "batch.num.messages": 25,
                                               "max.in.flight.requests.per.connection": 5})
    reports = produce_sync(p0, topic, [{"value": f"zero-{i}".encode(), "partition": 0} for i in range(n)])
    assert {m.offset() for m in reports} <= {None, OFFSET_INVALID, -1}, "acks=0 got offsets back"

    wait_for(lambda: list_offset(admin, topic, 0, OffsetSpec.latest()).offset == 2 * n, 15,
             what=f"all {2 * n} records to land")
    got = consume(broker.bootstrap, [tp(topic, 0, OFFSET_BEGINNING)], 2 * n)
    assert [(m.offset(), m.value()) for m in got] == \
        [(i, f"one-{i}".encode()) for i in range(n)] + [(n + i, f"zero-{i}".encode()) for i in range(n)]
    assert not consume_quiet(broker.bootstrap, [tp(topic, 0, 2 * n)], wait=1.0), "records beyond the end"


# -- 7. DescribeLogDirs ----------------------------------------------------------------------

def log_dir_sizes(bootstrap, topic):
    """{partition: size} of the topic from DescribeLogDirs (kafka-python), over all log dirs."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        res = admin.describe_log_dirs()
    finally:
        admin.close()
    sizes = {}
    for broker_res in res:
        for d in broker_res["log_dirs"]:
            assert d["error_code"] == 0, d
            for t in d["topics"]:
                if t["name"] == topic:
                    for p in t["partitions"]:
                        sizes[p["partition_index"]] = sizes.get(p["partition_index"], 0) + p["partition_size"]
    return sizes


def test_describe_log_dirs_reports_partition_sizes(broker, topic, kafka_home):
    """DescribeLogDirs lists every partition of the topic with a size that grows with what is
    produced to that partition (and only that one), stays put when segments roll/seal, and the
    Kafka CLI (kafka-log-dirs) reports the same."""
    admin = broker.admin()
    create_topic(admin, topic, partitions=2, config={"segment.ms": "500"})
    assert log_dir_sizes(broker.bootstrap, topic) == {0: 0, 1: 0}

    p = producer(broker.bootstrap, **{"compression.type": "none"})
    payload = 100 * 1000
    produce_sync(p, topic, [{"value": bytes([i]) * 1000, "partition": 0} for i in range(100)])
    sizes = log_dir_sizes(broker.bootstrap, topic)
    assert payload <= sizes[0] <= payload * 1.3, sizes
    assert sizes[1] == 0, sizes

    produce_sync(p, topic, [{"value": bytes([i]) * 1000, "partition": 1} for i in range(50)])
    after = log_dir_sizes(broker.bootstrap, topic)
    assert after[0] == sizes[0], after
    assert payload // 2 <= after[1] <= payload // 2 * 1.3, after

    # segment.ms=500: Stratus seals the data into segment objects (Kafka rolls on the next append)
    tid = topic_id(admin, topic)
    wait_for(lambda: all(broker.segment_files(topic, tid, q) for q in (0, 1)), 15, interval=0.2,
             what="sealed segments of both partitions")
    assert log_dir_sizes(broker.bootstrap, topic) == after

    out = subprocess.run(["java", "-cp", f"{kafka_home}/lib/*", "org.apache.kafka.tools.LogDirsCommand",
                          "--describe", "--bootstrap-server", broker.bootstrap, "--topic-list", topic],
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr[-2000:]
    line = [l for l in out.stdout.splitlines() if l.startswith("{")]
    assert line, out.stdout
    desc = json.loads(line[-1])
    cli = {}
    for b in desc["brokers"]:
        for d in b["logDirs"]:
            assert d["error"] is None, d
            for part in d["partitions"]:
                cli[part["partition"]] = part["size"]
    assert cli == {f"{topic}-0": after[0], f"{topic}-1": after[1]}, cli


# -- 8. delete a topic while producing -------------------------------------------------------

@pytest.mark.timeout(120)
def test_delete_topic_while_producing(make_broker, topic):
    """A topic deleted under a producer: the producer gets UNKNOWN_TOPIC errors (no crash), the
    topic leaves the metadata, its stored data (Stratus: segment and WAL objects; Kafka: the
    partition directories) is deleted, and a topic created again with the same name is empty."""
    settings = {"auto.create.topics.enable": "false", "seal.check.interval.ms": "100",
                "wal.flush.interval.ms": "20"}
    if TARGET == "kafka":
        settings["file.delete.delay.ms"] = "1000"  # Kafka's default keeps deleted logs 60 s
    broker = make_broker(settings)
    admin = broker.admin()
    partitions = 2
    create_topic(admin, topic, partitions=partitions, config={"segment.ms": "300"})
    tid = topic_id(admin, topic)

    stop = threading.Event()
    acked, errors, unflushed = [], [], []
    broker_errors = set()  # what the broker answered to Produce, from librdkafka's debug log

    class Log(logging.Handler):
        def emit(self, record):
            m = re.search(r"encountered error: Broker: ([^(]+?) \(", record.getMessage())
            if m:
                broker_errors.add(m.group(1))
    log = logging.getLogger(f"rdkafka-{topic}")
    log.propagate = False
    log.addHandler(Log())
    log.setLevel(logging.DEBUG)

    def produce():
        # topic.metadata.propagation.max.ms: how long librdkafka waits before it believes a
        # topic missing from metadata is gone (30 s by default)
        p = producer(broker.bootstrap, acks="all", logger=log, debug="msg",
                     **{"message.timeout.ms": 8000, "topic.metadata.propagation.max.ms": 1000,
                        "topic.metadata.refresh.interval.ms": 500})

        def on_delivery(err, msg):
            (errors if err else acked).append(err or (msg.partition(), msg.offset()))
        i = 0
        while not stop.is_set():
            for _ in range(10):
                try:
                    p.produce(topic, value=f"v{i}".encode(), partition=i % partitions, on_delivery=on_delivery)
                except KafkaException as e:  # an unknown topic may be refused at once
                    errors.append(e.args[0])
                except BufferError:
                    pass
                i += 1
            p.poll(0.05)
        unflushed.append(p.flush(30))  # every message gets its result (within message.timeout.ms)

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    try:
        wait_for(lambda: all(broker.segment_files(topic, tid, q) for q in range(partitions)) and len(acked) > 100,
                 20, interval=0.2, what="sealed segments of both partitions")
        stratus_wal = broker.objects_dir() / "wal"
        if TARGET == "stratus":
            assert any(f.is_file() for f in stratus_wal.rglob("*")), "no WAL objects before the delete"
        acked_before = len(acked)
        admin.delete_topics([topic], operation_timeout=20)[topic].result(timeout=20)
        acked_at_delete = len(acked)
        # the producer goes on and learns that the topic is gone
        wait_for(lambda: len(errors) > 50, 20, interval=0.2, what="the producer's deliveries to fail")
        acked_later = len(acked)
        time.sleep(1)
    finally:
        stop.set()
        t.join(40)
    assert not t.is_alive(), "producer thread hung"
    assert unflushed == [0], f"{unflushed} messages without a delivery report"
    codes = {e.code() for e in errors}
    print(f"acked {len(acked)} ({acked_before} before the delete, {acked_at_delete} when it returned), "
          f"errors {len(errors)}: {sorted(KafkaError(c).name() for c in codes)}, broker said {broker_errors}")
    # _DESTROY: once (in ~30 CI runs, under load) librdkafka reported messages it had in flight
    # when the topic vanished with it, next to _UNKNOWN_TOPIC; a client-side form of the same
    # outcome (not yet seen against Kafka: to investigate, issue 14's note).
    unknown = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION}
    assert codes & unknown and codes <= unknown | {KafkaError._DESTROY}, [str(e) for e in errors[:5]]
    assert "Unknown topic or partition" in broker_errors, broker_errors
    # once the producer got errors nothing more was acknowledged
    assert len(acked) == acked_later, (acked_later, len(acked))

    md = admin.list_topics(timeout=10)
    assert topic not in md.topics or md.topics[topic].error is not None

    def leftovers():
        if TARGET == "kafka":
            logs = broker.data_dir / "logs"
            return sorted(d.name for d in logs.iterdir() if d.name.startswith(f"{topic}-"))
        topics_dir = broker.objects_dir() / "topics"
        out = [str(f.relative_to(broker.objects_dir())) for f in topics_dir.rglob("*") if f.is_file()]
        # A collected WAL object's file may stay as a spare (`_spare#<digits>` in its WAL
        # directory, crates/log/src/spares.rs), to be written over by a later WAL object: no
        # object (listings skip it), nothing reads it, and a start removes it.
        out += [str(f.relative_to(broker.objects_dir())) for f in stratus_wal.rglob("*")
                if f.is_file() and not re.fullmatch(r"_spare#\d+", f.name)]
        return out

    try:
        wait_for(lambda: not leftovers(), 20, interval=0.3, what="the deleted topic's data to be deleted")
    except AssertionError:
        pytest.fail(f"stored data of the deleted topic left after 20 s: {leftovers()[:10]}")

    # the same name again: a new, empty topic
    create_topic(admin, topic, partitions=1)
    assert topic_id(admin, topic) != tid
    assert list_offset(admin, topic, 0, OffsetSpec.earliest()).offset == 0
    assert list_offset(admin, topic, 0, OffsetSpec.latest()).offset == 0
    assert consume_quiet(broker.bootstrap, [tp(topic, 0, OFFSET_BEGINNING)], wait=1.5) == []
    [m] = produce_sync(producer(broker.bootstrap), topic, [{"value": b"fresh", "partition": 0}])
    assert m.offset() == 0
    [m] = consume(broker.bootstrap, [tp(topic, 0, OFFSET_BEGINNING)], 1)
    assert (m.offset(), m.value()) == (0, b"fresh")
