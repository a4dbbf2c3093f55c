"""A cluster with no hop in clear text: clients on SASL_SSL (SCRAM-SHA-512), etcd over TLS
with client certificates (--client-cert-auth), MinIO over https with the test CA, the admin
API over mutual TLS. Producers, a consumer group and `stratus admin` work across brokers;
a broker without the etcd client certificate is refused by etcd and says what to set."""

import shutil
import ssl
import subprocess
import time
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialUpsertion)

from certs import CA, client_dn, server_dn
from cluster_infra import ACCESS_KEY, BUCKET, SECRET_KEY, Cluster, Infra, Service, free_port_pair
from conftest import CACHE, STRATUS_BIN, Broker, free_port
from util import create_topic, produce_sync, producer

pytestmark = pytest.mark.stratus_only

SCRAM_JAAS = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


class SecureInfra(Infra):
    """etcd and MinIO, both serving TLS with certificates of `ca`; etcd asks every client
    for a certificate of that CA."""

    def __init__(self, cache, ca, server, client):
        super().__init__(cache)
        self.ca, self.server, self.client = ca, server, client
        etcd_port = free_port_pair()
        url = f"https://127.0.0.1:{etcd_port}"
        self.etcd = Service("etcd", "run-etcd.sh", self.tmp / "etcd", etcd_port,
                            env={"ETCD_LOG_LEVEL": "warn"},
                            args=["--listen-client-urls", url, "--advertise-client-urls", url,
                                  "--cert-file", str(server.crt), "--key-file", str(server.key),
                                  "--trusted-ca-file", str(ca.pem), "--client-cert-auth"])
        certs = self.tmp / "minio-certs"
        certs.mkdir()
        shutil.copy(server.crt, certs / "public.crt")
        shutil.copy(server.key, certs / "private.key")
        self.minio = Service("minio", "run-minio.sh", self.tmp / "minio", free_port_pair(),
                             env={"MINIO_ROOT_USER": ACCESS_KEY, "MINIO_ROOT_PASSWORD": SECRET_KEY},
                             args=["--certs-dir", str(certs)])

    @property
    def s3_endpoint(self):
        return f"https://127.0.0.1:{self.minio.port}"

    def _ready(self, url, proc, with_cert):
        ctx = ssl.create_default_context(cafile=str(self.ca.pem))
        if with_cert:
            ctx.load_cert_chain(str(self.client.crt), str(self.client.key))
        deadline = time.time() + 60
        while time.time() < deadline:
            assert proc.poll() is None, f"{url}: the server exited"
            try:
                with urllib.request.urlopen(url, timeout=1, context=ctx) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"{url} not ready")

    def start(self):
        self.etcd.start()
        self.minio.start()
        self._ready(f"https://{self.etcd_endpoint}/health", self.etcd.proc, True)
        self._ready(f"{self.s3_endpoint}/minio/health/live", self.minio.proc, False)
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT",
                            "--cacert", str(self.ca.pem),
                            "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", f"{ACCESS_KEY}:{SECRET_KEY}",
                            f"{self.s3_endpoint}/{BUCKET}"], capture_output=True, text=True)
        assert r.stdout.strip() in ("200", "409"), r.stdout + r.stderr


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("secure-cluster-pki")
    ca = CA(d / "ca")
    return {"ca": ca,
            "server": ca.issue("server", server_dn(), server=True),
            "broker": ca.issue("broker", client_dn("stratus-broker")),
            "operator": ca.issue("operator", client_dn("operator"))}


@pytest.fixture(scope="module")
def secure_infra(pki):
    infra = SecureInfra(CACHE, pki["ca"], pki["server"], pki["broker"])
    infra.start()
    yield infra
    infra.stop()


def settings(pki):
    return {
        "metadata.store.security.protocol": "SSL",
        "metadata.store.ssl.truststore.location": str(pki["ca"].pem),
        "metadata.store.ssl.keystore.location": str(pki["broker"].pem),
        "object.store.ssl.truststore.location": str(pki["ca"].pem),
        "ssl.keystore.location": str(pki["server"].pem),
        "ssl.truststore.location": str(pki["ca"].pem),
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": SCRAM_JAAS,
        "admin.ssl.keystore.location": str(pki["server"].pem),
        "admin.ssl.truststore.location": str(pki["ca"].pem),
    }


def sasl_ssl(pki, user, password):
    return {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": user, "sasl.password": password, "ssl.ca.location": str(pki["ca"].pem)}


def test_a_cluster_with_every_hop_encrypted_serves_clients(secure_infra, pki, request):
    c = Cluster(secure_infra, n=2, settings=settings(pki), name="secure", admin=True,
                listeners={"SASL_SSL": "SASL_SSL"})
    c.start()
    request.addfinalizer(lambda: c.cleanup(keep=request.session.testsfailed > 0))
    # A SCRAM user, made over the PLAINTEXT listener the fixtures use for administration.
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    up = [UserScramCredentialUpsertion("app", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
                                       b"app-secret")]
    for f in admin.alter_user_scram_credentials(up).values():
        f.result(timeout=30)
    topic = f"secure-{uuid.uuid4().hex[:8]}"
    create_topic(admin, topic, partitions=4)

    bootstrap = ",".join(f"127.0.0.1:{b.ports['SASL_SSL']}" for b in c.brokers)
    conf = sasl_ssl(pki, "app", "app-secret")
    p = producer(bootstrap, **conf)
    produce_sync(p, topic, [{"key": str(i).encode(), "value": f"v{i}".encode()} for i in range(200)])
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}",
                         "auto.offset.reset": "earliest", **conf})
    consumer.subscribe([topic])
    seen = set()
    deadline = time.time() + 60
    try:
        while len(seen) < 200 and time.time() < deadline:
            m = consumer.poll(0.5)
            if m is not None and m.error() is None:
                seen.add(m.value().decode())
    finally:
        consumer.close()
    assert seen == {f"v{i}" for i in range(200)}

    # The admin API, over mutual TLS.
    r = subprocess.run([str(STRATUS_BIN), "admin", "--server", f"localhost:{c.admin_ports[1]}",
                        "--tls-ca", str(pki["ca"].pem), "--tls-cert", str(pki["operator"].crt),
                        "--tls-key", str(pki["operator"].key), "status"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and "controller" in r.stdout, r.stdout + r.stderr
    c.assert_healthy()


def test_a_broker_without_the_etcd_client_certificate_says_what_is_missing(secure_infra, pki,
                                                                          tmp_path):
    """etcd with --client-cert-auth closes the connection of a client with no certificate,
    which looks like any broken connection: the broker keeps trying (etcd may be down) and
    says which setting to check."""
    s = settings(pki)
    del s["metadata.store.ssl.keystore.location"]
    cmd = [str(STRATUS_BIN), "--data-dir", str(tmp_path / "data"),
           "--listeners", f"PLAINTEXT://127.0.0.1:{free_port()}",
           "--set", f"metadata.store.url=etcd://{secure_infra.etcd_endpoint}/refused",
           "--set", "object.store.url=memory://"]
    for k, v in s.items():
        if k.startswith("metadata."):
            cmd += ["--set", f"{k}={v}"]
    log = tmp_path / "broker.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.time() + 30
            while "metadata.store.ssl.keystore.location" not in log.read_text() and time.time() < deadline:
                assert proc.poll() is None or "did not answer" in log.read_text(), log.read_text()
                time.sleep(0.2)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    text = log.read_text()
    assert "did not answer" in text and "metadata.store.ssl.keystore.location" in text, text[-2000:]
