"""Time-based retention deletes sealed segments and moves the log start offset.

On Stratus the sealed segments are objects/topics/<topic-id>/<partition>/<base offset>-<owner
epoch>.seg in the data dir; on the reference Kafka (used to check the test) they are the .log
files of logs/<topic>-<partition>/. Both names start with the 20-digit base offset.
"""

import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicCollection, TopicPartition
from confluent_kafka.admin import OffsetSpec

from util import consume, create_topic, produce_sync, producer, tp


@pytest.mark.timeout(120)
def test_time_retention_deletes_segments_and_moves_log_start(make_broker, topic):
    broker = make_broker({"log.retention.check.interval.ms": "500", "wal.flush.interval.ms": "50"})
    admin = broker.admin()
    create_topic(admin, topic, config={"retention.ms": "2000", "segment.ms": "500"})
    topic_id = admin.describe_topics(TopicCollection([topic]))[topic].result(timeout=10).topic_id
    part = TopicPartition(topic, 0)

    def earliest():
        return admin.list_offsets({part: OffsetSpec.earliest()}, request_timeout=10)[part].result(10).offset

    p = producer(broker.bootstrap)
    produced = 0
    seen = {}  # segment file name -> base offset
    gone = set()
    start = time.time()
    log_start = 0
    while time.time() - start < 60:
        produce_sync(p, topic, [{"value": f"r{produced + i}".encode(), "partition": 0} for i in range(20)])
        produced += 20
        now = {f.name: int(f.stem.split("-")[0]) for f in broker.segment_files(topic, topic_id, 0)}
        gone |= set(seen) - set(now)
        seen.update(now)
        log_start = earliest()
        if gone and log_start > 0:
            break
        time.sleep(0.2)
    elapsed = time.time() - start
    print(f"after {elapsed:.1f}s: produced {produced}, segments seen {len(seen)}, deleted {len(gone)}, "
          f"log start offset {log_start}")

    if not seen:
        topics_dir = broker.objects_dir() / "topics"
        listing = sorted(str(f.relative_to(topics_dir)) for f in topics_dir.rglob("*")) if topics_dir.exists() else []
        pytest.fail(f"no sealed segment files appeared (segment.ms=500); topic id {topic_id}; "
                    f"objects/topics holds: {listing[:20]}")
    assert gone, f"no segment file was deleted within {elapsed:.0f}s (retention.ms=2000): {sorted(seen)}"
    assert log_start > 0, "earliest offset did not move forward"
    for name in gone:
        assert seen[name] < log_start, f"deleted segment {name} starts at or after log start {log_start}"

    latest = admin.list_offsets({part: OffsetSpec.latest()}, request_timeout=10)[part].result(10).offset
    assert latest == produced

    # a consumer from the beginning starts at the (possibly newer) log start offset
    [first] = consume(broker.bootstrap, [tp(topic, 0, OFFSET_BEGINNING)], 1)
    assert first.offset() >= log_start
    assert first.value() == f"r{first.offset()}".encode()
