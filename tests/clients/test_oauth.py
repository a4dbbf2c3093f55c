"""SASL OAUTHBEARER with JWTs signed by a test identity provider, checked against its JWKS:
confluent-kafka (librdkafka, tokens from an oauth_cb) and Kafka's Java CLI tools (a token
file) produce and consume; expired, wrongly signed and misaddressed tokens are refused.
Runs on both targets (STRATUS_TEST_TARGET=kafka: the same settings on Apache Kafka)."""

import base64
import json
import os
import subprocess
import time
import uuid

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from conftest import REPO, Broker, secret, shared_broker
from test_security import refused
from util import consume, create_topic, produce_sync, producer, tp

ISSUER = "https://idp.example.test"
AUDIENCE = "kafka-brokers"
VALIDATOR = "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"
LOGIN_MODULE = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required ;"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def uint(n):
    return b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))


class IdentityProvider:
    """An RSA signing key, its JWK, and RS256 tokens."""

    def __init__(self, kid):
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self):
        pub = self.key.public_key().public_numbers()
        return {"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
                "n": uint(pub.n), "e": uint(pub.e)}

    def token(self, sub, lifetime_s=300, aud=AUDIENCE, iss=ISSUER, kid=None):
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": kid or self.kid}
        claims = {"sub": sub, "iss": iss, "aud": aud, "iat": now, "exp": now + lifetime_s,
                  "scope": "kafka"}
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        # The signature makes the token a credential: the broker must never show it.
        return f"{signing_input}.{secret(b64(sig))}", now + lifetime_s


def write_jwks(path, *idps):
    path.write_text(json.dumps({"keys": [i.jwk() for i in idps]}))


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    d = tmp_path_factory.mktemp("idp")
    first = IdentityProvider("key-1")
    jwks = d / "jwks.json"
    write_jwks(jwks, first)
    return {"dir": d, "jwks": jwks, "key": first}


def allowed_urls(*urls):
    """Kafka 4 only reads OAuth URLs and files listed in these system properties."""
    return ("-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls=" + ",".join(urls) +
            " -Dorg.apache.kafka.sasl.oauthbearer.allowed.files=" +
            ",".join(u.removeprefix("file://") for u in urls))


@pytest.fixture(scope="module")
def oauth_broker(idp, request):
    url = f"file://{idp['jwks']}"
    settings = {
        "sasl.enabled.mechanisms": "OAUTHBEARER",
        "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config": LOGIN_MODULE,
        "listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class": VALIDATOR,
        "sasl.oauthbearer.jwks.endpoint.url": url,
        "sasl.oauthbearer.expected.audience": AUDIENCE,
        "sasl.oauthbearer.expected.issuer": ISSUER,
        "auto.create.topics.enable": "false",
    }
    yield from shared_broker(request, Broker(
        settings, name="oauth", listeners={"SASL_PLAINTEXT": "SASL_PLAINTEXT"},
        env={"KAFKA_OPTS": allowed_urls(url)}))


def addr(b):
    return f"127.0.0.1:{b.ports['SASL_PLAINTEXT']}"


def oauth_conf(make_token):
    def cb(_config):
        token, expiry = make_token()
        return token, float(expiry)
    return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "OAUTHBEARER",
            "oauth_cb": cb}


def test_a_valid_token_produces_and_consumes(oauth_broker, idp):
    topic = f"oauth-{uuid.uuid4().hex[:8]}"
    create_topic(oauth_broker.admin(), topic)
    conf = oauth_conf(lambda: idp["key"].token("alice"))
    p = producer(addr(oauth_broker), **conf)
    produce_sync(p, topic, [{"value": f"v{i}".encode()} for i in range(20)])
    got = consume(addr(oauth_broker), [tp(topic, 0, 0)], 20, **conf)
    assert [m.value().decode() for m in got] == [f"v{i}" for i in range(20)]


@pytest.mark.parametrize("case", ["expired", "untrusted key", "wrong audience", "wrong issuer",
                                  "unknown key id", "no subject"])
def test_bad_tokens_are_refused(oauth_broker, idp, case):
    key = idp["key"]
    make = {
        "expired": lambda: key.token("alice", lifetime_s=-600),
        "untrusted key": lambda: IdentityProvider(key.kid).token("mallory"),
        "wrong audience": lambda: key.token("alice", aud="billing"),
        "wrong issuer": lambda: key.token("alice", iss="https://evil.example.test"),
        "unknown key id": lambda: IdentityProvider("key-9").token("mallory"),
        "no subject": lambda: key.token(""),
    }[case]

    def token():
        t, _ = make()
        # librdkafka will not hand over a token whose expiry has passed: claim a future one.
        return t, int(time.time()) + 300

    err = refused(addr(oauth_broker), oauth_conf(token))
    assert err is not None, f"a token with {case} was accepted"
    assert "authentication" in err.lower(), err


def test_java_clients_authenticate_with_a_token_file(oauth_broker, idp, tmp_path):
    token, _ = idp["key"].token("java-client")
    token_file = tmp_path / "token.jwt"
    token_file.write_text(token)
    props = tmp_path / "client.properties"
    props.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=OAUTHBEARER\n"
        f"sasl.jaas.config={LOGIN_MODULE}\n"
        "sasl.login.callback.handler.class="
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler\n"
        f"sasl.oauthbearer.token.endpoint.url=file://{token_file}\n")
    env = {**os.environ, "KAFKA_OPTS": allowed_urls(f"file://{token_file}")}
    topic = f"oauth-java-{uuid.uuid4().hex[:8]}"
    create_topic(oauth_broker.admin(), topic)
    lines = "\n".join(f"line-{i}" for i in range(10)) + "\n"
    cli = str(REPO / "scripts" / "kafka-cli")
    p = subprocess.run([cli, "console-producer", "--bootstrap-server", addr(oauth_broker),
                        "--topic", topic, "--producer.config", str(props)],
                       input=lines, capture_output=True, text=True, timeout=90, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    c = subprocess.run([cli, "console-consumer", "--bootstrap-server", addr(oauth_broker),
                        "--topic", topic, "--from-beginning", "--max-messages", "10",
                        "--timeout-ms", "30000", "--consumer.config", str(props)],
                       capture_output=True, text=True, timeout=90, env=env)
    assert c.returncode == 0, c.stderr[-2000:]
    assert [l for l in c.stdout.splitlines() if l.startswith("line-")] == [f"line-{i}" for i in range(10)]


@pytest.mark.stratus_only
def test_keys_added_to_the_jwks_file_are_used_without_a_restart(oauth_broker, idp):
    """The identity provider rotates its keys: the JWKS file is rewritten in place (as a
    mounted secret is) and tokens signed with the new key work at once."""
    second = IdentityProvider("key-2")
    conf = oauth_conf(lambda: second.token("bob"))
    assert refused(addr(oauth_broker), conf) is not None
    write_jwks(idp["jwks"], idp["key"], second)
    try:
        assert refused(addr(oauth_broker), conf) is None
        assert refused(addr(oauth_broker), oauth_conf(lambda: idp["key"].token("alice"))) is None
    finally:
        write_jwks(idp["jwks"], idp["key"])


class JsonServer:
    """A local HTTP server (https with `cert`) answering every GET and POST with the JSON
    document `body()` returns; counts the requests."""

    def __init__(self, path, body, cert=None):
        import http.server
        import ssl
        import threading
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests += 1
                data = json.dumps(body()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = answer

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if cert is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(cert.crt), str(cert.key))
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}{path}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def https_jwks_broker(request, tmp_path, name, body):
    """A broker whose JWKS is `body()` served over https by a CA that the listener's JAAS
    line names; returns (broker, the JWKS server)."""
    from certs import CA, server_dn
    ca = CA(tmp_path / "ca")
    server = JsonServer("/jwks", body, cert=ca.issue("idp", server_dn(), server=True))
    request.addfinalizer(server.close)
    jaas = ("org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
            f'ssl.truststore.location="{ca.pem}" ssl.truststore.type="PEM" ;')
    b = Broker({
        "sasl.enabled.mechanisms": "OAUTHBEARER",
        "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config": jaas,
        "listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class": VALIDATOR,
        "sasl.oauthbearer.jwks.endpoint.url": server.url,
        "sasl.oauthbearer.expected.audience": AUDIENCE,
    }, name=name, listeners={"SASL_PLAINTEXT": "SASL_PLAINTEXT"})
    gen = shared_broker(request, b)
    next(gen)
    request.addfinalizer(lambda: next(gen, None))
    return b, server


@pytest.mark.stratus_only
def test_an_https_jwks_is_fetched_and_fetched_again_for_a_new_key(tmp_path, request):
    """The JWKS comes from an https endpoint whose CA the listener's JAAS line names; a
    token signed with a key the broker has not seen makes it fetch the keys again."""
    keys = [IdentityProvider("k-a")]
    b, server = https_jwks_broker(request, tmp_path, "oauth-https",
                                  lambda: {"keys": [k.jwk() for k in keys]})
    first = keys[0]
    assert refused(addr(b), oauth_conf(lambda: first.token("alice"))) is None
    rotated = IdentityProvider("k-b")
    keys.append(rotated)
    fetched = server.requests
    assert refused(addr(b), oauth_conf(lambda: rotated.token("bob"))) is None
    assert server.requests > fetched


def test_sessions_end_with_their_token_and_clients_reauthenticate(idp, make_broker):
    """With connections.max.reauth.ms, a session lasts no longer than its token: a client
    whose tokens live 5 s re-authenticates with fresh ones on the same connection and keeps
    producing."""
    url = f"file://{idp['jwks']}"
    b = make_broker({
        "sasl.enabled.mechanisms": "OAUTHBEARER",
        "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config": LOGIN_MODULE,
        "listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class": VALIDATOR,
        "sasl.oauthbearer.jwks.endpoint.url": url,
        "sasl.oauthbearer.expected.audience": AUDIENCE,
        "sasl.oauthbearer.clock.skew.seconds": "0",
        "connections.max.reauth.ms": "600000",
    }, listeners={"SASL_PLAINTEXT": "SASL_PLAINTEXT"}, env={"KAFKA_OPTS": allowed_urls(url)})
    issued = []

    def fresh():
        issued.append(time.time())
        return idp["key"].token("short-lived", lifetime_s=5)

    conf = oauth_conf(fresh)
    topic = f"oauth-reauth-{uuid.uuid4().hex[:8]}"
    create_topic(b.admin(), topic)
    p = producer(addr(b), **conf)
    sent = 0
    deadline = time.time() + 12
    while time.time() < deadline:  # more than two token lifetimes
        produce_sync(p, topic, [{"value": f"r{sent + i}".encode()} for i in range(10)])
        sent += 10
        time.sleep(0.5)
    assert len(issued) >= 2, "the client never needed a new token"
    got = consume(addr(b), [tp(topic, 0, 0)], sent, **conf)
    assert [m.value().decode() for m in got] == [f"r{i}" for i in range(sent)]


def test_franz_go_produces_and_consumes_a_group_with_a_token(oauth_broker, idp, tmp_path):
    from test_security import franz
    token, _ = idp["key"].token("franz")
    token_file = tmp_path / "token.jwt"
    token_file.write_text(token)
    topic = f"oauth-franz-{uuid.uuid4().hex[:8]}"
    create_topic(oauth_broker.admin(), topic)
    auth = ["-sasl", "OAUTHBEARER", "-token-file", str(token_file)]
    r = franz("-brokers", addr(oauth_broker), "-topic", topic, "-produce", "20", *auth)
    assert r.returncode == 0 and "PRODUCED 20" in r.stdout, r.stdout + r.stderr
    r = franz("-brokers", addr(oauth_broker), "-topic", topic, "-group", f"g-{topic}", "-max", "20",
              "-timeout-ms", "60000", *auth)
    assert r.returncode == 0 and "DONE 20" in r.stdout, r.stdout + r.stderr


def test_librdkafka_gets_tokens_from_an_oidc_endpoint(oauth_broker, idp, request):
    """sasl.oauthbearer.method=oidc: librdkafka fetches the token from the provider's token
    endpoint (client credentials) itself. (Debian's kcat is built without OIDC support.)"""
    endpoint = JsonServer("/token", lambda: {"access_token": idp["key"].token("oidc-client")[0],
                                             "token_type": "bearer", "expires_in": 300})
    request.addfinalizer(endpoint.close)
    topic = f"oauth-oidc-{uuid.uuid4().hex[:8]}"
    create_topic(oauth_broker.admin(), topic)
    conf = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "OAUTHBEARER",
            "sasl.oauthbearer.method": "oidc", "sasl.oauthbearer.client.id": "billing",
            "sasl.oauthbearer.client.secret": secret("billing-secret"),
            "sasl.oauthbearer.token.endpoint.url": endpoint.url}
    p = producer(addr(oauth_broker), **conf)
    produce_sync(p, topic, [{"value": f"o{i}".encode()} for i in range(10)])
    got = consume(addr(oauth_broker), [tp(topic, 0, 0)], 10, **conf)
    assert [m.value().decode() for m in got] == [f"o{i}" for i in range(10)]
    assert endpoint.requests >= 1


def test_kcat_unsigned_tokens_are_refused(oauth_broker):
    """librdkafka's development tokens (alg none) get nowhere."""
    r = subprocess.run(["kcat", "-b", addr(oauth_broker), "-X", "security.protocol=SASL_PLAINTEXT",
                        "-X", "sasl.mechanism=OAUTHBEARER", "-X", "enable.sasl.oauthbearer.unsecure.jwt=true",
                        "-X", "sasl.oauthbearer.config=principal=mallory", "-L", "-m", "8"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0, r.stdout
    assert "authentication" in (r.stdout + r.stderr).lower(), r.stdout + r.stderr


@pytest.mark.stratus_only
def test_an_oversized_jwks_is_refused_before_it_is_buffered(tmp_path, request):
    key = IdentityProvider("k-big")
    b, _ = https_jwks_broker(request, tmp_path, "oauth-big",
                             lambda: {"keys": [key.jwk()], "padding": "x" * (2 << 20)})
    assert refused(addr(b), oauth_conf(lambda: key.token("alice"))) is not None
    assert "larger than 1048576 bytes" in b.log_path.read_text()
