"""OTLP export to a real OpenTelemetry Collector (built from its Go modules by
scripts/install-test-deps.sh): a produce's trace runs from the request (socket) through
the WAL append, the WAL flush, the object-store PUT and the metadata-store commit; a
fetch's trace shows the cache tier that served it; the metrics arrive as OTLP too.

Stratus only: Kafka exports no OTLP of its own."""
import json
import subprocess
import time
import uuid

import pytest
from confluent_kafka.admin import AdminClient

from conftest import CACHE, free_port, port_open
from util import consume, create_topic, produce_sync, producer, tp, wait_for

pytestmark = pytest.mark.stratus_only


@pytest.fixture(scope="module")
def collector(tmp_path_factory):
    binary = CACHE / "bin" / "otelcol"
    if not binary.exists():
        pytest.fail(f"no OpenTelemetry Collector at {binary} (run scripts/install-test-deps.sh)")
    d = tmp_path_factory.mktemp("otelcol")
    grpc = free_port()
    config = d / "config.yaml"
    config.write_text(f"""
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{grpc}"}}
exporters:
  file/traces: {{path: {d}/traces.json, format: json, flush_interval: 100ms}}
  file/metrics: {{path: {d}/metrics.json, format: json, flush_interval: 100ms}}
service:
  telemetry:
    metrics: {{level: none}}
    logs: {{level: warn}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [file/traces]}}
    metrics: {{receivers: [otlp], exporters: [file/metrics]}}
""")
    log = open(d / "otelcol.log", "wb")
    proc = subprocess.Popen([str(binary), "--config", str(config)], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: port_open(grpc) or proc.poll() is not None, timeout=30,
                 what="the collector to listen")
        assert proc.poll() is None, (d / "otelcol.log").read_text()
        yield {"endpoint": f"http://127.0.0.1:{grpc}", "traces": d / "traces.json",
               "metrics": d / "metrics.json"}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def lines(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def spans(path):
    """Every span the collector wrote: dicts with name, ids and attributes."""
    out = []
    for doc in lines(path):
        for rs in doc.get("resourceSpans", []):
            resource = {a["key"]: a["value"] for a in rs.get("resource", {}).get("attributes", [])}
            for ss in rs.get("scopeSpans", []):
                for s in ss.get("spans", []):
                    s["attrs"] = {a["key"]: next(iter(a["value"].values()), None)
                                  for a in s.get("attributes", [])}
                    s["resource"] = resource
                    out.append(s)
    return out


def metric_points(path, name):
    """Data points of the metric `name` in every export the collector wrote."""
    out = []
    for doc in lines(path):
        for rm in doc.get("resourceMetrics", []):
            for sm in rm.get("scopeMetrics", []):
                for m in sm.get("metrics", []):
                    if m["name"] == name:
                        data = m.get("sum") or m.get("gauge") or m.get("histogram") or {}
                        out += data.get("dataPoints", [])
    return out


def test_a_produce_trace_runs_from_the_socket_to_the_put_and_the_commit(collector, make_broker):
    b = make_broker({"otel.exporter.otlp.endpoint": collector["endpoint"],
                     "otel.traces.sampler.arg": "1.0",
                     "otel.metric.export.interval.ms": "500"})
    topic = f"otel-{uuid.uuid4().hex[:8]}"
    create_topic(AdminClient({"bootstrap.servers": b.bootstrap}), topic)
    produce_sync(producer(b.bootstrap, acks="all"), topic, [{"value": f"v{i}".encode()} for i in range(5)])
    got = consume(b.bootstrap, [tp(topic, 0, 0)], 5)
    assert len(got) == 5

    def produce_trace():
        all_spans = spans(collector["traces"])
        by_id = {s["spanId"]: s for s in all_spans}
        for flush in (s for s in all_spans if s["name"] == "wal.flush"):
            root = by_id.get(flush.get("parentSpanId"))
            if root is None or root["name"] != "Produce":
                continue
            kids = [s for s in all_spans if s.get("parentSpanId") == flush["spanId"]]
            names = {s["name"] for s in kids}
            if {"object_store.put", "metadata.txn"} <= names:
                return root, flush, kids, all_spans
        return None

    wait_for(produce_trace, timeout=30, what="a Produce trace with its flush, PUT and commit")
    root, flush, kids, all_spans = produce_trace()
    assert root["kind"] in ("SPAN_KIND_SERVER", 2), root["kind"]
    assert root["attrs"].get("listener") == "PLAINTEXT"
    assert root["resource"]["service.name"] == {"stringValue": "stratus"}
    trace = [s for s in all_spans if s["traceId"] == root["traceId"]]
    names = [s["name"] for s in trace]
    assert "wal.append" in names, names
    put = next(s for s in kids if s["name"] == "object_store.put")
    assert int(put["attrs"]["bytes"]) > 0
    assert put["attrs"]["object"].startswith("wal/"), put["attrs"]
    # The order of time: the request starts first, the PUT precedes the commit, and the
    # request ends once the flush has.
    commit = next(s for s in kids if s["name"] == "metadata.txn")
    assert int(root["startTimeUnixNano"]) <= int(flush["startTimeUnixNano"])
    assert int(put["endTimeUnixNano"]) <= int(commit["startTimeUnixNano"])
    assert int(flush["endTimeUnixNano"]) <= int(root["endTimeUnixNano"])

    # A fetch's trace shows the cache tier that served its blocks: memory right after the
    # produce; after a restart (an empty cache) the object store, with the GET under it.
    def fetch_reads(tier):
        s = spans(collector["traces"])
        fetches = {x["spanId"] for x in s if x["name"] == "Fetch"}
        return [x for x in s if x["name"] == "cache.read" and x.get("parentSpanId") in fetches
                and x["attrs"].get("tier") == tier]
    wait_for(lambda: fetch_reads("memory"), timeout=30, what="a Fetch served from memory")
    b.restart()
    assert len(consume(b.bootstrap, [tp(topic, 0, 0)], 5)) == 5
    wait_for(lambda: fetch_reads("object_store"), timeout=30, what="a Fetch served by the store")
    read = fetch_reads("object_store")[0]
    gets = [x for x in spans(collector["traces"])
            if x["name"] == "object_store.get" and x.get("parentSpanId") == read["spanId"]]
    assert gets and int(gets[0]["attrs"]["bytes"]) > 0, gets

    # The metrics arrive over OTLP as well, with their labels as attributes.
    def bytes_in():
        for p in metric_points(collector["metrics"], "stratus_topic_bytes_in"):
            attrs = {a["key"]: a["value"].get("stringValue") for a in p.get("attributes", [])}
            if attrs.get("topic") == topic and int(p.get("asInt", 0)) > 0:
                return True
        return False
    wait_for(bytes_in, timeout=30, what="stratus_topic_bytes_in over OTLP")


def test_an_unreachable_collector_costs_nothing_but_a_log_line(make_broker):
    port = free_port()
    b = make_broker({"otel.exporter.otlp.endpoint": f"http://127.0.0.1:{port}",
                     "otel.metric.export.interval.ms": "200"})
    topic = f"otel-down-{uuid.uuid4().hex[:8]}"
    create_topic(AdminClient({"bootstrap.servers": b.bootstrap}), topic)
    produce_sync(producer(b.bootstrap, acks="all"), topic, [{"value": b"x"} for _ in range(20)])
    time.sleep(1)
    log = b.log_path.read_text(errors="replace")
    assert log.count("metrics not exported over OTLP") == 1, log[-3000:]
