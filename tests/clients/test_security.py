"""TLS, mTLS and SASL (PLAIN, SCRAM-SHA-256/512) with real clients: confluent-kafka
(librdkafka), kcat and Kafka's Java CLI tools, on one broker with a listener of each kind.
Runs on both targets (STRATUS_TEST_TARGET=kafka: the same settings on Apache Kafka).

Listeners: PLAINTEXT (the fixtures' readiness checks and credential administration), SSL,
MTLS (SSL with ssl.client.auth=required, set per listener as listener.name.mtls.*),
SASL_SSL and SASL_PLAINTEXT."""

import socket
import ssl
import struct
import subprocess
import threading
import time
import uuid

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

from certs import CA, client_dn, server_dn
from conftest import CACHE, REPO, Broker, secret, shared_broker
from util import consume, create_topic, produce_sync, producer, tp, wait_for

LISTENERS = {"SSL": "SSL", "MTLS": "SSL", "SASL_SSL": "SASL_SSL", "SASL_PLAINTEXT": "SASL_PLAINTEXT"}
PLAIN_JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
              'username="admin" password="admin-secret" '
              'user_admin="admin-secret" user_alice="alice-secret";')
SCRAM_JAAS = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
# Every password of this suite: the brokers must never show one (conftest checks their logs
# and /metrics when they stop).
for _password in ("admin-secret", "alice-secret", "cli-secret", "franz-pw", "ks-pw", "key-pw",
                  "ts-pass"):
    secret(_password)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = CA(d / "ca")
    other = CA(d / "other", name="Untrusted CA")
    return {
        "ca": ca,
        "server": ca.issue("server", server_dn(), server=True),
        "alice": ca.issue("alice", client_dn("alice")),
        "expired": ca.issue("expired", client_dn("old"), expired=True),
        "stranger": other.issue("stranger", client_dn("mallory")),
    }


def security_settings(pki):
    s = {
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(pki["server"].pem),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(pki["ca"].pem),
        "listener.name.mtls.ssl.client.auth": "required",
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
    }
    for listener in ("sasl_ssl", "sasl_plaintext"):
        s[f"listener.name.{listener}.plain.sasl.jaas.config"] = PLAIN_JAAS
        s[f"listener.name.{listener}.scram-sha-256.sasl.jaas.config"] = SCRAM_JAAS
        s[f"listener.name.{listener}.scram-sha-512.sasl.jaas.config"] = SCRAM_JAAS
    return s


@pytest.fixture(scope="module")
def secure(pki, request):
    yield from shared_broker(request, Broker(
        {**security_settings(pki), "auto.create.topics.enable": "false"},
        name="secure", listeners=LISTENERS))


def addr(b, listener):
    return f"127.0.0.1:{b.ports[listener]}"


def tls_conf(pki, client=None):
    conf = {"security.protocol": "SSL", "ssl.ca.location": str(pki["ca"].pem)}
    if client:
        conf.update({"ssl.certificate.location": str(pki[client].crt),
                     "ssl.key.location": str(pki[client].key)})
    return conf


def sasl_conf(mechanism, user, password, tls_pki=None):
    conf = {"security.protocol": "SASL_SSL" if tls_pki else "SASL_PLAINTEXT",
            "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password}
    if tls_pki:
        conf["ssl.ca.location"] = str(tls_pki["ca"].pem)
    return conf


def round_trip_records(b, bootstrap, conf, n=50):
    """Creates a topic (over PLAINTEXT), produces n records and reads them back over
    `bootstrap` with `conf`; returns the values read."""
    topic = f"sec-{uuid.uuid4().hex[:8]}"
    create_topic(b.admin(), topic)
    p = producer(bootstrap, **conf)
    produce_sync(p, topic, [{"value": f"v{i}".encode()} for i in range(n)])
    got = consume(bootstrap, [tp(topic, 0, 0)], n, **conf)
    return [m.value().decode() for m in got]


def refused(bootstrap, conf, timeout=8):
    """The errors a client reports (its error callback, then the failed request) when it
    cannot connect and authenticate; None when it can."""
    errors = []
    a = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 3000,
                     "error_cb": lambda e: errors.append(str(e)), **conf})
    try:
        a.list_topics(timeout=timeout)
    except KafkaException as e:
        a.poll(0.5)  # serves the error callback
        return " | ".join(errors + [str(e)])
    return None


def test_tls_listener_serves_producers_and_consumers(secure, pki):
    got = round_trip_records(secure, addr(secure, "SSL"), tls_conf(pki))
    assert got == [f"v{i}" for i in range(50)]


def test_metadata_on_a_tls_listener_advertises_that_listener(secure, pki):
    md = AdminClient({"bootstrap.servers": addr(secure, "SSL"), **tls_conf(pki)}).list_topics(timeout=10)
    assert [(b.host, b.port) for b in md.brokers.values()] == [("127.0.0.1", secure.ports["SSL"])]


def test_a_plaintext_client_on_a_tls_port_is_closed_and_harms_no_one(secure, pki):
    # ApiVersions v0 in clear text: the broker reads it as a broken TLS hello and closes.
    frame = struct.pack(">hhi", 18, 0, 1) + struct.pack(">h", 4) + b"test"
    with socket.create_connection(("127.0.0.1", secure.ports["SSL"]), timeout=10) as s:
        s.sendall(struct.pack(">i", len(frame)) + frame)
        data = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
    assert not data.startswith(struct.pack(">i", 1)), "a Kafka response came back in clear text"
    assert round_trip_records(secure, addr(secure, "SSL"), tls_conf(pki), n=5) == [f"v{i}" for i in range(5)]


def test_the_broker_presents_its_certificate_for_the_advertised_name(secure, pki):
    ctx = ssl.create_default_context(cafile=str(pki["ca"].pem))
    with socket.create_connection(("127.0.0.1", secure.ports["SSL"]), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.version() in ("TLSv1.2", "TLSv1.3")
            assert s.getpeercert()["subject"] == ((("commonName", "localhost"),),)


def test_mtls_listener_accepts_only_certificates_its_truststore_verifies(secure, pki):
    good = round_trip_records(secure, addr(secure, "MTLS"), tls_conf(pki, "alice"), n=5)
    assert good == [f"v{i}" for i in range(5)]
    for client in (None, "expired", "stranger"):
        err = refused(addr(secure, "MTLS"), tls_conf(pki, client))
        assert err is not None, f"a client with {client or 'no'} certificate was let in"
    # The SSL listener (ssl.client.auth=none) does not ask for one.
    assert refused(addr(secure, "SSL"), tls_conf(pki)) is None


@pytest.mark.parametrize("listener", ["SASL_SSL", "SASL_PLAINTEXT"])
def test_sasl_plain_users_from_the_jaas_line(secure, pki, listener):
    tls = pki if listener == "SASL_SSL" else None
    got = round_trip_records(secure, addr(secure, listener), sasl_conf("PLAIN", "alice", "alice-secret", tls), n=5)
    assert got == [f"v{i}" for i in range(5)]
    for user, password in (("alice", "wrong"), ("nobody", "alice-secret")):
        err = refused(addr(secure, listener), sasl_conf("PLAIN", user, password, tls))
        assert err is not None and "Authentication failed" in err, err


def test_scram_users_are_created_described_used_and_deleted(secure, pki):
    admin = secure.admin()
    user = f"u{uuid.uuid4().hex[:6]}"
    ups = [UserScramCredentialUpsertion(user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"pw-256")]
    for f in admin.alter_user_scram_credentials(ups).values():
        f.result(timeout=10)
    # One change per user per request: the second mechanism goes in its own request.
    ups = [UserScramCredentialUpsertion(user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), b"pw-512")]
    for f in admin.alter_user_scram_credentials(ups).values():
        f.result(timeout=10)
    described = {u: f.result(timeout=10) for u, f in admin.describe_user_scram_credentials([user]).items()}
    infos = sorted((i.mechanism, i.iterations) for i in described[user].scram_credential_infos)
    assert infos == [(ScramMechanism.SCRAM_SHA_256, 4096), (ScramMechanism.SCRAM_SHA_512, 8192)]

    for mech, pw in (("SCRAM-SHA-256", "pw-256"), ("SCRAM-SHA-512", "pw-512")):
        got = round_trip_records(secure, addr(secure, "SASL_SSL"), sasl_conf(mech, user, pw, pki), n=5)
        assert got == [f"v{i}" for i in range(5)]
        err = refused(addr(secure, "SASL_SSL"), sasl_conf(mech, user, "wrong", pki))
        assert err is not None and "Authentication failed" in err, err

    dels = [UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_256)]
    for f in admin.alter_user_scram_credentials(dels).values():
        f.result(timeout=10)
    err = refused(addr(secure, "SASL_SSL"), sasl_conf("SCRAM-SHA-256", user, "pw-256", pki))
    assert err is not None, "a deleted credential still logs in"
    assert refused(addr(secure, "SASL_PLAINTEXT"), sasl_conf("SCRAM-SHA-512", user, "pw-512")) is None


def test_scram_admin_errors_are_kafkas(secure):
    admin = secure.admin()
    user = f"u{uuid.uuid4().hex[:6]}"
    few = [UserScramCredentialUpsertion(user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 1000), b"pw")]
    with pytest.raises(KafkaException, match="(?i)too few iterations"):
        for f in admin.alter_user_scram_credentials(few).values():
            f.result(timeout=10)
    missing = [UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_512)]
    with pytest.raises(KafkaException, match="(?i)does not exist"):
        for f in admin.alter_user_scram_credentials(missing).values():
            f.result(timeout=10)


def kafka_cli(*args, timeout=90):
    r = subprocess.run([str(REPO / "scripts" / "kafka-cli"), *args], capture_output=True,
                       text=True, timeout=timeout)
    return r


def test_kafka_cli_tools_create_a_scram_user_and_use_it(secure, pki, tmp_path):
    user = f"cli{uuid.uuid4().hex[:6]}"
    r = kafka_cli("configs", "--bootstrap-server", secure.bootstrap, "--alter",
                  "--add-config", "SCRAM-SHA-512=[iterations=4096,password=cli-secret]",
                  "--entity-type", "users", "--entity-name", user)
    assert r.returncode == 0, r.stderr[-2000:]
    r = kafka_cli("configs", "--bootstrap-server", secure.bootstrap, "--describe",
                  "--entity-type", "users", "--entity-name", user)
    assert r.returncode == 0 and "SCRAM-SHA-512=iterations=4096" in r.stdout, r.stdout + r.stderr[-2000:]

    props = tmp_path / "client.properties"
    props.write_text(
        "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
        "ssl.truststore.type=PEM\n"
        f"ssl.truststore.location={pki['ca'].pem}\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{user}" password="cli-secret";\n')
    topic = f"cli-{uuid.uuid4().hex[:8]}"
    create_topic(secure.admin(), topic)
    lines = "\n".join(f"line-{i}" for i in range(20)) + "\n"
    p = subprocess.run([str(REPO / "scripts" / "kafka-cli"), "console-producer",
                        "--bootstrap-server", addr(secure, "SASL_SSL"), "--topic", topic,
                        "--producer.config", str(props)],
                       input=lines, capture_output=True, text=True, timeout=90)
    assert p.returncode == 0, p.stderr[-2000:]
    c = kafka_cli("console-consumer", "--bootstrap-server", addr(secure, "SASL_SSL"), "--topic", topic,
                  "--from-beginning", "--max-messages", "20", "--timeout-ms", "30000",
                  "--consumer.config", str(props))
    assert c.returncode == 0, c.stderr[-2000:]
    # (stdout also carries the tool's notes on deprecated options)
    assert [l for l in c.stdout.splitlines() if l.startswith("line-")] == [f"line-{i}" for i in range(20)]


def test_kcat_produces_and_consumes_over_sasl_ssl_and_mtls(secure, pki):
    topic = f"kcat-{uuid.uuid4().hex[:8]}"
    create_topic(secure.admin(), topic)
    sasl = ["-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanism=PLAIN",
            "-X", "sasl.username=alice", "-X", "sasl.password=alice-secret",
            "-X", f"ssl.ca.location={pki['ca'].pem}"]
    r = subprocess.run(["kcat", "-b", addr(secure, "SASL_SSL"), *sasl, "-P", "-t", topic],
                       input="a\nb\nc\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    mtls = ["-X", "security.protocol=SSL", "-X", f"ssl.ca.location={pki['ca'].pem}",
            "-X", f"ssl.certificate.location={pki['alice'].crt}", "-X", f"ssl.key.location={pki['alice'].key}"]
    r = subprocess.run(["kcat", "-b", addr(secure, "MTLS"), *mtls, "-C", "-t", topic, "-o", "beginning",
                        "-c", "3", "-e"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["a", "b", "c"]


FRANZ_BIN = CACHE / "bin" / "franz-group-consumer"


def franz(*args):
    if not FRANZ_BIN.exists():
        pytest.fail(f"{FRANZ_BIN} missing (run scripts/install-test-deps.sh)")
    return subprocess.run([str(FRANZ_BIN), *args], capture_output=True, text=True, timeout=90,
                          stdin=subprocess.DEVNULL)


def test_franz_go_produces_with_scram_and_consumes_a_group_over_mtls(secure, pki):
    user = f"franz{uuid.uuid4().hex[:6]}"
    ups = [UserScramCredentialUpsertion(user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"franz-pw")]
    admin = secure.admin()
    for f in admin.alter_user_scram_credentials(ups).values():
        f.result(timeout=10)
    topic = f"franz-{uuid.uuid4().hex[:8]}"
    create_topic(secure.admin(), topic)
    r = franz("-brokers", addr(secure, "SASL_SSL"), "-topic", topic, "-produce", "20",
              "-tls-ca", str(pki["ca"].pem), "-sasl", "SCRAM-SHA-256", "-user", user, "-password", "franz-pw")
    assert r.returncode == 0 and "PRODUCED 20" in r.stdout, r.stdout + r.stderr
    r = franz("-brokers", addr(secure, "MTLS"), "-topic", topic, "-group", f"g-{topic}", "-max", "20",
              "-timeout-ms", "60000", "-tls-ca", str(pki["ca"].pem),
              "-tls-cert", str(pki["alice"].crt), "-tls-key", str(pki["alice"].key))
    assert r.returncode == 0 and "DONE 20" in r.stdout, r.stdout + r.stderr
    values = sorted(l.split()[3] for l in r.stdout.splitlines() if l.startswith("R "))
    assert values == sorted(f"franz-{i}" for i in range(20))


def frame(api_key, version, correlation, body=b""):
    header = struct.pack(">hhi", api_key, version, correlation) + struct.pack(">h", 4) + b"test"
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def closed_without_answer(port, data, timeout=10):
    """Sends `data` and reads until the broker closes; True if it closed without a byte."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return True
        try:
            return s.recv(4096) == b""
        except ConnectionResetError:
            return True


def test_before_authentication_only_sasl_requests_and_small_frames_pass(secure):
    port = secure.ports["SASL_PLAINTEXT"]
    # Metadata v1 (all topics) before SaslHandshake: closed, as Kafka does.
    assert closed_without_answer(port, frame(3, 1, 7, struct.pack(">i", -1)))
    # A 1 MiB frame before authentication: refused before it is read.
    big = struct.pack(">i", 1 << 20) + b"\0" * 1024
    assert closed_without_answer(port, big)
    # The SASL listener still serves clients that authenticate.
    assert refused(addr(secure, "SASL_PLAINTEXT"), sasl_conf("PLAIN", "alice", "alice-secret")) is None


def answers_then_closes(port, data, timeout=10):
    """Sends `data`; returns the frames the broker answered before it closed the
    connection (it must close it)."""
    out, buf = [], b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        while True:
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
    while len(buf) >= 4:
        (size,) = struct.unpack(">i", buf[:4])
        out.append(buf[4:4 + size])
        buf = buf[4 + size:]
    return out


def test_sasl_requests_out_of_order_end_the_connection(secure):
    port = secure.ports["SASL_PLAINTEXT"]
    token = b"\0alice\0alice-secret"
    authenticate = frame(36, 1, 5, struct.pack(">i", len(token)) + token)
    # SaslAuthenticate before SaslHandshake: Kafka's IllegalSaslState, and the connection ends.
    for answer in answers_then_closes(port, authenticate):
        assert struct.unpack(">ih", answer[:6]) == (5, 34), "ILLEGAL_SASL_STATE"
    # A Metadata request between SaslHandshake and SaslAuthenticate ends the connection (Kafka
    # answers it with an error first): the SaslAuthenticate after it is never served.
    mech = b"PLAIN"
    handshake = frame(17, 1, 6, struct.pack(">h", len(mech)) + mech)
    late = frame(36, 1, 8, struct.pack(">i", len(token)) + token)
    answers = answers_then_closes(port, handshake + frame(3, 1, 7, struct.pack(">i", -1)) + late)
    ids = [struct.unpack(">i", a[:4])[0] for a in answers]
    assert ids[0] == 6 and 8 not in ids, ids


def test_an_unsupported_mechanism_gets_the_list_of_enabled_ones(secure):
    port = secure.ports["SASL_PLAINTEXT"]
    mech = b"GSSAPI"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(frame(17, 1, 9, struct.pack(">h", len(mech)) + mech))
        (size,) = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))
        body = s.recv(size, socket.MSG_WAITALL)
    correlation, error = struct.unpack(">ih", body[:6])
    assert (correlation, error) == (9, 33), "UNSUPPORTED_SASL_MECHANISM"
    assert b"SCRAM-SHA-512" in body and b"PLAIN" in body


def test_clients_reauthenticate_when_sessions_expire(make_broker, pki):
    b = make_broker({**security_settings(pki), "connections.max.reauth.ms": "3000"}, listeners=LISTENERS)
    conf = sasl_conf("PLAIN", "alice", "alice-secret", pki)
    topic = f"reauth-{uuid.uuid4().hex[:8]}"
    create_topic(b.admin(), topic)
    p = producer(addr(b, "SASL_SSL"), **conf)
    sent = 0
    deadline = time.time() + 10
    while time.time() < deadline:  # several session lifetimes on one connection
        produce_sync(p, topic, [{"value": f"r{sent + i}".encode()} for i in range(10)])
        sent += 10
        time.sleep(0.5)
    got = consume(addr(b, "SASL_SSL"), [tp(topic, 0, 0)], sent, **conf)
    assert [m.value().decode() for m in got] == [f"r{i}" for i in range(sent)]


def server_serial(port, ca):
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            der = s.getpeercert(binary_form=True)
    from cryptography import x509
    return x509.load_der_x509_certificate(der).serial_number


@pytest.mark.stratus_only
def test_a_rotated_certificate_reaches_new_connections_while_producers_keep_going(make_broker, pki, tmp_path):
    # Kafka re-reads keystores only through a dynamic config update; Stratus watches the
    # files, as cert-manager rotates a mounted secret in place.
    live = tmp_path / "server.pem"
    live.write_text(pki["server"].pem.read_text())
    settings = {**security_settings(pki), "ssl.keystore.location": str(live)}
    b = make_broker(settings, listeners=LISTENERS)
    port = b.ports["SSL"]
    assert server_serial(port, pki["ca"].pem) == pki["server"].serial
    topic = f"rot-{uuid.uuid4().hex[:8]}"
    create_topic(b.admin(), topic)
    p = producer(addr(b, "SSL"), **tls_conf(pki))
    sent, stop = [0], threading.Event()

    def produce():
        while not stop.is_set():
            produce_sync(p, topic, [{"value": f"x{sent[0] + i}".encode()} for i in range(20)])
            sent[0] += 20
            time.sleep(0.05)

    t = threading.Thread(target=produce)
    t.start()
    try:
        time.sleep(1)
        rotated = pki["ca"].issue("server-rotated", server_dn(), server=True)
        tmp = tmp_path / "server.pem.new"
        tmp.write_text(rotated.pem.read_text())
        tmp.replace(live)
        wait_for(lambda: server_serial(port, pki["ca"].pem) == rotated.serial, timeout=10,
                 what="new connections to get the rotated certificate")
        time.sleep(1)
    finally:
        stop.set()
        t.join(timeout=60)
    got = consume(addr(b, "SSL"), [tp(topic, 0, 0)], sent[0], **tls_conf(pki))
    assert [m.value().decode() for m in got] == [f"x{i}" for i in range(sent[0])]


def test_secrets_are_described_as_sensitive_with_no_value(secure):
    from confluent_kafka.admin import ConfigResource
    res = ConfigResource(ConfigResource.Type.BROKER, "1")
    admin = secure.admin()
    configs = admin.describe_configs([res])[res].result(timeout=10)
    for name in ("ssl.keystore.key", "ssl.key.password", "sasl.jaas.config"):
        if name in configs:
            assert configs[name].is_sensitive and configs[name].value is None, (name, configs[name])
    shown = " ".join(f"{c.name}={c.value}" for c in configs.values())
    assert "alice-secret" not in shown and "admin-secret" not in shown
    assert "alice-secret" not in secure.log_path.read_text(errors="replace")


@pytest.mark.stratus_only
@pytest.mark.parametrize("settings,says", [
    ({"ssl.keystore.location": "/nope/server.pem"}, ["listener SSL (SSL)", "ssl.keystore.location /nope/server.pem"]),
    ({}, ["listener SSL (SSL)", "ssl.keystore.location", "ssl.keystore.key"]),
    ({"ssl.keystore.type": "JKS", "ssl.keystore.location": "/x.jks"}, ["JKS", "convert it"]),
    ({"listener.name.ssl.ssl.client.auth": "always"}, ["listener.name.ssl.ssl.client.auth", "required, requested, none"]),
])
def test_a_listener_that_cannot_do_tls_stops_the_broker_before_it_binds(tmp_path, settings, says):
    from conftest import STRATUS_BIN, free_port, port_open
    port = free_port()
    args = [str(STRATUS_BIN), "--data-dir", str(tmp_path / "data"), "--listeners", f"SSL://127.0.0.1:{port}"]
    for k, v in settings.items():
        args += ["--set", f"{k}={v}"]
    p = subprocess.run(args, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    err = p.stderr.strip().splitlines()[-1]
    assert p.returncode != 0
    for s in says:
        assert s in err, f"{s!r} not in: {err}"
    assert not (tmp_path / "data").exists(), "the broker touched its data dir"
    assert not port_open(port)


def tls_socket(port, pki):
    ctx = ssl.create_default_context(cafile=str(pki["ca"].pem))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def closed_after(s, data):
    """Sends `data` on a TLS socket; True if the broker closed it without an answer."""
    try:
        s.sendall(data)
        return s.recv(4096) == b""
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
        return True
    finally:
        s.close()


def test_bad_frames_on_a_tls_listener_close_only_their_connection(secure, pki):
    port = secure.ports["SSL"]
    # Larger than socket.request.max.bytes (100 MiB): refused from the size alone.
    assert closed_after(tls_socket(port, pki), struct.pack(">i", 200 << 20) + b"\0" * 64)
    # A Metadata request whose body does not decode.
    body = struct.pack(">hhi", 3, 9, 1) + b"\xff\xff\x7f"
    assert closed_after(tls_socket(port, pki), struct.pack(">i", len(body)) + body)
    # An API key no broker has.
    body = struct.pack(">hhi", 0x7f00, 0, 1)
    assert closed_after(tls_socket(port, pki), struct.pack(">i", len(body)) + body)
    # A negative size.
    assert closed_after(tls_socket(port, pki), b"\xff\xff\xff\xfe" + bytes(range(256)))
    got = round_trip_records(secure, addr(secure, "SSL"), tls_conf(pki), n=5)
    assert got == [f"v{i}" for i in range(5)]


# Kafka on Java 17 cannot read a PBES2-encrypted PEM key ("PBES2 SecretKeyFactory not
# available"), which is what openssl and cryptography write today; Stratus can.
@pytest.mark.parametrize("store", [pytest.param("encrypted-pem", marks=pytest.mark.stratus_only), "pkcs12"])
def test_encrypted_keys_and_pkcs12_keystores(make_broker, pki, tmp_path, store):
    server = pki["server"]
    if store == "pkcs12":
        keystore = {"ssl.keystore.type": "PKCS12",
                    "ssl.keystore.location": str(server.keystore_p12(tmp_path / "ks.p12", "ks-pw")),
                    "ssl.keystore.password": "ks-pw"}
    else:
        keystore = {"ssl.keystore.location": str(server.encrypted_pem(tmp_path / "enc.pem", "key-pw")),
                    "ssl.key.password": "key-pw"}
    b = make_broker({**security_settings(pki), **keystore}, listeners={"SSL": "SSL"})
    got = round_trip_records(b, addr(b, "SSL"), tls_conf(pki), n=5)
    assert got == [f"v{i}" for i in range(5)]


@pytest.mark.stratus_only
def test_a_pkcs12_truststore_verifies_client_certificates_and_wrong_passwords_stop_the_broker(
        make_broker, pki, tmp_path):
    from conftest import STRATUS_BIN, free_port
    trust = pki["ca"].truststore_p12(tmp_path / "trust.p12", "ts-pass")
    settings = {**security_settings(pki), "ssl.truststore.type": "PKCS12",
                "ssl.truststore.location": str(trust), "ssl.truststore.password": "ts-pass"}
    b = make_broker(settings, listeners={"MTLS": "SSL"})
    assert round_trip_records(b, addr(b, "MTLS"), tls_conf(pki, "alice"), n=3) == ["v0", "v1", "v2"]
    assert refused(addr(b, "MTLS"), tls_conf(pki, "stranger")) is not None
    for bad, says in (({"ssl.truststore.password": "wrong"}, "ssl.truststore.location"),
                      ({"ssl.keystore.location": str(pki["server"].encrypted_pem(tmp_path / "e.pem", "pw"))},
                       "ssl.key.password")):
        args = [str(STRATUS_BIN), "--data-dir", str(tmp_path / "d"), "--listeners",
                f"SSL://127.0.0.1:{free_port()}"]
        for k, v in {**settings, **bad}.items():
            args += ["--set", f"{k}={v}"]
        p = subprocess.run(args, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert p.returncode != 0 and says in p.stderr, p.stderr[-500:]
