#!/usr/bin/env python3
"""`report.py --self-test`: runs report.py's parsing, arithmetic and failure cases on
synthetic run outputs shaped like bench/run.sh's (no broker needed)."""
import json
import os
import shutil
import tempfile

from report_parse import (RECORD, MIB, BenchError, spread, cell, ratio_cell, calibrate,
                          check)
from report import table
from report_groups import groups_table


def _fake_run(raw, runs, kafka_p8, stratus_p8, e2e_p50, short=None, busy=None, fsync_p8=None, fsync_configs=None):
    """Writes outputs shaped like run.sh's into raw: runs x (kafka, stratus), and kafka-fsync
    with fsync_p8 (its reported settings: fsync_configs(run), default the flush setting)."""
    brokers = ("kafka", "stratus") + (("kafka-fsync",) if fsync_p8 else ())
    records, lat_records, lat_warm, e2e_n = 30000, 51200 * 5, 51200 * 2, 600
    os.makedirs(raw, exist_ok=True)
    with open(os.path.join(raw, "env.txt"), "w") as f:
        f.write("date=2030-01-02T03:04:05Z\ncommand=BENCH_REPEAT=3 bench/run.sh\ngit=abc1234567\ngit_subject=test\n"
                "stratus_bin=/x/stratus\nstratus_version=stratus 0.1.0\nstratus_built=2030-01-02T03:00:00Z\n"
                "stratus_sha256=0123456789abcdef\nstratus_set=wal.flush.interval.ms=5\n"
                "stratus_rust_log=info,stratus::wal=debug\nkafka=kafka-4.3.1\nkafka_clients=kafka-clients-4.3.1.jar\n"
                "java=openjdk 17\ncpus=2\ncpu_model=Fake CPU\nmem_gib=23.5\nkernel=6.1\nwork_fs=ext4 (/tmp/x)\n"
                f"repeat={runs}\nbrokers=kafka stratus\nrecords_fixed=\n"
                f"scale=1 produce_s=30 warmup_s=15 lat_s=2+3 lat_records={lat_records} e2e_records={e2e_n} consumer_perf=1\n"
                "loadavg_start=0.1 0.1 0.1\n"
                + "".join(f"order_run_{i}={'kafka stratus' if i % 2 else 'stratus kafka'}\n" for i in range(1, runs + 1))
                + "loadavg_end=0.2 0.2 0.2\ndate_end=2030-01-02T03:30:00Z\n")
    with open(os.path.join(raw, "records.txt"), "w") as f:
        f.write(f"{records}\n")
    with open(os.path.join(raw, "calibration.txt"), "w") as f:
        f.write("calibrated from kafka's warm-up in run 1: test\n")

    def prod(mibps, n, warm, p50, p99):
        recps = mibps * MIB / RECORD
        line = (f"{{n}}{{s}} records sent, {recps:f} records/sec ({mibps:.2f} MB/sec), 5.00 ms avg latency, "
                f"9.00 ms max latency, {p50} ms 50th, {p50 + 1} ms 95th, {p99} ms 99th, {p99 + 1} ms 99.9th.")
        out = [f"Warmup first {warm} records. Steady state results will print after the complete test summary."] if warm else []
        out += ["1000 records sent, 200.0 records/sec (0.20 MB/sec), 1.0 ms avg latency, 2.0 ms max latency.",
                line.format(n=n, s=""), line.format(n=n - warm, s=" steady state")]
        return "\n".join(out) + "\n"

    for i in range(1, runs + 1):
        for b in brokers:
            d = os.path.join(raw, f"run-{i}", b)
            os.makedirs(d)
            p8 = {"kafka": kafka_p8, "stratus": stratus_p8, "kafka-fsync": fsync_p8}[b][i - 1]
            t0 = 1000.0 * i + (0 if b == "kafka" else 500)
            phases = ["idle", "warmup", "produce-p8", "consume-hot", "consumer-perf", "produce-p100", "produce-lat", "e2e"]
            if b == "stratus":
                phases.append("restart")
            phases.append("consume-cold")
            marks_lines, t, ticks, gets, wal = [], t0, 0, 0, 0
            for p in phases:
                marks_lines.append(f"{t:.3f} {p} begin {ticks} {100000 if b != 'stratus' else 20000} {wal} 0 {gets} {wal}")
                t += 10
                ticks += 500
                if b == "stratus":
                    gets += 100
                    wal += 50
                marks_lines.append(f"{t:.3f} {p} end {ticks} {200000 if b != 'stratus' else 40000} {wal} 1 {gets} {wal}")
                t += 1
            files = {
                "marks.txt": "\n".join(marks_lines) + "\n",
                "samples.csv": "".join(f"{t0 + s:.3f},{150000 if b != 'stratus' else 30000},{s * 50},"
                                       f"{s * (150 if busy == (b, i) else 100)},{s * 200},{s * 100}\n"
                                       for s in range(0, int(t - t0) + 1)) + "12",
                "configs.txt": ("listeners=PLAINTEXT://127.0.0.1:1 source=STATIC_BROKER_CONFIG\n"
                                + ("wal.flush.interval.ms=5 source=STATIC_BROKER_CONFIG\n" if b == "stratus" else
                                   "group.initial.rebalance.delay.ms=0 source=STATIC_BROKER_CONFIG\n")
                                + ("" if b != "kafka-fsync" else fsync_configs(i) if fsync_configs else
                                   "log.flush.interval.messages=1 source=STATIC_BROKER_CONFIG\n")
                                + "num.partitions=1 source=DEFAULT_CONFIG\n"),
                "warmup.txt": prod(50, 90000, 0, 5, 9),
                "produce-p8.txt": prod(p8, records, records // 3, 5, 20),
                "produce-p100.txt": prod(p8 * 1.5, records, records // 3, 6, 30),
                "produce-lat.txt": prod(50.0, lat_records, lat_warm, 2, 12),
                "consume-hot.txt": f"RESULT records={records} bytes={records * RECORD} seconds=1.000 MBps=300.00 recps=30000.0 "
                                   f"first_record_ms=200.0 steady_MBps=310.00 end_offsets={records}\n",
                "consume-cold.txt": f"RESULT records={records} bytes={records * RECORD} seconds=2.000 MBps=150.00 recps=15000.0 "
                                    f"first_record_ms=300.0 steady_MBps=160.00 end_offsets={records}\n",
                "consumer-perf-hot.txt": "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, "
                                         "rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n"
                                         f"2030-01-01 00:00:00:000, 2030-01-01 00:00:01:000, 29.2969, 29.2, {records}, 30000.0, "
                                         "3000, 1000, 250.0000, 30000.0\n",
                "e2e.txt": f"0\t1.5\nAvg latency: 1.2000 ms\nPercentiles: 50th = {(e2e_p50 if b != 'stratus' else [6, 5, 7])[i - 1]}, "
                           "99th = 6, 99.9th = 9\n",
                "evict.txt": "EVICT files=10 bytes=1000000 allocated=1048576 resident_before=524288 resident_after=0 "
                             "drop_caches=skipped vanished=0\n",
                "offsets.txt": "".join(f"bench-p8:{p}:{records // 8}\n" for p in range(8))
                               + "".join(f"bench-p100:{p}:{records // 100}\n" for p in range(100))
                               + f"bench-lat:0:{lat_records}\nbench-e2e:0:{e2e_n}\nbench-warm:0:90000\n__consumer_offsets:0:5\n",
                "du.txt": "123 /x\n",
                "log-summary.txt": json.dumps({"wal_puts": 400 if b == "stratus" else 0, "wal_bytes_mean": 262144,
                                               "wal_partitions_mean": 8.0, "seg_puts": 4 if b == "stratus" else 0,
                                               "warn": 1, "error": 0}) + "\nWARN lines 1, ERROR lines 0\n",
                "broker.log": "x\n",
            }
            if b == "stratus":
                files["command.txt"] = ("RUST_LOG=info NO_COLOR=1 /x/stratus --data-dir /tmp/d --listeners PLAINTEXT://127.0.0.1:1 "
                                        "--set wal.flush.interval.ms=5\nremoved_env=-u STRATUS_BIN\n")
                files["objects-summary.txt"] = "produce-p8: 100 wal\n"
                files["objwatch-lost.txt"] = "# LOST: inotify queue overflow\n" if i == 2 else ""
            else:
                files["server.properties"] = "node.id=1\n"
            if short and short == (b, i):
                files["consume-cold.txt"] = files["consume-cold.txt"].replace(f"records={records} ", f"records={records - 1} ", 1)
            for name, text in files.items():
                with open(os.path.join(d, name), "w") as f:
                    f.write(text)


def self_test():
    failures = []

    def expect(cond, what):
        if not cond:
            failures.append(what)

    def raises(fn, what, needle=""):
        try:
            fn()
        except BenchError as e:
            expect(needle in str(e), f"{what}: error {e!r} does not mention {needle!r}")
            return
        failures.append(f"{what}: no error")

    # arithmetic
    expect(spread([3, 1, 2]) == (2, 1, 3), "spread odd")
    expect(spread([4, 1, 2, 3]) == (2.5, 1, 4), "spread even")
    expect(cell([100.0, 90.0, 110.0]) == "100 [90.0–110]", f"cell: {cell([100.0, 90.0, 110.0])}")
    expect(cell([5.0]) == "5.0", f"cell one: {cell([5.0])}")
    expect(cell([0, 0, 1], whole_ms=True) == "< 1 [< 1–1]", f"cell whole ms: {cell([0, 0, 1], whole_ms=True)}")
    expect(cell([5, 6, 7, 8], whole_ms=True) == "6.5 [5–8]", f"cell whole ms, even: {cell([5, 6, 7, 8], whole_ms=True)}")
    expect(ratio_cell([100, 90, 110], [50, 60, 55]) == "0.55×", f"ratio: {ratio_cell([100, 90, 110], [50, 60, 55])}")
    expect(ratio_cell([0, 0, 1], [6, 5, 7], whole_ms=True) == "> 6×", "ratio under 1 ms")
    expect(ratio_cell([], [1]) == "—", "ratio without Kafka")

    tmp = tempfile.mkdtemp(prefix="report-self-test-")
    try:
        # a complete 3-run output
        raw = os.path.join(tmp, "ok")
        _fake_run(raw, 3, [100.0, 90.0, 110.0], [50.0, 60.0, 55.0], [0, 0, 1])
        out = os.path.join(tmp, "latest.md")
        import contextlib
        import io
        with contextlib.redirect_stdout(io.StringIO()):
            md = table(raw, out)
        line = next((l for l in md.splitlines() if l.startswith("| produce throughput, 8 partitions (MiB/s, steady")), "")
        expect(line == "| produce throughput, 8 partitions (MiB/s, steady state) | 100 [90.0–110] | 55.0 [50.0–60.0] | 0.55× |",
               f"p8 row: {line}")
        line = next((l for l in md.splitlines() if l.startswith("| end-to-end p50")), "")
        expect(line == "| end-to-end p50 (ms) | < 1 [< 1–1] | 6 [5–7] | > 6× |", f"e2e summary row: {line}")
        line = next((l for l in md.splitlines() if l.startswith("|   object GETs per GiB consumed, cold")), "")
        expect("(2 of 3 runs)" in line, f"GET row without the lost run: {line}")
        each = md.split("## Each run", 1)[1]
        line = next((l for l in each.splitlines() if l.startswith("| produce throughput, 8 partitions (MiB/s, steady")), "")
        expect(line == "| produce throughput, 8 partitions (MiB/s, steady state) | 100 / 90.0 / 110 | 50.0 / 60.0 / 55.0 |",
               f"per-run row: {line!r}")
        expect("run 2: stratus then kafka" in md, "order of run 2")
        expect("30,000 records of 1 KiB per throughput test on every broker" in md, "same counts in the summary")
        expect("Stratus: local-directory object store, wal.flush.interval.ms=5." in md, "Stratus settings in the summary")
        expect("`--set` values: `wal.flush.interval.ms=5`" in md and "withheld from the broker: STRATUS_BIN" in md,
               "Stratus settings recorded")
        expect("commit abc1234567" in md and "2 CPUs" in md and "23.5 GiB" in md and "kafka-4.3.1" in md, "machine/commit")
        expect(open(out).read() == md, "latest.md written")
        expect(not [l for l in md.splitlines() if l.startswith("|") and "⚠" in l], "no load flag without load")

        # Kafka fsync: its own column and Stratus ÷ it; a run where it does not report the flush
        # setting fails
        raw5 = os.path.join(tmp, "fsync")
        _fake_run(raw5, 3, [100.0] * 3, [50.0] * 3, [1, 1, 1], fsync_p8=[25.0, 20.0, 30.0])
        with contextlib.redirect_stdout(io.StringIO()):
            md = table(raw5, out)
        line = next((l for l in md.splitlines() if l.startswith("| produce throughput, 8 partitions (MiB/s, steady")), "")
        expect(line == "| produce throughput, 8 partitions (MiB/s, steady state) | 100 [100–100] | 50.0 [50.0–50.0] | 0.50× "
                       "| 25.0 [20.0–30.0] | 2.00× |", f"fsync p8 row: {line}")
        expect("| Stratus ÷ Kafka fsync |" in md.split("## All figures", 1)[0], "fsync summary column")
        expect("- Kafka fsync: the same as Kafka with `log.flush.interval.messages=1`" in md, "fsync settings recorded")
        raw6 = os.path.join(tmp, "fsync-unset")
        _fake_run(raw6, 3, [100.0] * 3, [50.0] * 3, [1, 1, 1], fsync_p8=[25.0] * 3,
                  fsync_configs=lambda i: "" if i == 2 else "log.flush.interval.messages=1 source=STATIC_BROKER_CONFIG\n")
        raises(lambda: table(raw6, out), "fsync setting missing", "Kafka fsync (run 2) reports log.flush.interval.messages=nothing")

        # other processes' load during a run is flagged on the figures of that broker
        raw4 = os.path.join(tmp, "busy")
        _fake_run(raw4, 3, [100.0] * 3, [50.0] * 3, [1, 1, 1], busy=("kafka", 3))
        with contextlib.redirect_stdout(io.StringIO()):
            md = table(raw4, out)
        line = next((l for l in md.splitlines() if l.startswith("| produce, 8 partitions")), "")
        expect(line == "| produce, 8 partitions (MiB/s) | 100 [100–100] ⚠ | 50.0 [50.0–50.0] | 0.50× |", f"flagged row: {line}")
        expect("Kafka run 3 produce-p8 " in md, "flag note names the run")

        # a --set value the broker does not report as set fails the report
        with open(os.path.join(raw4, "run-1", "stratus", "configs.txt"), "w") as f:
            f.write("wal.flush.interval.ms= source=DEFAULT_CONFIG\n")
        with contextlib.redirect_stdout(io.StringIO()):
            raises(lambda: table(raw4, out), "setting not applied",
                   "Stratus (run 1) reports wal.flush.interval.ms")

        # a short consumer fails the report (and run.sh's check) instead of printing a figure
        raw2 = os.path.join(tmp, "short")
        _fake_run(raw2, 3, [100.0] * 3, [50.0] * 3, [1, 1, 1], short=("stratus", 2))
        with contextlib.redirect_stdout(io.StringIO()):
            raises(lambda: table(raw2, out), "short consumer", "read 29999 of 30000")
            raises(lambda: check("consume", os.path.join(raw2, "run-2", "stratus", "consume-cold.txt"), "30000"),
                   "check consume", "read 29999 of 30000")
            check("consume", os.path.join(raw2, "run-1", "stratus", "consume-cold.txt"), "30000")
            # a producer with a record not acknowledged
            p = os.path.join(raw2, "run-1", "kafka", "produce-p8.txt")
            raises(lambda: check("produce", p, "30001", "10000"), "check produce count", "of 30001 records")
            raises(lambda: check("produce", p, "30000", "5"), "check produce warm-up", "warm-up records")
            check("produce", p, "30000", "10000")
            # end offsets that are not the records written
            o = os.path.join(raw2, "run-1", "kafka", "offsets.txt")
            raises(lambda: check("offsets", o, "bench-p8=30001"), "check offsets", "bench-p8 holds 30000")
            # ConsumerPerformance that timed out
            cp = os.path.join(tmp, "cp.txt")
            with open(cp, "w") as f:
                f.write("WARNING: Exiting before consuming the expected number of messages: timeout (15000 ms) exceeded.\n")
            raises(lambda: check("consumer-perf", cp, "30000"), "consumer-perf timeout", "timed out")
            # a missing file
            os.remove(os.path.join(raw2, "run-3", "kafka", "e2e.txt"))
            raises(lambda: check("e2e", os.path.join(raw2, "run-3", "kafka", "e2e.txt")), "missing e2e", "missing")
            # a run missing a broker
            raw3 = os.path.join(tmp, "missing")
            _fake_run(raw3, 3, [100.0] * 3, [50.0] * 3, [1, 1, 1])
            shutil.rmtree(os.path.join(raw3, "run-3", "stratus"))
            raises(lambda: table(raw3, out), "missing broker run", "not in this one")
            # groups-table: spread per protocol, and a GroupBench that did not measure fails
            graw = os.path.join(tmp, "groups")
            os.makedirs(graw)
            with open(os.path.join(graw, "env.txt"), "w") as f:
                f.write("date=2030-01-02T03:04:05Z\nprotocols=classic consumer\nstratus_set=group.initial.rebalance.delay.ms=0\n"
                        "order_run_1=kafka stratus\norder_run_2=stratus kafka\norder_run_3=kafka stratus\n")
            for i, stable in enumerate((2000, 3000, 2500), 1):
                for b in ("kafka", "stratus"):
                    d = os.path.join(graw, f"run-{i}", b)
                    os.makedirs(d)
                    with open(os.path.join(d, "configs.txt"), "w") as f:
                        f.write("group.initial.rebalance.delay.ms=0 source=STATIC_BROKER_CONFIG\n")
                    for proto in ("classic", "consumer"):
                        with open(os.path.join(d, proto + ".txt"), "w") as f:
                            f.write(f"stable_ms {stable if b == 'kafka' else stable // 2}\nrebalance_ms 500\n"
                                    f"commits_per_s {800 + i}.0\ncommit_errors 0\n")
            md = groups_table(graw, out)
            line = next((l for l in md.splitlines() if l.startswith("| group stable") and "| classic |" in l), "")
            expect(line == "| group stable after the first subscribe (ms) | classic | 2,500 [2,000–3,000] | "
                           "1,250 [1,000–1,500] | 0.50× |", f"groups row: {line}")
            expect("run 2: stratus then kafka" in md, "groups order")
            with open(os.path.join(graw, "run-2", "stratus", "consumer.txt"), "w") as f:
                f.write("stable_ms 100\n")
            raises(lambda: groups_table(graw, out), "GroupBench without figures", "printed no rebalance_ms")
            # calibration needs progress lines
            raises(lambda: calibrate(os.path.join(raw3, "run-1", "kafka", "e2e.txt"), 30), "calibrate", "progress lines")
    finally:
        shutil.rmtree(tmp)
    if failures:
        print("self-test FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("self-test: 0 failed")
    return 0
