"""confluent-kafka (librdkafka) consumer groups: cooperative-sticky incremental rebalancing
and static membership (group.instance.id)."""

import signal
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from conftest import group_settings
from group_util import committed_offsets, end_offsets, missing, produce_numbered
from util import create_topic

PARTITIONS = 6


class Member:
    """A librdkafka group member whose rebalance callbacks and records are recorded."""

    def __init__(self, name, bootstrap, group, topic, **conf):
        self.name = name
        self.events = []  # (kind, frozenset of partitions), kind: assign / revoke / lost
        self.owned = set()
        self.records = []  # (partition, offset, value)
        self.errors = []
        self.c = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "error_cb": lambda e: self.errors.append(str(e)),
            **conf,
        })
        self.c.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                         on_lost=self._on_lost)
        self.closed = False
        self.cooperative = conf.get("partition.assignment.strategy") == "cooperative-sticky"

    def _on_assign(self, c, parts):
        ps = frozenset(p.partition for p in parts)
        self.events.append(("assign", ps))
        if self.cooperative:  # incremental: the callback names only the added partitions
            self.owned |= ps
        else:
            self.owned = set(ps)

    def _on_revoke(self, c, parts):
        ps = frozenset(p.partition for p in parts)
        self.events.append(("revoke", ps))
        self.owned -= ps

    def _on_lost(self, c, parts):
        ps = frozenset(p.partition for p in parts)
        self.events.append(("lost", ps))
        self.owned -= ps

    def poll(self, timeout):
        m = self.c.poll(timeout)
        if m is None:
            return
        if m.error():
            self.errors.append(str(m.error()))
            return
        self.records.append((m.partition(), m.offset(), m.value().decode()))

    def close(self):
        if not self.closed:
            self.closed = True
            self.c.close()

    def __repr__(self):
        return (f"<{self.name} owned={sorted(self.owned)} events={[(k, sorted(p)) for k, p in self.events]} "
                f"records={len(self.records)} errors={self.errors[:3]}>")


def pump(members, pred=None, timeout=30, what="condition"):
    """Serve every open member's poll (callbacks run there) until pred() holds (or for
    `timeout` seconds when pred is None)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for m in members:
            if not m.closed:
                m.poll(0.05)
        if pred is not None and pred():
            return
    if pred is not None:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n"
                             + "\n".join(repr(m) for m in members))


def caught_up(members, ends):
    """Every member's position on each partition it owns is the end of that partition (the
    union of what members read is not enough: a member that lost a partition in an eager
    rebalance may have read further than the partition's new owner, before committing)."""
    def pred():
        for m in members:
            if m.closed or not m.owned:
                continue
            topic = m.c.assignment()[0].topic if m.c.assignment() else None
            if topic is None:
                return False
            pos = m.c.position([TopicPartition(topic, p) for p in sorted(m.owned)])
            if any(tp.offset != ends.get(tp.partition, 0) for tp in pos):
                return False
        return True
    return pred


def balanced(members, sizes):
    def pred():
        owned = [m.owned for m in members]
        return ([len(o) for o in owned] == sizes and set().union(*owned) == set(range(PARTITIONS))
                and sum(sizes) == PARTITIONS)
    return pred


def test_cooperative_sticky_rebalances_incrementally(group_broker, topic):
    b = group_broker.bootstrap
    create_topic(group_broker.admin(), topic, partitions=PARTITIONS)
    group = f"g-{topic}"
    acked = produce_numbered(b, topic, 120, PARTITIONS, tag="a")
    conf = {"partition.assignment.strategy": "cooperative-sticky"}
    members = []
    try:
        m1 = Member("m1", b, group, topic, **conf)
        members.append(m1)
        pump(members, balanced(members, [6]), 30, "m1 to own all six partitions")

        for name, sizes in (("m2", [3, 3]), ("m3", [2, 2, 2])):
            before = {m.name: set(m.owned) for m in members}
            marks = {m.name: len(m.events) for m in members}
            members.append(Member(name, b, group, topic, **conf))
            pump(members, balanced(members, sizes), 45, f"{name} to join: {sizes} partitions")
            for m in members[:-1]:
                # (librdkafka calls on_assign with no partitions at the end of a cooperative rebalance)
                later = [(k, ps) for k, ps in m.events[marks[m.name]:] if ps]
                # incremental: an existing member only gives partitions away, keeps the rest...
                assert all(kind == "revoke" for kind, _ in later), f"{m.name}: {later}"
                revoked = set().union(*[ps for _, ps in later]) if later else set()
                assert m.owned == before[m.name] - revoked, repr(m)
                # ...and never stops consuming them in between (no revoke-all as in eager protocols)
                assert all(len(ps) < len(before[m.name]) for _, ps in later), f"{m.name}: {later}"
            new = members[-1]
            assert [k for k, ps in new.events if ps] == ["assign"], repr(new)

        acked += produce_numbered(b, topic, 120, PARTITIONS, tag="b", start=120)
        pump(members, lambda: not missing(acked, [r for m in members for r in m.records]), 30,
             "every record to be consumed")

        # a member leaves: the others only gain partitions
        marks = {m.name: len(m.events) for m in members}
        before = {m.name: set(m.owned) for m in members}
        members[2].close()
        stay = members[:2]
        pump(stay, balanced(stay, [3, 3]), 30, "m1 and m2 to own three partitions each after m3 left")
        for m in stay:
            later = [(k, ps) for k, ps in m.events[marks[m.name]:] if ps]
            assert [k for k, _ in later] == ["assign"], f"{m.name} after m3 left: {later}"
            assert before[m.name] <= m.owned, repr(m)

        acked += produce_numbered(b, topic, 120, PARTITIONS, tag="c", start=240)
        pump(members, lambda: not missing(acked, [r for m in members for r in m.records]), 30,
             "every record to be consumed after m3 left")
        for m in members:
            assert not m.errors, repr(m)
    finally:
        for m in members:
            m.close()


@pytest.mark.parametrize("restarted", ["follower", "leader"])
def test_static_member_restart_keeps_partitions_without_rebalance(group_broker, topic, restarted):
    b = group_broker.bootstrap
    admin = group_broker.admin()
    create_topic(admin, topic, partitions=PARTITIONS)
    group = f"g-{topic}"
    session_ms = 10000
    acked = produce_numbered(b, topic, 120, PARTITIONS, tag="a")

    def member(name):
        # manual commits, so what the restarted member reads next is exactly what was committed
        return Member(name, b, group, topic, **{"group.instance.id": f"{group}-{name}",
                                                "session.timeout.ms": session_ms,
                                                "enable.auto.commit": False})

    members = []
    try:
        # join one at a time: m1 joined first and is the group leader (the classic protocol's
        # leader computes the assignment; a restarted static leader gets it without one, KIP-814)
        for name, sizes in (("m1", [6]), ("m2", [3, 3]), ("m3", [2, 2, 2])):
            members.append(member(name))
            pump(members, balanced(members, sizes), 45, f"{name} to join: {sizes} partitions")
        pump(members, caught_up(members, end_offsets(acked)), 30, "every member to reach the end of its partitions")
        for m in members:
            m.c.commit(asynchronous=False)
        assert committed_offsets(admin, group, topic, PARTITIONS) == end_offsets(acked)

        victim = members[0] if restarted == "leader" else members[2]
        others = [m for m in members if m is not victim]
        victim_parts = set(victim.owned)
        marks = {m.name: len(m.events) for m in others}
        # a static member does not leave the group when it closes; restart it at once
        t0 = time.time()
        victim.close()
        acked += produce_numbered(b, topic, 120, PARTITIONS, tag="b", start=120)
        again = member(victim.name)
        members.append(again)
        live = others + [again]
        pump(live, lambda: again.owned, 30, "the restarted static member to get an assignment")
        assert time.time() - t0 < session_ms / 1000, "restart took longer than the session timeout"
        assert again.owned == victim_parts, (
            f"restarted {victim.name} got {sorted(again.owned)}, had {sorted(victim_parts)}")

        # nobody else sees a rebalance, not even after the old member's session would have expired
        pump(live, timeout=session_ms / 1000 + 3)
        for m in others:
            assert m.events[marks[m.name]:] == [], f"{m.name} saw a rebalance: {m!r}"
        assert [k for k, _ in again.events] == ["assign"], repr(again)

        # the restarted member resumes from the committed offsets of its partitions
        pump(live, lambda: not missing(acked, [r for m in members for r in m.records]), 30,
             "every record to be consumed after the restart")
        for p in victim_parts:
            offs = [o for q, o, _ in again.records if q == p]
            assert offs and offs[0] == 120 // PARTITIONS, (
                f"restarted {victim.name} read partition {p} from {offs[:1]}, committed {120 // PARTITIONS}")
        for m in live:
            assert not m.errors, repr(m)
    finally:
        for m in members:
            m.close()


@pytest.mark.parametrize("how", ["sigterm", pytest.param("kill9", marks=pytest.mark.crash)])
def test_broker_restart_keeps_group_without_rebalance(make_broker, topic, how):
    """Group membership outlives a broker restart: members that keep their sessions (the restart
    is shorter than session.timeout.ms) carry on with the same assignment and no rebalance, and
    read on from where they were."""
    broker = make_broker(group_settings())
    b = broker.bootstrap
    create_topic(broker.admin(), topic, partitions=PARTITIONS)
    group = f"g-{topic}"
    acked = produce_numbered(b, topic, 60, PARTITIONS, tag="a")
    conf = {"session.timeout.ms": 45000, "enable.auto.commit": False}
    members = []
    try:
        for name, sizes in (("m1", [6]), ("m2", [3, 3]), ("m3", [2, 2, 2])):
            members.append(Member(name, b, group, topic, **conf))
            pump(members, balanced(members, sizes), 45, f"{name} to join: {sizes} partitions")
        pump(members, caught_up(members, end_offsets(acked)), 30, "every member to reach the end of its partitions")
        for m in members:
            m.c.commit(asynchronous=False)
        assert committed_offsets(broker.admin(), group, topic, PARTITIONS) == end_offsets(acked)
        owned = {m.name: set(m.owned) for m in members}
        marks = {m.name: len(m.events) for m in members}
        read_before = {m.name: len(m.records) for m in members}

        t0 = time.time()
        broker.kill(signal.SIGKILL if how == "kill9" else signal.SIGTERM)
        broker.start()
        down = time.time() - t0
        acked += produce_numbered(b, topic, 60, PARTITIONS, tag="b", start=60)
        pump(members, lambda: not missing(acked, [r for m in members for r in m.records]), 40,
             "every record to be consumed after the restart")
        pump(members, timeout=3)
        for m in members:
            assert m.events[marks[m.name]:] == [], f"{m.name} saw a rebalance (broker down {down:.1f}s): {m!r}"
            assert m.owned == owned[m.name], repr(m)
        # after the restart, exactly the new records are read, once
        later = sorted(r for m in members for r in m.records[read_before[m.name]:])
        assert later == sorted(acked[60:]), f"read after the restart: {later[:10]}... ({len(later)} records)"
    finally:
        for m in members:
            m.close()
