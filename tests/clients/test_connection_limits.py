"""Connection limits, as Kafka applies them: max.connections.per.ip (with per-address
overrides) closes a connection over the limit as soon as it is accepted, and
connections.max.idle.ms closes a connection that sent nothing for that long. Runs on both
targets. Clients connect from 127.0.0.2 (still loopback) so that the fixtures' own
connections from 127.0.0.1 do not count."""

import socket
import struct
import time

import pytest

from util import wait_for

OTHER = "127.0.0.2"


def api_versions_frame(correlation):
    header = struct.pack(">hhi", 18, 0, correlation) + struct.pack(">h", 4) + b"test"
    return struct.pack(">i", len(header)) + header


def connect_from(source, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


def answers(s, correlation=1):
    """Whether the broker answers an ApiVersions request on `s`."""
    try:
        s.sendall(api_versions_frame(correlation))
        head = s.recv(4, socket.MSG_WAITALL)
        if len(head) < 4:
            return False
        (size,) = struct.unpack(">i", head)
        body = s.recv(size, socket.MSG_WAITALL)
    except (ConnectionResetError, BrokenPipeError, socket.timeout):
        return False
    return len(body) == size and struct.unpack(">i", body[:4])[0] == correlation


def test_connections_over_the_per_address_limit_are_closed(make_broker):
    b = make_broker({"max.connections.per.ip.overrides": f"{OTHER}:2"})
    held = [connect_from(OTHER, b.port) for _ in range(2)]
    assert all(answers(s, i) for i, s in enumerate(held))
    third = connect_from(OTHER, b.port)
    assert not answers(third), "a third connection from the address was served"
    third.close()
    held.pop().close()
    # The freed place is taken again (the broker notices the close asynchronously).
    def fresh_answers():
        s = connect_from(OTHER, b.port)
        ok = answers(s, 9)
        if ok:
            held.append(s)
        else:
            s.close()
        return ok
    wait_for(fresh_answers, timeout=10, what="a connection to be served once another closed")
    for s in held:
        s.close()


def test_idle_connections_are_closed_and_busy_ones_kept(make_broker):
    b = make_broker({"connections.max.idle.ms": "1500"})
    idle = connect_from(OTHER, b.port)
    busy = connect_from(OTHER, b.port)
    start = time.time()
    closed_at = None
    n = 0
    while time.time() - start < 8:
        n += 1
        assert answers(busy, n), "a connection sending a request every 0.5 s was closed"
        if closed_at is None:
            idle.setblocking(False)
            try:
                if idle.recv(1) == b"":
                    closed_at = time.time() - start
            except BlockingIOError:
                pass
            except ConnectionResetError:
                closed_at = time.time() - start
            idle.setblocking(True)
        time.sleep(0.5)
    assert closed_at is not None, "an idle connection stayed open for 8 s with connections.max.idle.ms=1500"
    assert closed_at >= 1.0, f"the idle connection was closed after {closed_at:.1f}s"
    idle.close()
    busy.close()
