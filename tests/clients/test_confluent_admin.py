"""confluent-kafka AdminClient: topics, partitions, configs, records, offsets, cluster."""

import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, NewPartitions,
                                   NewTopic, OffsetSpec)

from util import consume, create_topic, produce_sync, producer, tp, wait_for, wait_for_leaders

RETENTION_DEFAULT = "604800000"


def error_code(exc_info):
    return exc_info.value.args[0].code()


def topic_configs(admin, name):
    res = ConfigResource(ConfigResource.Type.TOPIC, name)
    return admin.describe_configs([res], request_timeout=10)[res].result(timeout=10)


def test_create_topics_validate_only_then_create(broker, topic):
    admin = broker.admin()
    fs = admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)], validate_only=True)
    fs[topic].result(timeout=10)
    time.sleep(0.5)
    assert topic not in admin.list_topics(timeout=10).topics, "validate_only created the topic"

    create_topic(admin, topic, partitions=3)
    md = admin.list_topics(topic=topic, timeout=10).topics[topic]
    assert len(md.partitions) == 3

    with pytest.raises(KafkaException) as e:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=10)
    assert error_code(e) == KafkaError.TOPIC_ALREADY_EXISTS

    bad = topic + "-bad-config"
    with pytest.raises(KafkaException) as e:
        admin.create_topics([NewTopic(bad, num_partitions=1, replication_factor=1,
                                      config={"retention.ms": "not-a-number"})])[bad].result(timeout=10)
    assert error_code(e) == KafkaError.INVALID_CONFIG


def test_describe_and_list_topics(broker, topic):
    admin = broker.admin()
    create_topic(admin, topic, partitions=4)
    listed = admin.list_topics(timeout=10)
    assert topic in listed.topics
    assert listed.topics[topic].error is None

    desc = admin.describe_topics(TopicCollection([topic]), request_timeout=10)[topic].result(timeout=10)
    assert desc.name == topic
    assert desc.topic_id is not None and str(desc.topic_id) != "AAAAAAAAAAAAAAAAAAAAAA"
    assert desc.is_internal is False
    assert [p.id for p in desc.partitions] == [0, 1, 2, 3]
    node_ids = {n.id for n in listed.brokers.values()}
    for p in desc.partitions:
        assert p.leader is not None and p.leader.id in node_ids
        assert [r.id for r in p.replicas] == [p.leader.id]
        assert [r.id for r in p.isr] == [p.leader.id]

    missing = topic + "-missing"
    with pytest.raises(KafkaException) as e:
        admin.describe_topics(TopicCollection([missing]), request_timeout=10)[missing].result(timeout=10)
    assert error_code(e) == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_create_partitions(broker, topic):
    admin = broker.admin()
    create_topic(admin, topic, partitions=2)
    admin.create_partitions([NewPartitions(topic, 5)])[topic].result(timeout=10)
    wait_for_leaders(admin, topic, 5)
    [m] = produce_sync(producer(broker.bootstrap), topic, [{"value": b"in-new-partition", "partition": 4}])
    assert (m.partition(), m.offset()) == (4, 0)
    [got] = consume(broker.bootstrap, [tp(topic, 4, OFFSET_BEGINNING)], 1)
    assert got.value() == b"in-new-partition"

    with pytest.raises(KafkaException) as e:
        admin.create_partitions([NewPartitions(topic, 3)])[topic].result(timeout=10)
    assert error_code(e) == KafkaError.INVALID_PARTITIONS


def test_delete_topics(broker, topic):
    admin = broker.admin()
    create_topic(admin, topic, partitions=2)
    produce_sync(producer(broker.bootstrap), topic, [{"value": b"x", "partition": 0}])
    admin.delete_topics([topic], operation_timeout=10)[topic].result(timeout=10)
    wait_for(lambda: topic not in admin.list_topics(timeout=10).topics, 10, what="topic to disappear")
    with pytest.raises(KafkaException) as e:
        admin.delete_topics([topic], operation_timeout=10)[topic].result(timeout=10)
    assert error_code(e) == KafkaError.UNKNOWN_TOPIC_OR_PART

    # the name can be reused and the new topic starts empty
    def recreate():
        try:
            create_topic(admin, topic, partitions=1)
            return True
        except KafkaException as ex:  # Kafka may briefly report the topic as being deleted
            if ex.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                return False
            raise
    wait_for(recreate, 15, interval=0.5, what="re-creating the deleted topic")
    [m] = produce_sync(producer(broker.bootstrap), topic, [{"value": b"fresh", "partition": 0}])
    assert m.offset() == 0


def test_describe_configs_defaults_and_sources(broker, topic):
    admin = broker.admin()
    create_topic(admin, topic, config={"retention.ms": "123456789"})
    cfg = topic_configs(admin, topic)
    for name in ("retention.ms", "retention.bytes", "cleanup.policy", "segment.bytes", "segment.ms",
                 "max.message.bytes", "min.insync.replicas", "message.timestamp.type"):
        assert name in cfg, f"{name} missing from DescribeConfigs"
    assert cfg["retention.ms"].value == "123456789"
    assert cfg["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert cfg["retention.ms"].is_default is False
    assert cfg["cleanup.policy"].value == "delete"
    assert cfg["cleanup.policy"].is_default is True
    assert cfg["retention.bytes"].value == "-1"
    assert cfg["message.timestamp.type"].value == "CreateTime"

    other = topic + "-defaults"
    create_topic(admin, other)
    cfg = topic_configs(admin, other)
    assert cfg["retention.ms"].value == RETENTION_DEFAULT
    assert cfg["retention.ms"].source in (ConfigSource.DEFAULT_CONFIG.value,
                                          ConfigSource.STATIC_BROKER_CONFIG.value)
    assert cfg["retention.ms"].is_default is True

    node = next(iter(admin.list_topics(timeout=10).brokers))
    res = ConfigResource(ConfigResource.Type.BROKER, str(node))
    bcfg = admin.describe_configs([res], request_timeout=10)[res].result(timeout=10)
    assert bcfg["message.max.bytes"].value == "1048588"
    assert bcfg["num.partitions"].value == "1"


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated")
def test_alter_configs_and_incremental_alter_configs(broker, topic):
    admin = broker.admin()
    create_topic(admin, topic)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"retention.ms": "86400000"})
    admin.alter_configs([res], request_timeout=10)[res].result(timeout=10)
    cfg = wait_for(lambda: (c := topic_configs(admin, topic))["retention.ms"].value == "86400000" and c,
                   10, what="alter_configs to apply")
    assert cfg["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("segment.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    admin.incremental_alter_configs([res], request_timeout=10)[res].result(timeout=10)
    cfg = wait_for(lambda: (c := topic_configs(admin, topic))["segment.ms"].value == "3600000" and c,
                   10, what="incremental_alter_configs to apply")
    assert cfg["retention.ms"].value == RETENTION_DEFAULT
    assert cfg["retention.ms"].is_default is True
    assert cfg["segment.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "-5x", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as e:
        admin.incremental_alter_configs([res], request_timeout=10)[res].result(timeout=10)
    assert error_code(e) == KafkaError.INVALID_CONFIG
    assert topic_configs(admin, topic)["retention.ms"].value == RETENTION_DEFAULT


def test_delete_records_moves_log_start_offset(broker, topic):
    admin = broker.admin()
    create_topic(admin, topic)
    produce_sync(producer(broker.bootstrap), topic, [{"value": f"r{i}".encode(), "partition": 0}
                                                     for i in range(20)])
    fs = admin.delete_records([TopicPartition(topic, 0, 7)], request_timeout=10)
    res = fs[TopicPartition(topic, 0)].result(timeout=10)
    assert res.low_watermark == 7

    offs = admin.list_offsets({TopicPartition(topic, 0): OffsetSpec.earliest()}, request_timeout=10)
    assert offs[TopicPartition(topic, 0)].result(timeout=10).offset == 7
    got = consume(broker.bootstrap, [tp(topic, 0, OFFSET_BEGINNING)], 13)
    assert [(m.offset(), m.value()) for m in got] == [(i, f"r{i}".encode()) for i in range(7, 20)]

    # deleting beyond the high watermark is an error
    fs = admin.delete_records([TopicPartition(topic, 0, 25)], request_timeout=10)
    with pytest.raises(KafkaException) as e:
        fs[TopicPartition(topic, 0)].result(timeout=10)
    assert error_code(e) == KafkaError.OFFSET_OUT_OF_RANGE


def test_list_offsets_earliest_latest_max_timestamp(broker, topic):
    admin = broker.admin()
    create_topic(admin, topic)
    base = int(time.time() * 1000) - 600_000
    stamps = [base + d for d in (0, 10, 50_000, 20, 30)]  # maximum at offset 2
    p = producer(broker.bootstrap, **{"linger.ms": 0})
    for i, ts in enumerate(stamps):
        produce_sync(p, topic, [{"value": f"v{i}".encode(), "timestamp": ts, "partition": 0}])
    part = TopicPartition(topic, 0)

    def lookup(spec):
        return admin.list_offsets({part: spec}, request_timeout=10)[part].result(timeout=10)

    assert lookup(OffsetSpec.earliest()).offset == 0
    assert lookup(OffsetSpec.latest()).offset == 5
    mx = lookup(OffsetSpec.max_timestamp())
    assert (mx.offset, mx.timestamp) == (2, base + 50_000)
    assert lookup(OffsetSpec.for_timestamp(base + 15)).offset == 2
    assert lookup(OffsetSpec.for_timestamp(base + 60_000)).offset == -1


def test_describe_cluster(broker):
    admin = broker.admin()
    desc = admin.describe_cluster(request_timeout=10).result(timeout=10)
    assert desc.cluster_id
    assert len(desc.nodes) >= 1
    ports = {(n.host, n.port) for n in desc.nodes}
    assert ("127.0.0.1", broker.port) in ports
    assert desc.controller is not None
    md = admin.list_topics(timeout=10)
    assert md.cluster_id == desc.cluster_id
    assert {n.id for n in desc.nodes} == set(md.brokers)
