"""Group errors as users see them, through confluent-kafka (librdkafka), which hands the
broker's error codes to the application: a fenced static member, a full group, a session
timeout outside the broker's bounds."""

import time

import pytest
from confluent_kafka import Consumer, KafkaError

from conftest import group_settings
from util import create_topic


class Member:
    def __init__(self, bootstrap, group, topic, **conf):
        self.errors = []  # KafkaError from poll() and error_cb
        self.assigned = set()
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                           "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
                           "error_cb": self.errors.append, **conf})
        self.c.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_assign(self, c, parts):
        self.assigned = {p.partition for p in parts}

    def _on_revoke(self, c, parts):
        self.assigned = set()

    def poll(self):
        m = self.c.poll(0.05)
        if m is not None and m.error():
            self.errors.append(m.error())

    def codes(self):
        return [e.code() for e in self.errors]

    def __repr__(self):
        return f"<assigned={sorted(self.assigned)} errors={[str(e) for e in self.errors[:3]]}>"


def pump(members, pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for m in members:
            m.poll()
        if pred():
            return
    raise AssertionError(f"timed out after {timeout}s waiting for {what}: {members}")


def test_duplicate_static_member_fences_the_old_one(group_broker, topic):
    b = group_broker.bootstrap
    create_topic(group_broker.admin(), topic, partitions=3)
    group = f"g-{topic}"
    conf = {"group.instance.id": "instance-1"}
    old = Member(b, group, topic, **conf)
    new = None
    try:
        pump([old], lambda: old.assigned == {0, 1, 2}, 30, "the first member's assignment")
        new = Member(b, group, topic, **conf)
        pump([old, new], lambda: KafkaError._FATAL in old.codes(), 30,
             "the old member to be fenced (a fatal error)")
        fatal = [e for e in old.errors if e.code() == KafkaError._FATAL][0]
        # librdkafka reports the broker's FENCED_INSTANCE_ID as the underlying fatal error
        assert "fenced by other consumer with same group.instance.id" in str(fatal), str(fatal)
        pump([old, new], lambda: new.assigned == {0, 1, 2}, 30, "the new member's assignment")
        assert not new.errors, new
    finally:
        old.c.close()
        if new is not None:
            new.c.close()


def test_group_max_size_reached(make_broker, topic):
    broker = make_broker(group_settings({"group.max.size": "2"}))
    b = broker.bootstrap
    create_topic(broker.admin(), topic, partitions=3)
    group = f"g-{topic}"
    members = [Member(b, group, topic)]
    try:
        pump(members, lambda: members[0].assigned == {0, 1, 2}, 30, "the first member's assignment")
        members.append(Member(b, group, topic))
        pump(members, lambda: len(members[0].assigned | members[1].assigned) == 3
             and members[0].assigned and members[1].assigned, 30, "two members sharing the partitions")
        third = Member(b, group, topic)
        members.append(third)
        pump(members, lambda: KafkaError.GROUP_MAX_SIZE_REACHED in third.codes(), 30,
             "the third member to get GROUP_MAX_SIZE_REACHED")
        assert not third.assigned
        # the two members keep consuming the whole topic
        assert members[0].assigned | members[1].assigned == {0, 1, 2}, members
        assert not members[0].errors and not members[1].errors, members
    finally:
        for m in members:
            m.c.close()


@pytest.mark.parametrize("session_ms", [1000, 3600000], ids=["below-min", "above-max"])
def test_invalid_session_timeout(group_broker, topic, session_ms):
    b = group_broker.bootstrap
    create_topic(group_broker.admin(), topic, partitions=1)
    m = Member(b, f"g-{topic}", topic, **{"session.timeout.ms": session_ms, "heartbeat.interval.ms": 300,
                                         "max.poll.interval.ms": max(300000, session_ms)})
    try:
        pump([m], lambda: KafkaError.INVALID_SESSION_TIMEOUT in m.codes(), 20,
             f"INVALID_SESSION_TIMEOUT for session.timeout.ms={session_ms}")
        assert not m.assigned
    finally:
        m.c.close()
