"""The HTTP endpoint: /metrics read with Prometheus's own text parser under a real load
(bytes and records in equal to what was produced, within the batch framing; lag equal to
end offset minus committed offset), and /readyz following the metadata store.

Stratus only: Kafka exposes its metrics over JMX, not HTTP."""
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

import yaml

from certs import CA, server_dn
from cluster_infra import wait_http
from conftest import REPO, STRATUS_BIN, group_settings
from group_util import committed_offsets
from util import create_topic, produce_sync, producer, wait_for

pytestmark = pytest.mark.stratus_only


def get(b, path, method="GET"):
    """(status, body) of an HTTP request to the broker's endpoint."""
    req = urllib.request.Request(f"http://127.0.0.1:{b.http_port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Scrape:
    """One scrape of /metrics, parsed by prometheus_client."""

    def __init__(self, b):
        status, text = get(b, "/metrics")
        assert status == 200, text
        self.text = text
        self.families = list(text_string_to_metric_families(text))
        self.samples = {}
        for f in self.families:
            for s in f.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def value(self, name, **labels):
        return self.samples.get((name, frozenset(labels.items())))

    def sum(self, name, **labels):
        """Sum over every series of `name` whose labels include `labels`."""
        return sum(v for (n, ls), v in self.samples.items()
                   if n == name and set(labels.items()) <= ls)


def test_counters_move_as_the_load_says(make_broker):
    b = make_broker(group_settings())
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    topic = f"metrics-{uuid.uuid4().hex[:8]}"
    create_topic(admin, topic, partitions=3)
    n = 3000
    records = [{"key": f"k{i}".encode(), "value": os.urandom(500), "partition": i % 3}
               for i in range(n)]
    payload = sum(len(r["key"]) + len(r["value"]) for r in records)
    produce_sync(producer(b.bootstrap, **{"acks": "all", "compression.type": "none"}), topic, records)

    group = f"metrics-g-{uuid.uuid4().hex[:6]}"
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got, deadline = 0, time.time() + 60
    while got < 1700 and time.time() < deadline:
        for m in c.consume(num_messages=100, timeout=1):
            assert m.error() is None, m.error()
            got += 1
    assert got >= 1700, f"consumed {got}"
    c.commit(asynchronous=False)
    c.close()
    committed = committed_offsets(admin, group, topic, 3)
    probe = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "metrics-probe"})
    ends = {p: probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(3)}
    probe.close()
    assert sum(ends.values()) == n
    # As kafka-consumer-groups shows it: a partition with no committed offset has no lag.
    lag = sum(ends[p] - committed[p] for p in range(3) if committed[p] is not None)
    assert lag > 0

    m = Scrape(b)
    # What was produced: every record, and its bytes plus the batch framing (a 61-byte
    # header per batch, a few bytes per record), nothing else.
    assert m.value("stratus_topic_messages_in_total", topic=topic) == n
    bytes_in = m.value("stratus_topic_bytes_in_total", topic=topic)
    assert payload < bytes_in <= payload * 1.05, (payload, bytes_in)
    assert m.value("stratus_broker_bytes_in_total") == bytes_in
    assert m.value("stratus_broker_messages_in_total") == n
    # What was consumed: at least the records read, in whole batches.
    assert m.value("stratus_topic_messages_out_total", topic=topic) >= got
    assert m.value("stratus_topic_bytes_out_total", topic=topic) >= got * 500
    # Lag: end offset minus committed offset, summed over the topic's partitions.
    assert m.value("stratus_consumergroup_lag", group=group, topic=topic) == lag
    assert m.value("stratus_consumer_groups", state="Empty", protocol="classic") >= 1
    # Requests: counted once per request, with each latency histogram fed once.
    produces = m.value("stratus_requests_total", request="Produce")
    assert produces >= 1
    for h in ("queue", "local", "remote", "total"):
        assert m.value(f"stratus_request_{h}_time_seconds_count", request="Produce") == produces, h
    assert m.value("stratus_response_send_time_seconds_count", request="Produce") == produces
    assert m.value("stratus_request_errors_total", request="Produce", error="NONE") >= produces
    assert m.value("stratus_requests_total", request="Fetch") >= 1
    assert m.value("stratus_requests_total", request="OffsetCommit") >= 1
    # The data path underneath: WAL objects written, their PUTs, the metadata commits.
    assert m.value("stratus_wal_flushes_total") >= 1
    assert m.value("stratus_wal_flush_size_bytes_sum") >= bytes_in
    assert m.value("stratus_object_store_requests_total", operation="put") >= m.value("stratus_wal_flushes_total")
    assert m.value("stratus_object_store_bytes_total", operation="put") >= bytes_in
    assert m.value("stratus_object_store_errors_total", operation="put") == 0
    assert m.sum("stratus_metadata_store_requests_total") > 0
    assert m.sum("stratus_cache_hits_total") + m.sum("stratus_cache_misses_total") > 0
    assert m.value("stratus_partitions_owned") == 3
    assert m.value("stratus_partitions_unowned") == 0
    assert m.value("stratus_connections_created_total", listener="PLAINTEXT") >= 3
    assert m.value("process_cpu_seconds_total") > 0
    assert m.value("process_resident_memory_bytes") > 1e6
    assert m.value("stratus_metadata_store_up") == 1
    # The critical tasks' polls are timed: the WAL flushed and the upkeep jobs ran.
    for task in ("wal", "upkeep"):
        polls = m.value("stratus_task_poll_seconds_count", task=task)
        assert polls and polls >= 1, (task, polls)
        assert m.value("stratus_task_poll_seconds_sum", task=task) > 0, task
    # Every series is Stratus's or the process's, and each family says what it is.
    for f in m.families:
        assert f.name.startswith(("stratus_", "process_")), f.name
        assert f.documentation, f.name
    print(f"{len(m.samples)} samples in {len(m.families)} families")


def test_deleted_topics_leave_the_metrics(make_broker):
    b = make_broker()
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    topic = f"metrics-del-{uuid.uuid4().hex[:8]}"
    create_topic(admin, topic)
    produce_sync(producer(b.bootstrap), topic, [{"value": b"x"}])
    assert Scrape(b).value("stratus_topic_messages_in_total", topic=topic) == 1
    for f in admin.delete_topics([topic]).values():
        f.result(timeout=30)
    wait_for(lambda: Scrape(b).value("stratus_topic_messages_in_total", topic=topic) is None,
             timeout=30, what="the deleted topic's series to go")


def test_the_endpoint_serves_probes_and_refuses_the_rest(make_broker):
    b = make_broker()
    assert get(b, "/livez") == (200, "ok\n")
    assert get(b, "/readyz") == (200, "ok\n")
    status, body = get(b, "/readyz?verbose")
    assert status == 200 and "[+] metadata-store ok" in body and "[+] partitions ok" in body, body
    assert get(b, "/nothing")[0] == 404
    assert get(b, "/metrics", method="POST")[0] == 405


def test_readyz_is_not_ready_while_etcd_is_down(cluster, infra):
    c = cluster(n=1)
    b = c.brokers[0]
    assert get(b, "/readyz")[0] == 200
    infra.etcd.stop()
    try:
        wait_for(lambda: get(b, "/readyz")[0] == 503, timeout=20, what="not ready without etcd")
        status, body = get(b, "/readyz")
        assert "[-] metadata-store failed" in body, body
        m = Scrape(b)
        assert m.value("stratus_metadata_store_up") == 0
        assert m.sum("stratus_metadata_store_errors_total") > 0
        assert get(b, "/livez")[0] == 200, "alive all the same"
    finally:
        infra.etcd.start()
        wait_http(f"http://{infra.etcd_endpoint}/health", proc=infra.etcd.proc, log=infra.etcd.log)
    wait_for(lambda: get(b, "/readyz")[0] == 200, timeout=60, what="ready again with etcd back")
    assert Scrape(b).value("stratus_metadata_store_up") == 1


def test_the_dashboard_and_alerts_name_metrics_the_broker_serves(make_broker, tmp_path):
    """Every metric the chart's Grafana dashboard and PrometheusRule query is one a broker
    serves (with a TLS listener, a consumer group and a load), and the dashboard JSON is
    what scripts/dashboard.py writes."""
    subprocess.run([sys.executable, str(REPO / "scripts" / "dashboard.py"), "--check"], check=True)
    ca = CA(tmp_path / "ca")
    server = ca.issue("server", server_dn(), server=True)
    b = make_broker({"ssl.keystore.type": "PEM", "ssl.keystore.location": str(server.pem),
                     **group_settings()}, listeners={"SSL": "SSL"})
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    topic = f"metrics-dash-{uuid.uuid4().hex[:8]}"
    create_topic(admin, topic)
    produce_sync(producer(b.bootstrap), topic, [{"value": b"x"} for _ in range(10)])
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": f"dash-{topic}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    wait_for(lambda: bool(c.consume(num_messages=5, timeout=1)), timeout=30, what="records")
    c.commit(asynchronous=False)
    c.close()
    m = Scrape(b)
    served = set(n for n, _ in m.samples)
    for f in m.families:
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(f.type, [""])
        served |= {f.name + x for x in suffixes}

    chart = REPO / "charts" / "stratus"
    dashboard = json.loads((chart / "files" / "dashboards" / "stratus.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    rules = yaml.safe_load((chart / "files" / "prometheus-rules.yaml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    for r in alerts:
        assert r["labels"]["severity"] in ("warning", "critical"), r
        assert r["annotations"]["summary"] and r["annotations"]["description"], r
    queries += [r["expr"] for r in alerts]
    named = set()
    for q in queries:
        named |= set(re.findall(r"\b((?:stratus|process)_[a-z0-9_]+)\b", q))
    assert len(named) >= 30, named
    missing = sorted(named - served)
    assert not missing, f"queried but not served: {missing}"
    names = {r["alert"] for r in alerts}
    for needed in ("StratusPartitionsUnowned", "StratusObjectStoreErrors",
                   "StratusMetadataStoreUnreachable", "StratusWalBacklogGrowing",
                   "StratusConsumerLagGrowing", "StratusCertificateExpiresSoon"):
        assert needed in names, needed
    # The certificate's expiry as the alert reads it: the issued one's, about a year away.
    expiry = m.value("stratus_tls_certificate_expiry_timestamp_seconds", listener="SSL")
    assert 300 * 86400 < expiry - time.time() < 400 * 86400, expiry


def test_admin_top_shows_throughput_lag_and_cost(make_broker):
    b = make_broker(group_settings())
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    topic = f"metrics-top-{uuid.uuid4().hex[:8]}"
    create_topic(admin, topic)
    group = f"top-{topic}"
    produce_sync(producer(b.bootstrap), topic, [{"value": b"v" * 100} for _ in range(50)])
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    wait_for(lambda: bool(c.consume(num_messages=10, timeout=1)), timeout=30, what="records")
    c.commit(asynchronous=False)
    c.close()
    stop = threading.Event()

    def load():
        p = producer(b.bootstrap)
        while not stop.is_set():
            produce_sync(p, topic, [{"value": b"w" * 1000} for _ in range(100)])

    t = threading.Thread(target=load)
    t.start()
    try:
        out = subprocess.run([str(STRATUS_BIN), "admin", "top", "--metrics",
                              f"http://127.0.0.1:{b.http_port}/metrics", "--interval", "2", "--once"],
                             capture_output=True, text=True, timeout=60)
    finally:
        stop.set()
        t.join()
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines() if line.strip()}
    assert float(rows[topic][0]) > 0, out.stdout  # MB/s in
    assert int(rows[group][0]) > 0, out.stdout  # its lag grows with the load
    assert "put" in rows and float(rows["put"][0]) > 0, out.stdout
    assert "per hour at S3 Standard list prices" in out.stdout
