"""Java kafka-clients 4.x consumer groups: three member processes (java/GroupConsumer.java)
share a 6-partition topic; one is killed with kill -9 and the other two take over its
partitions from its committed offsets, and nothing the producer acknowledged is skipped.

One run per classic assignor, and one with group.protocol=consumer (KIP-848); select the
latter with `-k consumer_protocol`.
"""

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import CLIENTS_DIR
from group_util import (MemberProcess, committed_offsets, describe_all, end_offsets, missing,
                        produce_numbered, wait_members)
from util import create_topic

PARTITIONS = 6
PER_PARTITION = 40
SESSION_TIMEOUT_S = 6


@pytest.fixture(scope="session")
def group_consumer_classes(kafka_home):
    """GroupConsumer.java compiled once per session (the single-file launcher would compile it
    again in every one of the member JVMs, which is slow on a small machine)."""
    out = Path(tempfile.mkdtemp(prefix="stratus-java-groups-"))
    r = subprocess.run(["javac", "-cp", f"{kafka_home}/lib/*", "-d", str(out),
                        str(CLIENTS_DIR / "java" / "GroupConsumer.java")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    yield out
    shutil.rmtree(out, ignore_errors=True)


def start_member(name, classes, kafka_home, bootstrap, topic, group, protocol, assignor, log_dir):
    cmd = ["java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
           f"-Dlog4j2.configurationFile={kafka_home}/config/log4j2.properties",
           "-cp", f"{classes}:{kafka_home}/lib/*", "GroupConsumer",
           bootstrap, topic, group, protocol, assignor, log_dir / f"{name}.stop"]
    return MemberProcess(name, cmd, log_dir)


CASES = [
    pytest.param("classic", "range", id="classic-range"),
    pytest.param("classic", "roundrobin", id="classic-roundrobin"),
    pytest.param("classic", "sticky", id="classic-sticky"),
    pytest.param("classic", "cooperative-sticky", id="classic-cooperative-sticky"),
    # KIP-848: the broker computes the assignment (uniform assignor)
    pytest.param("consumer", "uniform", id="consumer_protocol-uniform"),
    pytest.param("consumer", "range", id="consumer_protocol-range"),
]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("protocol,assignor", CASES)
def test_java_group_shares_partitions_and_survives_kill9_member(
        group_broker, topic, tmp_path, kafka_home, group_consumer_classes, protocol, assignor):
    b = group_broker.bootstrap
    admin = group_broker.admin()
    create_topic(admin, topic, partitions=PARTITIONS)
    group = f"g-{topic}"
    acked = produce_numbered(b, topic, PARTITIONS * PER_PARTITION, PARTITIONS, tag="before")

    members = []
    try:
        for name in ("m1", "m2", "m3"):
            members.append(start_member(name, group_consumer_classes, kafka_home, b, topic, group,
                                        protocol, assignor, tmp_path))

        # 1. the three members share the six partitions, two each
        def balanced():
            if any(not m.alive() for m in members):
                raise AssertionError(f"a member exited\n{describe_all(members)}")
            a = [m.assignment() for m in members]
            if any(x is None or len(x) != 2 for x in a):
                return False
            return set().union(*a) == set(range(PARTITIONS)) and a
        wait_members(members, balanced, 90, "three members with two partitions each")

        # 2. everything produced so far is consumed and committed
        def all_committed():
            return committed_offsets(admin, group, topic, PARTITIONS) == end_offsets(acked)
        wait_members(members, all_committed, 60, f"committed offsets to reach {end_offsets(acked)}")
        consumed = [r for m in members for r in m.records()]
        assert not missing(acked, consumed), f"records not consumed: {missing(acked, consumed)[:10]}"

        # 3. kill -9 one member; more records arrive while the group does not know yet
        victim, survivors = members[1], [members[0], members[2]]
        before = {m.name: m.assignment() for m in members}
        victim_parts = before[victim.name]
        victim.kill()
        t_kill = time.time()
        at_kill = committed_offsets(admin, group, topic, PARTITIONS)
        acked += produce_numbered(b, topic, PARTITIONS * PER_PARTITION, PARTITIONS, tag="after",
                                  start=PARTITIONS * PER_PARTITION)
        n_lines = {m.name: len(m.lines()) for m in survivors}

        # 4. after the session timeout the survivors own all six partitions, three each
        def taken_over():
            if any(not m.alive() for m in survivors):
                raise AssertionError(f"a surviving member exited\n{describe_all(members)}")
            a = [m.assignment() for m in survivors]
            return all(len(x) == 3 for x in a) and set().union(*a) == set(range(PARTITIONS)) and a
        wait_members(members, taken_over, 60, "the two survivors to own three partitions each")
        took = time.time() - t_kill
        # the killed member never left the group: only its session timeout can have expired it
        assert took >= SESSION_TIMEOUT_S - 1.5, f"victim's partitions moved {took:.1f}s after kill -9"

        # 5. every acknowledged record is consumed, none skipped
        def all_consumed():
            return not missing(acked, [r for m in members for r in m.records()])
        wait_members(members, all_consumed, 60, "every acknowledged record to be consumed")
        wait_members(members, all_committed, 30, f"committed offsets to reach {end_offsets(acked)}")

        # 6. the victim's partitions resumed exactly from its committed offsets: the first record
        # a survivor read from each of them after the kill is the committed one
        for p in victim_parts:
            firsts = []
            for m in survivors:
                later = m.lines()[n_lines[m.name]:]
                offs = [int(line.split()[2]) for line in later if line.startswith(f"R {p} ")]
                if offs:
                    firsts.append(offs[0])
            assert firsts, f"no survivor read partition {p} after the kill\n{describe_all(members)}"
            assert min(firsts) == at_kill[p], (
                f"partition {p}: committed offset {at_kill[p]} at kill, but the new owner started at "
                f"{min(firsts)}\n{describe_all(members)}")

        # 7. sticky assignors (sticky, cooperative-sticky, the broker's uniform) keep what a
        # survivor had, and the incremental ones (cooperative-sticky, KIP-848) never revoke it
        after = {m.name: m.assignment() for m in survivors}
        if assignor in ("sticky", "cooperative-sticky", "uniform"):
            for m in survivors:
                assert before[m.name] <= after[m.name], (
                    f"{m.name} had {sorted(before[m.name])}, now {sorted(after[m.name])}")
        if assignor in ("cooperative-sticky", "uniform"):
            for m in survivors:
                later = m.lines()[n_lines[m.name]:]
                revoked = [line for line in later if line.startswith(("REVOKED", "LOST"))]
                assert not revoked, f"{m.name} lost partitions in an incremental rebalance: {revoked}"

        errors = [f"{m.name}: {line}" for m in members for line in m.lines() if line.startswith("ERROR")]
        assert not errors, "\n".join(errors)

        # 8. survivors leave cleanly
        for m in survivors:
            m.request_stop()
        for m in survivors:
            rc = m.wait(60)
            assert rc == 0 and m.lines()[-1] == "CLOSED", describe_all([m])
    finally:
        for m in members:
            m.cleanup()
