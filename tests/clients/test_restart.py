"""Data, topics and configs survive a broker restart; Stratus keeps them in its data dir."""

import pytest
from confluent_kafka import OFFSET_BEGINNING
from confluent_kafka.admin import ConfigResource

from util import consume, create_topic, produce_sync, producer, tp, wait_for_leaders


def test_clean_restart_keeps_topics_configs_and_records(make_broker, topic):
    broker = make_broker({"auto.create.topics.enable": "false"})
    admin = broker.admin()
    create_topic(admin, topic, partitions=3, config={"retention.ms": "86400000"})
    records = [{"key": f"k{i}".encode(), "value": f"v{i}".encode(), "partition": i % 3} for i in range(900)]
    produce_sync(producer(broker.bootstrap, **{"acks": "all"}), topic, records)

    broker.restart()
    admin = broker.admin()
    wait_for_leaders(admin, topic, 3)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    cfg = admin.describe_configs([res], request_timeout=10)[res].result(timeout=10)
    assert cfg["retention.ms"].value == "86400000"

    got = consume(broker.bootstrap, [tp(topic, p, OFFSET_BEGINNING) for p in range(3)], 900, timeout=30)
    for p in range(3):
        vals = [(m.offset(), m.value()) for m in got if m.partition() == p]
        assert vals == [(j, f"v{i}".encode()) for j, i in enumerate(range(p, 900, 3))]

    # appends continue at the old end offsets
    reports = produce_sync(producer(broker.bootstrap), topic, [{"value": b"after", "partition": p} for p in range(3)])
    assert [(m.partition(), m.offset()) for m in reports] == [(0, 300), (1, 300), (2, 300)]


@pytest.mark.stratus_only
def test_acked_data_lands_in_object_store_and_metadata_file(make_broker, topic):
    broker = make_broker({"wal.flush.interval.ms": "50"})
    create_topic(broker.admin(), topic)
    produce_sync(producer(broker.bootstrap, **{"acks": "all"}), topic,
                 [{"value": b"payload-%d" % i, "partition": 0} for i in range(100)])
    objects = broker.objects_dir()
    assert (broker.data_dir / "meta.redb").is_file(), "metadata store file missing"
    wal = [f for f in (objects / "wal").rglob("*") if f.is_file()] if (objects / "wal").exists() else []
    segs = list((objects / "topics").rglob("*.seg")) if (objects / "topics").exists() else []
    assert wal or segs, f"acked records are in no WAL object or segment under {objects}"
    stored = b"".join(f.read_bytes() for f in wal + segs)
    # batches are stored as the client sent them (uncompressed here), so the payload is visible
    assert b"payload-0" in stored and b"payload-99" in stored
