"""Reads from sealed segments: fetch at any offset, timestamp lookup, after a restart.

segment.ms=500 makes every produce round (1.2 s apart) end up in its own segment: sealed
objects under objects/topics/ on Stratus, rolled .log files on the reference Kafka.
"""

import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, TopicCollection
from confluent_kafka import TopicPartition
from confluent_kafka.admin import OffsetSpec

from util import consume, consumer, create_topic, produce_sync, producer, tp, wait_for

ROUNDS = 4
PER_ROUND = 50


def check_reads(bootstrap, topic, base, n):
    got = consume(bootstrap, [tp(topic, 0, OFFSET_BEGINNING)], n)
    assert [(m.offset(), m.value(), m.timestamp()) for m in got] == \
        [(i, f"v{i}".encode(), (TIMESTAMP_CREATE_TIME, base + i * 10)) for i in range(n)]
    for start in (1, PER_ROUND - 1, PER_ROUND, PER_ROUND + 7, n - 1):
        [m] = consume(bootstrap, [tp(topic, 0, start)], 1)
        assert (m.offset(), m.value()) == (start, f"v{start}".encode()), f"fetch at offset {start}"
    c = consumer(bootstrap)
    try:
        for i in (0, 3, PER_ROUND - 1, PER_ROUND, 2 * PER_ROUND + 5, n - 1):
            [r] = c.offsets_for_times([TopicPartition(topic, 0, base + i * 10)], timeout=10)
            assert r.offset == i, f"timestamp of record {i}"
            [r] = c.offsets_for_times([TopicPartition(topic, 0, base + i * 10 - 5)], timeout=10)
            assert r.offset == i, f"timestamp just before record {i}"
    finally:
        c.close()


def sendfile_bytes(broker):
    for line in (broker.metrics_text() or "").splitlines():
        if line.startswith("stratus_fetch_sendfile_bytes_total "):
            return float(line.split()[1])
    return 0


@pytest.mark.timeout(120)
def test_reads_and_timestamp_lookup_across_sealed_segments_and_restart(make_broker, topic):
    broker = make_broker({"wal.flush.interval.ms": "20"})
    admin = broker.admin()
    create_topic(admin, topic, config={"segment.ms": "500"})
    topic_id = admin.describe_topics(TopicCollection([topic]))[topic].result(timeout=10).topic_id
    base = int(time.time() * 1000) - 3_600_000
    p = producer(broker.bootstrap)
    n = 0
    for r in range(ROUNDS):
        if r:
            time.sleep(1.2)
        produce_sync(p, topic, [{"value": f"v{i}".encode(), "timestamp": base + i * 10, "partition": 0}
                                for i in range(n, n + PER_ROUND)])
        n += PER_ROUND

    def sealed():
        files = broker.segment_files(topic, topic_id, 0)
        return files if len(files) >= 2 else None

    segs = wait_for(sealed, 20, interval=0.2, what="at least 2 segment files")
    bases = sorted(int(f.stem.split("-")[0]) for f in segs)  # <base>-<owner epoch>.seg
    assert bases[0] == 0 and bases == sorted(set(bases)), bases
    assert all(b % PER_ROUND == 0 for b in bases), f"segments do not start at round boundaries: {bases}"

    check_reads(broker.bootstrap, topic, base, n)
    part = TopicPartition(topic, 0)
    mx = admin.list_offsets({part: OffsetSpec.max_timestamp()}, request_timeout=10)[part].result(10)
    assert (mx.offset, mx.timestamp) == (n - 1, base + (n - 1) * 10)

    broker.restart()  # no warm cache: everything comes back from storage
    check_reads(broker.bootstrap, topic, base, n)
    if broker.target == "stratus":
        # A plaintext listener on a file:// store: the sealed segments went out by sendfile.
        assert sendfile_bytes(broker) > 0
    [m] = produce_sync(producer(broker.bootstrap), topic, [{"value": b"next", "partition": 0}])
    assert m.offset() == n


def test_log_append_time_topic_overrides_producer_timestamps(broker, topic):
    create_topic(broker.admin(), topic, config={"message.timestamp.type": "LogAppendTime"})
    old = int(time.time() * 1000) - 86_400_000
    before = int(time.time() * 1000)
    for codec in ("none", "gzip"):
        p = producer(broker.bootstrap, **{"compression.type": codec})
        produce_sync(p, topic, [{"value": f"{codec}-{i}".encode(), "timestamp": old, "partition": 0}
                                for i in range(5)])
    after = int(time.time() * 1000)
    got = consume(broker.bootstrap, [tp(topic, 0, OFFSET_BEGINNING)], 10)
    assert [m.value() for m in got] == [f"{c}-{i}".encode() for c in ("none", "gzip") for i in range(5)]
    for m in got:
        kind, ts = m.timestamp()
        assert kind == TIMESTAMP_LOG_APPEND_TIME, f"offset {m.offset()}: timestamp type {kind}"
        assert before - 1000 <= ts <= after + 1000, f"offset {m.offset()}: timestamp {ts} not broker time"
