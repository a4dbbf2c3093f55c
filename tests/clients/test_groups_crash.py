"""Crash recovery of consumer groups: kill -9 the broker (and restart it on the same data)
while a group of auto-committing librdkafka consumers reads a topic that is still being
written. The group re-forms, no committed offset ever goes backwards but by a member's own
(retried) commit (committed offsets are polled all along, and every commit a consumer saw
acknowledged must survive), and every acknowledged record is eventually consumed.

Stratus only (the reference Kafka keeps its files in the page cache across kill -9, so it says
little there); STRATUS_CRASH_ON_KAFKA=1 runs it against Kafka to check the test itself.
"""

import logging
import os
import threading
import time

import pytest
from confluent_kafka import Consumer
from kafka import KafkaAdminClient
from kafka import TopicPartition as KpTopicPartition
from kafka.errors import KafkaError

from conftest import TARGET, group_settings
from group_util import end_offsets, missing, resolved
from util import create_topic, producer, wait_for

PARTITIONS = 4
MEMBERS = 2
KILLS = int(os.environ.get("STRATUS_GROUP_CRASH_KILLS", "3"))
if KILLS < 1:
    raise pytest.UsageError("STRATUS_GROUP_CRASH_KILLS must be at least 1: a crash test must crash")


class Background(threading.Thread):
    def __init__(self, target):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.error = None
        self._target = target

    def run(self):
        try:
            self._target(self.stop)
        except Exception as e:  # reported by the test
            self.error = e


@pytest.mark.crash
@pytest.mark.timeout(300)
@pytest.mark.parametrize("protocol", ["classic", "consumer"], ids=["classic", "consumer_protocol"])
def test_kill9_broker_while_group_consumes_with_auto_commit(make_broker, topic, protocol):
    if TARGET == "kafka" and os.environ.get("STRATUS_CRASH_ON_KAFKA") != "1":
        pytest.skip("crash test targets Stratus (STRATUS_CRASH_ON_KAFKA=1 runs it on Kafka)")
    broker = make_broker(group_settings())
    b = broker.bootstrap
    create_topic(broker.admin(), topic, partitions=PARTITIONS)
    group = f"g-{topic}"

    # --- a producer that keeps writing through the crashes --------------------------------
    acked, failed = [], []

    def produce(stop):
        p = producer(b, acks="all", **{"enable.idempotence": True, "message.timeout.ms": 120000})
        i = 0

        def on_delivery(err, msg):
            if err is None:
                acked.append((msg.partition(), msg.offset(), msg.value().decode()))
            else:
                failed.append(str(err))
        while not stop.is_set():  # about 200 records a second
            for _ in range(20):
                p.produce(topic, value=f"v-{i}".encode(), partition=i % PARTITIONS, on_delivery=on_delivery)
                i += 1
            p.poll(0)
            time.sleep(0.1)
        assert p.flush(120) == 0, "producer could not deliver everything"

    # --- auto-committing group members -------------------------------------------------------
    consumed = []  # (partition, offset, value) from every member
    commit_acks = []  # (time, partition, offset) of every commit a member saw succeed

    commit_log = []  # (time, member, what) of every commit callback and assignment change, to explain a failure

    def member(stop):
        me = threading.current_thread().name

        def on_commit(err, parts):
            t = time.time()
            commit_log.append((t, me, f"commit {err} {[(tp.partition, tp.offset, str(tp.error)) for tp in parts]}"))
            if err is None:
                commit_acks.extend((t, tp.partition, tp.offset) for tp in parts if tp.error is None and tp.offset >= 0)

        def on_assign(_c, parts):
            commit_log.append((time.time(), me, f"assigned {[tp.partition for tp in parts]}"))

        def on_revoke(_c, parts):
            commit_log.append((time.time(), me, f"revoked {[tp.partition for tp in parts]}"))

        def on_lost(_c, parts):
            commit_log.append((time.time(), me, f"lost {[tp.partition for tp in parts]}"))
        conf = {"bootstrap.servers": b, "group.id": group, "auto.offset.reset": "earliest",
                "enable.auto.commit": True, "auto.commit.interval.ms": 200, "on_commit": on_commit}
        if protocol == "classic":
            conf.update({"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000})
        else:  # KIP-848: the broker's group.consumer.* settings give the timeouts
            conf["group.protocol"] = "consumer"
        c = Consumer(conf)
        c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
        try:
            while not stop.is_set():
                m = c.poll(0.2)
                if m is not None and not m.error():
                    consumed.append((m.partition(), m.offset(), m.value().decode()))
                    time.sleep(0.002)  # a slow consumer: keeps some lag through the crashes
        finally:
            c.close()

    # --- committed offsets, polled all along: they must never go backwards ------------------
    observed = []  # (time, {partition: offset})

    def watch(stop):
        # kafka-python here: librdkafka's admin client aborts the process (an assertion in
        # rd_kafka_enq_once_del_source_return, librdkafka 2.16) when requests time out while
        # the broker is down
        tps = [KpTopicPartition(topic, p) for p in range(PARTITIONS)]
        admin = None
        logging.getLogger("kafka").setLevel(logging.CRITICAL)  # connection errors are expected
        while not stop.is_set():
            try:
                if admin is None:
                    admin = KafkaAdminClient(bootstrap_servers=b, request_timeout_ms=3000,
                                             reconnect_backoff_max_ms=200)
                res = admin.list_group_offsets({group: tps})[group]
                observed.append((time.time(), {tp.partition: (res[tp].offset if tp in res and res[tp].offset >= 0
                                                              else None) for tp in tps}))
            except KafkaError:  # the broker is down
                if admin is not None:
                    admin.close()
                    admin = None
            time.sleep(0.1)
        if admin is not None:
            admin.close()

    threads = [Background(produce), Background(watch)] + [Background(member) for _ in range(MEMBERS)]
    for t in threads:
        t.start()
    kills = []
    try:
        wait_for(lambda: sum(1 for _, o in observed if any(v for v in o.values())) > 5, 60,
                 what="the group to commit offsets")
        for _ in range(KILLS):
            time.sleep(3)
            broker.kill()
            kills.append(time.time())
            time.sleep(0.5)
            broker.start()
            restarted = time.time()
            wait_for(lambda: any(t > restarted for t, _ in observed), 30, what="committed offsets after restart")
        time.sleep(3)
        threads[0].stop.set()  # the producer stops and flushes
        threads[0].join(150)
        assert not threads[0].is_alive() and threads[0].error is None, f"producer: {threads[0].error}"
        assert not failed, f"{len(failed)} deliveries failed, first: {failed[0]}"

        def everything_consumed():
            return not missing(acked, list(consumed))
        wait_for(everything_consumed, 90, interval=0.5,
                 what=f"all {len(acked)} acknowledged records to be consumed "
                      f"(missing e.g. {missing(acked, list(consumed))[:5]})")
        ends = end_offsets(resolved(acked, list(consumed)))
        wait_for(lambda: observed and observed[-1][1] == ends, 30, interval=0.5,
                 what=f"committed offsets to reach the end {ends} (last seen {observed[-1:]})")
    finally:
        for t in threads:
            t.stop.set()
        for t in threads:
            t.join(60)
    errors = [t.error for t in threads if t.error is not None]
    assert not errors, errors

    # No committed offset ever went backwards, but by a member's own commit: librdkafka
    # retries a commit that was in flight when the broker died with the offsets it had
    # then, after the newer commits it made once the broker was back (a client behaviour,
    # the same against Kafka). Such a step back is the broker applying a commit a member
    # saw succeed after the higher offset was observed; a broker that reverts state (or
    # loses a commit) steps back with no such commit.
    def own_commit(p, o, t_high, t_low):
        return any(cp == p and co == o and t_high < ct <= t_low + 2 for ct, cp, co in commit_acks)

    last, back = {}, []
    for t, offs in observed:
        for p, o in offs.items():
            if (o is not None and last.get(p) is not None and o < last[p][1]
                    and not own_commit(p, o, last[p][0], t)):
                back.append(f"partition {p}: {last[p][1]} at {last[p][0]:.3f} then {o} at {t:.3f}")
            if o is not None:
                last[p] = (t, o)
            elif p in last:
                back.append(f"partition {p}: committed offset {last[p][1]} disappeared at {t:.3f}")
    if back:
        first = float(back[0].split(" at ")[1].split(" ")[0])
        around = [f"{t:.3f} {m} {what}" for t, m, what in commit_log if abs(t - first) < 2]
        pytest.fail(f"committed offsets went backwards (kills at {[f'{k:.3f}' for k in kills]}):\n"
                    + "\n".join(back[:20]) + "\nwhat the members saw around it:\n" + "\n".join(around[:80]))

    # every commit acknowledged before a kill is there when the broker is back
    for k in kills:
        before = {}
        for t, p, o in commit_acks:
            if t < k:
                before[p] = max(before.get(p, -1), o)
        assert before, f"no commit was acknowledged before the kill at {k:.3f}"
        after = next((offs for t, offs in observed if t > k + 0.5), None)
        assert after is not None
        lost = {p: (o, after.get(p)) for p, o in before.items() if after.get(p) is None or after[p] < o}
        assert not lost, f"acknowledged commits lost by the kill at {k:.3f}: {{partition: (acked, after)}} {lost}"
    assert len(kills) == KILLS
