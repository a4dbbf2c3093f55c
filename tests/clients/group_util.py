"""Helpers for the consumer-group tests: numbered records, committed offsets, member processes."""

import os
import signal
import subprocess
import time

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

from util import produce_sync, producer, wait_for


def produce_numbered(bootstrap, topic, count, partitions, tag="r", start=0):
    """Produce `count` records with values "<tag>-<i>", record i to partition i % partitions.

    Returns the acknowledged records as (partition, offset, value) tuples."""
    p = producer(bootstrap, acks="all")
    msgs = produce_sync(p, topic, [{"value": f"{tag}-{i}".encode(), "partition": i % partitions}
                                   for i in range(start, start + count)])
    return [(m.partition(), m.offset(), m.value().decode()) for m in msgs]


def committed_offsets(admin, group, topic, partitions, timeout=10):
    """The group's committed offsets of topic's partitions: {partition: offset or None}."""
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])
    res = admin.list_consumer_group_offsets([req], request_timeout=timeout)[group].result(timeout=timeout)
    return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in res.topic_partitions}


def end_offsets(acked):
    """{partition: next offset} after the acknowledged (partition, offset, value) records."""
    ends = {}
    for p, o, _ in acked:
        if o is not None:
            ends[p] = max(ends.get(p, 0), o + 1)
    return ends


def missing(acked, consumed):
    """Acknowledged records absent from `consumed` (an iterable of (partition, offset, value));
    a record acknowledged without an offset (None: librdkafka's implicit acknowledgement)
    anywhere in its partition."""
    consumed = list(consumed)
    have = {(p, o): v for p, o, v in consumed}
    values = {(p, v) for p, _, v in consumed}
    return [(p, o, v) for p, o, v in acked
            if (have.get((p, o)) != v if o is not None else (p, v) not in values)]


def resolved(acked, consumed):
    """`acked` with the offsets the producer did not learn (None) taken from where the
    records were consumed."""
    where = {(p, v): o for p, o, v in consumed}
    return [(p, where.get((p, v)) if o is None else o, v) for p, o, v in acked]


class MemberProcess:
    """A group member in a child process whose stdout (one event per line) goes to a file."""

    def __init__(self, name, cmd, log_dir, env=None):
        self.name = name
        self.out_path = log_dir / f"{name}.out"
        self.err_path = log_dir / f"{name}.err"
        self.stop_path = log_dir / f"{name}.stop"
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen([str(c) for c in cmd], stdout=self._out, stderr=self._err,
                                     stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})

    def lines(self):
        return self.out_path.read_text(errors="replace").splitlines()

    def events(self, kind):
        """The rest of each line starting with `kind ` (in order)."""
        return [line[len(kind) + 1:] for line in self.lines() if line.startswith(kind + " ")]

    def records(self):
        """(partition, offset, value) of every record the member printed."""
        out = []
        for rest in self.events("R"):
            p, o, v = rest.split(" ", 2)
            out.append((int(p), int(o), v))
        return out

    def assignment(self):
        """The member's latest full assignment (a set of partitions), or None before the first."""
        a = self.events("ASSIGNMENT")
        if not a:
            return None
        return {int(x) for x in a[-1].split(",") if x != ""}

    def stderr(self):
        return self.err_path.read_text(errors="replace")

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        self.proc.wait(timeout=30)

    def request_stop(self):
        self.stop_path.touch()

    def wait(self, timeout=60):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not exit within {timeout}s\n{self.describe()}")

    def alive(self):
        return self.proc.poll() is None

    def describe(self, n=25):
        lines = self.lines()
        return (f"--- {self.name} (pid {self.proc.pid}, rc {self.proc.poll()}) last {n} of {len(lines)} lines ---\n"
                + "\n".join(lines[-n:]) + f"\n--- {self.name} stderr (tail) ---\n" + self.stderr()[-3000:])

    def cleanup(self):
        if self.proc.poll() is None:
            self.kill()
        self._out.close()
        self._err.close()


def describe_all(members, n=25):
    return "\n".join(m.describe(n) for m in members)


def wait_members(members, pred, timeout, what):
    """wait_for with the members' output in the failure message."""
    try:
        return wait_for(pred, timeout=timeout, interval=0.2, what=what)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{describe_all(members)}") from None


def now_ms():
    return int(time.time() * 1000)
