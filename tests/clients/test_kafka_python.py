"""kafka-python (a pure-Python protocol implementation, independent of librdkafka)."""

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic


@pytest.mark.parametrize("codec", [None, "gzip", "lz4", "zstd"])
def test_kafka_python_produce_and_assign_consume(broker, topic, codec):
    # The codecs' modules are installed by install-test-deps.sh: a missing one fails here.
    if codec == "lz4":
        import lz4  # noqa: F401
    if codec == "zstd":
        import zstandard  # noqa: F401
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        admin.close()

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", compression_type=codec,
                             linger_ms=10, request_timeout_ms=10000, max_in_flight_requests_per_connection=1)
    futures = [producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % 2,
                             headers=[("n", str(i).encode())]) for i in range(200)]
    producer.flush(timeout=30)
    metas = [f.get(timeout=10) for f in futures]
    producer.close()
    for part in (0, 1):
        assert [m.offset for m in metas if m.partition == part] == list(range(100))

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                             group_id=None, request_timeout_ms=10000)
    try:
        tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        got = []
        deadline = time.time() + 20
        while len(got) < 200 and time.time() < deadline:
            for recs in consumer.poll(timeout_ms=500).values():
                got.extend(recs)
        assert len(got) == 200
        for part in (0, 1):
            recs = [r for r in got if r.partition == part]
            assert [(r.offset, r.key, r.value, r.headers) for r in recs] == \
                [(j, f"k{i}".encode(), f"v{i}".encode(), [("n", str(i).encode())])
                 for j, i in enumerate(range(part, 200, 2))]
        assert consumer.end_offsets(tps) == {tps[0]: 100, tps[1]: 100}
        assert consumer.beginning_offsets(tps) == {tps[0]: 0, tps[1]: 0}
    finally:
        consumer.close()
