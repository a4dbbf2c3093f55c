#!/usr/bin/env python3
"""One piece of telemetry at a time: a release broker with telemetry `off`, `scrape`
(/metrics every second), `trace` (1 % of requests traced to a collector), `otelmetrics`
(OTLP metrics every 5 s) or `on` (all three), driven at 10 MiB/s by ProducerPerformance
for 12 s; prints the broker's CPU seconds per second. Alternate modes to see past noise:

    for m in off on off on; do ~/.cache/stratus/venv/bin/python bench/telemetry_ab.py $m PORT; done

PORT: the gRPC port of a running OpenTelemetry Collector (for trace, otelmetrics, on)."""
import os, subprocess, sys, time, threading, urllib.request, uuid
from pathlib import Path
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "clients"))
os.environ.setdefault("STRATUS_BIN", "/tmp/bench-target/release/stratus")
from conftest import Broker
from confluent_kafka.admin import NewTopic
TICKS = os.sysconf("SC_CLK_TCK")
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICKS
mode = sys.argv[1]
coll_port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
settings = {"auto.create.topics.enable": "false"}
scrape = False
if mode == "off": settings["http.listener"] = ""
if mode == "scrape": scrape = True
if mode == "trace": settings.update({"otel.exporter.otlp.endpoint": f"http://127.0.0.1:{coll_port}", "otel.traces.sampler.arg": "0.01", "otel.metric.export.interval.ms": "600000"})
if mode == "on":
    scrape = True
    settings.update({"otel.exporter.otlp.endpoint": f"http://127.0.0.1:{coll_port}", "otel.traces.sampler.arg": "0.01", "otel.metric.export.interval.ms": "5000"})
if mode == "otelmetrics": settings.update({"otel.exporter.otlp.endpoint": f"http://127.0.0.1:{coll_port}", "otel.traces.sampler.arg": "0", "otel.metric.export.interval.ms": "5000"})
b = Broker(settings, name=f"ab-{mode}"); b.start()
stop = threading.Event()
def scr():
    while not stop.wait(1):
        urllib.request.urlopen(f"http://127.0.0.1:{b.http_port}/metrics").read()
if scrape: threading.Thread(target=scr, daemon=True).start()
t = f"ab-{uuid.uuid4().hex[:6]}"
adm = b.admin()
for f in adm.create_topics([NewTopic(t, 8, 1)]).values(): f.result(30)
time.sleep(1)
c0 = cpu(b.proc.pid); t0 = time.time()
subprocess.run([str(REPO / "scripts" / "kafka-cli"), "producer-perf", "--topic", t, "--num-records", str(10240*12), "--record-size", "1024", "--throughput", "10240", "--producer-props", f"bootstrap.servers={b.bootstrap}", "acks=all"], capture_output=True)
print(mode, "cpu s per s:", round((cpu(b.proc.pid) - c0) / (time.time() - t0), 3), flush=True)
stop.set(); b.stop(); b.cleanup()
