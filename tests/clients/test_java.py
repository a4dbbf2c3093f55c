"""The Java client (default idempotent producer) and Apache Kafka's CLI tools."""

import json
import re
import subprocess

import pytest

from conftest import CLIENTS_DIR, REPO
from util import create_topic, wait_for

KAFKA_CLI = str(REPO / "scripts" / "kafka-cli")


def run(args, input=None, timeout=60, check=True):
    r = subprocess.run(args, input=input, capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, f"{' '.join(args)} exited {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def cli(tool, *args, **kw):
    return run([KAFKA_CLI, tool, *args], **kw)


def test_java_default_producer_and_assign_consumer(broker, topic, kafka_home):
    create_topic(broker.admin(), topic, partitions=3)
    r = run(["java", "-cp", f"{kafka_home}/lib/*", f"-Dlog4j2.configurationFile={kafka_home}/config/log4j2.properties",
             str(CLIENTS_DIR / "java" / "ProduceConsume.java"), broker.bootstrap, topic, "5000"], timeout=120)
    assert r.stdout.startswith("OK 5000 records in 3 partitions"), r.stdout + r.stderr


def test_kafka_topics_create_describe_alter_list_delete(broker, topic):
    b = broker.bootstrap
    r = cli("topics", "--bootstrap-server", b, "--create", "--topic", topic, "--partitions", "2",
            "--replication-factor", "1", "--config", "retention.ms=3600000")
    assert f"Created topic {topic}." in r.stdout

    r = cli("topics", "--bootstrap-server", b, "--describe", "--topic", topic)
    assert re.search(rf"Topic: {re.escape(topic)}\s+TopicId: \S+\s+PartitionCount: 2\s+ReplicationFactor: 1", r.stdout), r.stdout
    assert "retention.ms=3600000" in r.stdout
    assert len(re.findall(r"Partition: \d+\s+Leader: \d+\s+Replicas: \d+\s+Isr: \d+", r.stdout)) == 2, r.stdout

    cli("topics", "--bootstrap-server", b, "--alter", "--topic", topic, "--partitions", "4")
    r = cli("topics", "--bootstrap-server", b, "--describe", "--topic", topic)
    assert "PartitionCount: 4" in r.stdout, r.stdout

    r = cli("topics", "--bootstrap-server", b, "--list")
    assert topic in r.stdout.split()

    r = cli("topics", "--bootstrap-server", b, "--create", "--topic", topic, "--partitions", "1", check=False)
    assert r.returncode != 0 and "already exists" in (r.stdout + r.stderr)

    cli("topics", "--bootstrap-server", b, "--delete", "--topic", topic)
    wait_for(lambda: topic not in cli("topics", "--bootstrap-server", b, "--list").stdout.split(), 15,
             interval=0.5, what="deleted topic to leave --list")


def test_kafka_configs_describe_and_alter(broker, topic):
    b = broker.bootstrap
    create_topic(broker.admin(), topic)
    r = cli("configs", "--bootstrap-server", b, "--describe", "--entity-type", "topics", "--entity-name", topic)
    assert f"Dynamic configs for topic {topic} are:" in r.stdout
    assert "retention.ms" not in r.stdout

    r = cli("configs", "--bootstrap-server", b, "--alter", "--entity-type", "topics", "--entity-name", topic,
            "--add-config", "retention.ms=7200000,cleanup.policy=compact")
    assert f"Completed updating config for topic {topic}." in r.stdout
    r = cli("configs", "--bootstrap-server", b, "--describe", "--entity-type", "topics", "--entity-name", topic)
    assert "retention.ms=7200000" in r.stdout and "cleanup.policy=compact" in r.stdout, r.stdout

    r = cli("configs", "--bootstrap-server", b, "--alter", "--entity-type", "topics", "--entity-name", topic,
            "--delete-config", "cleanup.policy")
    r = cli("configs", "--bootstrap-server", b, "--describe", "--entity-type", "topics", "--entity-name", topic,
            "--all")
    assert re.search(r"^\s*cleanup\.policy=delete ", r.stdout, re.M), r.stdout
    assert re.search(r"^\s*retention\.ms=7200000 .*DYNAMIC_TOPIC_CONFIG", r.stdout, re.M), r.stdout
    assert re.search(r"^\s*segment\.bytes=\d+ ", r.stdout, re.M), r.stdout


def test_console_producer_and_consumer(broker, topic):
    b = broker.bootstrap
    create_topic(broker.admin(), topic)
    lines = [f"k{i}:console value {i}" for i in range(10)]
    cli("console-producer", "--bootstrap-server", b, "--topic", topic,
        "--reader-property", "parse.key=true", "--reader-property", "key.separator=:",
        input="\n".join(lines) + "\n")
    r = cli("console-consumer", "--bootstrap-server", b, "--topic", topic, "--partition", "0",
            "--offset", "earliest", "--max-messages", "10", "--timeout-ms", "20000",
            "--formatter-property", "print.key=true", "--formatter-property", "print.offset=true",
            "--formatter-property", "key.separator=|")
    got = [line for line in r.stdout.splitlines() if line.startswith("Offset:")]
    assert got == [f"Offset:{i}|k{i}|console value {i}" for i in range(10)], r.stdout
    assert "Processed a total of 10 messages" in r.stderr

    r = cli("console-consumer", "--bootstrap-server", b, "--topic", topic, "--partition", "0",
            "--offset", "7", "--max-messages", "3", "--timeout-ms", "20000")
    assert r.stdout.splitlines() == ["console value 7", "console value 8", "console value 9"]


def test_get_offsets_and_delete_records(broker, topic, tmp_path):
    b = broker.bootstrap
    create_topic(broker.admin(), topic, partitions=2)
    cli("console-producer", "--bootstrap-server", b, "--topic", topic,
        "--reader-property", "parse.key=true", "--reader-property", "key.separator=:",
        input="".join(f"{'a' if i % 2 else 'b'}:v{i}\n" for i in range(40)))
    r = cli("get-offsets", "--bootstrap-server", b, "--topic", topic)
    latest = {int(p): int(o) for p, o in (line.rsplit(":", 2)[1:] for line in r.stdout.split())}
    assert sorted(latest) == [0, 1] and sum(latest.values()) == 40, r.stdout
    r = cli("get-offsets", "--bootstrap-server", b, "--topic", topic, "--time", "-2")
    assert sorted(r.stdout.split()) == [f"{topic}:0:0", f"{topic}:1:0"]

    part = max(latest, key=latest.get)
    offsets = tmp_path / "offsets.json"
    offsets.write_text(json.dumps({"version": 1, "partitions": [{"topic": topic, "partition": part, "offset": 5}]}))
    r = cli("delete-records", "--bootstrap-server", b, "--offset-json-file", str(offsets))
    assert re.search(rf"partition: {re.escape(topic)}-{part}\s+low_watermark: 5", r.stdout), r.stdout + r.stderr

    r = cli("get-offsets", "--bootstrap-server", b, "--topic", topic, "--partitions", str(part), "--time", "earliest")
    assert r.stdout.split() == [f"{topic}:{part}:5"]
    r = cli("get-offsets", "--bootstrap-server", b, "--topic", topic, "--partitions", str(part), "--time", "latest")
    assert r.stdout.split() == [f"{topic}:{part}:{latest[part]}"]

    r = cli("console-consumer", "--bootstrap-server", b, "--topic", topic, "--partition", str(part),
            "--offset", "earliest", "--max-messages", "1", "--timeout-ms", "20000",
            "--formatter-property", "print.offset=true")
    assert r.stdout.startswith("Offset:5\t"), r.stdout


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_producer_perf_tool(broker, topic, codec):
    create_topic(broker.admin(), topic)
    r = cli("producer-perf", "--topic", topic, "--num-records", "20000", "--record-size", "200",
            "--throughput", "-1", "--producer-props", f"bootstrap.servers={broker.bootstrap}",
            f"compression.type={codec}", "acks=all", timeout=120)
    assert re.search(r"^20000 records sent, ", r.stdout, re.M), r.stdout + r.stderr
    r = cli("get-offsets", "--bootstrap-server", broker.bootstrap, "--topic", topic)
    assert r.stdout.split() == [f"{topic}:0:20000"]
