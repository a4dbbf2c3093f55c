"""Small helpers shared by the client tests (confluent-kafka based)."""

import socket
import struct
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import NewTopic


def wait_for(pred, timeout=15, interval=0.1, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def create_topic(admin, name, partitions=1, config=None, timeout=20):
    """Create a topic and wait until metadata shows a leader for every partition."""
    fs = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                       config=config or {})], operation_timeout=timeout)
    fs[name].result(timeout=timeout)
    wait_for_leaders(admin, name, partitions, timeout)


def wait_for_leaders(admin, name, partitions, timeout=20):
    def ready():
        md = admin.list_topics(topic=name, timeout=5).topics.get(name)
        if md is None or md.error is not None or len(md.partitions) != partitions:
            return False
        return all(p.leader >= 0 and p.error is None for p in md.partitions.values())

    wait_for(ready, timeout, what=f"leaders for {partitions} partitions of {name}")


def producer(bootstrap, **conf):
    """A librdkafka producer. One request in flight keeps the order even when a request is
    retried (e.g. NOT_LEADER right after topic creation) without needing idempotence."""
    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 5,
                     "max.in.flight.requests.per.connection": 1, **conf})


def consumer(bootstrap, **conf):
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "stratus-tests-assign-only",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "check.crcs": True,
        **conf,
    })


def produce_sync(p, topic, records, timeout=30):
    """Produce records (dicts of produce() kwargs) and return their delivery reports in order.

    Raises AssertionError if any delivery failed."""
    reports = [None] * len(records)

    def cb(i):
        def on_delivery(err, msg):
            reports[i] = (err, msg)
        return on_delivery

    for i, r in enumerate(records):
        while True:
            try:
                p.produce(topic, on_delivery=cb(i), **r)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    remaining = p.flush(timeout)
    assert remaining == 0, f"{remaining} messages still in flight after {timeout}s"
    errors = [(i, e) for i, (e, _) in enumerate(reports) if e is not None]
    assert not errors, f"{len(errors)} deliveries failed, first: {errors[0]}"
    return [m for _, m in reports]


def consume(bootstrap, assignments, count, timeout=20, **conf):
    """Assign the given TopicPartitions (with start offsets) and read `count` messages."""
    c = consumer(bootstrap, **conf)
    try:
        c.assign(assignments)
        out = []
        deadline = time.time() + timeout
        while len(out) < count and time.time() < deadline:
            for m in c.consume(num_messages=min(500, count - len(out)), timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise AssertionError(f"consume error: {m.error()}")
                out.append(m)
        assert len(out) >= count, f"consumed {len(out)} of {count} messages within {timeout}s"
        return out
    finally:
        c.close()


def consume_quiet(bootstrap, assignments, wait=2.0, **conf):
    """Read whatever arrives within `wait` seconds (for asserting that nothing more comes)."""
    c = consumer(bootstrap, **conf)
    try:
        c.assign(assignments)
        out = []
        deadline = time.time() + wait
        while time.time() < deadline:
            for m in c.consume(num_messages=500, timeout=0.2):
                if m.error() is None:
                    out.append(m)
        return out
    finally:
        c.close()


def tp(topic, partition=0, offset=None):
    return TopicPartition(topic, partition) if offset is None else TopicPartition(topic, partition, offset)


def round_trip(bootstrap, frame, timeout=10):
    """Sends one framed Kafka request (size prefix included) to the first bootstrap address
    and returns the response frame without its size prefix."""
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(frame)

        def read(n):
            buf = b""
            while len(buf) < n:
                chunk = s.recv(n - len(buf))
                assert chunk, "connection closed by the broker"
                buf += chunk
            return buf
        (size,) = struct.unpack(">i", read(4))
        return read(size)
