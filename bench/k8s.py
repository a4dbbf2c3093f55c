#!/usr/bin/env python3
"""Kubernetes operations benchmark: Stratus under its operator, and Apache Kafka as the peer,
doing the same three things under the same load on this machine.

Stratus: the real control plane of the tests (kube-apiserver, controller-manager, scheduler,
KWOK nodes; tests/clients/k8s_infra.py), the operator as a process, brokers as processes on
MinIO and etcd standing for the pods (a broker starts when its pod appears, stops when its
pod goes, restarts when its pod is replaced).
Kafka: KRaft, one controller and brokers 1..6 (RF 3, min.insync.replicas 2), scaled by
hand the way Kafka is: kafka-reassign-partitions, then waiting until it completes.

  scale-up    3 → 6 brokers: `kubectl scale` (Kafka: start 3 brokers, reassign onto 6)
              until the cluster is balanced (Kafka: the reassignment is complete)
  scale-down  6 → 3: until the last leaving pod is gone and the cluster Ready (Kafka:
              reassign onto 1..3, complete, stop 4..6)
  roll        a config change restarting 3 brokers one at a time (Kafka: restart each and
              wait for no under-replicated partition before the next)
During each: idempotent acks=all producers at a fixed rate (crash_producer.py) whose every
acknowledged record must be read back; failed deliveries (errors a client sees) and
retriable errors librdkafka logged are counted. The topic is filled first with
BENCH_FILL_MIB MiB (default 256), which Kafka copies on every move and Stratus does not.

Writes bench/results/k8s.md. Needs scripts/install-test-deps.sh and a built workspace
(STRATUS_BIN, default target/release/stratus when built, else target/debug/stratus)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO / "tests" / "clients"))
_release = REPO / "target" / "release" / "stratus"
os.environ.setdefault("STRATUS_BIN", str(_release if _release.exists() else REPO / "target" / "debug" / "stratus"))
os.environ["STRATUS_TEST_TARGET"] = "stratus"

from report import BenchError, tail  # noqa: E402

CACHE = Path(os.environ.get("STRATUS_CACHE", Path.home() / ".cache" / "stratus"))
KAFKA_CLI = str(REPO / "scripts" / "kafka-cli")
FILL_MIB = int(os.environ.get("BENCH_FILL_MIB", "256"))
RATE = int(os.environ.get("BENCH_RATE", "400"))  # records/s per producer, 2 producers
PARTITIONS = 12
TOPIC = "bench-ops"
RETRIABLE = re.compile(r"NOT_LEADER|NOT_COORDINATOR|LEADER_NOT_AVAILABLE|REQUEST_TIMED_OUT|"
                       r"Disconnected|Connection refused|Broker: Not leader", re.I)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd, timeout=900):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if r.returncode != 0:
        raise BenchError(f"{' '.join(cmd[:3])} exited {r.returncode}:\n{tail(r.stdout + r.stderr, 25)}")
    return r.stdout + r.stderr


def wait(what, fn, timeout=600, every=0.25):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(every)
    raise BenchError(f"{what}: not within {timeout} s")


def create_topic(bootstrap, name, partitions, rf):
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient({"bootstrap.servers": bootstrap})
    for f in a.create_topics([NewTopic(name, partitions, rf)]).values():
        f.result(30)
    wait(f"{name}: a leader for every partition", lambda: all(
        p.leader >= 0 for p in a.list_topics(timeout=10).topics[name].partitions.values()), 60)


def fill(bootstrap):
    n = FILL_MIB * 1024
    run([KAFKA_CLI, "producer-perf", "--topic", TOPIC, "--num-records", str(n), "--record-size", "1024",
         "--throughput", "-1", "--command-property", f"bootstrap.servers={bootstrap}", "acks=all",
         "linger.ms=20", "batch.size=262144"], timeout=1800)


class Load:
    """Producers for one operation; their errors are the operation's."""

    def __init__(self, bootstrap, tmp, name):
        from test_crash import start_producers
        self.dir = Path(tmp) / name
        self.dir.mkdir(parents=True)
        # Tags of their own: each phase's values ("<tag>:<seq>") are new to the checker.
        self.procs = start_producers(bootstrap, TOPIC, self.dir, (f"{name}-A", f"{name}-B"), PARTITIONS,
                                     RATE, debug="")

    def finish(self):
        from test_crash import finish_producers
        logs, problems = finish_producers(self.procs, self.dir, min_acked=50)
        failed = sum(len(p.errors) for p in logs.values())
        retriable = sum(len(RETRIABLE.findall((self.dir / f"{t}.stderr").read_text(errors="replace")))
                        for t in self.procs)
        problems = [p for p in problems if "deliveries failed" not in p]
        if problems:
            raise BenchError("; ".join(problems))
        return logs, {"failed": failed, "retriable": retriable,
                      "acked": sum(len(p.acked) for p in logs.values())}


def lost(bootstrap, logs):
    from test_cluster import check_topic
    problems, _, _ = check_topic(bootstrap, TOPIC, logs)
    return problems


# -- Stratus on the control plane ---------------------------------------------------------------

def stratus(tmp):
    from cluster_infra import Cluster, Infra
    from k8s_infra import ControlPlane
    from test_k8s_operator import CHART, OP_NS, Operator, cluster_manifest
    infra = Infra(CACHE)
    cp = op = c = None
    out = {}
    try:
        infra.start()
        cp = ControlPlane(CACHE, infra.etcd_endpoint).start()
        cp.helm("install", "stratus", str(CHART), "-n", OP_NS, "--create-namespace")
        op = Operator(cp).start()
        c = Cluster(infra, 6, {"log.segment.bytes": str(8 << 20)}, name="bench-k8s", admin=True, first_id=0)
        for b in c.brokers[:3]:
            b.start()
        boot = ",".join(b.bootstrap for b in c.brokers[:3])
        create_topic(boot, TOPIC, PARTITIONS, 1)
        cp.kubectl("create", "namespace", "kafka")
        m = cluster_manifest("bench", 3, annotations={"stratus.io/admin-endpoint": f"http://{c.admin_address(0)}"})
        cp.kubectl("apply", "-f", "-", input=json.dumps(m))
        ready(cp, 3)
        log(f"stratus: filling {FILL_MIB} MiB")
        fill(boot)
        all_logs = []

        def pods():
            items = cp.get("-n", "kafka", "pods", "-l", "app.kubernetes.io/instance=bench")["items"]
            return {int(p["metadata"]["name"].rsplit("-", 1)[1]): p for p in items}

        def follow_pods():
            """Brokers follow their pods: start with a new pod, stop when it goes."""
            now = pods()
            for i, b in enumerate(c.brokers):
                p = now.get(i)
                up = p is not None and not p["metadata"].get("deletionTimestamp")
                if up and not b.alive():
                    b.start()
                elif not up and b.alive():
                    b.stop()

        log("stratus: scale 3 → 6")
        load = Load(boot, tmp, "stratus-up")
        t0 = time.time()
        cp.kubectl("-n", "kafka", "scale", "stratuscluster", "bench", "--replicas=6")
        ready(cp, 6, during=follow_pods, balanced=lambda: balanced(c))
        out["up"] = time.time() - t0
        logs, out["up_errors"] = load.finish()
        all_logs += list(logs.values())

        log("stratus: scale 6 → 3")
        load = Load(boot, tmp, "stratus-down")
        t0 = time.time()
        cp.kubectl("-n", "kafka", "scale", "stratuscluster", "bench", "--replicas=3")
        ready(cp, 3, during=follow_pods)
        out["down"] = time.time() - t0
        logs, out["down_errors"] = load.finish()
        all_logs += list(logs.values())

        log("stratus: rolling config change of 3 brokers")
        before = {i: p["metadata"]["uid"] for i, p in pods().items()}
        restarted = set()

        def roll_pods():
            for i, p in pods().items():
                if p["metadata"]["uid"] != before.get(i) and i not in restarted:
                    restarted.add(i)
                    c.brokers[i].restart()

        load = Load(boot, tmp, "stratus-roll")
        t0 = time.time()
        cp.kubectl("-n", "kafka", "patch", "stratuscluster", "bench", "--type=merge",
                   "-p", json.dumps({"spec": {"config": {"log.retention.ms": "3600000"}}}))
        ready(cp, 3, during=roll_pods, done=lambda: len(restarted) == 3)
        out["roll"] = time.time() - t0
        logs, out["roll_errors"] = load.finish()
        all_logs += list(logs.values())
        out["lost"] = lost(boot, all_logs)
        return out
    finally:
        for x in (op,):
            if x:
                x.stop()
        if c:
            c.cleanup()
        if cp:
            cp.stop()
        infra.stop()


def ready(cp, n, during=None, balanced=None, done=None, timeout=900):
    def check():
        if during:
            during()
        o = cp.get("-n", "kafka", "stratuscluster", "bench")
        st = o.get("status") or {}
        ok = any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions", [])) \
            and st.get("readyBrokers") == n and st.get("brokers") == n \
            and st.get("observedGeneration") == o["metadata"]["generation"]
        return ok and (balanced is None or balanced()) and (done is None or done())
    wait(f"StratusCluster Ready with {n} brokers", check, timeout)


def balanced(c):
    from test_k8s_operator import admin_rows
    rows = admin_rows(c, 0)
    if not rows:
        return False
    counts = [r["partitions"] for r in rows.values() if r["state"] == "up"]
    return len(counts) == 6 and max(counts) - min(counts) <= 1


# -- Apache Kafka by hand -------------------------------------------------------------------------

class KafkaCluster:
    def __init__(self, tmp):
        from cluster_infra import free_port
        self.tmp = Path(tmp) / "kafka"
        self.cid = run([KAFKA_CLI, "storage", "random-uuid"]).strip().splitlines()[-1]
        self.cport = free_port()
        self.ports = {i: free_port() for i in range(1, 7)}
        self.procs = {}
        self.settings = ["default.replication.factor=3", "min.insync.replicas=2",
                         "offsets.topic.replication.factor=3", "transaction.state.log.replication.factor=3",
                         "transaction.state.log.min.isr=2", "log.segment.bytes=8388608"]

    def bootstrap(self, ids=(1, 2, 3)):
        return ",".join(f"127.0.0.1:{self.ports[i]}" for i in ids)

    def _start(self, node, roles, port):
        args = [str(REPO / "scripts" / "run-kafka.sh"), "--foreground", "--data-dir", str(self.tmp / f"n{node}"),
                "--node-id", str(node), "--roles", roles, "--voters", f"100@127.0.0.1:{self.cport}",
                "--cluster-id", self.cid, "--port", str(port), "--controller-port", str(self.cport)]
        for s in self.settings:
            args += ["--set", s]
        (self.tmp / f"n{node}").mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, KAFKA_HEAP_OPTS="-Xmx768m -Xms256m")
        self.procs[node] = subprocess.Popen(args, stdout=open(self.tmp / f"n{node}.out", "wb"),
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)

    def start_controller(self):
        self._start(100, "controller", self.cport)

    def start(self, node):
        self._start(node, "broker", self.ports[node])
        from conftest import port_open
        wait(f"Kafka broker {node}", lambda: port_open(self.ports[node]), 120)

    def stop(self, node):
        p = self.procs.pop(node)
        p.send_signal(signal.SIGTERM)
        p.wait(120)

    def stop_all(self):
        for n in list(self.procs):
            p = self.procs.pop(n)
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def reassign(self, brokers):
        """Spreads the topic over `brokers` and waits until the reassignment completes."""
        work = self.tmp / "reassign"
        work.mkdir(exist_ok=True)
        (work / "topics.json").write_text(json.dumps({"version": 1, "topics": [{"topic": TOPIC}]}))
        out = run([KAFKA_CLI, "reassign-partitions", "--bootstrap-server", self.bootstrap(),
                   "--topics-to-move-json-file", str(work / "topics.json"),
                   "--broker-list", ",".join(map(str, brokers)), "--generate"])
        plan = out.split("Proposed partition reassignment configuration", 1)[1].strip().splitlines()[0]
        (work / "plan.json").write_text(plan)
        run([KAFKA_CLI, "reassign-partitions", "--bootstrap-server", self.bootstrap(),
             "--reassignment-json-file", str(work / "plan.json"), "--execute"])
        wait("the reassignment", lambda: "is still in progress" not in run(
            [KAFKA_CLI, "reassign-partitions", "--bootstrap-server", self.bootstrap(),
             "--reassignment-json-file", str(work / "plan.json"), "--verify"]), 3600, every=1)

    def under_replicated(self, ids):
        out = run([KAFKA_CLI, "topics", "--bootstrap-server", self.bootstrap(ids), "--describe",
                   "--under-replicated-partitions"])
        return [line for line in out.splitlines() if "Partition:" in line]


def kafka(tmp):
    k = KafkaCluster(tmp)
    out = {}
    try:
        k.start_controller()
        for i in (1, 2, 3):
            k.start(i)
        create_topic(k.bootstrap(), TOPIC, PARTITIONS, 3)
        log(f"kafka: filling {FILL_MIB} MiB")
        fill(k.bootstrap())
        all_logs = []

        log("kafka: scale 3 → 6")
        load = Load(k.bootstrap(), tmp, "kafka-up")
        t0 = time.time()
        for i in (4, 5, 6):
            k.start(i)
        k.reassign([1, 2, 3, 4, 5, 6])
        out["up"] = time.time() - t0
        logs, out["up_errors"] = load.finish()
        all_logs += list(logs.values())

        log("kafka: scale 6 → 3")
        load = Load(k.bootstrap(), tmp, "kafka-down")
        t0 = time.time()
        k.reassign([1, 2, 3])
        for i in (4, 5, 6):
            k.stop(i)
        out["down"] = time.time() - t0
        logs, out["down_errors"] = load.finish()
        all_logs += list(logs.values())

        log("kafka: rolling restart of 3 brokers")
        load = Load(k.bootstrap(), tmp, "kafka-roll")
        t0 = time.time()
        for i in (1, 2, 3):
            k.stop(i)
            k.start(i)
            wait("no under-replicated partition", lambda: not k.under_replicated((1, 2, 3)), 600, every=1)
        out["roll"] = time.time() - t0
        logs, out["roll_errors"] = load.finish()
        all_logs += list(logs.values())
        out["lost"] = lost(k.bootstrap(), all_logs)
        return out
    finally:
        k.stop_all()


def report(s, k, path):
    def errs(e):
        return f"{e['failed']} failed / {e['retriable']} retriable ({e['acked']} acked)"
    rows = []
    for op, label in (("up", "scale 3 → 6, to balanced"), ("down", "scale 6 → 3, to the last pod gone"),
                      ("roll", "rolling config change, 3 brokers")):
        rows.append(f"| {label} | {s[op]:.1f} s | {k[op]:.1f} s | {s[op] / k[op]:.2f} | "
                    f"{errs(s[op + '_errors'])} | {errs(k[op + '_errors'])} |")
    text = "\n".join([
        "# Kubernetes operations: Stratus (operator) vs Apache Kafka (by hand)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on this machine ({os.cpu_count()} cores), "
        f"`python3 bench/k8s.py`; topic of {PARTITIONS} partitions filled with {FILL_MIB} MiB first, then "
        f"2 idempotent acks=all producers at {RATE} records/s each during every operation. "
        f"Kafka: KRaft, 1 controller, RF 3, min.insync.replicas 2, kafka-reassign-partitions unthrottled. "
        f"Stratus broker binary: `{os.environ['STRATUS_BIN']}`.",
        "",
        "| operation | Stratus | Kafka | Stratus ÷ Kafka | Stratus client errors | Kafka client errors |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Lost records (every acknowledged record read back, once, in order): Stratus "
        f"{len(s['lost'])} problems, Kafka {len(k['lost'])} problems.",
        "",
        "Errors: deliveries that failed (a client sees them) / retriable errors librdkafka logged "
        "and retried by itself.",
        "",
    ])
    path.write_text(text)
    print(text)


def main():
    tmp = Path(tempfile.mkdtemp(prefix="bench-k8s-"))
    try:
        k = kafka(tmp)
        s = stratus(tmp)
        report(s, k, BENCH / "results" / "k8s.md")
        if s["lost"] or k["lost"]:
            raise BenchError(f"records lost: stratus {s['lost'][:3]} kafka {k['lost'][:3]}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print(f"k8s bench FAILED: {e}", file=sys.stderr)
        sys.exit(1)
