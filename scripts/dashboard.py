#!/usr/bin/env python3
"""Writes the Grafana dashboard of the Helm chart (charts/stratus/files/dashboards/stratus.json)
from the panels below: the JSON is generated, never edited by hand.

  scripts/dashboard.py          rewrite the JSON
  scripts/dashboard.py --check  fail if the JSON is not what this script writes
"""
import json
import os
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "charts", "stratus", "files",
                   "dashboards", "stratus.json")
panels = []
y = 0
pid = 0
SEL = 'job=~"$job", instance=~"$instance"'
def s(name, extra=""):
    """A series selector of `name` with the dashboard's job and instance filters."""
    return name + "{" + SEL + (", " + extra if extra else "") + "}"
def row(title):
    global y, pid
    pid += 1
    panels.append({"type": "row", "title": title, "id": pid, "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
    y += 1
def ts(title, targets, unit="short", w=12, x=0, stat=False):
    global pid
    pid += 1
    panels.append({"type": "stat" if stat else "timeseries", "title": title, "id": pid,
         "datasource": {"type": "prometheus", "uid": "${datasource}"},
         "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
         "gridPos": {"h": 4 if stat else 8, "w": w, "x": x, "y": y},
         "targets": [{"expr": e, "legendFormat": l, "refId": chr(65 + i)} for i, (e, l) in enumerate(targets)]})
def nexty(h=8):
    global y
    y += h
R = "[$__rate_interval]"
def rate(name, extra=""):
    return "rate(" + s(name, extra) + R + ")"
def p99(name, by, extra=""):
    return "histogram_quantile(0.99, sum by (" + by + ", le) (" + rate(name + "_bucket", extra) + "))"

row("Overview")
ts("Brokers", [("max(" + s("stratus_cluster_brokers") + ")", "live brokers")], stat=True, w=4, x=0)
ts("Unowned partitions", [("max(" + s("stratus_partitions_unowned") + ")", "unowned")], stat=True, w=4, x=4)
ts("Partitions moving", [("sum(" + s("stratus_partitions_moving") + ")", "moving")], stat=True, w=4, x=8)
ts("Metadata store up", [("min(" + s("stratus_metadata_store_up") + ")", "up")], stat=True, w=4, x=12)
ts("Bytes in /s", [("sum(" + rate("stratus_broker_bytes_in_total") + ")", "in")], unit="Bps", stat=True, w=4, x=16)
ts("Bytes out /s", [("sum(" + rate("stratus_broker_bytes_out_total") + ")", "out")], unit="Bps", stat=True, w=4, x=20)
nexty(4)
row("Throughput")
ts("Bytes in per topic", [("sum by (topic) (" + rate("stratus_topic_bytes_in_total") + ")", "{{topic}}")], unit="Bps", x=0)
ts("Bytes out per topic", [("sum by (topic) (" + rate("stratus_topic_bytes_out_total") + ")", "{{topic}}")], unit="Bps", x=12)
nexty()
ts("Messages in per topic", [("sum by (topic) (" + rate("stratus_topic_messages_in_total") + ")", "{{topic}}")], unit="ops", x=0)
ts("Bytes in per broker", [("sum by (instance) (" + rate("stratus_broker_bytes_in_total") + ")", "{{instance}}")], unit="Bps", x=12)
nexty()
row("Requests")
ts("Requests per API", [("sum by (request) (" + rate("stratus_requests_total") + ")", "{{request}}")], unit="reqps", x=0)
ts("Errors per API and code", [("sum by (request, error) (" + rate("stratus_request_errors_total", 'error!="NONE"') + ")", "{{request}} {{error}}")], unit="ops", x=12)
nexty()
ts("p99 total time per API", [(p99("stratus_request_total_time_seconds", "request"), "{{request}}")], unit="s", x=0)
ts("Produce p99: queue, local, remote, total", [
    (p99(f"stratus_request_{part}_time_seconds", "request", 'request="Produce"'), part)
    for part in ("queue", "local", "remote", "total")], unit="s", x=12)
nexty()
ts("Connections per listener", [("sum by (listener, security_protocol) (" + s("stratus_connections") + ")", "{{listener}} {{security_protocol}}")], x=0)
ts("Failed authentications", [("sum by (listener) (" + rate("stratus_failed_authentication_total") + ")", "{{listener}}")], unit="ops", x=12)
nexty()
row("Consumer groups")
ts("Lag per group and topic", [("sum by (group, topic) (" + s("stratus_consumergroup_lag") + ")", "{{group}} {{topic}}")], x=0)
ts("Groups by state", [("sum by (state, protocol) (" + s("stratus_consumer_groups") + ")", "{{state}} ({{protocol}})")], x=12)
nexty()
row("WAL and object store")
ts("WAL flush p99 by stage", [(p99("stratus_wal_flush_time_seconds", "stage"), "{{stage}}")], unit="s", x=0)
ts("WAL bytes not yet durable", [("sum by (instance) (" + s("stratus_wal_buffered_bytes") + ")", "{{instance}}")], unit="bytes", x=12)
nexty()
ts("Object store requests and errors", [
    ("sum by (operation) (" + rate("stratus_object_store_requests_total") + ")", "{{operation}}"),
    ("sum by (operation) (" + rate("stratus_object_store_errors_total") + ")", "{{operation}} errors")], unit="reqps", x=0)
ts("Object store p99", [(p99("stratus_object_store_request_time_seconds", "operation"), "{{operation}}")], unit="s", x=12)
nexty()
ts("Object store cost per hour (S3 Standard list prices)", [(
    "3600 * (0.005 / 1000 * sum(" + rate("stratus_object_store_requests_total", 'operation=~"put|list"') + ")"
    " + 0.0004 / 1000 * sum(" + rate("stratus_object_store_requests_total", 'operation="get"') + "))", "USD per hour")],
    unit="currencyUSD", x=0)
ts("Object store bytes", [("sum by (operation) (" + rate("stratus_object_store_bytes_total") + ")", "{{operation}}")], unit="Bps", x=12)
nexty()
row("Cache and metadata store")
hits = "sum by (tier) (" + rate("stratus_cache_hits_total") + ")"
misses = "sum by (tier) (" + rate("stratus_cache_misses_total") + ")"
ts("Cache hit ratio per tier", [(hits + " / (" + hits + " + " + misses + ")", "{{tier}}")], unit="percentunit", x=0)
ts("Cache bytes per tier", [("sum by (tier) (" + s("stratus_cache_bytes") + ")", "{{tier}}")], unit="bytes", x=12)
nexty()
ts("Metadata store p99", [(p99("stratus_metadata_store_request_time_seconds", "operation"), "{{operation}}")], unit="s", x=0)
ts("Metadata store errors", [("sum by (operation) (" + rate("stratus_metadata_store_errors_total") + ")", "{{operation}}")], unit="ops", x=12)
nexty()
row("Quotas and process")
ts("Throttle time per quota entity", [("sum by (quota, user, client_id) (" + rate("stratus_quota_throttle_time_ms_total") + ")", "{{quota}} user={{user}} client={{client_id}}")], unit="ms", x=0)
ts("CPU", [(rate("process_cpu_seconds_total"), "{{instance}}")], unit="percentunit", x=12)
nexty()
ts("Resident memory", [(s("process_resident_memory_bytes"), "{{instance}}")], unit="bytes", x=0)
ts("Open files", [(s("process_open_fds"), "{{instance}}"), (s("process_max_fds"), "{{instance}} max")], x=12)
nexty()
dash = {
    "title": "Stratus", "uid": "stratus-overview", "schemaVersion": 39, "version": 1,
    "tags": ["stratus", "kafka"], "timezone": "", "refresh": "30s",
    "time": {"from": "now-1h", "to": "now"},
    "templating": {"list": [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
        {"name": "job", "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"},
         "query": "label_values(stratus_build_info, job)", "includeAll": True, "multi": True,
         "current": {"text": "All", "value": "$__all"}},
        {"name": "instance", "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"},
         "query": 'label_values(stratus_build_info{job=~"$job"}, instance)', "includeAll": True, "multi": True,
         "current": {"text": "All", "value": "$__all"}},
    ]},
    "panels": panels,
}
text = json.dumps(dash, indent=2) + "\n"
if "--check" in sys.argv:
    with open(OUT) as f:
        if f.read() != text:
            sys.exit(f"{OUT} is not what scripts/dashboard.py writes: run it and commit the result")
else:
    with open(OUT, "w") as f:
        f.write(text)
    print(f"{OUT}: {len(panels)} panels")
