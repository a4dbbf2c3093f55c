"""Real infrastructure for cluster tests: one etcd and one MinIO per session (built by
scripts/install-test-deps.sh, listening on loopback), and clusters of Stratus brokers as
processes over them. Every cluster gets its own etcd namespace and bucket prefix, so tests
never see each other's data. Everything started here is stopped by PID."""

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ACCESS_KEY = "stratus"
SECRET_KEY = "stratus-secret"
BUCKET = "stratus-test"


HANDED_OUT = set()


def listen_range():
    """Ports for servers under test: below (or above) the kernel's ephemeral range. A port
    asked of the kernel with bind(0) comes from that range, and between the test picking it
    and the server binding it, any client's outgoing connection may take it as its source
    port (a broker once failed to start on "Address already in use" that way)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = map(int, f.read().split())
    except (OSError, ValueError):
        lo, hi = 32768, 60999
    if lo >= 12000:
        return 10000, lo - 1
    return hi + 1, 65535


def is_free(port):
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False


def free_port(pair=False):
    """A port free now, outside the ephemeral range, and not handed out before by this
    process (a server that has not bound its port yet is not seen by the bind test);
    with `pair`, its successor too (etcd's peer port, MinIO's console)."""
    lo, hi = listen_range()
    for _ in range(2000):
        p = random.randint(lo, hi - 1)
        wanted = [p, p + 1] if pair else [p]
        if any(q in HANDED_OUT for q in wanted) or not all(is_free(q) for q in wanted):
            continue
        HANDED_OUT.update(wanted)
        return p
    raise RuntimeError(f"no free port in {lo}-{hi}")


def free_port_pair():
    """A port whose successor is free too (etcd peer port, MinIO console)."""
    return free_port(pair=True)


def wait_http(url, timeout=60, proc=None, log=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}\n{tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready within {timeout}s\n{tail(log)}")


def stop_process(proc, sig):
    """Signal a running child process by PID, wait for it, SIGKILL it after 30 s."""
    if proc is not None and proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def tail(path, n=30):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except (OSError, TypeError):
        return ""


class Service:
    """A server process started from one of the scripts/run-*.sh wrappers (which exec)."""

    def __init__(self, name, script, data, port, env=None, args=()):
        self.name, self.script, self.data, self.port = name, script, data, port
        self.args = list(args)
        self.env = dict(os.environ, **(env or {}))
        self.log = Path(data).parent / f"{name}.log"
        self.proc = None

    def start(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([str(REPO / "scripts" / self.script), str(self.data), str(self.port),
                                          *self.args],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env)

    def stop(self, sig=signal.SIGTERM):
        stop_process(self.proc, sig)


class Infra:
    def __init__(self, cache):
        self.cache = Path(cache)
        self.tmp = Path(tempfile.mkdtemp(prefix="stratus-infra-"))
        self.etcd = Service("etcd", "run-etcd.sh", self.tmp / "etcd", free_port_pair(),
                            env={"ETCD_LOG_LEVEL": "warn"})
        self.minio = Service("minio", "run-minio.sh", self.tmp / "minio", free_port_pair(),
                             env={"MINIO_ROOT_USER": ACCESS_KEY, "MINIO_ROOT_PASSWORD": SECRET_KEY})

    @property
    def etcd_endpoint(self):
        return f"127.0.0.1:{self.etcd.port}"

    @property
    def s3_endpoint(self):
        return f"http://127.0.0.1:{self.minio.port}"

    def start(self):
        self.etcd.start()
        self.minio.start()
        wait_http(f"http://{self.etcd_endpoint}/health", proc=self.etcd.proc, log=self.etcd.log)
        wait_http(f"{self.s3_endpoint}/minio/health/live", proc=self.minio.proc, log=self.minio.log)
        self.make_bucket()

    def make_bucket(self):
        # curl signs the request (SigV4), so no S3 library is needed for this one call.
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT",
                            "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", f"{ACCESS_KEY}:{SECRET_KEY}",
                            f"{self.s3_endpoint}/{BUCKET}"], capture_output=True, text=True, check=False)
        if r.stdout.strip() not in ("200", "409"):
            raise RuntimeError(f"bucket not created: HTTP {r.stdout} {r.stderr}")

    def restart_etcd(self, down_s=0.0, sig=signal.SIGTERM):
        self._restart(self.etcd, f"http://{self.etcd_endpoint}/health", down_s, sig)

    def restart_minio(self, down_s=0.0, sig=signal.SIGTERM):
        self._restart(self.minio, f"{self.s3_endpoint}/minio/health/live", down_s, sig)

    def _restart(self, service, health, down_s, sig):
        """Stops a service with `sig` (it must be running), keeps it down, starts it again."""
        if service.proc is None or service.proc.poll() is not None:
            raise AssertionError(f"{service.name} is not running before the fault")
        service.stop(sig)
        time.sleep(down_s)
        service.start()
        wait_http(health, proc=service.proc, log=service.log)

    def stop(self):
        self.etcd.stop()
        self.minio.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- what the brokers left in the stores ------------------------------------------------
    def objects(self, prefix):
        """Keys (relative to `prefix`) of every object in the test bucket under `prefix`."""
        import xml.etree.ElementTree as ET
        keys, token = [], None
        while True:
            url = f"{self.s3_endpoint}/{BUCKET}?list-type=2&prefix={urllib.parse.quote(prefix, safe='')}"
            if token:
                url += f"&continuation-token={urllib.parse.quote(token, safe='')}"
            r = subprocess.run(["curl", "-sf", "--aws-sigv4", "aws:amz:us-east-1:s3",
                                "--user", f"{ACCESS_KEY}:{SECRET_KEY}", url],
                               capture_output=True, check=True, timeout=30)
            root = ET.fromstring(r.stdout)
            ns = {"s3": root.tag.split("}")[0].strip("{")} if root.tag.startswith("{") else {}
            find = (lambda e, t: e.findall(f"s3:{t}", ns)) if ns else (lambda e, t: e.findall(t))
            for c in find(root, "Contents"):
                key = (c.find("s3:Key", ns) if ns else c.find("Key")).text
                keys.append(key[len(prefix):])
            truncated = find(root, "IsTruncated")
            if not truncated or truncated[0].text != "true":
                return sorted(keys)
            token = find(root, "NextContinuationToken")[0].text

    def etcd_get(self, prefix):
        """{key relative to `prefix`: value} of every etcd key under `prefix`."""
        r = subprocess.run([str(self.cache / "bin" / "etcdctl"), "--endpoints", self.etcd_endpoint,
                            "get", "--prefix", prefix, "-w", "json"],
                           capture_output=True, check=True, timeout=30, text=True)
        import base64
        import json
        out = {}
        for kv in json.loads(r.stdout).get("kvs", []):
            k = base64.b64decode(kv["key"]).decode()
            out[k[len(prefix):]] = base64.b64decode(kv.get("value", "")).decode(errors="replace")
        return out


class Cluster:
    """n Stratus brokers (node ids first_id.., 1..n by default) over the infra's etcd and MinIO. With admin=True each
    broker also serves the admin API (`stratus admin`) on its own loopback port:
    `admin_ports[node_id]`, `admin_address(node_id)`."""

    def __init__(self, infra, n=3, settings=None, name="cluster", admin=False, racks=None, env=None,
                 etcd_endpoint=None, listeners=None, first_id=1):
        from conftest import Broker
        ns = f"{name}-{uuid.uuid4().hex[:8]}"
        self.infra = infra
        self.namespace = ns
        common = {
            "metadata.store.url": f"etcd://{etcd_endpoint or infra.etcd_endpoint}/{ns}",
            "object.store.url": f"s3://{BUCKET}/{ns}",
            "broker.session.timeout.ms": "3000",
            "group.initial.rebalance.delay.ms": "0",
            **(settings or {}),
        }
        env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
               "AWS_ENDPOINT": infra.s3_endpoint, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1",
               "RUST_LOG": os.environ.get("STRATUS_TEST_RUST_LOG", "info"), **(env or {})}
        self.brokers = []
        self.first_id = first_id
        ids = range(first_id, first_id + n)
        self.admin_ports = {i: free_port() for i in ids} if admin else {}
        for i in ids:
            own = {"node.id": str(i)}
            if admin:
                own["admin.listener"] = f"127.0.0.1:{self.admin_ports[i]}"
            if racks:
                own["broker.rack"] = racks[i - first_id]
            b = Broker({**common, **own}, name=f"{name}-{i}", env=env, listeners=listeners)
            b.node_id = i
            self.brokers.append(b)

    @property
    def bootstrap(self):
        return ",".join(b.bootstrap for b in self.brokers)

    def start(self):
        for b in self.brokers:
            b.start()
        return self

    def broker(self, node_id):
        return self.brokers[node_id - self.first_id]

    def admin_address(self, node_id):
        return f"127.0.0.1:{self.admin_ports[node_id]}"

    def assert_healthy(self):
        """Fails the test at once if a broker died on its own or logged a panic."""
        for b in self.brokers:
            b.assert_healthy()

    def cleanup(self, keep=False):
        for b in self.brokers:
            b.cleanup(keep=keep)
