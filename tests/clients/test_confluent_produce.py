"""confluent-kafka (librdkafka) produce/consume round trips, consuming by assign()."""

import os
import random
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaError, TopicPartition
from confluent_kafka import TIMESTAMP_CREATE_TIME

from util import consume, consume_quiet, consumer, create_topic, produce_sync, producer, tp, wait_for


def test_keys_null_values_and_headers_round_trip(broker, topic):
    admin = broker.admin()
    create_topic(admin, topic)
    base_ts = int(time.time() * 1000) - 60_000
    records = []
    for i in range(50):
        headers = [("idx", str(i).encode()), ("dup", b"a"), ("dup", b"b")]
        if i % 5 == 0:
            headers.append(("nullhdr", None))
        records.append({
            "key": None if i % 7 == 0 else f"key-{i}".encode(),
            "value": None if i % 3 == 0 else f"value-{i}-".encode() * (i + 1),
            "headers": headers,
            "timestamp": base_ts + i,
            "partition": 0,
        })
    p = producer(broker.bootstrap)
    reports = produce_sync(p, topic, records)
    assert [m.offset() for m in reports] == list(range(50))

    got = consume(broker.bootstrap, [tp(topic, 0, OFFSET_BEGINNING)], 50)
    assert [m.offset() for m in got] == list(range(50))
    for r, m in zip(records, got):
        assert m.key() == r["key"]
        assert m.value() == r["value"]
        assert m.headers() == r["headers"]
        assert m.timestamp() == (TIMESTAMP_CREATE_TIME, r["timestamp"])
    assert not consume_quiet(broker.bootstrap, [tp(topic, 0, 50)], wait=1.0)


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_compression_codec_round_trip(broker, topic, codec):
    admin = broker.admin()
    create_topic(admin, topic, partitions=2)
    rnd = random.Random(codec)
    records = []
    for i in range(600):
        # half compressible text, half random bytes, so batches hold both kinds
        value = (f"{codec}-{i:05d}-" * 20).encode() if i % 2 else rnd.randbytes(rnd.randint(0, 3000))
        records.append({"key": f"k{i}".encode(), "value": value, "partition": i % 2,
                        "headers": [("codec", codec.encode())]})
    p = producer(broker.bootstrap, **{"compression.type": codec, "linger.ms": 50, "batch.num.messages": 200})
    produce_sync(p, topic, records)

    got = consume(broker.bootstrap, [tp(topic, 0, OFFSET_BEGINNING), tp(topic, 1, OFFSET_BEGINNING)], 600)
    assert len(got) == 600
    by_part = {0: [], 1: []}
    for m in got:
        by_part[m.partition()].append(m)
    for part in (0, 1):
        want = [r for r in records if r["partition"] == part]
        have = by_part[part]
        assert [m.offset() for m in have] == list(range(len(want)))
        assert [(m.key(), m.value(), m.headers()) for m in have] == \
            [(r["key"], r["value"], r["headers"]) for r in want]


def test_record_near_max_message_bytes_succeeds(broker, topic):
    create_topic(broker.admin(), topic)
    value = os.urandom(900 * 1024)
    p = producer(broker.bootstrap, **{"message.max.bytes": 10_000_000, "compression.type": "none"})
    [m] = produce_sync(p, topic, [{"key": b"big", "value": value, "partition": 0}])
    assert m.offset() == 0
    [got] = consume(broker.bootstrap, [tp(topic, 0, OFFSET_BEGINNING)], 1)
    assert got.key() == b"big" and got.value() == value


def test_record_over_max_message_bytes_rejected_by_broker(broker, topic):
    create_topic(broker.admin(), topic)
    # the client allows it, so only the broker (message.max.bytes default 1048588) can reject it
    p = producer(broker.bootstrap, **{"message.max.bytes": 10_000_000, "compression.type": "none",
                                      "message.send.max.retries": 0})
    errors = []
    p.produce(topic, value=os.urandom(1_200_000), partition=0,
              on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(20) == 0
    assert len(errors) == 1 and errors[0] is not None, "oversized record was accepted"
    assert errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, errors[0]
    # the partition is still usable and holds nothing from the rejected batch
    [m] = produce_sync(p, topic, [{"value": b"after", "partition": 0}])
    assert m.offset() == 0


def test_120_partitions_produce_and_consume_all(broker, topic):
    admin = broker.admin()
    create_topic(admin, topic, partitions=120, timeout=60)
    md = admin.list_topics(topic=topic, timeout=10).topics[topic]
    assert sorted(md.partitions) == list(range(120))
    records = [{"key": f"{p}".encode(), "value": f"p{p}-r{r}".encode(), "partition": p}
               for r in range(3) for p in range(120)]
    produce_sync(producer(broker.bootstrap), topic, records, timeout=60)

    got = consume(broker.bootstrap, [tp(topic, p, OFFSET_BEGINNING) for p in range(120)], 360, timeout=60)
    seen = {}
    for m in got:
        seen.setdefault(m.partition(), []).append((m.offset(), m.value()))
    assert sorted(seen) == list(range(120))
    for p, msgs in seen.items():
        assert msgs == [(r, f"p{p}-r{r}".encode()) for r in range(3)]


def test_assign_offset_end_sees_only_new_records(broker, topic):
    create_topic(broker.admin(), topic)
    p = producer(broker.bootstrap)
    produce_sync(p, topic, [{"value": f"old-{i}".encode(), "partition": 0} for i in range(10)])

    # partition EOF is reported only once the end offset was resolved and fetched up to
    c = consumer(broker.bootstrap, **{"enable.partition.eof": True})
    try:
        c.assign([tp(topic, 0, OFFSET_END)])

        def at_eof():
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                raise AssertionError(f"old record seen from OFFSET_END: offset {m.offset()}")
            return m is not None and m.error().code() == KafkaError._PARTITION_EOF and m.offset()

        assert wait_for(at_eof, 15, what="partition EOF after OFFSET_END") == 10
        produce_sync(p, topic, [{"value": f"new-{i}".encode(), "partition": 0} for i in range(5)])
        got = []
        deadline = time.time() + 15
        while len(got) < 5 and time.time() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                got.append(m)
            elif m is not None and m.error().code() != KafkaError._PARTITION_EOF:
                raise AssertionError(m.error())
        assert [(m.offset(), m.value()) for m in got] == [(10 + i, f"new-{i}".encode()) for i in range(5)]
    finally:
        c.close()


def test_offsets_for_times(broker, topic):
    create_topic(broker.admin(), topic)
    base = int(time.time() * 1000) - 3_600_000
    records = [{"value": f"t{i}".encode(), "timestamp": base + i * 1000, "partition": 0} for i in range(10)]
    # one record per request so each lands in its own batch
    p = producer(broker.bootstrap, **{"linger.ms": 0})
    for r in records:
        produce_sync(p, topic, [r])

    c = consumer(broker.bootstrap)
    try:
        q = [TopicPartition(topic, 0, base + 3500)]
        [r] = c.offsets_for_times(q, timeout=10)
        assert r.offset == 4, "first offset with timestamp >= query"
        [r] = c.offsets_for_times([TopicPartition(topic, 0, base)], timeout=10)
        assert r.offset == 0
        [r] = c.offsets_for_times([TopicPartition(topic, 0, base + 9000)], timeout=10)
        assert r.offset == 9
        [r] = c.offsets_for_times([TopicPartition(topic, 0, base + 60_000)], timeout=10)
        assert r.offset == -1, "no record at or after the timestamp"
    finally:
        c.close()
    [m] = consume(broker.bootstrap, [tp(topic, 0, 4)], 1)
    assert (m.offset(), m.value(), m.timestamp()[1]) == (4, b"t4", base + 4000)


def test_idempotent_producer_in_order_without_duplicates(broker, topic):
    create_topic(broker.admin(), topic, partitions=3)
    n = 3000
    p = producer(broker.bootstrap, **{"enable.idempotence": True, "acks": "all",
                                      "max.in.flight.requests.per.connection": 5,
                                      "linger.ms": 2, "batch.num.messages": 100})
    records = [{"key": f"k{i}".encode(), "value": f"{i}".encode(), "partition": i % 3} for i in range(n)]
    reports = produce_sync(p, topic, records, timeout=60)
    for part in range(3):
        offs = [m.offset() for m in reports if m.partition() == part]
        assert offs == list(range(len(offs))), f"acked offsets of partition {part} not contiguous in order"

    got = consume(broker.bootstrap, [tp(topic, q, OFFSET_BEGINNING) for q in range(3)], n, timeout=30)
    assert len(got) == n
    values = [int(m.value()) for m in got]
    assert len(set(values)) == n, "duplicates"
    for part in range(3):
        vals = [int(m.value()) for m in got if m.partition() == part]
        assert vals == list(range(part, n, 3)), f"partition {part} out of order"
    assert not consume_quiet(broker.bootstrap, [tp(topic, q, n // 3) for q in range(3)], wait=1.0)


def test_long_poll_fetch_returns_as_soon_as_data_arrives(broker, topic):
    create_topic(broker.admin(), topic)
    c = consumer(broker.bootstrap, **{"enable.partition.eof": True, "fetch.wait.max.ms": 5000,
                                      "fetch.min.bytes": 1})
    p = producer(broker.bootstrap, **{"linger.ms": 0})
    produce_sync(p, topic, [{"value": b"warm-up", "partition": 0}])  # connections and metadata ready
    try:
        c.assign([tp(topic, 0, 1)])

        def at_eof():
            m = c.poll(0.2)
            return m is not None and m.error() is not None and m.error().code() == KafkaError._PARTITION_EOF

        wait_for(at_eof, 15, what="partition EOF")
        time.sleep(0.5)  # the consumer now waits in a long-poll Fetch
        latencies = []
        for i in range(3):
            t0 = time.time()
            produce_sync(p, topic, [{"value": f"wake-{i}".encode(), "partition": 0}])
            m = None
            while time.time() - t0 < 10:
                m = c.poll(0.05)
                if m is not None and m.error() is None:
                    break
            assert m is not None and m.error() is None and m.value() == f"wake-{i}".encode()
            latencies.append(time.time() - t0)
        print(f"produce-to-consume latencies: {[round(x, 3) for x in latencies]}")
        assert max(latencies) < 1.5, f"a waiting Fetch was not woken by new data: {latencies}"
    finally:
        c.close()
