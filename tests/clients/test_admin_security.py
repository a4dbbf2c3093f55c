"""The admin gRPC API locked down: TLS with client certificates and a bearer token, and
`stratus admin` with the matching flags; an admin listener other machines can reach is
refused at startup unless it has TLS and client certificates or a token."""

import subprocess

import pytest

from certs import CA, client_dn, server_dn
from conftest import STRATUS_BIN, free_port

pytestmark = pytest.mark.stratus_only


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("admin-pki")
    ca = CA(d / "ca")
    token = d / "token"
    token.write_text("s3cret-token\n")
    return {"ca": ca, "server": ca.issue("admin-server", server_dn(), server=True),
            "operator": ca.issue("operator", client_dn("operator")),
            "stranger": CA(d / "other", name="Other CA").issue("stranger", client_dn("x")),
            "token": token}


def admin(port, *flags):
    r = subprocess.run([str(STRATUS_BIN), "admin", "--server", f"localhost:{port}", *flags, "status"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout + r.stderr


def test_the_admin_api_needs_tls_a_client_certificate_and_the_token(make_broker, pki):
    port = free_port()
    make_broker({"admin.listener": f"127.0.0.1:{port}",
                 "admin.ssl.keystore.location": str(pki["server"].pem),
                 "admin.ssl.truststore.location": str(pki["ca"].pem),
                 "admin.token.file": str(pki["token"])})
    tls = ["--tls-ca", str(pki["ca"].pem)]
    cert = ["--tls-cert", str(pki["operator"].crt), "--tls-key", str(pki["operator"].key)]
    code, out = admin(port, *tls, *cert, "--token-file", str(pki["token"]))
    assert code == 0 and "controller" in out, out
    for flags in ([], tls, tls + cert,
                  tls + ["--tls-cert", str(pki["stranger"].crt), "--tls-key", str(pki["stranger"].key),
                         "--token-file", str(pki["token"])]):
        code, out = admin(port, *flags)
        assert code != 0, f"admin API answered with {flags}: {out}"
    wrong = pki["token"].parent / "wrong-token"
    wrong.write_text("guess")
    code, out = admin(port, *tls, *cert, "--token-file", str(wrong))
    assert code != 0 and "token" in out, out


def test_an_admin_listener_on_all_interfaces_without_protection_is_refused(tmp_path):
    port = free_port()
    r = subprocess.run([str(STRATUS_BIN), "--data-dir", str(tmp_path / "data"),
                        "--listeners", f"PLAINTEXT://127.0.0.1:{free_port()}",
                        "--set", f"admin.listener=0.0.0.0:{port}"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    err = r.stderr.strip().splitlines()[-1]
    assert r.returncode != 0
    assert "admin.listener 0.0.0.0" in err and "admin.ssl.keystore.location" in err, err
    assert not (tmp_path / "data").exists()
