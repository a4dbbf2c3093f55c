"""kcat (librdkafka CLI from Debian): produce with keys and headers, consume, metadata."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from util import create_topic

CACHE = Path(os.environ.get("STRATUS_CACHE", Path.home() / ".cache" / "stratus"))
KCAT = shutil.which("kcat") or shutil.which("kafkacat") or str(CACHE / "bin" / "kcat")


@pytest.fixture(scope="module", autouse=True)
def need_kcat():
    if not Path(KCAT).exists():
        pytest.fail("kcat not installed (run scripts/install-test-deps.sh)")


def kcat(bootstrap, *args, input=None, timeout=30):
    cmd = [KCAT, "-b", bootstrap, "-X", "socket.timeout.ms=5000", *args]
    r = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.decode(errors='replace')}"
    return r.stdout


def test_kcat_produce_keys_headers_and_consume_exactly(broker, topic):
    create_topic(broker.admin(), topic)
    lines = [f"key-{i}:value {i} with spaces" for i in range(20)] + [":no-key", "k-empty:"]
    kcat(broker.bootstrap, "-P", "-X", "max.in.flight=1", "-t", topic, "-p", "0", "-K:",
         "-H", "trace=abc123", "-H", "app=kcat",
         input=("\n".join(lines) + "\n").encode())

    out = kcat(broker.bootstrap, "-C", "-e", "-o", "beginning", "-t", topic, "-p", "0",
               "-f", "%o|%k|%s|%h\n")
    got = out.decode().splitlines()
    want = []
    for i, line in enumerate(lines):
        k, v = line.split(":", 1)
        want.append(f"{i}|{k}|{v}|trace=abc123,app=kcat")
    assert got == want

    # the JSON envelope shows the same offsets, partition and header pairs
    out = kcat(broker.bootstrap, "-C", "-e", "-o", "beginning", "-t", topic, "-p", "0", "-J")
    recs = [json.loads(x) for x in out.decode().splitlines()]
    assert [r["offset"] for r in recs] == list(range(len(lines)))
    assert all(r["partition"] == 0 and r["topic"] == topic for r in recs)
    assert recs[0]["headers"] == ["trace", "abc123", "app", "kcat"]


def test_kcat_consume_from_offset_and_end(broker, topic):
    create_topic(broker.admin(), topic)
    kcat(broker.bootstrap, "-P", "-X", "max.in.flight=1", "-t", topic, "-p", "0",
         input="".join(f"m{i}\n" for i in range(10)).encode())
    out = kcat(broker.bootstrap, "-C", "-e", "-o", "6", "-t", topic, "-p", "0", "-f", "%o:%s\n")
    assert out.decode().splitlines() == [f"{i}:m{i}" for i in range(6, 10)]
    out = kcat(broker.bootstrap, "-C", "-e", "-o", "-3", "-t", topic, "-p", "0", "-f", "%s\n")
    assert out.decode().splitlines() == ["m7", "m8", "m9"]
    out = kcat(broker.bootstrap, "-C", "-e", "-o", "-3", "-c", "2", "-t", topic, "-p", "0", "-f", "%s\n")
    assert out.decode().splitlines() == ["m7", "m8"]


def test_kcat_metadata_lists_topic(broker, topic):
    create_topic(broker.admin(), topic, partitions=3)
    md = json.loads(kcat(broker.bootstrap, "-L", "-J"))
    assert md["brokers"], "no brokers in metadata"
    assert any(b["name"] == f"127.0.0.1:{broker.port}" for b in md["brokers"]), md["brokers"]
    topics = {t["topic"]: t for t in md["topics"]}
    assert topic in topics
    parts = sorted(topics[topic]["partitions"], key=lambda p: p["partition"])
    assert [p["partition"] for p in parts] == [0, 1, 2]
    ids = {b["id"] for b in md["brokers"]}
    assert all(p["leader"] in ids for p in parts), parts

    text = kcat(broker.bootstrap, "-L", "-t", topic).decode()
    assert f'topic "{topic}" with 3 partitions' in text


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_kcat_compression_codec(broker, topic, codec):
    create_topic(broker.admin(), topic)
    lines = [f"{codec} line {i} " + "x" * (i % 50) for i in range(300)]
    kcat(broker.bootstrap, "-P", "-X", "max.in.flight=1", "-t", topic, "-p", "0", "-X", f"compression.codec={codec}",
         "-X", "linger.ms=20", input=("\n".join(lines) + "\n").encode())
    out = kcat(broker.bootstrap, "-C", "-e", "-o", "beginning", "-t", topic, "-p", "0",
               "-X", "check.crcs=true", "-f", "%o %s\n")
    assert out.decode().splitlines() == [f"{i} {line}" for i, line in enumerate(lines)]
