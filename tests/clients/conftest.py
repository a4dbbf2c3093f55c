"""Fixtures for the real-client integration tests.

The broker under test is chosen by STRATUS_TEST_TARGET:
  stratus (default)  ${STRATUS_BIN:-<repo>/target/debug/stratus}
  kafka              the reference Apache Kafka started by scripts/run-kafka.sh
Each broker runs as a child process on a free loopback port with a fresh data dir and is
stopped by PID when its fixture ends.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

REPO = Path(__file__).resolve().parents[2]
CLIENTS_DIR = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("STRATUS_CACHE", Path.home() / ".cache" / "stratus"))
TARGET = os.environ.get("STRATUS_TEST_TARGET", "stratus")
_TARGET_DIR = REPO / os.environ.get("CARGO_TARGET_DIR", "target")  # absolute stays absolute
STRATUS_BIN = Path(os.environ.get("STRATUS_BIN", _TARGET_DIR / "debug" / "stratus"))
KEEP_LOGS = os.environ.get("STRATUS_TEST_KEEP") == "1"

# Settings that only Stratus understands; never passed to the reference broker.
STRATUS_ONLY_SETTINGS = {"wal.flush.interval.ms", "sasl.plain.credentials.file", "authentication.timeout.ms"}
# Settings the reference broker needs to behave like Stratus in tests (ignored for Stratus).
KAFKA_ONLY_SETTINGS = {
    "log.segment.delete.delay.ms": "0",
    "log.initial.task.delay.ms": "0",
}

if TARGET not in ("stratus", "kafka"):
    raise pytest.UsageError(f"STRATUS_TEST_TARGET must be stratus or kafka, not {TARGET!r}")


def pytest_configure(config):
    config.addinivalue_line("markers", "crash: kill -9 crash-recovery tests (slow)")
    config.addinivalue_line("markers", "stratus_only: needs Stratus internals; skipped on kafka")
    config.addinivalue_line("filterwarnings", "ignore:(read|open)_text is deprecated:DeprecationWarning")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if TARGET == "kafka" and item.get_closest_marker("stratus_only"):
            item.add_marker(pytest.mark.skip(reason="needs Stratus internals (target is kafka)"))
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(180))


# Secrets the tests give brokers or clients (passwords, tokens): none may appear in a
# Stratus broker's log or in a label or value of its /metrics (checked when it stops).
SECRETS = set()


def secret(value):
    """Registers `value` as a secret that Stratus must never show; returns it."""
    SECRETS.add(value)
    return value


from cluster_infra import free_port  # noqa: E402,F401 (test files import it from here)


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Broker:
    """One broker process (Stratus or reference Kafka) with its own data dir and port."""

    def __init__(self, settings=None, name="broker", env=None, listeners=None):
        """`listeners`: extra listeners as {name: security protocol}, each on a free port
        (`self.ports[name]`) next to the PLAINTEXT one the fixtures use."""
        self.target = TARGET
        self.settings = dict(settings or {})
        self.listeners = dict(listeners or {})
        self.ports = {n: free_port() for n in self.listeners}
        self.extra_env = dict(env or {})
        if TARGET == "stratus" and not STRATUS_BIN.exists():
            pytest.fail(f"Stratus binary not found at {STRATUS_BIN} (cargo build, or set STRATUS_BIN)")
        if TARGET == "kafka" and not sorted(CACHE.glob("kafka-*/lib")):
            pytest.fail(f"no Kafka jars under {CACHE} (run scripts/install-test-deps.sh)")
        self.tmp = Path(tempfile.mkdtemp(prefix=f"stratus-test-{name}-"))
        self.data_dir = self.tmp / "data"
        self.data_dir.mkdir()
        self.port = free_port()
        self.controller_port = free_port()
        # Stratus's HTTP endpoint (metrics, health): a free port, so brokers never clash.
        self.http_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.proc = None
        self.log_path = self.tmp / "broker.log"
        self._log = None
        self.starts = 0
        self._log_checked = 0  # bytes of the log already searched for panics

    # -- process control ------------------------------------------------------
    def listener_settings(self):
        """listeners, advertised.listeners and the protocol map for the extra listeners."""
        if not self.listeners:
            return {}
        extra = [f"{n}://127.0.0.1:{self.ports[n]}" for n in self.listeners]
        plain = f"PLAINTEXT://127.0.0.1:{self.port}"
        protocols = ["PLAINTEXT:PLAINTEXT"] + [f"{n}:{p}" for n, p in self.listeners.items()]
        if self.target == "kafka":
            return {
                "listeners": ",".join([plain, f"CONTROLLER://127.0.0.1:{self.controller_port}"] + extra),
                "advertised.listeners": ",".join([plain] + extra),
                "listener.security.protocol.map": ",".join(protocols + ["CONTROLLER:PLAINTEXT"]),
            }
        return {"listener.security.protocol.map": ",".join(protocols)}

    def command(self):
        if self.target == "stratus":
            listeners = [f"PLAINTEXT://127.0.0.1:{self.port}"] + [
                f"{n}://127.0.0.1:{self.ports[n]}" for n in self.listeners]
            cmd = [str(STRATUS_BIN), "--data-dir", str(self.data_dir),
                   "--listeners", ",".join(listeners)]
            own = {"http.listener": f"127.0.0.1:{self.http_port}"}
            for k, v in {**own, **self.listener_settings(), **self.settings}.items():
                cmd += ["--set", f"{k}={v}"]
            return cmd
        cmd = [str(REPO / "scripts" / "run-kafka.sh"), "--foreground",
               "--data-dir", str(self.data_dir), "--port", str(self.port),
               "--controller-port", str(self.controller_port)]
        settings = dict(KAFKA_ONLY_SETTINGS)
        settings.update(self.listener_settings())
        settings.update({k: v for k, v in self.settings.items() if k not in STRATUS_ONLY_SETTINGS})
        for k, v in settings.items():
            cmd += ["--set", f"{k}={v}"]
        return cmd

    def start(self, timeout=60):
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        self._log = open(self.log_path, "ab")
        self._log.write(f"\n=== start #{self.starts + 1} at {time.time():.3f} ===\n".encode())
        self._log.flush()
        # STRATUS_* variables can name broker settings; only the explicit ones apply in tests
        env = {k: v for k, v in os.environ.items()
               if not (self.target == "stratus" and k.startswith("STRATUS_"))}
        env.setdefault("RUST_BACKTRACE", "1")
        env.update(self.extra_env)
        self.stopped_by_us = False
        self.proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, cwd=self.tmp)
        self.starts += 1
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout):
        """Ready = the port accepts connections and a Metadata request is answered."""
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode} during startup\n{self.log_tail()}")
            if port_open(self.port):
                try:
                    admin = AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 2000})
                    md = admin.list_topics(timeout=2)
                    if md.brokers:
                        return
                except KafkaException as e:  # not ready yet
                    last = e
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"broker not ready on {self.bootstrap} within {timeout}s ({last})\n{self.log_tail()}")

    def kill(self, sig=signal.SIGKILL):
        """Kill the broker process by PID and wait for it to exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.stopped_by_us = True
            stop_process(self.proc, sig)
        if self._log:
            self._log.close()
            self._log = None

    def stop(self):
        self.kill(signal.SIGTERM)

    def died(self):
        """Exit code if the process ended without being stopped by the tests, else None."""
        if self.proc is not None and self.proc.poll() is not None and not self.stopped_by_us:
            return self.proc.returncode
        return None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def new_panics(self):
        """Lines saying "panicked at" that appeared in the log since the last call."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_checked)
                text = f.read()
        except OSError:
            return []
        self._log_checked += len(text)
        return [l for l in text.decode(errors="replace").splitlines() if "panicked at" in l]

    def problems(self):
        """What went wrong with this broker since the last call: it exited without being
        stopped by the test, or its log says a thread panicked."""
        out = []
        rc = self.died()
        if rc is not None:
            out.append(f"{self.name_for_errors()} exited with {rc} without being stopped by the test")
        panics = self.new_panics()
        if panics:
            out.append(f"{self.name_for_errors()} log has {len(panics)} panic(s): {panics[:3]}")
        return out

    def metrics_text(self):
        """The body of /metrics, or None if the endpoint does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as r:
                return r.read().decode()
        except OSError:
            return None

    def leaked_secrets(self, metrics=None):
        """Registered secrets found in this broker's log or in `metrics` (Stratus only)."""
        if self.target != "stratus" or not SECRETS:
            return []
        try:
            log = self.log_path.read_text(errors="replace")
        except OSError:
            log = ""
        found = [f"log has {s!r}" for s in sorted(SECRETS) if s in log]
        found += [f"/metrics has {s!r}" for s in sorted(SECRETS) if metrics and s in metrics]
        return found

    def name_for_errors(self):
        node = getattr(self, "node_id", None)
        return f"broker {node}" if node is not None else f"broker {self.bootstrap}"

    def assert_healthy(self):
        """Fails the test at once if the broker died on its own or panicked."""
        problems = self.problems()
        if problems:
            pytest.fail("\n".join(problems) + "\n" + self.log_tail(40))

    def restart(self, timeout=60):
        self.stop()
        return self.start(timeout)

    def cleanup(self, keep=False):
        self.stop()
        if not keep and not KEEP_LOGS:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def log_tail(self, n=60):
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no broker log)"
        return f"--- last {n} lines of {self.log_path} ---\n" + "\n".join(lines[-n:])

    # -- helpers for tests ------------------------------------------------------
    def admin(self, **conf):
        return AdminClient({"bootstrap.servers": self.bootstrap, **conf})

    def objects_dir(self):
        return self.data_dir / "objects"

    def segment_files(self, topic, topic_id, partition):
        """Sealed segment files of one partition: Stratus .seg objects or Kafka .log files."""
        if self.target == "kafka":
            return sorted((self.data_dir / "logs" / f"{topic}-{partition}").glob("*.log"))
        for name in topic_id_names(topic_id):
            d = self.objects_dir() / "topics" / name / str(partition)
            if d.exists():
                return sorted(d.glob("*.seg"))
        return []


def topic_id_names(topic_id):
    """The spellings of a topic id a directory may use: Kafka base64, hex, hyphenated UUID."""
    names = [str(topic_id)]
    try:
        msb = topic_id.get_most_significant_bits() & (2**64 - 1)
        lsb = topic_id.get_least_significant_bits() & (2**64 - 1)
        u = uuid.UUID(int=(msb << 64) | lsb)
        names += [u.hex, str(u)]
    except AttributeError:
        pass
    return names


def shared_broker(request, b):
    """Starts `b` for a session- or module-scoped fixture, yields it, and stops it; its log
    is kept when a test failed meanwhile."""
    b.start()
    failed_before = request.session.testsfailed
    yield b
    metrics = b.metrics_text() if b.alive() and b.target == "stratus" else None
    b.stop()
    leaked = b.leaked_secrets(metrics)
    failed = request.session.testsfailed > failed_before or bool(leaked)
    b.cleanup(keep=failed)
    if failed:
        print(f"\n{b.tmp.name} broker log kept at {b.log_path}", file=sys.stderr)
    if leaked:
        pytest.fail(f"{b.name_for_errors()} showed secrets: {leaked}")


@pytest.fixture(scope="session")
def session_broker(request):
    """The broker shared by most tests (tests use unique topic names)."""
    yield from shared_broker(request, Broker(
        {"auto.create.topics.enable": "true", "num.partitions": "1"}, name="session"))


# Broker settings for consumer-group tests: no initial rebalance delay (Stratus defaults to
# Kafka's 3000 ms), so a group forms as soon as its members have joined; KIP-848
# (group.protocol=consumer) session timeouts and heartbeat intervals live on the broker, and
# Kafka's defaults (45 s session, 5 s heartbeat) would make the tests slow.
GROUP_SETTINGS = {
    "auto.create.topics.enable": "false",
    "group.initial.rebalance.delay.ms": "0",
    "group.consumer.session.timeout.ms": "6000",
    "group.consumer.heartbeat.interval.ms": "1000",
}
# Kafka refuses a consumer-protocol session timeout / heartbeat interval below these minimums;
# Stratus has no such settings (and rejects settings it does not know).
GROUP_KAFKA_ONLY_SETTINGS = {
    "group.consumer.min.session.timeout.ms": "6000",
    "group.consumer.min.heartbeat.interval.ms": "1000",
}


def group_settings(extra=None):
    """Broker settings for a group test on the current target, plus `extra`."""
    settings = dict(GROUP_SETTINGS)
    if TARGET == "kafka":
        settings.update(GROUP_KAFKA_ONLY_SETTINGS)
    settings.update(extra or {})
    return settings


@pytest.fixture(scope="session")
def session_group_broker(request):
    """A broker shared by the consumer-group tests (unique topic and group names per test)."""
    yield from shared_broker(request, Broker(group_settings(), name="groups"))


def _shared(b):
    """A shared broker for one test: restarted if an earlier test left it dead; the test fails
    if the broker exits on its own or logs a panic while it runs."""
    if not b.alive():
        b.start()
    b.new_panics()  # what earlier tests left in the log was reported by them
    yield b
    b.assert_healthy()


@pytest.fixture
def group_broker(session_group_broker):
    """The shared group broker (see _shared)."""
    yield from _shared(session_group_broker)


@pytest.fixture
def broker(session_broker):
    """The session broker (see _shared)."""
    yield from _shared(session_broker)


@pytest.fixture
def make_broker(request):
    """Factory for a dedicated broker with its own settings (stopped after the test)."""
    made = []

    def make(settings=None, start=True, listeners=None, env=None):
        b = Broker(settings, name=re.sub(r"\W+", "-", request.node.name)[:40],
                   listeners=listeners, env=env)
        made.append(b)
        return b.start() if start else b

    yield make
    failed = request.node.rep_call.failed if hasattr(request.node, "rep_call") else False
    problems = stop_and_check(made)
    for b in made:
        if failed or problems:
            print(f"\nbroker log kept at {b.log_path}\n{b.log_tail(40)}", file=sys.stderr)
        b.cleanup(keep=failed or bool(problems))
    if problems:
        pytest.fail("\n".join(problems))


def stop_and_check(brokers):
    """Stops the brokers (SIGTERM) and returns what went wrong with them during the test:
    one that exited on its own, logged a panic, or did not shut down cleanly."""
    problems = []
    for b in brokers:
        ran = b.alive()
        early = b.died()
        metrics = b.metrics_text() if ran and b.target == "stratus" else None
        b.stop()
        problems += b.problems()
        problems += [f"{b.name_for_errors()} showed a secret: {x}" for x in b.leaked_secrets(metrics)]
        if early is None and ran and b.target == "stratus" and b.proc.returncode != 0:
            problems.append(f"{b.name_for_errors()} exited with {b.proc.returncode} on SIGTERM")
    return problems


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def topic(request):
    """A unique topic name for this test."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-")[:60]
    return f"{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def bootstrap(broker):
    return broker.bootstrap


@pytest.fixture(scope="session")
def kafka_home():
    homes = sorted(CACHE.glob("kafka-*/lib"))
    if not homes:
        pytest.fail(f"no Kafka jars under {CACHE} (run scripts/install-test-deps.sh)")
    return homes[-1].parent


# -- cluster: real etcd and MinIO, several Stratus brokers as processes ----------------------
from cluster_infra import Infra, Cluster, stop_process  # noqa: E402


@pytest.fixture(scope="session")
def infra():
    """etcd and MinIO (built by install-test-deps.sh), started once for the session."""
    if TARGET != "stratus":
        pytest.skip("cluster tests run against Stratus")
    i = Infra(CACHE)
    try:
        i.start()
        yield i
    finally:
        i.stop()


@pytest.fixture
def cluster(infra, request):
    """Three brokers over the session's etcd and MinIO, each test in its own namespace."""
    made = []

    def make(n=3, settings=None, admin=False, racks=None, env=None, etcd_endpoint=None, first_id=1,
             listeners=None):
        c = Cluster(infra, n, settings, name=re.sub(r"\W+", "-", request.node.name)[:30], admin=admin,
                    racks=racks, env=env, etcd_endpoint=etcd_endpoint, first_id=first_id,
                    listeners=listeners)
        made.append(c)
        return c.start()

    yield make
    failed = request.node.rep_call.failed if hasattr(request.node, "rep_call") else False
    problems = stop_and_check([b for c in made for b in c.brokers])
    for c in made:
        try:
            if failed or problems:
                for b in c.brokers:
                    print(f"\nbroker {b.node_id} log kept at {b.log_path}\n{b.log_tail(30)}", file=sys.stderr)
        finally:  # remove the data even if printing fails (e.g. a closed pipe)
            c.cleanup(keep=failed or bool(problems))
    if problems:
        pytest.fail("\n".join(problems))
