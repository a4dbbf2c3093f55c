"""Client quotas: set and described with Kafka's own `kafka-configs`, and enforced on real
clients: a producer or consumer over its byte rate is throttled (librdkafka reports the
throttle time in its statistics) and its rate converges to the quota."""
import json
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, shared_broker

# A short quota window (two samples of a second), the same on Kafka and Stratus: a client
# over its quota alternates a burst and a throttled stretch with the window's period, so a
# rate measured over whole periods is the quota.
QUOTA_SETTINGS = {"quota.window.num": "2", "quota.window.size.seconds": "1"}


@pytest.fixture(scope="module")
def qbroker(request):
    yield from shared_broker(request, Broker(QUOTA_SETTINGS, name="quotas"))


def configs(kafka_home, bootstrap, *args, check=True):
    """Runs kafka-configs (Kafka's ConfigCommand); returns stdout + stderr."""
    r = subprocess.run(
        ["java", "-cp", f"{kafka_home}/lib/*",
         f"-Dlog4j2.configurationFile={kafka_home}/config/log4j2.properties",
         "kafka.admin.ConfigCommand", "--bootstrap-server", bootstrap, *args],
        capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    if check:
        assert r.returncode == 0, out
    return out


def make_topic(bootstrap, partitions=1):
    name = f"quota-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        f.result(timeout=30)
    return name


def test_kafka_configs_sets_describes_and_removes_quotas(qbroker, kafka_home):
    b = qbroker.bootstrap
    app = f"app-{uuid.uuid4().hex[:6]}"
    user = f"user-{uuid.uuid4().hex[:6]}"
    configs(kafka_home, b, "--alter", "--add-config",
            "producer_byte_rate=1048576,consumer_byte_rate=2097152",
            "--entity-type", "clients", "--entity-name", app)
    configs(kafka_home, b, "--alter", "--add-config", "request_percentage=50",
            "--entity-type", "users", "--entity-name", user,
            "--entity-type", "clients", "--entity-default")
    out = configs(kafka_home, b, "--describe", "--entity-type", "clients", "--entity-name", app)
    assert f"client-id '{app}'" in out, out
    assert "consumer_byte_rate=2097152.0" in out and "producer_byte_rate=1048576.0" in out, out
    out = configs(kafka_home, b, "--describe", "--entity-type", "users", "--entity-name", user,
                  "--entity-type", "clients", "--entity-default")
    assert f"user-principal '{user}', the default client-id" in out, out
    assert "request_percentage=50.0" in out, out

    # Kafka's checks: byte rates are whole numbers, every quota is positive.
    for bad, why in (("producer_byte_rate=1.5", "cannot be a fractional value"),
                     ("consumer_byte_rate=0", "must be greater than 0")):
        out = configs(kafka_home, b, "--alter", "--add-config", bad,
                      "--entity-type", "clients", "--entity-name", app, check=False)
        assert why in out, out

    configs(kafka_home, b, "--alter", "--delete-config", "consumer_byte_rate",
            "--entity-type", "clients", "--entity-name", app)
    out = configs(kafka_home, b, "--describe", "--entity-type", "clients", "--entity-name", app)
    assert "producer_byte_rate=1048576.0" in out and "consumer_byte_rate" not in out, out
    configs(kafka_home, b, "--alter", "--delete-config", "producer_byte_rate",
            "--entity-type", "clients", "--entity-name", app)
    out = configs(kafka_home, b, "--describe", "--entity-type", "clients", "--entity-name", app)
    assert "producer_byte_rate" not in out, out


class Stats:
    """librdkafka statistics: the largest throttle time any broker reported."""

    def __init__(self):
        self.throttle_max = 0

    def __call__(self, raw):
        for b in json.loads(raw)["brokers"].values():
            self.throttle_max = max(self.throttle_max, b.get("throttle", {}).get("max", 0))


def steady_rate(events, start, end):
    """Bytes per second of `events` (time, bytes) between `start` and `end`."""
    return sum(n for t, n in events if start <= t < end) / (end - start)


QUOTA = 400_000  # bytes per second
RUN_S = 20
SETTLED_S = 4  # the quota's first window lets a burst through; measure after it


def test_producer_over_its_byte_rate_is_throttled_to_it(qbroker, kafka_home):
    b = qbroker.bootstrap
    client = f"throttled-{uuid.uuid4().hex[:6]}"
    topic = make_topic(b)
    configs(kafka_home, b, "--alter", "--add-config", f"producer_byte_rate={QUOTA}",
            "--entity-type", "clients", "--entity-name", client)
    time.sleep(1.5)  # the quota reaches the broker's table
    stats = Stats()
    p = Producer({"bootstrap.servers": b, "client.id": client, "linger.ms": 5,
                  "batch.size": 16384, "queue.buffering.max.kbytes": 256,
                  "statistics.interval.ms": 500, "stats_cb": stats})
    acked = []
    t0 = time.time()

    def delivered(err, msg):
        assert err is None, err
        acked.append((time.time() - t0, len(msg.value())))

    payload = b"q" * 1000
    while time.time() - t0 < RUN_S:
        try:
            p.produce(topic, payload, callback=delivered)
        except BufferError:
            p.poll(0.02)
        p.poll(0)
    p.flush(60)
    rate = steady_rate(acked, SETTLED_S, RUN_S)
    print(f"producer: {rate:.0f} B/s, quota {QUOTA}, throttle max {stats.throttle_max} ms")
    assert abs(rate - QUOTA) / QUOTA < 0.10, f"{rate:.0f} B/s against a quota of {QUOTA}"
    assert stats.throttle_max > 0, "the client saw no throttle time"


def test_consumer_over_its_byte_rate_is_throttled_to_it(qbroker, kafka_home):
    b = qbroker.bootstrap
    client = f"slow-reader-{uuid.uuid4().hex[:6]}"
    topic = make_topic(b)
    # Batches well under what one fetch may carry within the quota (a fetch always carries
    # at least one whole batch).
    p = Producer({"bootstrap.servers": b, "linger.ms": 20, "batch.size": 16384})
    payload = b"c" * 1000
    total = QUOTA * (RUN_S + 10) // len(payload)
    for _ in range(total):
        while True:
            try:
                p.produce(topic, payload)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(60) == 0
    configs(kafka_home, b, "--alter", "--add-config", f"consumer_byte_rate={QUOTA}",
            "--entity-type", "clients", "--entity-name", client)
    time.sleep(1.5)
    stats = Stats()
    c = Consumer({"bootstrap.servers": b, "client.id": client, "group.id": client,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "statistics.interval.ms": 500, "stats_cb": stats})
    c.subscribe([topic])
    got = []
    t0 = None
    began = time.time()
    try:
        while True:
            m = c.poll(0.2)
            now = time.time()
            if m is not None and m.error() is None:
                t0 = t0 or now
                got.append((now - t0, len(m.value())))
            if t0 and now - t0 > RUN_S:
                break
            assert t0 or now - began < 30, "the consumer read nothing in 30 s"
    finally:
        c.close()
    assert len(got) < total, "the consumer read everything: no quota held it back"
    rate = steady_rate(got, SETTLED_S, RUN_S)
    print(f"consumer: {rate:.0f} B/s, quota {QUOTA}, throttle max {stats.throttle_max} ms")
    # Kafka holds a consumer at or below its quota: a throttled fetch is answered empty,
    # so it reads less than the quota allows (about half, with librdkafka).
    assert QUOTA * 0.3 < rate < QUOTA * 1.1, f"{rate:.0f} B/s against a quota of {QUOTA}"
    assert stats.throttle_max > 0, "the client saw no throttle time"


def test_request_percentage_throttles_a_client_that_keeps_the_broker_busy(qbroker, kafka_home):
    b = qbroker.bootstrap
    client = f"busy-{uuid.uuid4().hex[:6]}"
    # A hundredth of a percent of one thread: a few hundred requests exceed it.
    configs(kafka_home, b, "--alter", "--add-config", "request_percentage=0.01",
            "--entity-type", "clients", "--entity-name", client)
    time.sleep(1.5)
    stats = Stats()
    p = Producer({"bootstrap.servers": b, "client.id": client,
                  "statistics.interval.ms": 200, "stats_cb": stats})
    began = time.time()
    while stats.throttle_max == 0 and time.time() - began < 30:
        p.list_topics(timeout=10)
        p.poll(0)
    assert stats.throttle_max > 0, "no throttle after 30 s of metadata requests"
    # Another client id is not held back.
    other = Stats()
    q = Producer({"bootstrap.servers": b, "client.id": f"free-{client}",
                  "statistics.interval.ms": 200, "stats_cb": other})
    for _ in range(20):
        q.list_topics(timeout=10)
    time.sleep(0.5)
    q.poll(0)
    assert other.throttle_max == 0
