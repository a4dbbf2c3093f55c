#!/usr/bin/env python3
"""Strict parsers of the perf tools' outputs (a missing line or a wrong count is a
BenchError, never a partial figure) and the spread arithmetic, "median [min–max]" and the
ratio of medians, shared by bench/report.py, bench/groups.sh and bench/cluster.py."""
import os
import re
import statistics


RECORD = 1024
GIB = 1 << 30
MIB = 1 << 20
CLK_TCK = os.sysconf("SC_CLK_TCK")
PHASES = ("idle", "warmup", "produce-p8", "consume-hot", "consumer-perf", "produce-p100", "produce-lat", "e2e",
          "consume-cold")
MEASURED = ("warmup", "produce-p8", "consume-hot", "produce-p100", "produce-lat", "e2e", "consume-cold")
BUSY = 0.3  # cores used by other processes above which a test is flagged
BROKERS = ("kafka", "stratus", "kafka-fsync")
LABEL = {"kafka": "Kafka", "stratus": "Stratus", "kafka-fsync": "Kafka fsync"}
# What makes kafka-fsync: Kafka flushing every message to disk before the ack, the durability
# Stratus gives (every acknowledged batch is in a fsynced WAL object). Its DescribeConfigs
# must report it, or the run fails.
FSYNC_SETTINGS = {"log.flush.interval.messages": "1"}

WINDOW = re.compile(r"^(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, ([\d.]+) ms max latency\.$")
FINAL = re.compile(r"^(\d+)( steady state)? records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, ([\d.]+) ms max latency, "
                   r"(\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99\.9th\.")
WARMUP_LINE = re.compile(r"^Warmup first (\d+) records\.")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class BenchError(Exception):
    """A measurement that cannot be trusted: the run (or the report) fails with this message."""


def read(path, required=True):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        if required:
            raise BenchError(f"missing {path}") from None
        return None


def tail(text, n=15):
    return "\n".join((text or "").splitlines()[-n:])


# --- spread over repeated runs ------------------------------------------------------------------
def spread(vals):
    """(median, min, max) of the numbers in vals (None entries are an error: see cell())."""
    if not vals:
        raise ValueError("spread of no values")
    return statistics.median(vals), min(vals), max(vals)


def fmt(v, whole_ms=False, places=None):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if whole_ms and v == 0:
        return "< 1"  # EndToEndLatency and ProducerPerformance print whole milliseconds
    if whole_ms and float(v).is_integer():
        return f"{int(v):,}"
    if places is not None:
        return f"{v:,.{places}f}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.{2 if abs(v) < 1 else 1}f}" if v != 0 else "0"


def cell(vals, whole_ms=False, places=None):
    """"median [min–max]" of the runs' values; one value alone; "—" for none."""
    vals = [v for v in vals if v is not None]
    if not vals:
        return "—"
    med, lo, hi = spread(vals)
    if len(vals) == 1:
        return fmt(med, whole_ms, places)
    return f"{fmt(med, whole_ms, places)} [{fmt(lo, whole_ms, places)}–{fmt(hi, whole_ms, places)}]"


def ratio_cell(kvals, svals, whole_ms=False):
    """Stratus median ÷ Kafka median."""
    kvals = [v for v in kvals if v is not None]
    svals = [v for v in svals if v is not None]
    if not kvals or not svals:
        return "—"
    k, s = statistics.median(kvals), statistics.median(svals)
    if k == 0:
        # whole milliseconds: 0 means under 1 ms, so the ratio is above s / 1
        return f"> {s:.0f}×" if whole_ms and s >= 1 else "—"
    return f"{s / k:.2f}×"


# --- calibrate -----------------------------------------------------------------------------------
def calibrate(path, seconds, explain=False):
    text = read(path)
    rates = [float(m.group(2)) for m in map(WINDOW.match, text.splitlines()) if m]
    if len(rates) < 3:
        raise BenchError(f"calibrate: {len(rates)} progress lines in {path}, need at least 3:\n{tail(text)}")
    rate = statistics.median(rates[-3:])  # the first windows include JVM start and JIT warm-up
    records = max(10000, int(rate * float(seconds)) // 1000 * 1000)
    if explain:
        print(f"median of its last 3 one-second rates {rate:,.0f} records/s × {seconds} s = {records} records")
    else:
        print(records)


# --- tool outputs (strict) -----------------------------------------------------------------------
def produce_result(path, records=None, warmup=None):
    """ProducerPerformance's summary: the steady-state line (after --warmup-records) with the
    whole test's record count under "records". Every record sent must have been acknowledged
    (ProducerPerformance counts only successful sends)."""
    text = read(path)
    total = steady = None
    warm = 0
    for line in text.splitlines():
        line = line.strip()
        if (w := WARMUP_LINE.match(line)):
            warm = int(w.group(1))
        m = FINAL.match(line)
        if m:
            g = m.groups()
            res = dict(records=int(g[0]), recps=float(g[2]), mibps=float(g[3]), avg=float(g[4]), max=float(g[5]),
                       p50=int(g[6]), p95=int(g[7]), p99=int(g[8]), p999=int(g[9]))
            if g[1]:
                steady = res
            else:
                total = res
    if total is None:
        raise BenchError(f"{path}: no summary line from ProducerPerformance:\n{tail(text)}")
    if warmup is not None and warm != int(warmup):
        raise BenchError(f"{path}: {warm} warm-up records, expected {warmup}")
    if records is not None and total["records"] != int(records):
        raise BenchError(f"{path}: {total['records']} of {records} records acknowledged:\n{tail(text)}")
    if warm:
        if steady is None:
            raise BenchError(f"{path}: no steady-state line after {warm} warm-up records:\n{tail(text)}")
        if steady["records"] != total["records"] - warm:
            raise BenchError(f"{path}: {steady['records']} steady-state records, expected {total['records'] - warm}")
        return dict(steady, steady_records=steady["records"], records=total["records"], total_mibps=total["mibps"])
    return dict(total, total_mibps=total["mibps"])


def consume_result(path, records=None):
    text = read(path)
    m = re.search(r"^RESULT (.*)$", text, re.M)
    if not m:
        raise BenchError(f"{path}: no RESULT line from AssignConsumerPerf:\n{tail(text)}")
    res = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    if records is not None:
        if res["records"] != int(records):
            raise BenchError(f"{path}: the consumer read {res['records']:.0f} of {records} records:\n{tail(text)}")
        if "end_offsets" in res and res["end_offsets"] != int(records):
            raise BenchError(f"{path}: the topic holds {res['end_offsets']:.0f} records, {records} were written")
    if res["bytes"] <= 0 or res["seconds"] <= 0:
        raise BenchError(f"{path}: nothing measured: {m.group(0)}")
    return res


def consumer_perf_result(path, records=None):
    text = read(path)
    if "WARNING: Exiting before consuming" in text:
        raise BenchError(f"{path}: ConsumerPerformance timed out before reading every record:\n{tail(text)}")
    lines = [l for l in text.splitlines() if l.strip()]
    for i, l in enumerate(lines):
        if l.startswith("start.time") and i + 1 < len(lines):
            row = dict(zip([h.strip() for h in l.split(",")], [v.strip() for v in lines[i + 1].split(",")]))
            try:
                res = dict(fetch_mibps=float(row["fetch.MB.sec"]), mib=float(row["data.consumed.in.MB"]),
                           records=int(row["data.consumed.in.nMsg"]), mibps=float(row["MB.sec"]),
                           rebalance_ms=int(row["rebalance.time.ms"]))
            except (KeyError, ValueError) as e:
                raise BenchError(f"{path}: unexpected ConsumerPerformance output ({e}):\n{tail(text)}") from None
            if records is not None and res["records"] != int(records):
                raise BenchError(f"{path}: ConsumerPerformance read {res['records']} of {records} records")
            return res
    raise BenchError(f"{path}: no result from ConsumerPerformance:\n{tail(text)}")


def e2e_result(path):
    text = read(path)
    avg = re.search(r"Avg latency: ([\d.]+) ms", text)
    pc = re.search(r"Percentiles: 50th = ([\d.]+), 99th = ([\d.]+), 99\.9th = ([\d.]+)", text)
    if not (avg and pc):
        raise BenchError(f"{path}: no results from EndToEndLatency:\n{tail(text)}")
    return dict(avg=float(avg.group(1)), p50=float(pc.group(1)), p99=float(pc.group(2)), p999=float(pc.group(3)))


def evict_result(path):
    text = read(path)
    m = re.search(r"EVICT files=(\d+) bytes=(\d+) allocated=(\d+) resident_before=(\d+) resident_after=(\d+) "
                  r"drop_caches=(\w+)(?: vanished=(\d+))?", text)
    if not m:
        raise BenchError(f"{path}: no EVICT line from evict.py:\n{tail(text)}")
    g = m.groups()
    return dict(files=int(g[0]), bytes=int(g[1]), alloc=int(g[2]), before=int(g[3]), after=int(g[4]), drop=g[5],
                vanished=int(g[6] or 0))


def offsets(path, expect=None):
    """End offsets per topic (internal topics left out) from GetOffsetShell's TOPIC:PARTITION:OFFSET."""
    text = read(path)
    total = {}
    for line in text.splitlines():
        m = re.match(r"^(.+):(\d+):(\d+)$", line.strip())
        if m and not m.group(1).startswith("__"):
            total[m.group(1)] = total.get(m.group(1), 0) + int(m.group(3))
    for topic, n in (expect or {}).items():
        if total.get(topic) != n:
            raise BenchError(f"{path}: topic {topic} holds {total.get(topic, 'no')} records, {n} were written")
    return total


def check(kind, path, *args):
    if kind == "produce":
        r = produce_result(path, int(args[0]), int(args[1]))
        print(f"  ok: {r['records']:,} records acknowledged, steady state {r['mibps']:.1f} MiB/s, p99 {r['p99']} ms")
    elif kind == "consume":
        r = consume_result(path, int(args[0]))
        print(f"  ok: {r['records']:,.0f} records read, {r['MBps']:.1f} MiB/s")
    elif kind == "consumer-perf":
        r = consumer_perf_result(path, int(args[0]))
        print(f"  ok: {r['records']:,} records read, fetch {r['fetch_mibps']:.1f} MiB/s")
    elif kind == "e2e":
        r = e2e_result(path)
        print(f"  ok: p50 {r['p50']:g} ms, p99 {r['p99']:g} ms")
    elif kind == "evict":
        r = evict_result(path)
        print(f"  ok: {r['files']} files, {r['after'] / MIB:.0f} MiB still resident")
    elif kind == "offsets":
        expect = {k: int(v) for k, v in (a.split("=", 1) for a in args)}
        offsets(path, expect)
        print("  ok: " + ", ".join(f"{k} {v:,}" for k, v in expect.items()))
    else:
        raise BenchError(f"check: unknown kind {kind}")


# --- broker log ----------------------------------------------------------------------------------
