"""Bad input at startup, tried as a new user would: every mistake stops the broker with a
message that names the key, value, path, URL or address involved, where it was given, and
what to do; nothing is left half-started (no store touched, the other broker unharmed).
A broker of a cluster waits, saying so, for a store that does not answer yet."""
import os
import subprocess
import tempfile
import time
import uuid

import pytest
from confluent_kafka.admin import AdminClient

from cluster_infra import ACCESS_KEY, BUCKET, SECRET_KEY
from conftest import STRATUS_BIN, free_port, port_open

pytestmark = pytest.mark.stratus_only


def run(args, env=None, timeout=60):
    """Runs the broker binary, which must exit by itself; returns (exit code, stderr)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("STRATUS_", "AWS_", "ETCD_"))}
    base.update(env or {})
    with tempfile.TemporaryDirectory(prefix="stratus-startup-") as cwd:
        p = subprocess.run([str(STRATUS_BIN), *args], capture_output=True, text=True,
                           env=base, cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL)
    return p.returncode, p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""


@pytest.fixture
def fresh(tmp_path):
    """Arguments for a broker with its own data dir and port, and that data dir."""
    data = tmp_path / "data"
    return ["--data-dir", str(data), "--listeners", f"PLAINTEXT://127.0.0.1:{free_port()}"], data


@pytest.mark.parametrize("args,env,says", [
    (["--set", "log.retention.ms=abc"], {},
     ["'abc'", "log.retention.ms", "(from --set)", "whole number of at least -1"]),
    ([], {"STRATUS_NUM_PARTITIONS": "0"},
     ["'0'", "num.partitions", "environment variable STRATUS_NUM_PARTITIONS", "from 1 to 10000"]),
    (["--set", "auto.create.topics.enable=yes"], {},
     ["'yes'", "auto.create.topics.enable", "true or false"]),
    (["--set", "object.store.url=http://bucket"], {},
     ["object.store.url", "s3://", "file://"]),
    (["--set", "metadata.store.url=etcd:/host"], {},
     ["metadata.store.url", "etcd://"]),
    (["--set", "log.retention.hour=168"], {},
     ["unknown setting 'log.retention.hour'", "stratus --help"]),
])
def test_a_wrong_setting_stops_the_broker_naming_key_value_and_origin(fresh, args, env, says):
    base, data = fresh
    code, err = run(base + args, env)
    assert code == 2, (code, err)
    for s in says:
        assert s in err, f"{s!r} not in: {err}"
    assert not data.exists(), "a broker with a wrong setting touched its data dir"


def test_a_wrong_value_in_a_properties_file_names_the_file_and_line(fresh, tmp_path):
    base, _ = fresh
    props = tmp_path / "server.properties"
    props.write_text("# carried over\nnode.id=1\nlog.segment.bytes=10\n")
    code, err = run(base + ["--config", str(props)])
    assert code == 2
    assert f"{props}, line 3" in err and "log.segment.bytes" in err and "'10'" in err, err


def test_a_data_dir_that_cannot_be_created_is_named():
    code, err = run(["--data-dir", "/proc/nope/data", "--listeners", f"PLAINTEXT://127.0.0.1:{free_port()}"])
    assert code == 1
    assert "data.dir /proc/nope/data" in err and "--data-dir" in err, err


def test_a_data_dir_in_use_and_a_taken_port_are_refused_without_harm(make_broker, tmp_path):
    running = make_broker()
    # Same data dir, other port: the metadata file is locked by the running broker.
    code, err = run(["--data-dir", str(running.data_dir), "--listeners", f"PLAINTEXT://127.0.0.1:{free_port()}"])
    assert code == 1
    assert f"data.dir {running.data_dir} is in use by another running broker" in err, err
    # Other data dir, same port: refused before any store is opened.
    other = tmp_path / "other"
    code, err = run(["--data-dir", str(other), "--listeners", f"PLAINTEXT://127.0.0.1:{running.port}"])
    assert code == 1
    assert f"cannot listen on listener PLAINTEXT://127.0.0.1:{running.port}" in err, err
    assert "--listeners" in err, err
    assert not other.exists(), "the broker touched its data dir before binding its port"
    running.assert_healthy()
    assert AdminClient({"bootstrap.servers": running.bootstrap}).list_topics(timeout=10).brokers


def test_a_broker_of_a_cluster_waits_for_etcd_and_joins_when_it_answers(infra, fresh, tmp_path):
    """Kubernetes starts brokers and etcd in any order: a broker whose etcd does not answer
    yet says so and waits (a SIGTERM meanwhile stops it cleanly), then joins once it does."""
    from delay_proxy import DelayProxy
    base, _ = fresh
    port = int(base[3].rsplit(":", 1)[1])
    etcd_port = int(infra.etcd_endpoint.rsplit(":", 1)[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRATUS_", "AWS_", "ETCD_"))}

    def start(url, log):
        """The broker, its log (stdout and stderr) going to `log`."""
        args = [*base, "--set", f"metadata.store.url={url}", "--set", "metadata.request.timeout.ms=1000"]
        return subprocess.Popen([str(STRATUS_BIN), *args], env=env, stdout=open(log, "wb"),
                                stderr=subprocess.STDOUT)

    # Nothing answers: the broker keeps running and says what it waits for; SIGTERM stops it.
    url = f"etcd://127.0.0.1:{free_port()}/startup-wait-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "waiting.log"
    b = start(url, log)
    time.sleep(4)
    assert b.poll() is None, f"the broker exited ({b.returncode}) instead of waiting: {log.read_text()}"
    b.terminate()
    assert b.wait(timeout=20) == 0
    err = log.read_text()
    assert f"metadata store {url} did not answer" in err and "waiting for it" in err, err
    assert "ETCD_USERNAME" in err, err

    # etcd comes up (a proxy to the real one, started on the port the broker was given).
    proxy = DelayProxy(etcd_port, delay_s=0)
    url = f"etcd://127.0.0.1:{proxy.port}/startup-wait-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "joining.log"
    b = start(url, log)
    try:
        time.sleep(3)
        assert b.poll() is None, log.read_text()
        with proxy:
            deadline = time.time() + 60
            while True:
                assert b.poll() is None, log.read_text()
                try:
                    md = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(timeout=2)
                    assert list(md.brokers) == [1]
                    break
                except Exception:  # noqa: BLE001 — not serving yet
                    assert time.time() < deadline, "the broker did not join once etcd answered"
            b.terminate()
            assert b.wait(timeout=30) == 0
    finally:
        if b.poll() is None:
            b.kill()
            b.wait()


def test_an_object_store_refusing_the_credentials_stops_the_broker(infra, fresh):
    base, _ = fresh
    url = f"s3://{BUCKET}/startup-probe"
    env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": "not-the-secret",
           "AWS_ENDPOINT": infra.s3_endpoint, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1"}
    code, err = run(base + ["--set", f"object.store.url={url}"], env)
    assert code == 1
    assert f"object store {url} failed the startup probe" in err, err
    assert f"endpoint {infra.s3_endpoint}" in err and "AWS_ACCESS_KEY_ID" in err, err
    # The right credentials pass the probe and leave no probe object behind.
    env["AWS_SECRET_ACCESS_KEY"] = SECRET_KEY
    b = subprocess.Popen([str(STRATUS_BIN), *base, "--set", f"object.store.url={url}"],
                         env={**{k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")}, **env},
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = int(base[3].rsplit(":", 1)[1])
        deadline = time.time() + 60
        while not port_open(port):
            assert b.poll() is None, b.stderr.read()
            assert time.time() < deadline, "the broker did not start with the right credentials"
            time.sleep(0.1)
        assert infra.objects("startup-probe/_stratus/") == []
    finally:
        b.terminate()
        b.wait(timeout=30)


def test_a_kafka_server_properties_carries_over(tmp_path):
    """Apache Kafka 4's stock KRaft server.properties, with its ports and paths changed:
    settings that do not apply are ignored with a warning, aliases are read as Kafka reads
    them, and the controller listener is not bound."""
    from confluent_kafka.admin import ConfigResource
    port, controller_port = free_port(), free_port()
    props = tmp_path / "server.properties"
    props.write_text(f"""
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=localhost:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
inter.broker.listener.name=PLAINTEXT
advertised.listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600
log.dirs={tmp_path}/kraft-combined-logs
num.partitions=1
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
log.retention.hours=168
log.retention.minutes=90
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
""")
    log = tmp_path / "broker.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")}
    with open(log, "wb") as out:
        b = subprocess.Popen([str(STRATUS_BIN), "--data-dir", str(tmp_path / "data"), "--config", str(props)],
                             env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp_path)
    try:
        deadline = time.time() + 60
        while not port_open(port):
            assert b.poll() is None, log.read_text()
            assert time.time() < deadline, log.read_text()
            time.sleep(0.1)
        assert not port_open(controller_port), "the KRaft controller listener is not a Kafka listener"
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        res = ConfigResource(ConfigResource.Type.BROKER, "1")
        cfg = admin.describe_configs([res])[res].result(timeout=10)
        # log.retention.minutes wins over log.retention.hours, as in Kafka.
        assert cfg["log.retention.ms"].value == str(90 * 60_000)
        assert cfg["log.segment.bytes"].value == "1073741824"
        text = log.read_text()
        assert "process.roles (from" in text and "is ignored" in text, text
        assert "log.retention.minutes (from" in text and "log.retention.ms=5400000" in text, text
        assert "panicked" not in text
    finally:
        b.terminate()
        assert b.wait(timeout=30) == 0, log.read_text()
