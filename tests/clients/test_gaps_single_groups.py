"""Consumer-group behaviours the rest of the suite did not cover, through confluent-kafka
(librdkafka): a committed offset left below the log start by DeleteRecords, and KIP-848
(group.protocol=consumer) static membership and regex subscriptions."""

import logging
import struct
import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import OffsetSpec

from group_util import committed_offsets, produce_numbered
from util import create_topic, produce_sync, producer, round_trip


def list_offset(admin, topic, partition, spec):
    part = TopicPartition(topic, partition)
    return admin.list_offsets({part: spec}, request_timeout=10)[part].result(timeout=10).offset


class _ListHandler(logging.Handler):
    def __init__(self, out):
        super().__init__()
        self.out = out

    def emit(self, record):
        self.out.append(record.getMessage())


class Member:
    """A librdkafka group member recording its records, errors and rebalance callbacks."""

    def __init__(self, bootstrap, group, topics, protocol="classic", **conf):
        self.records = []  # (topic, partition, offset, value)
        self.errors = []  # KafkaError from poll() and error_cb
        self.events = []  # (kind, frozenset of (topic, partition))
        self.owned = set()
        self.logs = []  # librdkafka's log lines
        log = logging.getLogger(f"rdkafka-{uuid.uuid4().hex}")
        log.propagate = False
        log.addHandler(_ListHandler(self.logs))
        log.setLevel(logging.DEBUG)
        base = {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                "auto.offset.reset": "earliest", "enable.partition.eof": False,
                "error_cb": self.errors.append, "logger": log}
        if protocol == "consumer":
            base["group.protocol"] = "consumer"  # timeouts come from the broker
        else:
            base.update({"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000})
        self.c = Consumer({**base, **conf})
        self.c.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        self.closed = False

    @staticmethod
    def _parts(parts):
        return frozenset((p.topic, p.partition) for p in parts)

    def _on_assign(self, c, parts):
        # incremental (cooperative / KIP-848) callbacks name only the added partitions; an eager
        # assignment replaces everything, and its revoke came first
        self.events.append(("assign", self._parts(parts)))
        self.owned |= self._parts(parts)

    def _on_revoke(self, c, parts):
        self.events.append(("revoke", self._parts(parts)))
        self.owned -= self._parts(parts)

    def _on_lost(self, c, parts):
        self.events.append(("lost", self._parts(parts)))
        self.owned -= self._parts(parts)

    def poll(self, timeout=0.05):
        m = self.c.poll(timeout)
        if m is None:
            return
        if m.error():
            self.errors.append(m.error())
        else:
            self.records.append((m.topic(), m.partition(), m.offset(), m.value().decode()))

    def close(self):
        if not self.closed:
            self.closed = True
            self.c.close()

    def __repr__(self):
        return (f"<owned={sorted(self.owned)} events={[(k, sorted(p)) for k, p in self.events]} "
                f"records={len(self.records)} errors={[str(e) for e in self.errors[:3]]}>")


def pump(members, pred=None, timeout=30, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for m in members:
            if not m.closed:
                m.poll()
        if pred is not None and pred():
            return
    if pred is not None:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n" + "\n".join(map(repr, members)))


# -- 2. DeleteRecords past a group's committed offset -------------------------------------------

@pytest.mark.parametrize("protocol,reset", [("classic", "earliest"), ("consumer", "earliest"), ("classic", "latest")])
def test_delete_records_past_committed_offset_consumer_resets(group_broker, topic, protocol, reset):
    """DeleteRecords moves the log start past a group's committed offset: the committed offset
    stays as committed (Kafka does not touch it), ListOffsets earliest is the new log start, and
    the group's consumer, whose committed offset is now out of range, resets per
    auto.offset.reset (earliest: the new log start) with no error and no record below it."""
    b = group_broker.bootstrap
    admin = group_broker.admin()
    create_topic(admin, topic)
    produce_sync(producer(b), topic, [{"value": f"r{i}".encode(), "partition": 0} for i in range(30)])
    group = f"g-{topic}"

    first = Member(b, group, [topic], protocol)
    try:
        pump([first], lambda: len(first.records) >= 10, 30, "the first member to read 10 records")
        assert [r[2] for r in first.records[:10]] == list(range(10))
        first.c.commit(offsets=[TopicPartition(topic, 0, 10)], asynchronous=False)
        assert not first.errors, first
    finally:
        first.close()
    assert committed_offsets(admin, group, topic, 1) == {0: 10}

    res = admin.delete_records([TopicPartition(topic, 0, 20)], request_timeout=10)
    assert res[TopicPartition(topic, 0)].result(timeout=10).low_watermark == 20
    assert list_offset(admin, topic, 0, OffsetSpec.earliest()) == 20
    assert committed_offsets(admin, group, topic, 1) == {0: 10}, "DeleteRecords changed the committed offset"

    # latest: librdkafka's fetch log says when it fetches from the end (30)
    debug = {"debug": "fetch"} if reset == "latest" else {}
    second = Member(b, group, [topic], protocol, **{"auto.offset.reset": reset, **debug})

    def reset_logged():
        # librdkafka: "offset reset (at offset 10 ...) to offset BEGINNING|END ...: fetch failed due
        # to requested offset not available on the broker: Broker: Offset out of range"
        return [line for line in second.logs if "offset reset (at offset 10 " in line]
    try:
        if reset == "earliest":
            pump([second], lambda: len(second.records) >= 10, 30, "the restarted member to read on")
            assert [(r[2], r[3]) for r in second.records] == [(i, f"r{i}") for i in range(20, 30)]
        else:  # latest: nothing of what is there; the next record produced is read
            pump([second], lambda: reset_logged() and any(" at offset 30 " in line for line in second.logs), 30,
                 "the restarted member to reset to the end and fetch from there")
            produce_sync(producer(b), topic, [{"value": b"r30", "partition": 0}])
            pump([second], lambda: second.records, 30, "the new record")
            assert [(r[2], r[3]) for r in second.records] == [(30, "r30")]
        pump([second], timeout=1)
        assert not second.errors, second
        [line] = reset_logged()
        assert "Offset out of range" in line, line
        end = second.records[-1][2] + 1
        second.c.commit(asynchronous=False)
    finally:
        second.close()
    assert committed_offsets(admin, group, topic, 1) == {0: end}


# -- 9. KIP-848: static membership, regex subscriptions -----------------------------------------

PARTITIONS = 4


def test_consumer_protocol_static_member_restart_keeps_partitions(group_broker, topic):
    """KIP-848 static membership: a member with group.instance.id that closes and comes back
    within the session timeout gets its partitions back, and the other member sees no
    rebalance; the member resumes from its committed offsets."""
    b = group_broker.bootstrap
    admin = group_broker.admin()
    create_topic(admin, topic, partitions=PARTITIONS)
    group = f"g-{topic}"
    session_s = 6  # group.consumer.session.timeout.ms of the group broker
    acked = produce_numbered(b, topic, 40, PARTITIONS, tag="a")

    def member(name):
        return Member(b, group, [topic], "consumer", **{"group.instance.id": f"{group}-{name}"})

    m1 = member("m1")
    members = [m1]
    try:
        pump(members, lambda: len(m1.owned) == PARTITIONS, 30, "m1 to own every partition")
        m2 = member("m2")
        members.append(m2)
        pump(members, lambda: len(m1.owned) == 2 and len(m2.owned) == 2 and not (m1.owned & m2.owned), 30,
             "two partitions each")

        def caught_up():
            return all(tp.offset == 10 for m in members for tp in m.c.position(
                [TopicPartition(t, p) for t, p in sorted(m.owned)]))
        pump(members, caught_up, 30, "both members to reach the end of their partitions")
        for m in members:
            m.c.commit(asynchronous=False)
        assert committed_offsets(admin, group, topic, PARTITIONS) == {p: 10 for p in range(PARTITIONS)}

        kept = set(m1.owned)
        mark = len(m2.events)
        t0 = time.time()
        m1.close()  # a static member leaves for a while (epoch -2): its partitions wait for it
        acked += produce_numbered(b, topic, 40, PARTITIONS, tag="b", start=40)
        again = member("m1")
        members.append(again)
        pump(members, lambda: again.owned, 30, "the restarted static member to get partitions")
        assert time.time() - t0 < session_s, "restart took longer than the session timeout"
        assert again.owned == kept, f"restarted member got {sorted(again.owned)}, had {sorted(kept)}"
        assert [k for k, _ in again.events] == ["assign"], again

        pump(members, timeout=session_s + 2)  # past the old session: still nothing moves
        assert m2.events[mark:] == [], f"the other member saw a rebalance: {m2!r}"
        assert again.owned == kept and len(m2.owned) == 2, (again, m2)
        # the restarted member read its partitions from the committed offsets on
        mine = sorted(r[1:] for r in again.records)
        want = sorted((p, o, v) for p, o, v in acked[40:] if (topic, p) in kept)
        assert mine == want, f"restarted member read {mine[:6]}..., expected {want[:6]}..."
        for m in (m2, again):
            assert not m.errors, m
    finally:
        for m in members:
            m.close()


def test_consumer_protocol_regex_subscription_follows_new_topics(group_broker):
    """KIP-848 regex subscription (resolved by the broker): the member gets the partitions of the
    matching topics only, and of a matching topic created later."""
    b = group_broker.bootstrap
    admin = group_broker.admin()
    prefix = f"rx{uuid.uuid4().hex[:10]}"
    create_topic(admin, f"{prefix}_a", partitions=2)
    create_topic(admin, f"{prefix}_b", partitions=1)
    create_topic(admin, f"z{prefix}_a", partitions=1)  # contains the prefix, does not start with it
    for t in (f"{prefix}_a", f"{prefix}_b", f"z{prefix}_a"):
        produce_sync(producer(b), t, [{"value": f"{t}-{i}".encode(), "partition": 0} for i in range(3)])

    m = Member(b, f"g-{prefix}", [f"^{prefix}_.*"], "consumer")
    try:
        want = {(f"{prefix}_a", 0), (f"{prefix}_a", 1), (f"{prefix}_b", 0)}
        pump([m], lambda: m.owned == want, 30, f"the assignment {sorted(want)}")
        pump([m], lambda: len(m.records) >= 6, 30, "the records of the matching topics")

        create_topic(admin, f"{prefix}_c", partitions=1)
        produce_sync(producer(b), f"{prefix}_c", [{"value": b"late", "partition": 0}])
        t0 = time.time()
        pump([m], lambda: (f"{prefix}_c", 0) in m.owned and any(r[0] == f"{prefix}_c" for r in m.records), 45,
             "the new matching topic to be assigned and read")
        print(f"new topic picked up after {time.time() - t0:.1f}s")
        pump([m], timeout=1)
        assert m.owned == want | {(f"{prefix}_c", 0)}, m
        assert {r[0] for r in m.records} == {f"{prefix}_a", f"{prefix}_b", f"{prefix}_c"}, m
        assert sorted(r[3] for r in m.records if r[0] != f"{prefix}_c") == sorted(
            f"{t}-{i}" for t in (f"{prefix}_a", f"{prefix}_b") for i in range(3))
        assert not m.errors, m
    finally:
        m.close()


def _uvarint(n):
    out = b""
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def _compact_str(v):
    if v is None:
        return b"\x00"
    raw = v.encode()
    return _uvarint(len(raw) + 1) + raw


def consumer_group_heartbeat(bootstrap, group, member_id, epoch, regex=None, topics=None):
    """One raw ConsumerGroupHeartbeat v1 (kafka-python has no class for it) from a member that
    joins (epoch 0) or leaves (epoch -1); returns (error_code, error_message, member_epoch)."""
    body = (_compact_str(group) + _compact_str(member_id) + struct.pack(">i", epoch)
            + _compact_str(None) + _compact_str(None)  # instance id, rack id
            + struct.pack(">i", 30000 if epoch == 0 else -1))  # rebalance timeout
    if topics is None or epoch != 0:
        body += b"\x00"  # subscribed topic names: null
    else:
        body += _uvarint(len(topics) + 1) + b"".join(_compact_str(t) for t in topics)
    body += _compact_str(regex if epoch == 0 else None) + _compact_str(None)  # regex, server assignor
    body += (b"\x01" if epoch == 0 else b"\x00") + b"\x00"  # owned partitions: [] / null; no tags
    client = b"gaps-test"
    header = struct.pack(">hhih", 68, 1, 7, len(client)) + client + b"\x00"
    frame = header + body
    resp = round_trip(bootstrap, struct.pack(">i", len(frame)) + frame)
    (corr,) = struct.unpack_from(">i", resp, 0)
    assert corr == 7 and resp[4] == 0, resp[:8]  # correlation id, no header tags
    _throttle, error = struct.unpack_from(">ih", resp, 5)
    pos, shift, n = 11, 0, 0
    while True:  # compact nullable string: the error message
        byte = resp[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    message = None if n == 0 else resp[pos:pos + n - 1].decode()
    pos += max(n - 1, 0)
    n = resp[pos]  # member id: compact nullable string (shorter than 127 bytes here)
    pos += 1 + max(n - 1, 0)
    (member_epoch,) = struct.unpack_from(">i", resp, pos)
    return error, message, member_epoch


NONE, INVALID_REGULAR_EXPRESSION = 0, 128


def test_consumer_protocol_invalid_regex_is_refused(group_broker):
    """KIP-848: a subscription regex the broker cannot compile is refused with
    INVALID_REGULAR_EXPRESSION rather than silently matching nothing. (librdkafka checks the
    regex itself and never sends an invalid one, so this is a raw ConsumerGroupHeartbeat, as
    Java's subscribe(SubscriptionPattern) sends it.)"""
    b = group_broker.bootstrap
    prefix = f"rx{uuid.uuid4().hex[:10]}"
    create_topic(group_broker.admin(), f"{prefix}_a", partitions=1)
    member = uuid.uuid4().hex[:22]

    error, message, epoch = consumer_group_heartbeat(b, f"g-{prefix}", member, 0, regex=f"{prefix}_(a")
    assert error == INVALID_REGULAR_EXPRESSION, (error, message)
    print(f"invalid regex refused: {message!r}")

    # the same request with a valid regex joins (so the request itself is well formed)
    error, message, epoch = consumer_group_heartbeat(b, f"g-{prefix}", member, 0, regex=f"{prefix}_(a)")
    assert (error, message) == (NONE, None) and epoch >= 1, (error, message, epoch)
    error, message, epoch = consumer_group_heartbeat(b, f"g-{prefix}", member, -1)
    assert (error, epoch) == (NONE, -1), (error, message, epoch)
