"""The operator and the Helm chart on a real Kubernetes control plane (k8s_infra.py).

The chart is installed with the real Helm; the operator runs as a process with the token of
the ServiceAccount the chart made (so the chart's RBAC is what it gets); KWOK nodes run the
broker pods as simulations. Where a test needs real brokers, they run as processes on
loopback over the session's etcd and MinIO with the pods' broker ids, and the StratusCluster
points the operator at their admin API (annotation stratus.io/admin-endpoint).
"""

import json
import os
import subprocess
import time
import uuid

import pytest

from conftest import REPO, Broker, free_port, port_open
from cluster_infra import ACCESS_KEY, BUCKET, SECRET_KEY, stop_process, tail
from k8s_infra import ControlPlane

pytestmark = [pytest.mark.stratus_only, pytest.mark.timeout(600)]

OPERATOR_BIN = REPO / os.environ.get("CARGO_TARGET_DIR", "target") / "debug" / "stratus-operator"
CHART = REPO / "charts" / "stratus"
OP_NS = "stratus-system"


@pytest.fixture(scope="module")
def k8s(infra):
    """The control plane and the chart installed in stratus-system (once for the module)."""
    cp = ControlPlane(os.environ.get("STRATUS_CACHE", os.path.expanduser("~/.cache/stratus")),
                      infra.etcd_endpoint)
    try:
        cp.start()
        cp.helm("install", "stratus", str(CHART), "-n", OP_NS, "--create-namespace",
                "--set", "image.repository=localhost/stratus", "--set", "image.tag=test")
        yield cp
    finally:
        cp.stop()


class Operator:
    """stratus-operator as a process, authenticated as the chart's ServiceAccount."""

    def __init__(self, cp):
        self.cp = cp
        token = cp.kubectl("-n", OP_NS, "create", "token", "stratus-operator", "--duration=2h").stdout.strip()
        self.kubeconfig = cp.write_kubeconfig(cp.tmp / f"operator-{uuid.uuid4().hex[:6]}.kubeconfig",
                                              user={"token": token}, namespace=OP_NS)
        self.port = free_port()
        self.log = cp.tmp / "operator.log"
        self.proc = None

    def start(self):
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), POD_NAMESPACE=OP_NS,
                   POD_NAME=f"operator-{uuid.uuid4().hex[:4]}", RUST_LOG="info,kube=warn")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(OPERATOR_BIN), "--http", f"127.0.0.1:{self.port}", "--broker-image", "localhost/stratus:test",
                 "--leader-elect", "--apply-crds", "--resync-seconds", "5"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        deadline = time.time() + 60
        while time.time() < deadline and not port_open(self.port):
            assert self.proc.poll() is None, tail(self.log, 40)
            time.sleep(0.2)
        return self

    def kill(self):
        stop_process(self.proc, 9)

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc, 15)

    def metrics(self):
        import urllib.request
        return urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read().decode()


@pytest.fixture
def operator(k8s):
    op = Operator(k8s).start()
    yield op
    op.stop()


def cluster_manifest(name, brokers, **extra):
    spec = {
        "brokers": brokers,
        "objectStore": {"url": f"s3://{BUCKET}/{name}", "endpoint": "http://minio.example:9000",
                        "credentialsSecret": "s3-credentials"},
        "metadata": {"endpoints": ["etcd.example:2379"]},
        "rack": {},
        **extra.pop("spec", {}),
    }
    return {"apiVersion": "stratus.io/v1alpha1", "kind": "StratusCluster",
            "metadata": {"name": name, "namespace": extra.pop("namespace", "kafka"),
                         "annotations": extra.pop("annotations", {})},
            "spec": spec}


def apply(cp, obj):
    cp.kubectl("apply", "-f", "-", input=json.dumps(obj))


def ns(cp, name):
    cp.kubectl("create", "namespace", name, check=False)


def condition(obj, type_):
    for c in (obj.get("status") or {}).get("conditions", []):
        if c["type"] == type_:
            return c
    return None


def wait_for(what, fn, timeout=90, interval=0.5):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")


# -- chart ------------------------------------------------------------------------------------

def test_chart_lints_installs_crds_and_renders_what_the_api_server_accepts(k8s):
    r = k8s.helm("lint", str(CHART), "--strict")
    assert "0 chart(s) failed" in r.stdout, r.stdout + r.stderr
    for values in ["values-dev.yaml", "values-production.yaml"]:
        r = k8s.helm("lint", str(CHART), "--strict", "-f", str(CHART / values))
        assert "0 chart(s) failed" in r.stdout, values + r.stdout + r.stderr
    # The schema refuses what the chart cannot work with, with a message naming the value.
    bad = k8s.helm("template", "x", str(CHART), "--set", "cluster.brokers=-1", check=False)
    assert bad.returncode != 0 and "brokers" in bad.stderr, bad.stderr
    crds = k8s.get("crd")["items"]
    names = {c["metadata"]["name"] for c in crds}
    assert {"stratusclusters.stratus.io", "stratustopics.stratus.io", "stratususers.stratus.io",
            "stratusrebalances.stratus.io"} <= names
    for c in crds:
        if c["metadata"]["name"].endswith(".stratus.io"):
            assert condition(c, "Established")["status"] == "True"
    # Every template of the production values is accepted by the API server (dry run).
    ns(k8s, "kafka")
    rendered = k8s.helm("template", "prod", str(CHART), "-n", "kafka", "--kube-version", "1.37", "-f",
                        str(CHART / "values-production.yaml")).stdout
    r = k8s.kubectl("apply", "--dry-run=server", "-n", "kafka", "-f", "-", input=rendered, check=False)
    assert r.returncode == 0, r.stderr
    assert "stratuscluster.stratus.io/prod" in r.stdout
    # The operator's Deployment and its ServiceAccount are installed.
    dep = k8s.get("-n", OP_NS, "deployment", "stratus-operator")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--apply-crds" in args and any(a.startswith("--broker-image=localhost/stratus:test") for a in args)
    # An upgrade: two replicas elect a leader; a new image tag reaches the brokers' default.
    k8s.helm("upgrade", "stratus", str(CHART), "-n", OP_NS, "--reuse-values",
             "--set", "operator.replicas=2", "--set", "image.tag=test2")
    dep = k8s.get("-n", OP_NS, "deployment", "stratus-operator")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert dep["spec"]["replicas"] == 2 and "--leader-elect" in args, args
    assert "--broker-image=localhost/stratus:test2" in args
    k8s.helm("rollback", "stratus", "1", "-n", OP_NS)
    assert k8s.get("-n", OP_NS, "deployment", "stratus-operator")["spec"]["replicas"] == 1


def test_the_operator_upgrades_crds_helm_installed(k8s):
    # An older CRD in the cluster (a printer column missing): the operator puts the
    # generated one back when it starts (Helm never upgrades crds/).
    crd = "stratusclusters.stratus.io"
    cols = k8s.get("crd", crd)["spec"]["versions"][0]["additionalPrinterColumns"]
    k8s.kubectl("patch", "crd", crd, "--type=json", "-p",
                json.dumps([{"op": "remove", "path": "/spec/versions/0/additionalPrinterColumns/0"}]))
    assert len(k8s.get("crd", crd)["spec"]["versions"][0]["additionalPrinterColumns"]) == len(cols) - 1
    op = Operator(k8s).start()
    try:
        wait_for("the CRD upgraded", lambda: k8s.get("crd", crd)["spec"]["versions"][0]
                 ["additionalPrinterColumns"] == cols, timeout=60)
    finally:
        op.stop()


def test_crd_validation_refuses_shrinking_partitions_and_a_new_bucket(k8s, operator):
    ns(k8s, "kafka")
    apply(k8s, cluster_manifest("immutable", 0))
    moved = cluster_manifest("immutable", 0)
    moved["spec"]["objectStore"]["url"] = "s3://elsewhere/x"
    r = k8s.kubectl("apply", "-f", "-", input=json.dumps(moved), check=False)
    assert r.returncode != 0 and "bucket cannot change" in r.stderr, r.stderr
    managed = cluster_manifest("immutable", 0, spec={"config": {"node.id": "3"}})
    r = k8s.kubectl("apply", "-f", "-", input=json.dumps(managed), check=False)
    assert r.returncode != 0 and "managed by the operator" in r.stderr, r.stderr
    topic = {"apiVersion": "stratus.io/v1alpha1", "kind": "StratusTopic",
             "metadata": {"name": "shrinking", "namespace": "kafka"},
             "spec": {"cluster": "immutable", "partitions": 6}}
    apply(k8s, topic)
    topic["spec"]["partitions"] = 3
    r = k8s.kubectl("apply", "-f", "-", input=json.dumps(topic), check=False)
    assert r.returncode != 0 and "never removed" in r.stderr, r.stderr
    # A cluster with no brokers has no topic to delete: the resource goes at once.
    k8s.kubectl("-n", "kafka", "delete", "stratustopic", "shrinking", "--timeout=60s")
    k8s.kubectl("-n", "kafka", "delete", "stratuscluster", "immutable")


# -- a cluster without brokers behind it -----------------------------------------------------

def test_a_cluster_becomes_its_objects_and_status_says_what_is_missing(k8s, operator):
    ns(k8s, "kafka")
    apply(k8s, cluster_manifest("shape", 3))
    sts = wait_for("the StatefulSet", lambda: k8s.get("-n", "kafka", "statefulset", "shape-broker", check=False))
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["updateStrategy"]["type"] == "OnDelete"
    pod = sts["spec"]["template"]["spec"]
    broker = pod["containers"][0]
    assert broker["image"] == "localhost/stratus:test"
    assert broker["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e for e in broker["env"]}
    assert env["STRATUS_NODE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.labels['apps.kubernetes.io/pod-index']"
    assert env["STRATUS_BROKER_RACK"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.labels['topology.kubernetes.io/zone']"
    headless = k8s.get("-n", "kafka", "service", "shape-brokers")
    assert headless["spec"]["clusterIP"] == "None"
    assert k8s.get("-n", "kafka", "service", "shape")["spec"]["ports"][0]["port"] == 9092
    props = k8s.get("-n", "kafka", "configmap", "shape-config")["data"]["server.properties"]
    assert "object.store.url=s3://stratus/shape" in props.replace(BUCKET, "stratus")
    assert "metadata.store.url=etcd://etcd.example:2379/stratus/kafka/shape" in props
    assert k8s.get("-n", "kafka", "poddisruptionbudget", "shape-broker")["spec"]["maxUnavailable"] == 1
    secret = k8s.get("-n", "kafka", "secret", "shape-admin")
    assert set(secret["data"]) == {"ca.crt", "admin.pem", "token"}
    # KWOK runs the pods: scheduled over the three zones, and Ready.
    pods = wait_for("3 ready pods", lambda: [
        p for p in k8s.get("-n", "kafka", "pods", "-l", "app.kubernetes.io/instance=shape")["items"]
        if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    ] if len(k8s.get("-n", "kafka", "pods", "-l", "app.kubernetes.io/instance=shape")["items"]) == 3 else None)
    assert len({p["spec"]["nodeName"] for p in pods}) == 3, "spread over nodes"
    # No broker answers the admin API (the pods are simulations): status says so, and not Ready.
    c = wait_for("status", lambda: (lambda o: o if condition(o, "Degraded") else None)(
        k8s.get("-n", "kafka", "stratuscluster", "shape")))
    assert c["status"]["readyBrokers"] == 3
    assert c["status"]["observedGeneration"] == c["metadata"]["generation"]
    assert condition(c, "Ready")["status"] == "False"
    assert condition(c, "Degraded")["reason"] == "AdminUnreachable"
    assert c["status"]["selector"] == \
        "app.kubernetes.io/component=broker,app.kubernetes.io/instance=shape,app.kubernetes.io/name=stratus"
    # `kubectl scale` works on the /scale subresource; without the admin API no broker is
    # removed (it could not be drained first).
    k8s.kubectl("-n", "kafka", "scale", "stratuscluster", "shape", "--replicas=2")
    time.sleep(8)
    assert k8s.get("-n", "kafka", "statefulset", "shape-broker")["spec"]["replicas"] == 3
    events = k8s.get("-n", "kafka", "events.v1.events.k8s.io")["items"]
    assert any(e.get("regarding", {}).get("name") == "shape" and e["reason"] == "Created" for e in events)
    # Deleting the cluster deletes what it became (owner references, garbage collector).
    k8s.kubectl("-n", "kafka", "delete", "stratuscluster", "shape")
    wait_for("garbage collection", lambda: k8s.get("-n", "kafka", "statefulset", "shape-broker", check=False) is None)
    wait_for("no pods", lambda: not k8s.get("-n", "kafka", "pods", "-l", "app.kubernetes.io/instance=shape")["items"])
    assert "stratus_operator_reconciles_total" in operator.metrics()


# -- real brokers behind the pods --------------------------------------------------------------

def admin_rows(c, node):
    from test_cluster_clients import status_rows
    r = subprocess.run([str(REPO / os.environ.get("CARGO_TARGET_DIR", "target") / "debug" / "stratus"), "admin",
                        "--server", c.admin_address(node), "status"], capture_output=True, text=True, timeout=30)
    return status_rows(r.stdout) if r.returncode == 0 else None


def live_cluster(k8s, c, name, brokers, **spec):
    ns(k8s, "kafka")
    apply(k8s, cluster_manifest(name, brokers, spec=spec,
                                annotations={"stratus.io/admin-endpoint": f"http://{c.admin_address(0)}"}))


def ready(k8s, name, brokers, timeout=120):
    def check():
        o = k8s.get("-n", "kafka", "stratuscluster", name)
        c = condition(o, "Ready")
        st = o.get("status") or {}
        ok = c and c["status"] == "True" and st.get("brokers") == brokers and st.get("readyBrokers") == brokers \
            and st.get("observedGeneration") == o["metadata"]["generation"]
        return o if ok else None
    return wait_for(f"{name} Ready with {brokers} brokers", check, timeout=timeout)


def pod(k8s, name):
    return k8s.get("-n", "kafka", "pod", name, check=False)


def test_scale_down_drains_each_broker_before_its_pod_goes_and_clients_lose_nothing(
        k8s, operator, cluster, topic, tmp_path):
    from test_cluster import PARTITIONS, GroupWatch, Producers, check_topic
    from util import create_topic
    from confluent_kafka.admin import AdminClient
    c = cluster(3, admin=True, first_id=0)
    create_topic(AdminClient({"bootstrap.servers": c.bootstrap}), topic, partitions=PARTITIONS)
    live_cluster(k8s, c, "shrink", 3)
    ready(k8s, "shrink", 3)
    prods = Producers(c.bootstrap, topic, tmp_path)
    group = GroupWatch(c.bootstrap, topic)
    try:
        time.sleep(3)
        rows = admin_rows(c, 0)
        assert rows[2]["partitions"] > 0, rows
        k8s.kubectl("-n", "kafka", "scale", "stratuscluster", "shrink", "--replicas=2")
        polls = []
        deadline = time.time() + 120
        while time.time() < deadline:
            p = pod(k8s, "shrink-broker-2")
            if p is None or p["metadata"].get("deletionTimestamp"):
                break
            polls.append(admin_rows(c, 0))
            time.sleep(0.2)
        else:
            raise AssertionError("pod shrink-broker-2 never went")
        # The moment its pod is seen going, broker 2 is drained and owns nothing (a drained
        # broker takes nothing new, so it owned nothing when the operator let the pod go).
        now = admin_rows(c, 0)
        assert now[2] == {"state": "drain", "partitions": 0, "shards": 0}, (now, polls[-3:])
        # The pod was there when the scale began (the drain takes a reconcile or two).
        assert polls, "the pod went before it could be drained"
        c.broker(2).stop()  # the pod's process ends with it
        st = ready(k8s, "shrink", 2)
        assert st["spec"]["brokers"] == 2
        events = [e["reason"] for e in k8s.get("-n", "kafka", "events.v1.events.k8s.io")["items"]
                  if e.get("regarding", {}).get("name") == "shrink"]
        assert "Draining" in events and "ScaledDown" in events, events
        time.sleep(3)
        c.assert_healthy()
    finally:
        logs, problems = prods.finish()
    acked = [a for plog in logs.values() for a in plog.acked]
    problems += group.finish(acked, [])
    found, _, _ = check_topic(c.bootstrap, topic, logs.values())
    problems += found
    assert not problems, "\n".join(problems)


def test_a_config_change_rolls_one_broker_at_a_time_even_across_an_operator_restart(
        k8s, cluster, topic):
    from util import create_topic
    from confluent_kafka.admin import AdminClient
    c = cluster(3, admin=True, first_id=0)
    create_topic(AdminClient({"bootstrap.servers": c.bootstrap}), topic, partitions=6)
    op = Operator(k8s).start()
    try:
        live_cluster(k8s, c, "roll", 3)
        ready(k8s, "roll", 3)
        before = {p["metadata"]["name"]: p["metadata"]["uid"]
                  for p in k8s.get("-n", "kafka", "pods", "-l", "app.kubernetes.io/instance=roll")["items"]}
        gen = k8s.get("-n", "kafka", "stratuscluster", "roll")["metadata"]["generation"]
        k8s.kubectl("-n", "kafka", "patch", "stratuscluster", "roll", "--type=merge",
                    "-p", json.dumps({"spec": {"config": {"log.retention.ms": "3600000"}}}))
        props = wait_for("the new settings", lambda: "log.retention.ms=3600000" in k8s.get(
            "-n", "kafka", "configmap", "roll-config")["data"]["server.properties"])
        assert props
        killed = False
        restarted = set()
        worst = 0
        deadline = time.time() + 180
        while time.time() < deadline:
            pods = k8s.get("-n", "kafka", "pods", "-l", "app.kubernetes.io/instance=roll")["items"]
            down = [p["metadata"]["name"] for p in pods if p["metadata"].get("deletionTimestamp")
                    or not any(cd["type"] == "Ready" and cd["status"] == "True"
                               for cd in p["status"].get("conditions", []))]
            down += [f"missing {i}" for i in range(3 - len(pods))]
            worst = max(worst, len(down))
            replaced = [n for n, uid in before.items()
                        if any(p["metadata"]["name"] == n and p["metadata"]["uid"] != uid for p in pods)]
            for n in replaced:
                if n not in restarted:
                    # The pod's container restarts: its broker process does too.
                    restarted.add(n)
                    c.broker(int(n.rsplit("-", 1)[1])).restart()
            if replaced and not killed:
                # The operator dies in the middle of the roll; a new one finishes it.
                op.kill()
                killed = True
                op = Operator(k8s).start()
            if len(replaced) == 3 and not down:
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"the roll did not finish: replaced {replaced}, down {down}")
        assert killed
        assert worst <= 1, f"{worst} brokers were down at once"
        st = ready(k8s, "roll", 3)
        assert st["status"]["observedGeneration"] > gen
        # Repeated events of one operator form a series (kube's recorder): count them all.
        restarts = sum((e.get("series") or {}).get("count", 1)
                       for e in k8s.get("-n", "kafka", "events.v1.events.k8s.io")["items"]
                       if e.get("regarding", {}).get("name") == "roll" and e["reason"] == "Restarting")
        assert restarts >= 3, restarts
    finally:
        op.stop()


def test_topics_are_created_grown_kept_as_declared_and_deleted_with_their_resource(
        k8s, operator, cluster):
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource
    c = cluster(3, admin=True, first_id=0)
    live_cluster(k8s, c, "topics", 3)
    ready(k8s, "topics", 3)
    kafka = AdminClient({"bootstrap.servers": c.bootstrap})

    def partitions(name):
        # All topics: asking Metadata for one name would create it (auto.create.topics.enable).
        t = kafka.list_topics(timeout=10).topics.get(name)
        return None if t is None or t.error is not None else len(t.partitions)

    def retention(name):
        res = ConfigResource(ConfigResource.Type.TOPIC, name)
        cfgs = kafka.describe_configs([res])[res].result(timeout=10)
        return cfgs["retention.ms"].value

    topic = {"apiVersion": "stratus.io/v1alpha1", "kind": "StratusTopic",
             "metadata": {"name": "orders", "namespace": "kafka"},
             "spec": {"cluster": "topics", "partitions": 3, "config": {"retention.ms": "3600000"}}}
    apply(k8s, topic)
    wait_for("the topic in Kafka", lambda: partitions("orders") == 3)
    assert retention("orders") == "3600000"
    st = wait_for("Ready", lambda: (lambda o: o if (condition(o, "Ready") or {}).get("status") == "True" else None)(
        k8s.get("-n", "kafka", "stratustopic", "orders")))
    assert st["status"]["partitions"] == 3 and st["status"]["topicId"]
    assert "stratus.io/topic" in st["metadata"]["finalizers"]
    # More partitions: added.
    k8s.kubectl("-n", "kafka", "patch", "stratustopic", "orders", "--type=merge", "-p", '{"spec":{"partitions":6}}')
    wait_for("6 partitions in Kafka", lambda: partitions("orders") == 6)
    wait_for("status", lambda: k8s.get("-n", "kafka", "stratustopic", "orders")["status"].get("partitions") == 6)
    # A change made with Kafka tools is put back and reported.
    res = ConfigResource(ConfigResource.Type.TOPIC, "orders", incremental_configs=[
        ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    kafka.incremental_alter_configs([res])[res].result(timeout=10)
    assert retention("orders") == "1000"
    wait_for("drift put back", lambda: retention("orders") == "3600000", timeout=60)
    st = wait_for("drift reported", lambda: (lambda o: o if o["status"].get("drift") else None)(
        k8s.get("-n", "kafka", "stratustopic", "orders")))
    assert st["status"]["drift"] == ["retention.ms"]
    # A config the broker refuses is reported, not retried in a loop.
    k8s.kubectl("-n", "kafka", "patch", "stratustopic", "orders", "--type=merge",
                "-p", '{"spec":{"config":{"retention.ms":"soon"}}}')
    st = wait_for("refused", lambda: (lambda o: o if (condition(o, "Ready") or {}).get("reason") == "Refused" else None)(
        k8s.get("-n", "kafka", "stratustopic", "orders")))
    assert "retention.ms" in condition(st, "Ready")["message"]
    # Deleting the resource deletes the topic.
    k8s.kubectl("-n", "kafka", "delete", "stratustopic", "orders", "--timeout=60s")
    wait_for("the topic gone from Kafka", lambda: partitions("orders") is None)
    # A cluster that keeps topics keeps them.
    k8s.kubectl("-n", "kafka", "patch", "stratuscluster", "topics", "--type=merge",
                "-p", '{"spec":{"topicDeletion":"Keep"}}')
    topic["metadata"]["name"] = "ledger"
    apply(k8s, topic)
    wait_for("ledger in Kafka", lambda: partitions("ledger") == 3)
    k8s.kubectl("-n", "kafka", "delete", "stratustopic", "ledger", "--timeout=60s")
    time.sleep(3)
    assert partitions("ledger") == 3


def test_users_get_scram_credentials_from_a_secret_and_exactly_their_acls(k8s, operator, cluster):
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    from conftest import secret
    scram_jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    c = cluster(3, admin=True, first_id=0, listeners={"SASL": "SASL_PLAINTEXT"}, settings={
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.sasl.scram-sha-512.sasl.jaas.config": scram_jaas,
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false"})
    live_cluster(k8s, c, "users", 3)
    ready(k8s, "users", 3)
    kafka = AdminClient({"bootstrap.servers": c.bootstrap})
    for t in ("orders", "secret"):
        kafka.create_topics([NewTopic(t, 1)])[t].result(10)
    password = secret(f"pw-{uuid.uuid4().hex}")
    k8s.kubectl("-n", "kafka", "create", "secret", "generic", "alice-password", f"--from-literal=password={password}")
    user = {"apiVersion": "stratus.io/v1alpha1", "kind": "StratusUser",
            "metadata": {"name": "alice", "namespace": "kafka"},
            "spec": {"cluster": "users",
                     "scram": {"mechanism": "SCRAM-SHA-512", "passwordSecret": {"name": "alice-password"}},
                     "acls": [{"resourceType": "topic", "resourceName": "orders",
                               "operations": ["Write", "Describe"]}]}}
    apply(k8s, user)
    st = wait_for("Ready", lambda: (lambda o: o if (condition(o, "Ready") or {}).get("status") == "True" else None)(
        k8s.get("-n", "kafka", "stratususer", "alice")))
    assert st["status"]["principal"] == "User:alice" and st["status"]["acls"] == 2

    sasl = ",".join(f"127.0.0.1:{b.ports['SASL']}" for b in c.brokers)

    def write(topic, pw=password):
        p = Producer({"bootstrap.servers": sasl, "security.protocol": "SASL_PLAINTEXT",
                      "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "alice", "sasl.password": pw,
                      "message.timeout.ms": 8000})
        errors = []
        p.produce(topic, b"x", on_delivery=lambda err, msg: errors.append(err))
        p.flush(12)
        return errors[0] if errors else "no report"

    assert write("orders") is None, "alice may write orders"
    denied = write("secret")
    assert denied is not None and "AUTHORIZATION" in denied.name(), denied
    # The ACLs are exactly the resource's: one added with Kafka tools is removed.
    from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                       ResourcePatternType, ResourceType)
    extra = AclBinding(ResourceType.TOPIC, "secret", ResourcePatternType.LITERAL, "User:alice", "*",
                       AclOperation.WRITE, AclPermissionType.ALLOW)
    kafka.create_acls([extra])[extra].result(10)
    any_of_alice = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:alice", None,
                                    AclOperation.ANY, AclPermissionType.ANY)
    wait_for("the extra ACL removed", lambda: len(kafka.describe_acls(any_of_alice).result(10)) == 2, timeout=60)
    # A new password in the Secret becomes the credential.
    new = secret(f"pw-{uuid.uuid4().hex}")
    k8s.kubectl("-n", "kafka", "patch", "secret", "alice-password", "--type=merge",
                "-p", json.dumps({"stringData": {"password": new}}))
    wait_for("the new password works", lambda: write("orders", new) is None, timeout=60)
    assert write("orders", password) is not None, "the old password no longer works"
    # Deleting the resource removes the credential and the ACLs.
    k8s.kubectl("-n", "kafka", "delete", "stratususer", "alice", "--timeout=60s")
    assert kafka.describe_acls(any_of_alice).result(10) == []
    assert write("orders", new) is not None


def test_a_rebalance_is_proposed_approved_by_annotation_and_executed(k8s, operator, cluster, topic):
    from confluent_kafka.admin import AdminClient
    from util import create_topic
    c = cluster(3, admin=True, first_id=0)
    create_topic(AdminClient({"bootstrap.servers": c.bootstrap}), topic, partitions=12)
    live_cluster(k8s, c, "spread", 3, autoRebalance=False)
    ready(k8s, "spread", 3)
    # Crowd broker 0 by hand: with autoRebalance off, the cluster leaves it so.
    stratus = str(REPO / os.environ.get("CARGO_TARGET_DIR", "target") / "debug" / "stratus")
    from test_cluster_clients import partition_rows
    owners = partition_rows(subprocess.run([stratus, "admin", "--server", c.admin_address(0), "partitions",
                                            "--topic", topic], capture_output=True, text=True).stdout, topic)
    for p, (o, _) in owners.items():
        if o != 0:
            subprocess.run([stratus, "admin", "--server", c.admin_address(0), "move", topic, str(p), "0"],
                           check=True, capture_output=True, timeout=30)
    time.sleep(6)
    assert admin_rows(c, 0)[0]["partitions"] == 12, "no rebalance without approval"
    apply(k8s, {"apiVersion": "stratus.io/v1alpha1", "kind": "StratusRebalance",
                "metadata": {"name": "even-out", "namespace": "kafka"}, "spec": {"cluster": "spread"}})
    st = wait_for("a proposal", lambda: (lambda o: o if (o.get("status") or {}).get("state") == "ProposalReady"
                                         else None)(k8s.get("-n", "kafka", "stratusrebalance", "even-out")))
    proposal = st["status"]["proposal"]
    assert proposal["partitionMoves"] >= 8, proposal
    assert "0=12" in proposal["before"] and "0=4" in proposal["after"], proposal
    time.sleep(3)
    assert admin_rows(c, 0)[0]["partitions"] == 12, "a proposal moves nothing"
    k8s.kubectl("-n", "kafka", "annotate", "stratusrebalance", "even-out", "stratus.io/rebalance=approve")
    st = wait_for("done", lambda: (lambda o: o if (o.get("status") or {}).get("state") == "Ready" else None)(
        k8s.get("-n", "kafka", "stratusrebalance", "even-out")))
    assert condition(st, "Ready")["status"] == "True"
    assert "stratus.io/rebalance" not in (st["metadata"].get("annotations") or {}), "the approval is used up"
    rows = admin_rows(c, 0)
    assert sorted(r["partitions"] for r in rows.values()) == [4, 4, 4], rows


def test_autoscaling_makes_an_hpa_that_scales_the_cluster_resource(k8s, operator):
    ns(k8s, "kafka")
    apply(k8s, cluster_manifest("auto", 2, spec={"autoscaling": {"minBrokers": 2, "maxBrokers": 6}}))
    hpa = wait_for("the HPA", lambda: k8s.get("-n", "kafka", "hpa", "auto", check=False))
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "stratus.io/v1alpha1", "kind": "StratusCluster",
                                             "name": "auto"}
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 600
    # The HPA controller reads the cluster's /scale (its CPU metrics need a metrics server,
    # which this control plane does not run).
    able = wait_for("AbleToScale", lambda: (lambda h: h if any(
        c["type"] == "AbleToScale" and c["status"] == "True" for c in (h.get("status") or {}).get("conditions", []))
        else None)(k8s.get("-n", "kafka", "hpa", "auto")), timeout=60)
    assert able["status"]["currentReplicas"] == 2
    r = k8s.kubectl("apply", "-f", "-", check=False, input=json.dumps(
        cluster_manifest("auto", 2, spec={"autoscaling": {"minBrokers": 5, "maxBrokers": 3}})))
    assert r.returncode != 0 and "minBrokers" in r.stderr, r.stderr
    k8s.kubectl("-n", "kafka", "patch", "stratuscluster", "auto", "--type=json",
                "-p", '[{"op":"remove","path":"/spec/autoscaling"}]')
    wait_for("the HPA gone", lambda: k8s.get("-n", "kafka", "hpa", "auto", check=False) is None)
    k8s.kubectl("-n", "kafka", "delete", "stratuscluster", "auto")
