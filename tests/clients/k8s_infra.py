"""A real Kubernetes control plane for the operator tests, with no container runtime.

kube-apiserver, kube-controller-manager and kube-scheduler (built from k8s.io/kubernetes by
scripts/install-test-deps.sh) over the session's etcd (their own key prefix), and KWOK
simulating nodes, so that StatefulSet pods are scheduled and reported Ready. Helm and
kubectl come from the same cache. Every process listens on loopback and is stopped by PID.
"""

import datetime
import ipaddress
import json
import os
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from cluster_infra import free_port, stop_process, tail

ZONES = ["zone-a", "zone-b", "zone-c"]


def _name(cn, org=None):
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _cert(subject, key, issuer, issuer_key, ca=False, sans=(), server=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=2))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        names = []
        for s in sans:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(s)))
            except ValueError:
                names.append(x509.DNSName(s))
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if not ca:
        usage = x509.ExtendedKeyUsageOID.SERVER_AUTH if server else x509.ExtendedKeyUsageOID.CLIENT_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


class ControlPlane:
    """Start with start(); kubectl(...) and helm(...) run against it; stop() ends it all."""

    def __init__(self, cache, etcd_endpoint, nodes=3):
        self.bin = Path(cache) / "k8s" / "bin"
        self.tmp = Path(tempfile.mkdtemp(prefix="stratus-k8s-"))
        self.etcd = etcd_endpoint
        self.port = free_port()
        self.nodes = nodes
        self.procs = {}
        self.kubeconfig = self.tmp / "admin.kubeconfig"

    # -- certificates and kubeconfig -------------------------------------------------------
    def _pki(self):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _cert(_name("stratus-test-k8s-ca"), ca_key, _name("stratus-test-k8s-ca"), ca_key, ca=True)
        (self.tmp / "ca.crt").write_bytes(_pem_cert(ca))
        (self.tmp / "ca.key").write_bytes(_pem_key(ca_key))
        srv_key = ec.generate_private_key(ec.SECP256R1())
        srv = _cert(_name("kube-apiserver"), srv_key, ca.subject, ca_key, server=True,
                    sans=["127.0.0.1", "localhost", "kubernetes", "kubernetes.default",
                          "kubernetes.default.svc", "10.96.0.1"])
        (self.tmp / "apiserver.crt").write_bytes(_pem_cert(srv))
        (self.tmp / "apiserver.key").write_bytes(_pem_key(srv_key))
        adm_key = ec.generate_private_key(ec.SECP256R1())
        adm = _cert(_name("stratus-test-admin", "system:masters"), adm_key, ca.subject, ca_key)
        (self.tmp / "admin.crt").write_bytes(_pem_cert(adm))
        (self.tmp / "admin.key").write_bytes(_pem_key(adm_key))
        sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.tmp / "sa.key").write_bytes(_pem_key(sa))
        (self.tmp / "sa.pub").write_bytes(sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        self.write_kubeconfig(self.kubeconfig, user={
            "client-certificate": str(self.tmp / "admin.crt"),
            "client-key": str(self.tmp / "admin.key")})

    def write_kubeconfig(self, path, user, namespace="default"):
        """A kubeconfig for this API server as `user` (client certificate or token)."""
        cfg = {
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {
                "server": f"https://127.0.0.1:{self.port}",
                "certificate-authority": str(self.tmp / "ca.crt")}}],
            "users": [{"name": "user", "user": user}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "user",
                                                      "namespace": namespace}}],
        }
        Path(path).write_text(json.dumps(cfg))
        return path

    # -- processes ---------------------------------------------------------------------------
    def _spawn(self, name, args):
        log = open(self.tmp / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen([str(self.bin / name), *args], stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def log(self, name, n=40):
        return tail(self.tmp / f"{name}.log", n)

    def start(self):
        self._pki()
        t = self.tmp
        self._spawn("kube-apiserver", [
            f"--etcd-servers=http://{self.etcd}", f"--etcd-prefix=/k8s-{uuid.uuid4().hex[:8]}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
            f"--tls-cert-file={t}/apiserver.crt", f"--tls-private-key-file={t}/apiserver.key",
            f"--client-ca-file={t}/ca.crt",
            f"--service-account-key-file={t}/sa.pub", f"--service-account-signing-key-file={t}/sa.key",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--service-cluster-ip-range=10.96.0.0/16", "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=PodTopologyLabels",
            "--endpoint-reconciler-type=none", "--allow-privileged=true", "--profiling=false", "--v=1"])
        self.wait(lambda: self.kubectl("get", "--raw", "/readyz", check=False).returncode == 0,
                  120, "kube-apiserver ready", "kube-apiserver")
        kc = str(self.kubeconfig)
        self._spawn("kube-controller-manager", [
            f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1", f"--secure-port={free_port()}", "--leader-elect=false",
            f"--service-account-private-key-file={t}/sa.key", f"--root-ca-file={t}/ca.crt",
            "--use-service-account-credentials=true", "--controllers=*,-nodeipam",
            "--concurrent-statefulset-syncs=5", "--v=1"])
        self._spawn("kube-scheduler", [
            f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1", f"--secure-port={free_port()}", "--leader-elect=false", "--v=1"])
        self._spawn("kwok", [
            f"--kubeconfig={kc}", f"--config={self.bin / 'kwok-stages.yaml'}",
            "--manage-nodes-with-label-selector=type=kwok", "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{free_port()}", "--node-ip=127.0.0.1", "--cidr=10.244.0.0/16"])
        for i in range(self.nodes):
            self.add_node(f"kwok-node-{i}", ZONES[i % len(ZONES)])
        self.wait(lambda: self._ready_nodes() >= self.nodes, 120, "KWOK nodes Ready", "kwok")
        # The default ServiceAccount appears once the controller-manager runs.
        self.wait(lambda: self.kubectl("get", "serviceaccount", "default", check=False).returncode == 0,
                  120, "the default ServiceAccount", "kube-controller-manager")
        return self

    def add_node(self, name, zone):
        node = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                                       "kwok.x-k8s.io/node": "fake"},
                         "labels": {"type": "kwok", "kubernetes.io/hostname": name,
                                    "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                                    "topology.kubernetes.io/zone": zone}},
            "spec": {},
            "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                       "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"}},
        }
        self.kubectl("apply", "-f", "-", input=json.dumps(node))

    def _ready_nodes(self):
        r = self.kubectl("get", "nodes", "-o", "json", check=False)
        if r.returncode != 0:
            return 0
        return sum(1 for n in json.loads(r.stdout)["items"]
                   for c in n.get("status", {}).get("conditions", [])
                   if c["type"] == "Ready" and c["status"] == "True")

    def wait(self, cond, timeout, what, log=None):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if cond():
                return
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited ({p.returncode}):\n{self.log(name)}")
            time.sleep(0.5)
        raise TimeoutError(f"{what}: not within {timeout}s" + (f"\n{self.log(log)}" if log else ""))

    def stop(self):
        for name in ["kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver"]:
            p = self.procs.get(name)
            if p is not None:
                stop_process(p, signal.SIGTERM)

    # -- tools ------------------------------------------------------------------------------
    def kubectl(self, *args, input=None, check=True, kubeconfig=None):
        r = subprocess.run([str(self.bin / "kubectl"), f"--kubeconfig={kubeconfig or self.kubeconfig}",
                            *args], input=input, capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {r.stderr.strip()}")
        return r

    def get(self, *args, check=True):
        r = self.kubectl("get", *args, "-o", "json", check=check)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def helm(self, *args, check=True):
        env = dict(os.environ, HELM_CACHE_HOME=str(self.tmp / "helm-cache"),
                   HELM_CONFIG_HOME=str(self.tmp / "helm-config"), HELM_DATA_HOME=str(self.tmp / "helm-data"))
        r = subprocess.run([str(self.bin / "helm"), f"--kubeconfig={self.kubeconfig}", *args],
                           capture_output=True, text=True, timeout=300, env=env)
        if check and r.returncode != 0:
            raise RuntimeError(f"helm {' '.join(args)}: {r.stderr.strip()}")
        return r
