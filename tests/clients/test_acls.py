"""ACLs as Kafka enforces them, with real clients, on both targets: kafka-acls and the
admin API create, list and delete them; producers, consumers, Metadata, ListGroups,
DescribeConfigs and idempotent producers get exactly what their ACLs allow, with Kafka's
error codes; deny wins; a change applies at once.

The broker authenticates alice, bob and admin with SASL PLAIN on SASL_PLAINTEXT; the
fixtures' PLAINTEXT listener is User:ANONYMOUS, a super user here (Kafka's own
controller connection needs that too)."""

import subprocess
import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   AdminClient, ConfigResource, ResourcePatternType, ResourceType)

from conftest import REPO, Broker, secret, shared_broker
from util import consume, create_topic, produce_sync, tp, wait_for

JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
        'user_admin="admin-pw" user_alice="alice-pw" user_bob="bob-pw";')


@pytest.fixture(scope="module")
def secured(request):
    b = Broker({
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:admin;User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS,
        "auto.create.topics.enable": "false",
        "group.initial.rebalance.delay.ms": "0",
    }, name="acls", listeners={"SASL_PLAINTEXT": "SASL_PLAINTEXT"})
    yield from shared_broker(request, b)


def as_user(b, user):
    return {"bootstrap.servers": f"127.0.0.1:{b.ports['SASL_PLAINTEXT']}",
            "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
            "sasl.username": user, "sasl.password": secret(f"{user}-pw")}


def allow(principal, rtype, name, op, pattern=ResourcePatternType.LITERAL, perm=AclPermissionType.ALLOW):
    return AclBinding(rtype, name, pattern, principal, "*", op, perm)


def add(admin, *bindings):
    for f in admin.create_acls(list(bindings)).values():
        f.result(timeout=10)


def produce_error(b, user, topic, **conf):
    """None if `user` can produce to `topic`, else the delivery error's code."""
    errors = []
    p = Producer({**as_user(b, user), "message.timeout.ms": 8000, "linger.ms": 0, **conf})
    p.produce(topic, b"x", on_delivery=lambda e, m: errors.append(e))
    p.flush(15)
    assert errors, "no delivery report"
    return errors[0].code() if errors[0] else None


def test_produce_consume_and_metadata_follow_the_acls(secured):
    admin = secured.admin()
    run = uuid.uuid4().hex[:6]
    writable, readable, secret = f"w-{run}-a", f"r-{run}", f"secret-{run}"
    for t in (writable, readable, secret):
        create_topic(admin, t)
    group = f"g-{run}"
    add(admin,
        allow("User:alice", ResourceType.TOPIC, f"w-{run}-", AclOperation.WRITE, ResourcePatternType.PREFIXED),
        allow("User:alice", ResourceType.TOPIC, readable, AclOperation.READ),
        allow("User:alice", ResourceType.GROUP, group, AclOperation.READ))
    produce_sync(Producer({"bootstrap.servers": secured.bootstrap}), readable,
                 [{"value": f"m{i}".encode()} for i in range(5)])

    assert produce_error(secured, "alice", writable) is None
    assert produce_error(secured, "alice", writable, **{"enable.idempotence": True}) is None, \
        "an idempotent producer needs WRITE on the topic only (KIP-679)"
    assert produce_error(secured, "alice", readable) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert produce_error(secured, "bob", writable) == KafkaError.TOPIC_AUTHORIZATION_FAILED

    alice = as_user(secured, "alice")
    bootstrap = alice.pop("bootstrap.servers")
    got = consume(bootstrap, [tp(readable, 0, 0)], 5, **alice, **{"group.id": group})
    assert [m.value() for m in got] == [f"m{i}".encode() for i in range(5)]

    md = AdminClient(as_user(secured, "alice")).list_topics(timeout=10)
    mine = {t for t in md.topics if t.endswith(run) or run in t}
    assert mine == {writable, readable}, "Metadata shows only the topics alice may describe"
    md = AdminClient(as_user(secured, "bob")).list_topics(timeout=10)
    assert not [t for t in md.topics if run in t]
    md = AdminClient(as_user(secured, "bob")).list_topics(topic=secret, timeout=10)
    assert md.topics[secret].error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_deny_wins_and_changes_apply_at_once(secured):
    admin = secured.admin()
    topic = f"deny-{uuid.uuid4().hex[:6]}"
    create_topic(admin, topic)
    add(admin, allow("User:alice", ResourceType.TOPIC, topic, AclOperation.ALL))
    wait_for(lambda: produce_error(secured, "alice", topic) is None, timeout=10,
             what="a new ALLOW to apply")
    add(admin, allow("User:alice", ResourceType.TOPIC, topic, AclOperation.WRITE, perm=AclPermissionType.DENY))
    wait_for(lambda: produce_error(secured, "alice", topic) == KafkaError.TOPIC_AUTHORIZATION_FAILED,
             timeout=10, what="a DENY to win over ALL")
    deleted = admin.delete_acls([AclBindingFilter(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL,
                                                  "User:alice", "*", AclOperation.WRITE,
                                                  AclPermissionType.DENY)])
    assert len(list(deleted.values())[0].result(timeout=10)) == 1
    wait_for(lambda: produce_error(secured, "alice", topic) is None, timeout=10,
             what="the deleted DENY to stop applying")


def test_groups_and_configs_are_hidden_from_who_may_not_describe_them(secured):
    admin = secured.admin()
    run = uuid.uuid4().hex[:6]
    topic = f"cfg-{run}"
    create_topic(admin, topic)
    add(admin, allow("User:alice", ResourceType.GROUP, f"seen-{run}", AclOperation.DESCRIBE))
    # Two groups exist (offsets committed by the super user).
    from confluent_kafka import Consumer, TopicPartition
    for g in (f"seen-{run}", f"hidden-{run}"):
        c = Consumer({"bootstrap.servers": secured.bootstrap, "group.id": g})
        c.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
        c.close()
    alice = AdminClient(as_user(secured, "alice"))
    groups = alice.list_consumer_groups().result(timeout=10)
    ids = {g.group_id for g in groups.valid if run in g.group_id}
    assert ids == {f"seen-{run}"}
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    with pytest.raises(KafkaException, match="TOPIC_AUTHORIZATION_FAILED|uthoriz"):
        alice.describe_configs([res])[res].result(timeout=10)


def test_kafka_acls_cli_adds_lists_and_removes(secured, tmp_path):
    topic = f"cli-{uuid.uuid4().hex[:6]}"
    cli = str(REPO / "scripts" / "kafka-cli")
    main = "org.apache.kafka.tools.AclCommand"
    base = [cli, main, "--bootstrap-server", secured.bootstrap]
    r = subprocess.run(base + ["--add", "--allow-principal", "User:bob", "--operation", "Read",
                               "--topic", topic], capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    r = subprocess.run(base + ["--list", "--topic", topic], capture_output=True, text=True, timeout=90)
    assert r.returncode == 0 and "User:bob" in r.stdout and "READ" in r.stdout, r.stdout + r.stderr[-2000:]
    r = subprocess.run(base + ["--remove", "--force", "--allow-principal", "User:bob", "--operation", "Read",
                               "--topic", topic], capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    r = subprocess.run(base + ["--list", "--topic", topic], capture_output=True, text=True, timeout=90)
    assert "User:bob" not in r.stdout


def test_only_the_cluster_alterer_may_change_acls(secured):
    bob = AdminClient(as_user(secured, "bob"))
    with pytest.raises(KafkaException, match="(?i)CLUSTER_AUTHORIZATION_FAILED|authoriz"):
        for f in bob.create_acls(
                [allow("User:bob", ResourceType.TOPIC, "*", AclOperation.ALL)]).values():
            f.result(timeout=10)


def test_authorized_operations_are_reported_as_kafka_reports_them(secured):
    """Admin clients asking for authorized operations (describeTopics, describeCluster,
    describeConsumerGroups with includeAuthorizedOperations) get the operations the
    principal may do, implied ones included."""
    from confluent_kafka import TopicCollection
    admin = secured.admin()
    run = uuid.uuid4().hex[:6]
    topic, group = f"ops-{run}", f"ops-g-{run}"
    create_topic(admin, topic)
    add(admin,
        allow("User:alice", ResourceType.TOPIC, topic, AclOperation.READ),
        allow("User:alice", ResourceType.TOPIC, topic, AclOperation.DESCRIBE_CONFIGS),
        allow("User:alice", ResourceType.GROUP, group, AclOperation.DELETE),
        allow("User:alice", ResourceType.BROKER, "kafka-cluster", AclOperation.DESCRIBE))
    alice = AdminClient(as_user(secured, "alice"))

    def topic_ops():
        d = alice.describe_topics(TopicCollection([topic]), request_timeout=10,
                                  include_authorized_operations=True)[topic].result(timeout=15)
        return sorted(o.name for o in d.authorized_operations or [])
    wait_for(lambda: topic_ops() == ["DESCRIBE", "DESCRIBE_CONFIGS", "READ"], timeout=15,
             what=f"alice's operations on {topic}: {topic_ops()}")

    cluster = alice.describe_cluster(include_authorized_operations=True, request_timeout=10).result(timeout=15)
    assert sorted(o.name for o in cluster.authorized_operations) == ["DESCRIBE"]

    # DELETE on a group implies DESCRIBE.
    def describe_group():
        try:
            return alice.describe_consumer_groups([group], include_authorized_operations=True,
                                                  request_timeout=10)[group].result(timeout=15)
        except KafkaException as e:
            if e.args[0].code() in (KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.NOT_COORDINATOR):
                return None  # the coordinator of a just-started broker is loading
            raise
    g = wait_for(describe_group, timeout=30, what="the group's description")
    assert sorted(o.name for o in g.authorized_operations or []) == ["DELETE", "DESCRIBE"], g

    # The super user may do everything a topic allows.
    d = admin.describe_topics(TopicCollection([topic]), include_authorized_operations=True)[topic].result(timeout=15)
    assert {o.name for o in d.authorized_operations} == {
        "READ", "WRITE", "CREATE", "DELETE", "ALTER", "DESCRIBE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS"}


def test_a_kip848_member_may_subscribe_only_to_topics_it_may_describe(secured):
    from confluent_kafka import Consumer
    admin = secured.admin()
    run = uuid.uuid4().hex[:6]
    mine, theirs, group = f"sub-{run}", f"hidden-{run}", f"sub-g-{run}"
    for t in (mine, theirs):
        create_topic(admin, t)
    add(admin,
        allow("User:alice", ResourceType.TOPIC, mine, AclOperation.READ),
        allow("User:alice", ResourceType.GROUP, group, AclOperation.READ))
    produce_sync(Producer({"bootstrap.servers": secured.bootstrap}), mine,
                 [{"value": f"m{i}".encode()} for i in range(3)])

    def first_event(topics, timeout=20):
        errors = []
        c = Consumer({**as_user(secured, "alice"), "group.id": group, "group.protocol": "consumer",
                      "auto.offset.reset": "earliest", "error_cb": lambda e: errors.append(e)})
        c.subscribe(topics)
        try:
            deadline = __import__("time").time() + timeout
            while __import__("time").time() < deadline:
                m = c.poll(0.5)
                if m is not None:
                    return m.error() or m.value()
                if errors:
                    return errors[0]
            return None
        finally:
            c.close()

    refused = first_event([mine, theirs])
    assert isinstance(refused, KafkaError), refused
    assert refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, refused
    assert first_event([mine]) == b"m0"
