"""Stratus as a cluster with other clients and with planned operations (three brokers as
processes over a real etcd and a real MinIO):

- a Java producer (kafka-console-producer: idempotent, acks=all) and a franz-go producer
  write a 12-partition topic spread over all brokers; a Java group consumer (java/GroupConsumer.java) and a franz-go group
  consumer (go/groupconsumer) read it in two groups, each record exactly once, and their
  committed offsets reach the end of every partition;
- under idempotent acks=all producers, `stratus admin` moves a partition, drains a broker,
  undrains it and rebalances: producers see only retriable errors, and every acknowledged
  record is in the log exactly once (the checker of test_cluster.py).
"""

import re
import subprocess
import time
from collections import Counter

import pytest
from confluent_kafka.admin import AdminClient

from conftest import REPO, STRATUS_BIN
from group_util import committed_offsets, describe_all, wait_members
from test_cluster import PARTITIONS, Producers, check_topic, leaders, read_everything
from test_groups_clients import FRANZ_BIN, run_franz
from test_groups_java import group_consumer_classes, start_member  # noqa: F401 (fixture)
from util import create_topic, wait_for

KAFKA_CLI = str(REPO / "scripts" / "kafka-cli")
RECORDS = 3000


def cli(tool, *args, input=None, timeout=90):
    r = subprocess.run([KAFKA_CLI, tool, *args], input=input, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"{tool} {' '.join(args)} exited {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def test_java_and_franz_go_groups_across_brokers(cluster, topic, tmp_path, kafka_home,
                                                 group_consumer_classes):  # noqa: F811
    c = cluster(3)
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    create_topic(admin, topic, partitions=PARTITIONS)
    owners, brokers = leaders(c.bootstrap, topic)
    assert brokers == [1, 2, 3] and sorted(set(owners.values())) == [1, 2, 3], owners

    # The Java group member starts first (its JVM starts while the producer runs); each client
    # knows a different single broker and finds the others through Metadata.
    java_group, franz_group = f"gj-{topic}", f"gf-{topic}"
    member = start_member("java", group_consumer_classes, kafka_home, c.broker(3).bootstrap, topic,
                          java_group, "classic", "cooperative-sticky", tmp_path)
    try:
        # Java producer: the console producer's defaults are idempotence and acks=all; keyed
        # lines, so the default partitioner spreads them over every partition.
        t0 = time.time()
        cli("console-producer", "--bootstrap-server", c.broker(1).bootstrap, "--topic", topic,
            "--reader-property", "parse.key=true", "--reader-property", "key.separator=:",
            "--command-property", "acks=all", "--command-property", "enable.idempotence=true",
            input="".join(f"k{i}:j-{i}\n" for i in range(RECORDS)))
        print(f"console producer: {time.time() - t0:.1f}s")
        # franz-go producer (idempotent, acks=all by default) through another broker.
        r = subprocess.run([str(FRANZ_BIN), "-brokers", c.broker(2).bootstrap, "-topic", topic,
                            "-produce", str(RECORDS)], capture_output=True, text=True, timeout=90,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 0 and r.stdout.strip() == f"PRODUCED {RECORDS}", r.stdout + r.stderr
        ends, log, _ = read_everything(c.bootstrap, topic, PARTITIONS)
        ends = {p: hi for p, (lo, hi) in ends.items()}
        values = Counter(v for recs in log.values() for _, v in recs)
        produced = [f"j-{i}" for i in range(RECORDS)] + [f"franz-{i}" for i in range(RECORDS)]
        assert sorted(values) == sorted(produced) and max(values.values()) == 1, \
            "the log holds every produced record once"
        assert all(ends[p] > 0 for p in range(PARTITIONS)), f"records in every partition: {ends}"

        # franz-go, in its own group, through broker 2: reads everything, commits, leaves.
        t0 = time.time()
        franz = run_franz(c.broker(2).bootstrap, topic, franz_group, 2 * RECORDS)
        print(f"franz-go group consumer: {time.time() - t0:.1f}s")
        got = Counter(v for _, _, v in franz)
        assert not [v for v, n in got.items() if n > 1], "franz-go read records twice"
        assert sorted(got) == sorted(values), "franz-go read every record"
        for p, o, v in franz:
            assert log[p][o - log[p][0][0]][1] == v, f"franz-go: {p}/{o} is not {v}"
        assert committed_offsets(admin, franz_group, topic, PARTITIONS) == ends

        # Java: everything read and committed through its coordinator.
        wait_members([member], lambda: committed_offsets(admin, java_group, topic, PARTITIONS) == ends,
                     60, f"the Java group's committed offsets to reach {ends}")
        recs = member.records()
        got = Counter(v for _, _, v in recs)
        assert not [v for v, n in got.items() if n > 1], f"Java member read records twice\n{describe_all([member])}"
        assert sorted(got) == sorted(values), "the Java member read every record"
        assert set(member.assignment()) == set(range(PARTITIONS))
        bad = [line for line in member.lines() if line.startswith(("ERROR", "COMMITFAIL", "LOST"))]
        assert not bad, "\n".join(bad)
        member.request_stop()
        assert member.wait(60) == 0 and member.lines()[-1] == "CLOSED", describe_all([member])
        c.assert_healthy()
    finally:
        member.cleanup()


# -- planned move and drain under load ---------------------------------------------------------

def stratus_admin(c, node, *args, timeout=90):
    """`stratus admin` against broker `node`'s admin listener; returns its stdout."""
    cmd = [str(STRATUS_BIN), "admin", "--server", c.admin_address(node), *map(str, args)]
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    print(f"$ stratus admin {' '.join(map(str, args))}  ({time.time() - t0:.2f}s)\n{r.stdout}{r.stderr}")
    assert r.returncode == 0, f"{' '.join(cmd)} exited {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


def status_rows(out):
    """{node: {"state", "partitions", "shards"}} from `stratus admin status`."""
    rows = {}
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 6 and cols[0].isdigit():
            rows[int(cols[0])] = {"state": cols[1], "partitions": int(cols[3]), "shards": int(cols[4])}
    return rows


def partition_rows(out, topic):
    """{partition: (owner, epoch)} from `stratus admin partitions --topic`."""
    rows = {}
    for line in out.splitlines():
        cols = line.split()
        if len(cols) == 4 and cols[0] == topic:
            rows[int(cols[1])] = (int(cols[2]) if cols[2] != "-" else -1, int(cols[3]))
    return rows


@pytest.mark.timeout(300)
def test_planned_move_and_drain_under_load(cluster, topic, tmp_path):
    c = cluster(3, admin=True)
    create_topic(AdminClient({"bootstrap.servers": c.bootstrap}), topic, partitions=PARTITIONS)
    prods = Producers(c.bootstrap, topic, tmp_path)
    try:
        time.sleep(3)
        st = stratus_admin(c, 1, "status")
        rows = status_rows(st)
        assert sorted(rows) == [1, 2, 3] and all(r["state"] == "up" for r in rows.values()), st
        assert sum(r["partitions"] for r in rows.values()) == PARTITIONS, st
        assert re.search(r"\(0 without owner\)", st), st
        before = partition_rows(stratus_admin(c, 3, "partitions", "--topic", topic), topic)
        assert sorted(before) == list(range(PARTITIONS)) and {o for o, _ in before.values()} == {1, 2, 3}

        # 1. move one partition of broker 1 to broker 3 (asked through broker 2)
        part = min(p for p, (o, _) in before.items() if o == 1)
        out = stratus_admin(c, 2, "move", topic, part, 3)
        m = re.search(rf"{re.escape(topic)}-{part} now owned by broker 3 at leader epoch (\d+)", out)
        assert m, out
        epoch = int(m.group(1))
        after = partition_rows(stratus_admin(c, 1, "partitions", "--topic", topic), topic)
        assert after[part] == (3, epoch) and epoch > before[part][1], (before[part], after[part])
        assert {p: v for p, v in after.items() if p != part} == {p: v for p, v in before.items() if p != part}, \
            "only the moved partition changed"
        wait_for(lambda: leaders(c.bootstrap, topic)[0][part] == 3, timeout=20,
                 what=f"Metadata to show partition {part} led by broker 3")
        time.sleep(2)

        # 2. drain broker 2: it hands off everything (partitions and coordinator shards)
        t0 = time.time()
        out = stratus_admin(c, 1, "drain", 2)
        print(f"drain took {time.time() - t0:.2f}s")
        assert "broker 2 drained: it owns nothing" in out, out
        rows = status_rows(stratus_admin(c, 3, "status"))
        assert rows[2] == {"state": "drain", "partitions": 0, "shards": 0}, rows
        assert rows[1]["partitions"] + rows[3]["partitions"] == PARTITIONS, rows
        drained = partition_rows(stratus_admin(c, 3, "partitions", "--topic", topic), topic)
        assert all(o in (1, 3) for o, _ in drained.values()), drained
        for p, (o, e) in drained.items():
            if before[p][0] == 2:
                assert e > before[p][1], f"partition {p} left broker 2 without a new epoch"
        wait_for(lambda: 2 not in leaders(c.bootstrap, topic)[0].values(), timeout=20,
                 what="Metadata to show no partition led by broker 2")
        # a drained broker cannot be the target of a move
        r = subprocess.run([str(STRATUS_BIN), "admin", "--server", c.admin_address(1), "move", topic,
                            str(part), "2"], capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and "draining" in r.stderr + r.stdout, r
        time.sleep(3)

        # 3. undrain and rebalance: broker 2 gets partitions again. (The controller also evens
        # out by itself as soon as a broker becomes eligible again, so the explicit rebalance
        # may find nothing left to move.)
        stratus_admin(c, 2, "undrain", 2)
        rows = status_rows(stratus_admin(c, 1, "status"))
        assert rows[2]["state"] == "up", rows
        out = stratus_admin(c, 2, "rebalance")
        assert re.search(r"rebalanced: \d+ partitions and \d+ coordinator shards moved", out), out
        rows = status_rows(stratus_admin(c, 3, "status"))
        assert rows[2]["partitions"] > 0 and rows[2]["shards"] > 0, rows
        assert max(r["partitions"] for r in rows.values()) <= PARTITIONS // 3 + 1, rows
        back = partition_rows(stratus_admin(c, 1, "partitions", "--topic", topic), topic)
        assert 2 in {o for o, _ in back.values()}, back
        for p, (o, e) in back.items():
            if o != drained[p][0]:
                assert e > drained[p][1], f"partition {p} moved without a new epoch"
        wait_for(lambda: 2 in leaders(c.bootstrap, topic)[0].values(), timeout=20,
                 what="Metadata to show partitions led by broker 2 again")
        time.sleep(3)
        c.assert_healthy()
    finally:
        logs, problems = prods.finish()
    for tag in prods.procs:
        warnings = (tmp_path / f"{tag}.stderr").read_text(errors="replace").splitlines()
        print(f"producer {tag}: {len(warnings)} client log lines, e.g. {warnings[:3]}")
    found, _, _ = check_topic(c.bootstrap, topic, logs.values())
    problems += found
    assert not problems, "\n".join(problems)
