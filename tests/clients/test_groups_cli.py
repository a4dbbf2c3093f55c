"""Apache Kafka's CLI with consumer groups: kafka-console-consumer --group, and
kafka-consumer-groups --list / --describe / --reset-offsets / --delete-offsets / --delete."""

import os
import signal
import subprocess

from conftest import REPO
from group_util import committed_offsets
from util import create_topic, produce_sync, producer, wait_for

KAFKA_CLI = str(REPO / "scripts" / "kafka-cli")
JAN = 1704067200000  # 2024-01-01T00:00:00Z
JUN = 1717200000000  # 2024-06-01T00:00:00Z


def cli(tool, *args, check=True, timeout=60):
    r = subprocess.run([KAFKA_CLI, tool, *args], capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if check:
        assert r.returncode == 0, f"{tool} {' '.join(args)} exited {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def groups(b, *args, **kw):
    return cli("consumer-groups", "--bootstrap-server", b, *args, **kw)


def table(out, first_col):
    """Rows of a kafka-consumer-groups table (the header starts with `first_col`) as dicts."""
    rows, header = [], None
    for line in out.splitlines():
        cols = line.split()
        if cols and cols[0] == first_col:
            header = cols
        elif header and len(cols) == len(header):
            rows.append(dict(zip(header, cols)))
        elif not cols:
            header = None if rows else header
    return rows


def offsets_table(out):
    """{partition: row} of a --describe (offsets) table."""
    return {int(r["PARTITION"]): r for r in table(out, "GROUP") if "PARTITION" in r}


def new_offsets(out):
    """{partition: NEW-OFFSET} of a --reset-offsets table."""
    return {int(r["PARTITION"]): int(r["NEW-OFFSET"]) for r in table(out, "GROUP") if "NEW-OFFSET" in r}


def test_console_consumer_group_and_consumer_groups_tool(group_broker, topic):
    b = group_broker.bootstrap
    admin = group_broker.admin()
    create_topic(admin, topic, partitions=2)
    group = f"g-{topic}"
    p = producer(b, acks="all")
    # offsets 0-4 of each partition are stamped January 2024, offsets 5-9 June 2024
    produce_sync(p, topic, [{"value": f"v{i}".encode(), "partition": i % 2,
                             "timestamp": (JAN if i < 10 else JUN) + i} for i in range(20)])

    # console consumer in a group reads everything and commits when it exits
    r = cli("console-consumer", "--bootstrap-server", b, "--topic", topic, "--group", group,
            "--from-beginning", "--max-messages", "20", "--timeout-ms", "30000")
    assert sorted(r.stdout.split()) == sorted(f"v{i}" for i in range(20)), r.stdout + r.stderr
    assert "Processed a total of 20 messages" in r.stderr
    assert committed_offsets(admin, group, topic, 2) == {0: 10, 1: 10}

    assert group in groups(b, "--list").stdout.split()

    produce_sync(p, topic, [{"value": f"w{i}".encode(), "partition": i % 2} for i in range(6)])
    r = groups(b, "--describe", "--group", group)
    assert f"Consumer group '{group}' has no active members." in r.stdout + r.stderr
    rows = offsets_table(r.stdout)
    assert sorted(rows) == [0, 1], r.stdout
    for row in rows.values():
        assert (row["TOPIC"], row["CURRENT-OFFSET"], row["LOG-END-OFFSET"], row["LAG"], row["CONSUMER-ID"]) == \
            (topic, "10", "13", "3", "-"), r.stdout

    # a running console consumer shows up as a member, with its partitions and no lag
    log = open(group_broker.tmp / f"{group}.console.out", "w+")
    proc = subprocess.Popen([KAFKA_CLI, "console-consumer", "--bootstrap-server", b, "--topic", topic,
                             "--group", group, "--consumer-property", "auto.commit.interval.ms=500",
                             "--consumer-property", "client.id=cli-test-consumer"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        def member_listed():
            rows = table(groups(b, "--describe", "--group", group, "--members", check=False).stdout, "GROUP")
            return rows if len(rows) == 1 and rows[0].get("#PARTITIONS") == "2" else False
        rows = wait_for(member_listed, 60, interval=1, what="one member with 2 partitions in --describe --members")
        assert rows[0]["CLIENT-ID"] == "cli-test-consumer" and rows[0]["HOST"].endswith("127.0.0.1"), rows

        def caught_up():
            rows = offsets_table(groups(b, "--describe", "--group", group, check=False).stdout)
            return sorted(rows) == [0, 1] and all(
                r["CURRENT-OFFSET"] == "13" and r["LAG"] == "0" and r["CONSUMER-ID"] != "-"
                and r["CLIENT-ID"] == "cli-test-consumer" for r in rows.values()) and rows
        wait_for(caught_up, 60, interval=1, what="the running member to commit everything (lag 0)")

        r = groups(b, "--describe", "--group", group, "--state")
        state = table(r.stdout, "GROUP")
        assert len(state) == 1 and state[0]["STATE"] == "Stable" and state[0]["#MEMBERS"] == "1", r.stdout

        # offsets of an active group cannot be reset
        r = groups(b, "--reset-offsets", "--group", group, "--topic", topic, "--to-earliest", "--execute",
                   check=False)
        assert "can only be reset if the group" in r.stdout + r.stderr and "inactive" in r.stdout + r.stderr, \
            r.stdout + r.stderr
        assert committed_offsets(admin, group, topic, 2) == {0: 13, 1: 13}
    finally:
        os.kill(proc.pid, signal.SIGTERM)  # the console consumer closes (and leaves) on SIGTERM
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    wait_for(lambda: "has no active members" in groups(b, "--describe", "--group", group).stdout
             + groups(b, "--describe", "--group", group).stderr, 30, interval=1,
             what="the group to have no members after the console consumer stopped")

    # --reset-offsets
    r = groups(b, "--reset-offsets", "--group", group, "--topic", topic, "--to-earliest", "--execute")
    assert new_offsets(r.stdout) == {0: 0, 1: 0}, r.stdout
    assert committed_offsets(admin, group, topic, 2) == {0: 0, 1: 0}

    r = groups(b, "--reset-offsets", "--group", group, "--topic", topic,
               "--to-datetime", "2024-03-01T00:00:00.000Z", "--execute")
    assert new_offsets(r.stdout) == {0: 5, 1: 5}, r.stdout
    assert committed_offsets(admin, group, topic, 2) == {0: 5, 1: 5}

    r = groups(b, "--reset-offsets", "--group", group, "--topic", f"{topic}:1", "--shift-by", "-2", "--execute")
    assert new_offsets(r.stdout) == {1: 3}, r.stdout
    assert committed_offsets(admin, group, topic, 2) == {0: 5, 1: 3}

    r = groups(b, "--reset-offsets", "--group", group, "--topic", topic, "--shift-by", "100", "--execute")
    assert new_offsets(r.stdout) == {0: 13, 1: 13}, r.stdout  # clamped to the log end
    r = groups(b, "--reset-offsets", "--group", group, "--topic", topic, "--shift-by", "-4", "--dry-run")
    assert new_offsets(r.stdout) == {0: 9, 1: 9}, r.stdout
    assert committed_offsets(admin, group, topic, 2) == {0: 13, 1: 13}  # a dry run changes nothing

    # the group's reading resumes from the reset offsets
    groups(b, "--reset-offsets", "--group", group, "--topic", topic, "--to-offset", "11", "--execute")
    r = cli("console-consumer", "--bootstrap-server", b, "--topic", topic, "--group", group,
            "--max-messages", "4", "--timeout-ms", "30000")
    assert sorted(r.stdout.split()) == ["w2", "w3", "w4", "w5"], r.stdout + r.stderr

    # --delete-offsets
    r = groups(b, "--delete-offsets", "--group", group, "--topic", topic)
    assert f"Request succeeded for deleting offsets from group {group}." in r.stdout, r.stdout + r.stderr
    status = {int(row["PARTITION"]): row["STATUS"] for row in table(r.stdout, "TOPIC")}
    assert status == {0: "Successful", 1: "Successful"}, r.stdout
    assert committed_offsets(admin, group, topic, 2) == {0: None, 1: None}

    # --delete
    groups(b, "--reset-offsets", "--group", group, "--topic", topic, "--to-latest", "--execute")
    assert committed_offsets(admin, group, topic, 2) == {0: 13, 1: 13}
    r = groups(b, "--delete", "--group", group)
    assert f"Deletion of requested consumer groups ('{group}') was successful." in r.stdout, r.stdout + r.stderr
    assert group not in groups(b, "--list").stdout.split()
    r = groups(b, "--describe", "--group", group, check=False)
    # Kafka 4.x: DescribeGroups answers GROUP_ID_NOT_FOUND (older brokers: a Dead group)
    assert (f"GroupIdNotFoundException: Group {group} not found." in r.stdout + r.stderr
            or f"Consumer group '{group}' does not exist." in r.stdout + r.stderr), r.stdout + r.stderr
    assert committed_offsets(admin, group, topic, 2) == {0: None, 1: None}


def test_consumer_groups_tool_with_consumer_protocol_group(group_broker, topic):
    """A KIP-848 group (console consumer with group.protocol=consumer) as kafka-consumer-groups
    shows it: its member, state and assignor while it runs, then its offsets."""
    b = group_broker.bootstrap
    admin = group_broker.admin()
    create_topic(admin, topic, partitions=2)
    group = f"g-{topic}"
    produce_sync(producer(b, acks="all"), topic, [{"value": f"v{i}".encode(), "partition": i % 2}
                                                  for i in range(10)])
    log = open(group_broker.tmp / f"{group}.console.out", "w+")
    proc = subprocess.Popen([KAFKA_CLI, "console-consumer", "--bootstrap-server", b, "--topic", topic,
                             "--group", group, "--from-beginning",
                             "--consumer-property", "group.protocol=consumer",
                             "--consumer-property", "auto.commit.interval.ms=500",
                             "--consumer-property", "client.id=cli-848-consumer"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        def member_listed():
            rows = table(groups(b, "--describe", "--group", group, "--members", check=False).stdout, "GROUP")
            return rows if len(rows) == 1 and rows[0].get("#PARTITIONS") == "2" else False
        rows = wait_for(member_listed, 60, interval=1, what="one member with 2 partitions in --describe --members")
        assert rows[0]["CLIENT-ID"] == "cli-848-consumer", rows

        def stable():
            rows = table(groups(b, "--describe", "--group", group, "--state", check=False).stdout, "GROUP")
            return rows if len(rows) == 1 and rows[0].get("STATE") == "Stable" else False
        state = wait_for(stable, 30, interval=1, what="a Stable group in --describe --state")[0]
        assert state["#MEMBERS"] == "1" and state["ASSIGNMENT-STRATEGY"] == "uniform", state

        def caught_up():
            rows = offsets_table(groups(b, "--describe", "--group", group, check=False).stdout)
            return sorted(rows) == [0, 1] and all(
                r["CURRENT-OFFSET"] == "5" and r["LAG"] == "0" and r["CLIENT-ID"] == "cli-848-consumer"
                for r in rows.values())
        wait_for(caught_up, 60, interval=1, what="the member to commit everything (lag 0)")
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()

    def empty():
        r = groups(b, "--describe", "--group", group, "--state", check=False)
        rows = table(r.stdout, "GROUP")
        return rows if len(rows) == 1 and rows[0].get("STATE") == "Empty" else False
    assert wait_for(empty, 30, interval=1, what="an Empty group after the member stopped")[0]["#MEMBERS"] == "0"
    assert committed_offsets(admin, group, topic, 2) == {0: 5, 1: 5}
    r = groups(b, "--reset-offsets", "--group", group, "--topic", topic, "--to-earliest", "--execute")
    assert new_offsets(r.stdout) == {0: 0, 1: 0}, r.stdout
    r = groups(b, "--delete", "--group", group)
    assert f"Deletion of requested consumer groups ('{group}') was successful." in r.stdout, r.stdout + r.stderr
    assert group not in groups(b, "--list").stdout.split()
