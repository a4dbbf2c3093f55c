"""Idempotent acks=all producer used by test_crash.py, run as a separate process.

Sends values "<tag>:<seq>" (seq = 0, 1, 2, ...) to partition seq % partitions until the stop
file appears, then flushes. Every delivery report is logged to --out, one per line:
    OK <partition> <offset> <value> <unix time of the ack> <record timestamp, ms>
    ERR <value> <error>
    FATAL <error>
Exit code 0 when everything queued got a report.
"""

import argparse
import os
import sys
import time

from confluent_kafka import Producer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--partitions", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--stop", required=True)
    ap.add_argument("--rate", type=float, default=800.0, help="records per second")
    ap.add_argument("--debug", default="", help="librdkafka debug contexts (logged to stderr)")
    args = ap.parse_args()

    out = open(args.out, "w", buffering=1)

    def on_error(err):
        if err.fatal():
            out.write(f"FATAL {err}\n")

    def on_delivery(err, msg):
        value = msg.value().decode()
        if err is None:
            out.write(f"OK {msg.partition()} {msg.offset()} {value} {time.time():.3f} {msg.timestamp()[1]}\n")
        else:
            out.write(f"ERR {value} {err}\n")

    p = Producer({
        "bootstrap.servers": args.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 120000,
        "retry.backoff.ms": 100,
        "retry.backoff.max.ms": 500,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
        "socket.timeout.ms": 5000,
        "error_cb": on_error,
        "log_level": 7 if args.debug else 4,
        **({"debug": args.debug} if args.debug else {}),
    })
    seq = 0
    start = time.time()
    while not os.path.exists(args.stop):
        value = f"{args.tag}:{seq}".encode()
        try:
            p.produce(args.topic, value=value, key=args.tag.encode(), partition=seq % args.partitions,
                      on_delivery=on_delivery)
            seq += 1
        except BufferError:
            p.poll(0.05)
            continue
        p.poll(0)
        ahead = seq / args.rate - (time.time() - start)
        if ahead > 0:
            time.sleep(ahead)
    remaining = p.flush(150)
    out.write(f"DONE sent={seq} remaining={remaining}\n")
    out.close()
    sys.exit(0 if remaining == 0 else 3)


if __name__ == "__main__":
    main()
