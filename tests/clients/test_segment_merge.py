"""Segment merging over the real MinIO and etcd. A partition's record in etcd lists every
segment it retains and is written whole at every seal, so etcd's request limit once capped
a partition at about 7,000 segments. Once a partition holds more than
`segment.merge.min.segments`, its broker merges old segments into fewer. Checked here:

- many small segments become a few (some past an upload part: multipart on MinIO);
- every record reads back once, in order, and timestamp lookups find the same records,
  across a kill -9 of the broker while it merges;
- every segment the record names is in the bucket.
"""

import json
import signal
import time

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from util import consume, consumer, create_topic, produce_sync, producer, tp, wait_for

ROUNDS = 40
PER_ROUND = 40
VALUE = 30_000  # 1.2 MB a round: segments of tier 1 (1-8 MiB), eight of which pass 8 MiB


def value(i):
    return f"v{i}-".encode().ljust(VALUE, b"x")


def named_and_stored(c, infra, topic):
    tid = json.loads(infra.etcd_get(f"/{c.namespace}/topics/{topic}")[""])["id"]
    rec = json.loads(infra.etcd_get(f"/{c.namespace}/partitions/{tid}/{0:06}")[""])
    objects = infra.objects(f"{c.namespace}/topics/{tid}/0/")
    return rec["segments"], objects


def merges(c):
    for line in (c.brokers[0].metrics_text() or "").splitlines():
        if line.startswith("stratus_segment_merges_total "):
            return float(line.split()[1])
    return 0


@pytest.mark.timeout(300)
def test_small_segments_are_merged_on_minio_and_read_back_across_a_kill(cluster, infra, topic):
    c = cluster(1, {"seal.check.interval.ms": "100", "wal.flush.interval.ms": "20",
                    "segment.merge.interval.ms": "300", "segment.merge.min.segments": "6",
                    "segment.merge.min.age.ms": "0"})
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    create_topic(admin, topic, config={"segment.ms": "200"})
    base = int(time.time() * 1000) - 3_600_000
    p = producer(c.bootstrap, acks="all")
    n = 0
    for r in range(ROUNDS):
        produce_sync(p, topic, [{"value": value(i), "timestamp": base + i * 10, "partition": 0}
                                for i in range(n, n + PER_ROUND)], timeout=60)
        n += PER_ROUND
        time.sleep(0.3)
        if r == ROUNDS // 2:
            # Merges run every 300 ms from here on: the kill lands in one or between two.
            wait_for(lambda: merges(c) > 0, 30, what="a first merge")
            c.brokers[0].kill(signal.SIGKILL)
            c.brokers[0].start(timeout=60)
    p.flush(30)

    def merged():
        segments, _ = named_and_stored(c, infra, topic)
        big = [g for g in segments if "-m" in g["key"] and g["size"] > 8 << 20]
        return segments if big and len(segments) <= 12 else None

    segments = wait_for(merged, 90, interval=1,
                        what="the partition's segments merged, one past an upload part")
    print(f"{len(segments)} segments: {[(g['base_offset'], g['size']) for g in segments]}")
    assert [g["base_offset"] for g in segments][0] == 0
    assert all(a["end_offset"] == b["base_offset"] for a, b in zip(segments, segments[1:])), \
        "the segments are contiguous"
    time.sleep(6)  # the inputs' grace period (5 s at this interval)
    segments, stored = named_and_stored(c, infra, topic)
    named = {g["key"].rsplit("/", 1)[1] for g in segments}
    missing = sorted(named - set(stored))
    assert not missing, f"segments named by the record but gone from the bucket: {missing}"
    # (A kill -9 in a merge may leave an unnamed object; the controller's sweep deletes it
    # after ten minutes: tests/merge.rs.)
    print(f"{len(set(stored) - named)} objects left by the kill")

    got = consume(c.bootstrap, [tp(topic, 0, 0)], n, timeout=60)
    assert [m.offset() for m in got] == list(range(n)), "every record once, in order"
    assert all(m.value() == value(m.offset()) for m in got)
    cons = consumer(c.bootstrap)
    try:
        for i in (0, 7, PER_ROUND, n // 2 + 3, n - 1):
            [r] = cons.offsets_for_times([TopicPartition(topic, 0, base + i * 10 - 5)], timeout=10)
            assert r.offset == i, f"timestamp of record {i}"
    finally:
        cons.close()
    c.assert_healthy()
