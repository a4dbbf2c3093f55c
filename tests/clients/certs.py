"""Test certificates, made with the `cryptography` package: a CA, server and client
certificates signed by it (valid, expired, or from another CA), written as PEM files the
way Kafka's ssl.keystore.type=PEM takes them (key and chain in one file)."""

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(dn):
    """x509 Name from [(oid, value), ...] in the order written (most significant first)."""
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in dn])


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class CA:
    """A certificate authority that signs server and client certificates."""

    def __init__(self, directory, name="Stratus Test CA"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = _key()
        now = datetime.datetime.now(datetime.timezone.utc)
        subject = _name([(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.dir / f"{name.replace(' ', '-').lower()}.pem"
        self.pem.write_text(_pem_cert(self.cert))

    def issue(self, filename, dn, server=False, valid_days=365, expired=False):
        """Signs a certificate for `dn` ([(oid, value)], most significant first); writes
        <filename>.pem (key then certificate) and returns its path; the certificate's serial
        number is in `.serial` of the returned path object's sidecar dict."""
        key = _key()
        now = datetime.datetime.now(datetime.timezone.utc)
        if expired:
            before, after = now - datetime.timedelta(days=30), now - datetime.timedelta(days=1)
        else:
            before, after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=valid_days)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(dn)).issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(before).not_valid_after(after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False)
        )
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        path = self.dir / f"{filename}.pem"
        path.write_text(_pem_key(key) + _pem_cert(cert))
        (self.dir / f"{filename}.key").write_text(_pem_key(key))
        (self.dir / f"{filename}.crt").write_text(_pem_cert(cert))
        issued = Issued(path, self.dir / f"{filename}.key", self.dir / f"{filename}.crt", cert.serial_number)
        issued._key, issued._cert, issued._ca = key, cert, self
        return issued

    def truststore_p12(self, path, password):
        """This CA's certificate in a PKCS12 truststore, made by Java's keytool (which marks
        it trusted, as Java and Kafka need)."""
        import subprocess
        subprocess.run(["keytool", "-importcert", "-noprompt", "-storetype", "PKCS12",
                        "-keystore", str(path), "-storepass", password, "-alias", "ca",
                        "-file", str(self.pem)], check=True, capture_output=True, timeout=60)
        return path


class Issued:
    """A key and certificate: `pem` holds both, `key` and `crt` one each."""

    def __init__(self, pem, key, crt, serial):
        self.pem, self.key, self.crt, self.serial = pem, key, crt, serial

    def encrypted_pem(self, path, password):
        """The key encrypted with `password` (PKCS#8, PBES2), then the certificate."""
        key = self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(password.encode()))
        path.write_text(key.decode() + _pem_cert(self._cert))
        return path

    def keystore_p12(self, path, password):
        """The key and certificate (and the CA's) in a PKCS12 keystore."""
        from cryptography.hazmat.primitives.serialization import pkcs12
        data = pkcs12.serialize_key_and_certificates(
            b"server", self._key, self._cert, [self._ca.cert],
            serialization.BestAvailableEncryption(password.encode()))
        path.write_bytes(data)
        return path


def client_dn(cn, ou="eng"):
    return [(NameOID.COUNTRY_NAME, "US"), (NameOID.ORGANIZATION_NAME, "Acme"),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, ou), (NameOID.COMMON_NAME, cn)]


def server_dn():
    return [(NameOID.COMMON_NAME, "localhost")]
