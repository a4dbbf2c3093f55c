"""Broker settings as users set them: auto.create.topics.enable, num.partitions, message.max.bytes."""

import os

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError
from confluent_kafka.admin import NewTopic

from conftest import Broker
from util import consume, create_topic, produce_sync, producer, tp, wait_for, wait_for_leaders


@pytest.fixture(scope="module")
def custom_broker():
    b = Broker({"auto.create.topics.enable": "false", "num.partitions": "3", "message.max.bytes": "200000"},
               name="settings")
    b.start()
    yield b
    b.cleanup()


def produce_one(bootstrap, topic, value, **conf):
    p = producer(bootstrap, **{"message.max.bytes": 10_000_000, "message.send.max.retries": 0,
                               "topic.metadata.propagation.max.ms": 1000, "message.timeout.ms": 10000, **conf})
    result = []
    p.produce(topic, value=value, on_delivery=lambda err, msg: result.append((err, msg)))
    assert p.flush(20) == 0
    return result[0]


def test_produce_auto_creates_topic_when_enabled(broker, topic):
    err, msg = produce_one(broker.bootstrap, topic, b"hello")
    assert err is None, err
    assert msg.offset() == 0
    admin = broker.admin()
    wait_for_leaders(admin, topic, 1)  # session broker: num.partitions=1
    [m] = consume(broker.bootstrap, [tp(topic, 0, OFFSET_BEGINNING)], 1)
    assert m.value() == b"hello"


def test_produce_to_unknown_topic_fails_when_auto_create_disabled(custom_broker, topic):
    err, _ = produce_one(custom_broker.bootstrap, topic, b"nowhere")
    assert err is not None, "produce to an unknown topic succeeded with auto.create.topics.enable=false"
    assert err.code() in (KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART), err
    assert topic not in custom_broker.admin().list_topics(timeout=10).topics


def test_create_topic_with_default_partitions_uses_num_partitions(custom_broker, topic):
    admin = custom_broker.admin()
    admin.create_topics([NewTopic(topic, num_partitions=-1, replication_factor=-1)])[topic].result(timeout=10)
    wait_for_leaders(admin, topic, 3)


def test_message_max_bytes_setting_and_topic_override(custom_broker, topic):
    admin = custom_broker.admin()
    create_topic(admin, topic, partitions=1)
    err, msg = produce_one(custom_broker.bootstrap, topic, os.urandom(150_000), **{"compression.type": "none"})
    assert err is None and msg.offset() == 0, err
    err, _ = produce_one(custom_broker.bootstrap, topic, os.urandom(300_000), **{"compression.type": "none"})
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err

    big = topic + "-big"
    create_topic(admin, big, partitions=1, config={"max.message.bytes": "500000"})
    value = os.urandom(300_000)
    err, msg = produce_one(custom_broker.bootstrap, big, value, **{"compression.type": "none"})
    assert err is None and msg.offset() == 0, err
    [m] = consume(custom_broker.bootstrap, [tp(big, 0, OFFSET_BEGINNING)], 1)
    assert m.value() == value
    # the partition that refused the record holds only the accepted one
    assert [m.offset() for m in consume(custom_broker.bootstrap, [tp(topic, 0, OFFSET_BEGINNING)], 1)] == [0]
    [after] = produce_sync(producer(custom_broker.bootstrap), topic, [{"value": b"x", "partition": 0}])
    assert after.offset() == 1


@pytest.mark.stratus_only
def test_the_allocator_purge_delay_defaults_to_100_ms_and_the_environment_wins(make_broker, topic):
    """mimalloc reads MIMALLOC_PURGE_DELAY at start; the broker sets 100 ms unless it is given."""
    def environ(b):
        # The PID the test started is the broker's: the re-exec keeps it.
        with open(f"/proc/{b.proc.pid}/environ", "rb") as f:
            return {k: v for k, _, v in (e.partition(b"=") for e in f.read().split(b"\0") if e)}

    b = make_broker()
    given = os.environ.get("MIMALLOC_PURGE_DELAY")
    assert environ(b).get(b"MIMALLOC_PURGE_DELAY") == (given or "100").encode()
    with open(f"/proc/{b.proc.pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:-1] == [os.fsencode(a) for a in b.proc.args], "same command"
    create_topic(b.admin(), topic, partitions=1)
    reports = produce_sync(producer(b.bootstrap), topic, [{"value": b"after the re-exec"}])
    assert reports[0].offset() == 0
    mine = make_broker(env={"MIMALLOC_PURGE_DELAY": "7"})
    assert environ(mine).get(b"MIMALLOC_PURGE_DELAY") == b"7"
