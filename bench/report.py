#!/usr/bin/env python3
"""Helpers of bench/run.sh.

    report.py calibrate WARMUP.txt SECONDS   records for a SECONDS-long test at the warm-up rate
    report.py stratus-log LOG                summary of a Stratus debug log (JSON first line)
    report.py objects-summary OBJECTS.txt DIR  GETs by phase (DIR/marks.txt) and kind
    report.py table RAW_DIR OUT.md           the comparison table (stdout and OUT.md)

Units: MiB = 2^20 B (ProducerPerformance's "MB"), GiB = 2^30 B.
"""
import json
import os
import re
import statistics
import sys

RECORD = 1024
GIB = 1 << 30
MIB = 1 << 20
CLK_TCK = os.sysconf("SC_CLK_TCK")
PHASES = ("idle", "warmup", "produce-p8", "consume-hot", "produce-p100", "produce-lat", "e2e", "consume-cold")
BUSY = 0.3  # cores used by other processes above which a test is flagged

WINDOW = re.compile(r"^(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, ([\d.]+) ms max latency\.$")
FINAL = re.compile(r"^(\d+)( steady state)? records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, ([\d.]+) ms max latency, "
                   r"(\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99\.9th\.")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


# --- calibrate -------------------------------------------------------------------------------
def calibrate(path, seconds):
    rates = [float(m.group(2)) for m in map(WINDOW.match, read(path).splitlines()) if m]
    if not rates:
        sys.exit(f"calibrate: no progress lines in {path}:\n{read(path)[-2000:]}")
    rate = statistics.median(rates[-3:])  # the first windows include JVM start and JIT warm-up
    print(max(10000, int(rate * float(seconds)) // 1000 * 1000))


# --- stratus log -----------------------------------------------------------------------------
KV = re.compile(r'(\w+)=("[^"]*"|\S+)')


def pct(vals, p):
    if not vals:
        return None
    v = sorted(vals)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def stratus_log(path):
    wal_bytes, wal_ms, wal_parts, seg_bytes = [], [], [], []
    levels = {"WARN": 0, "ERROR": 0}
    problems = {}
    with open(path, errors="replace") as f:
        for line in f:
            line = ANSI.sub("", line).rstrip("\n")
            if "wal flushed" in line:
                kv = dict(KV.findall(line))
                wal_bytes.append(int(kv.get("bytes", 0)))
                if "ms" in kv:  # not logged by every version
                    wal_ms.append(int(kv["ms"]))
                wal_parts.append(int(kv.get("partitions", 0)))
            elif "sealed segment" in line:
                kv = dict(KV.findall(line))
                seg_bytes.append(int(kv.get("bytes", 0)))
            for lvl in levels:
                if f" {lvl} " in line:
                    levels[lvl] += 1
                    # group by message text without the timestamp and variable fields
                    msg = re.sub(r"^\S+\s+", "", line)
                    key = re.sub(r"\d+", "N", msg)[:160]
                    problems.setdefault(key, [0, line])[0] += 1
    summary = {
        "wal_puts": len(wal_bytes),
        "wal_bytes_mean": statistics.mean(wal_bytes) if wal_bytes else 0,
        "wal_bytes_p50": pct(wal_bytes, 50),
        "wal_bytes_max": max(wal_bytes, default=0),
        "wal_partitions_mean": statistics.mean(wal_parts) if wal_parts else 0,
        "wal_ms_p50": pct(wal_ms, 50),
        "wal_ms_p99": pct(wal_ms, 99),
        "wal_ms_max": max(wal_ms, default=0),
        "seg_puts": len(seg_bytes),
        "seg_bytes_mean": statistics.mean(seg_bytes) if seg_bytes else 0,
        "warn": levels["WARN"],
        "error": levels["ERROR"],
    }
    print(json.dumps(summary))
    print(f"WAL PUTs {summary['wal_puts']}: mean {summary['wal_bytes_mean'] / MIB:.2f} MiB, "
          f"{summary['wal_partitions_mean']:.1f} partitions each"
          + (f"; PUT+commit ms p50 {summary['wal_ms_p50']} p99 {summary['wal_ms_p99']} max {summary['wal_ms_max']}"
             if wal_ms else ""))
    print(f"segment PUTs {summary['seg_puts']}: mean {summary['seg_bytes_mean'] / MIB:.1f} MiB")
    print(f"WARN lines {levels['WARN']}, ERROR lines {levels['ERROR']}")
    for key, (n, example) in sorted(problems.items(), key=lambda kv: -kv[1][0])[:20]:
        print(f"  {n:6d} x {example[:400]}")


# --- table -----------------------------------------------------------------------------------
def marks(d):
    out = {}
    for line in read(os.path.join(d, "marks.txt")).splitlines():
        f = line.split()
        if len(f) < 8:
            continue
        t, name, ev = float(f[0]), f[1], f[2]
        out.setdefault(name, {})[ev] = dict(t=t, ticks=int(f[3]), rss=int(f[4]), wal=int(f[5]), seg=int(f[6]), gets=int(f[7]),
                                            objs=int(f[8]) if len(f) > 8 else 0)
    return out


def samples(d):
    rows = []
    for line in read(os.path.join(d, "samples.csv")).splitlines():
        try:
            f = line.split(",")
            rows.append((float(f[0]), int(f[1]), int(f[2]), int(f[3]), int(f[4]), int(f[5]) if len(f) > 5 else None))
        except ValueError:
            pass
    return rows


def final_line(d, name):
    """ProducerPerformance's summary: the steady-state line (after --warmup-records) if there is
    one, with the whole test's record count under "records"."""
    total = steady = None
    for line in read(os.path.join(d, name)).splitlines():
        m = FINAL.match(line.strip())
        if m:
            g = m.groups()
            res = dict(records=int(g[0]), recps=float(g[2]), mibps=float(g[3]), avg=float(g[4]), max=float(g[5]),
                       p50=int(g[6]), p95=int(g[7]), p99=int(g[8]), p999=int(g[9]))
            if g[1]:
                steady = res
            else:
                total = res
    if steady and total:
        steady = dict(steady, steady_records=steady["records"], records=total["records"], total_mibps=total["mibps"])
    return steady or total


def consume_result(d, name):
    m = re.search(r"^RESULT (.*)$", read(os.path.join(d, name)), re.M)
    if not m:
        return None
    return {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def e2e_result(d):
    text = read(os.path.join(d, "e2e.txt"))
    avg = re.search(r"Avg latency: ([\d.]+) ms", text)
    pc = re.search(r"Percentiles: 50th = (\d+), 99th = (\d+), 99\.9th = (\d+)", text)
    if not (avg and pc):
        return None
    return dict(avg=float(avg.group(1)), p50=int(pc.group(1)), p99=int(pc.group(2)), p999=int(pc.group(3)),
                tail_error=next((l.strip() for l in text.splitlines() if "Exception" in l or "does not support" in l), None))


def consumer_perf(d):
    lines = [l for l in read(os.path.join(d, "consumer-perf-hot.txt")).splitlines() if l.strip()]
    for i, l in enumerate(lines):
        if l.startswith("start.time") and i + 1 < len(lines):
            head = [h.strip() for h in l.split(",")]
            vals = [v.strip() for v in lines[i + 1].split(",")]
            row = dict(zip(head, vals))
            try:
                return dict(fetch_mibps=float(row["fetch.MB.sec"]), mib=float(row["data.consumed.in.MB"]))
            except (KeyError, ValueError):
                return None
    return None


def offsets(d):
    total = {}
    for line in read(os.path.join(d, "offsets.txt")).splitlines():
        m = re.match(r"^(.+):(\d+):(\d+)$", line.strip())
        if m and not m.group(1).startswith("__"):
            total[m.group(1)] = total.get(m.group(1), 0) + int(m.group(3))
    return total


def evict(d):
    m = re.search(r"EVICT files=(\d+) bytes=(\d+) allocated=(\d+) resident_before=(\d+) resident_after=(\d+) drop_caches=(\w+)",
                  read(os.path.join(d, "evict.txt")))
    return dict(zip(["files", "bytes", "alloc", "before", "after", "drop"], [int(x) for x in m.groups()[:5]] + [m.group(6)])) if m else None


def broker_metrics(d):
    mk, sm = marks(d), samples(d)
    r = {"records": int(read(os.path.join(d, "records.txt")).strip() or 0)}

    def span(phase):
        p = mk.get(phase, {})
        return (p["begin"], p["end"]) if "begin" in p and "end" in p else (None, None)

    # RSS
    b, e = span("idle")
    if b:
        idle = [s[1] for s in sm if b["t"] <= s[0] <= e["t"]] + [b["rss"], e["rss"]]
        r["rss_idle"] = statistics.median(idle) / 1024

    # other users' load per phase: machine busy minus the broker and the benchmark's own processes
    r["foreign"] = {}
    for phase in mk:
        if phase == "restart":  # the broker and its sampler were restarted inside this span
            continue
        b, e = span(phase)
        win = [s for s in sm if b and b["t"] - 0.5 <= s[0] <= e["t"] + 0.5 and s[5] is not None]
        if len(win) >= 2:
            dbusy, dtot, dours = win[-1][3] - win[0][3], win[-1][4] - win[0][4], win[-1][5] - win[0][5]
            if dtot > 0:
                r["foreign"][phase] = max(0.0, (dbusy - dours) / dtot * (os.cpu_count() or 1))
    r["bg_cores"] = r["foreign"].get("idle")
    load_rss = []
    for phase in ("warmup", "produce-p8", "produce-p100", "produce-lat"):
        b, e = span(phase)
        if b:
            load_rss += [s[1] for s in sm if b["t"] <= s[0] <= e["t"]] + [b["rss"], e["rss"]]
    if load_rss:
        r["rss_load_max"] = max(load_rss) / 1024
    if sm:
        r["rss_max_all"] = max(s[1] for s in sm) / 1024

    # produce
    for phase, fname in (("produce-p8", "produce-p8.txt"), ("produce-p100", "produce-p100.txt"), ("produce-lat", "produce-lat.txt")):
        res = final_line(d, fname)
        r[phase] = res
        b, e = span(phase)
        if res and b:
            gib = res["records"] * RECORD / GIB
            cpu_s = (e["ticks"] - b["ticks"]) / CLK_TCK
            secs = e["t"] - b["t"]
            r[phase + ":cpu_per_gib"] = cpu_s / gib
            r[phase + ":cores"] = cpu_s / secs if secs > 0 else None
            r[phase + ":wal_per_gib"] = (e["wal"] - b["wal"]) / gib
            r[phase + ":seg_per_gib"] = (e["seg"] - b["seg"]) / gib
            r[phase + ":gets_per_gib"] = (e["gets"] - b["gets"]) / gib

    r["e2e"] = e2e_result(d)
    for phase in ("consume-hot", "consume-cold"):
        res = consume_result(d, phase + ".txt")
        r[phase] = res
        b, e = span(phase)
        if res and b and res["bytes"] > 0:
            r[phase + ":gets_per_gib"] = (e["gets"] - b["gets"]) / (res["bytes"] / GIB)
            r[phase + ":cpu_per_gib"] = (e["ticks"] - b["ticks"]) / CLK_TCK / (res["bytes"] / GIB)
    r["sealed_during"] = {p: mk[p]["end"]["seg"] - mk[p]["begin"]["seg"] for p in mk
                          if "begin" in mk[p] and "end" in mk[p] and mk[p]["end"]["seg"] > mk[p]["begin"]["seg"]}
    r["consumer-perf"] = consumer_perf(d)
    r["evict"] = evict(d)

    # whole-run object requests per GiB produced (all topics, end offsets at the end)
    offs = offsets(d)
    r["offsets"] = offs
    produced = sum(offs.values()) * RECORD / GIB
    r["produced_gib"] = produced
    first = mk.get("idle", {}).get("begin")
    last = mk.get("consume-cold", {}).get("end")
    r["objects_text"] = read(os.path.join(d, "objects-summary.txt")).strip()
    summary_text = read(os.path.join(d, "stratus-log-summary.txt"))
    if summary_text:
        r["log"] = json.loads(summary_text.splitlines()[0])
        r["log_text"] = "\n".join(summary_text.splitlines()[1:])
    if first and last and produced > 0:
        # PUTs: every WAL and segment PUT in the broker's life (the log), per GiB produced
        r["new_objects"] = max((v["objs"] for p in mk.values() for v in p.values()), default=0)
        if "log" in r:
            r["puts_per_gib"] = (r["log"]["wal_puts"] + r["log"]["seg_puts"]) / produced
            r["wal_puts_per_gib"] = r["log"]["wal_puts"] / produced
            r["seg_puts_per_gib"] = r["log"]["seg_puts"] / produced
        r["gets_per_gib"] = max((v["gets"] for p in mk.values() for v in p.values()), default=0) / produced
        gets = sum(mk[p]["end"]["gets"] - mk[p]["begin"]["gets"]
                   for p in ("warmup", "produce-p8", "produce-p100", "produce-lat", "e2e")
                   if "begin" in mk.get(p, {}) and "end" in mk.get(p, {}))
        r["gets_produce_per_gib"] = gets / produced
    blog = read(os.path.join(d, "broker.log"))
    r["broker_warn"] = sum(1 for l in blog.splitlines() if " WARN " in l)
    r["broker_error"] = sum(1 for l in blog.splitlines() if " ERROR " in l)
    return r


def fmt(v, digits=1):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}" if digits else f"{v:.0f}"
    return f"{v:.{max(digits, 1) + (1 if abs(v) < 1 else 0)}f}"


def ratio(k, s, whole_ms=False):
    if isinstance(k, (int, float)) and isinstance(s, (int, float)):
        if k == 0:
            # EndToEndLatency prints whole milliseconds: 0 means under 1 ms
            return f"> {s:.0f}×" if whole_ms and s >= 1 else "—"
        return f"{s / k:.2f}×"
    return "—"


def g(d, *path):
    for p in path:
        if d is None:
            return None
        d = d.get(p) if isinstance(d, dict) else None
    return d


def table(raw, out_md):
    env = dict(l.split("=", 1) for l in read(os.path.join(raw, "env.txt")).splitlines() if "=" in l)
    K = broker_metrics(os.path.join(raw, "kafka")) if os.path.isdir(os.path.join(raw, "kafka")) else {}
    S = broker_metrics(os.path.join(raw, "stratus")) if os.path.isdir(os.path.join(raw, "stratus")) else {}

    rows = []  # (metric, kafka, stratus, phase)

    def row(name, path, only_stratus=False):
        k = None if only_stratus else g(K, *path)
        phase = path[0].split(":")[0] if path[0].split(":")[0] in PHASES else None
        rows.append((name, k, g(S, *path), phase))

    row("produce throughput, 8 partitions (MiB/s, steady state)", ["produce-p8", "mibps"])
    row("produce throughput, 100 partitions (MiB/s, steady state)", ["produce-p100", "mibps"])
    row("  produce throughput, 8 partitions, whole test incl. client warm-up (MiB/s)", ["produce-p8", "total_mibps"])
    row("  produce latency at max throughput, 8 p, p50 (ms)", ["produce-p8", "p50"])
    row("  produce latency at max throughput, 8 p, p99 (ms)", ["produce-p8", "p99"])
    row("produce at 50 MiB/s: achieved, steady state (MiB/s)", ["produce-lat", "mibps"])
    row("produce latency at 50 MiB/s, p50 (ms)", ["produce-lat", "p50"])
    row("produce latency at 50 MiB/s, p99 (ms)", ["produce-lat", "p99"])
    row("produce latency at 50 MiB/s, p99.9 (ms)", ["produce-lat", "p999"])
    row("end-to-end latency, p50 (ms)", ["e2e", "p50"])
    row("end-to-end latency, p99 (ms)", ["e2e", "p99"])
    row("end-to-end latency, avg (ms)", ["e2e", "avg"])
    row("consume hot, 8 partitions (MiB/s)", ["consume-hot", "MBps"])
    row("consume cold, 8 partitions (MiB/s)", ["consume-cold", "MBps"])
    row("  consume hot, last two thirds of the records (MiB/s)", ["consume-hot", "steady_MBps"])
    row("  consume cold, last two thirds of the records (MiB/s)", ["consume-cold", "steady_MBps"])
    rows.append(("  consume hot, Kafka ConsumerPerformance fetch.MB.sec (cross-check)",
                 g(K, "consumer-perf", "fetch_mibps"), None, None))
    row("broker RSS idle (MiB)", ["rss_idle"])
    row("broker RSS max during produce tests (MiB)", ["rss_load_max"])
    row("broker CPU s per GiB produced, 8 partitions", ["produce-p8:cpu_per_gib"])
    row("broker CPU s per GiB produced, 100 partitions", ["produce-p100:cpu_per_gib"])
    row("broker CPU s per GiB produced, 50 MiB/s", ["produce-lat:cpu_per_gib"])
    row("  broker CPU cores busy during produce, 8 partitions", ["produce-p8:cores"])
    row("broker CPU s per GiB consumed, hot", ["consume-hot:cpu_per_gib"])
    row("broker CPU s per GiB consumed, cold", ["consume-cold:cpu_per_gib"])
    row("object PUTs per GiB written (WAL + segment, whole run)", ["puts_per_gib"], True)
    row("  WAL PUTs per GiB, during produce 8 partitions", ["produce-p8:wal_per_gib"], True)
    row("  WAL PUTs per GiB, during produce 100 partitions", ["produce-p100:wal_per_gib"], True)
    row("  WAL PUTs per GiB, during produce at 50 MiB/s", ["produce-lat:wal_per_gib"], True)
    row("  segment PUTs per GiB (whole run)", ["seg_puts_per_gib"], True)
    row("object GETs per GiB written (whole run: sealing and the two reads)", ["gets_per_gib"], True)
    row("  object GETs per GiB written, during the produce tests (sealing)", ["gets_produce_per_gib"], True)
    row("  object GETs per GiB consumed, hot (sealing ran at the same time, see notes)", ["consume-hot:gets_per_gib"], True)
    row("  object GETs per GiB consumed, cold", ["consume-cold:gets_per_gib"], True)

    lines = ["| metric | Kafka | Stratus | Stratus ÷ Kafka |", "|---|---:|---:|---:|"]
    flagged = False
    for name, k, s, phase in rows:
        whole_ms = name.startswith("end-to-end latency, p")

        def show(v, M):
            nonlocal flagged
            text = "< 1" if whole_ms and v == 0 else fmt(v)
            if v is not None and phase and (M.get("foreign") or {}).get(phase, 0) > BUSY:
                flagged = True
                text += " ⚠"
            return text
        lines.append(f"| {name} | {show(k, K)} | {show(s, S)} | {ratio(k, s, whole_ms)} |")
    if flagged:
        lines.append("")
        lines.append(f"⚠: other processes on the machine used more than {BUSY} cores on average during that test "
                     "(the machine is shared; see the notes), so the number is less trustworthy.")
    table_md = "\n".join(lines)

    notes = []
    for label, M in (("Kafka", K), ("Stratus", S)):
        if not M:
            continue
        ev = M.get("evict") or {}
        cold_res = ev.get("before", 0) / ev["alloc"] * 100 if ev.get("alloc") else None
        hot, cold = M.get("consume-hot") or {}, M.get("consume-cold") or {}
        e2e = M.get("e2e") or {}
        notes.append(
            f"- {label}: {M.get('records', 0):,} records per throughput test; {M.get('produced_gib', 0):.2f} GiB produced in all; "
            f"consumed hot {hot.get('records', 0):,.0f} / cold {cold.get('records', 0):,.0f} records "
            f"(first record after {hot.get('first_record_ms', 0):.0f} / {cold.get('first_record_ms', 0):.0f} ms); "
            f"before the cold read {fmt(cold_res)}% of its {ev.get('alloc', 0) / GIB:.2f} GiB of data files (allocated) were in the page cache, "
            f"after eviction {ev.get('after', 0) / MIB:.0f} MiB (drop_caches: {ev.get('drop', '?')}); "
            f"CPU used by other processes on the machine (cores, mean per phase): "
            + ", ".join(f"{p} {v:.2f}{' ⚠' if v > BUSY else ''}" for p, v in M.get("foreign", {}).items()) + "; "
            f"max RSS over the whole run {fmt(M.get('rss_max_all'))} MiB; broker log: {M.get('broker_warn', 0)} WARN, "
            f"{M.get('broker_error', 0)} ERROR lines (last 2000 lines kept, per-PUT lines excluded)."
            + (f" EndToEndLatency ended with: `{e2e['tail_error']}`." if e2e.get("tail_error") else "")
            + (f" ⚠ The 50 MiB/s test ran at {lat['mibps']:.1f} MiB/s in its measured part: "
               + ("the broker (or the shared machine) could not sustain the rate, so its latencies are queueing delays."
                  if lat["mibps"] < 50 else
                  "the client fell behind during its warm-up and caught up later (ProducerPerformance's throttle is "
                  "cumulative), so its latencies include that backlog.")
               if (lat := M.get("produce-lat")) and abs(lat["mibps"] - 50) > 5 else ""))
    if S.get("sealed_during"):
        notes.append("- Stratus sealed segments during these tests (sealing re-reads the partition's data from the "
                     "WAL objects and writes a segment, competing with the test for CPU, disk and GETs): "
                     + ", ".join(f"{p} {n}" for p, n in S["sealed_during"].items()) + ".")
    if S.get("objects_text"):
        notes.append("- Stratus object GETs by phase and kind: " + S["objects_text"].replace("\n", "; "))
    if S.get("log_text"):
        lg = S.get("log", {})
        notes.append("- Stratus log: " + S["log_text"].replace("\n", "\n  ")
                     + f"\n  objects created in the store (inotify cross-check of the PUT count): {S.get('new_objects', 0):,}"
                     + f" vs {lg.get('wal_puts', 0) + lg.get('seg_puts', 0):,} PUTs logged")

    md = f"""# Stratus vs Apache Kafka

{table_md}

Run: `{env.get('command', '?')}` on {env.get('date', '?')}, repo at git {env.get('git', '?')}, {env.get('stratus_bin', '?')}, {env.get('kafka', '?')}, {env.get('java', '?')},
{env.get('cpus', '?')} CPUs, {env.get('mem_gib', '?')} GiB; {env.get('scale', '')}; load average {env.get('loadavg_start', '?')} at start, {env.get('loadavg_end', '?')} at end.

How: both brokers on this machine one after the other, on 127.0.0.1, fresh temporary data dirs. Kafka: scripts/run-kafka.sh
(single-node KRaft, its default broker configs; heap -Xmx1g -Xms256m; no fsync per write, as Kafka's default). Stratus: release
build, defaults (local-directory object store under its data dir: every WAL object is fsynced before the ack). Clients: Kafka's
ProducerPerformance (1 KiB records, acks=all, default batch.size/linger.ms, idempotent producer by default) and EndToEndLatency
(acks=all, 1 KiB, one partition); consume throughput with bench/AssignConsumerPerf.java (the Java consumer with assign(), settings
of ConsumerPerformance, which itself needs a group coordinator that Stratus lacks; its Kafka number is shown as a cross-check).
Produce tests are sized from a warm-up run's rate to last about the same time on each broker, so the volumes differ. Cold reads: the
page cache of the broker's data files is evicted (posix_fadvise DONTNEED, verified with mincore) and Stratus is also restarted,
emptying its memory and disk caches. Object PUTs are Stratus' "wal flushed"/"sealed segment" debug log lines; GETs are the object files
it opens read-only (inotify on its object directory; one open per ranged GET). MiB = 2^20 B, GiB = 2^30 B. Lower is better for latency, RSS, CPU and request counts.

Notes:
{chr(10).join(notes)}
"""
    print(md)
    with open(out_md, "w") as f:
        f.write(md)


def objects_summary(objects_txt, marks_dir):
    """GETs (objwatch.py lines) by phase of marks.txt and by kind (WAL object or segment)."""
    spans = [(b["t"], e["t"], p) for p, ev in marks(marks_dir).items()
             if (b := ev.get("begin")) and (e := ev.get("end"))]
    counts = {}
    for line in read(objects_txt).splitlines():
        f = line.split(" ", 2)
        if len(f) < 3 or f[0] != "G":
            continue
        t = float(f[1])
        phase = next((p for b, e, p in spans if b <= t <= e), "between tests")
        kind = "wal" if f[2].startswith("wal/") else "segment"
        counts.setdefault(phase, {}).setdefault(kind, 0)
        counts[phase][kind] += 1
    for phase, c in counts.items():
        print(f"{phase}: " + ", ".join(f"{n} {k}" for k, n in sorted(c.items())))


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "calibrate":
        calibrate(sys.argv[2], sys.argv[3])
    elif cmd == "stratus-log":
        stratus_log(sys.argv[2])
    elif cmd == "objects-summary":
        objects_summary(sys.argv[2], sys.argv[3])
    elif cmd == "table":
        table(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
