#!/usr/bin/env python3
"""Helpers of bench/run.sh, and the spread arithmetic of every bench/ script.

    report.py calibrate [--explain] WARMUP.txt SECONDS
                                     records for a SECONDS-long test at the warm-up's rate
    report.py check produce FILE RECORDS WARMUP_RECORDS   ProducerPerformance had every record
                                     acknowledged, and printed its steady-state line
    report.py check consume FILE RECORDS      AssignConsumerPerf read exactly RECORDS records
                                     from a topic holding exactly RECORDS records
    report.py check consumer-perf FILE RECORDS  ConsumerPerformance read exactly RECORDS records
    report.py check e2e FILE                  EndToEndLatency printed its results
    report.py check evict FILE                bench/evict.py printed its result line
    report.py check offsets FILE TOPIC=N...   GetOffsetShell: each TOPIC holds exactly N records
    report.py broker-log LOG                  summary of a broker log (JSON first line)
    report.py objects-summary OBJECTS.txt DIR GETs by phase (DIR/marks.txt) and kind
    report.py table RAW_DIR OUT.md            the comparison (stdout and OUT.md)
    report.py groups-table RAW_DIR OUT.md     bench/groups.sh's comparison
    report.py --self-test                     checks this file's parsing and arithmetic on
                                              synthetic run outputs (no broker needed)

Every parser here is strict: a missing file, a missing line, or a count that is not what was
written is an error (exit status 1, with what was expected and what was found), never a
figure printed from a partial measurement or a "—".

Figures over repeated runs are shown as "median [min–max]" per broker, and the ratio is the
Stratus median ÷ the Kafka median (spread(), cell(), ratio_cell(); bench/groups.sh and
bench/cluster.py use them too).

Units: MiB = 2^20 B (ProducerPerformance's "MB"), GiB = 2^30 B.
"""
import json
import os
import re
import statistics
import sys


from report_parse import (RECORD, GIB, MIB, CLK_TCK, PHASES, BUSY, BROKERS, LABEL, FSYNC_SETTINGS, ANSI,
    BenchError, read, tail, fmt, cell, ratio_cell, calibrate, produce_result,
    consume_result, consumer_perf_result, e2e_result, evict_result, offsets, check)


KV = re.compile(r'(\w+)=("[^"]*"|\S+)')


def pct(vals, p):
    if not vals:
        return None
    v = sorted(vals)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def broker_log(path):
    """Counts over the whole log: WAL and segment PUTs (Stratus' debug lines) and WARN/ERROR lines."""
    wal_bytes, wal_ms, wal_parts, seg_bytes = [], [], [], []
    levels = {"WARN": 0, "ERROR": 0}
    problems = {}
    if not os.path.exists(path):
        raise BenchError(f"missing broker log {path}")
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
    if wal_bytes or seg_bytes:
        print(f"WAL PUTs {summary['wal_puts']}: mean {summary['wal_bytes_mean'] / MIB:.2f} MiB, "
              f"{summary['wal_partitions_mean']:.1f} partitions each"
              + (f"; PUT+commit ms p50 {summary['wal_ms_p50']} p99 {summary['wal_ms_p99']} max {summary['wal_ms_max']}"
                 if wal_ms else ""))
        print(f"segment PUTs {summary['seg_puts']}: mean {summary['seg_bytes_mean'] / MIB:.1f} MiB")
    print(f"WARN lines {levels['WARN']}, ERROR lines {levels['ERROR']}")
    for key, (n, example) in sorted(problems.items(), key=lambda kv: -kv[1][0])[:20]:
        print(f"  {n:6d} x {example[:400]}")


# --- one broker in one run -----------------------------------------------------------------------
def marks(d):
    out = {}
    path = os.path.join(d, "marks.txt")
    for line in read(path).splitlines():
        f = line.split()
        if len(f) != 9:
            raise BenchError(f"{path}: malformed line {line!r}")
        t, name, ev = float(f[0]), f[1], f[2]
        out.setdefault(name, {})[ev] = dict(t=t, ticks=int(f[3]), rss=int(f[4]), wal=int(f[5]), seg=int(f[6]),
                                            gets=int(f[7]), objs=int(f[8]))
    return out


def samples(d):
    path = os.path.join(d, "samples.csv")
    lines = read(path).splitlines()
    rows = []
    for i, line in enumerate(lines):
        try:
            f = line.split(",")
            rows.append((float(f[0]), int(f[1]), int(f[2]), int(f[3]), int(f[4]), int(f[5])))
        except (ValueError, IndexError):
            if i == len(lines) - 1:  # the sampler was stopped while writing its last line
                continue
            raise BenchError(f"{path}: malformed line {i + 1}: {line!r}") from None
    if not rows:
        raise BenchError(f"{path}: no samples")
    return rows


def broker_configs(d):
    """{name: (value, source)} from BrokerConfigs.java."""
    path = os.path.join(d, "configs.txt")
    out = {}
    for line in read(path).splitlines():
        m = re.match(r"^([\w.\-]+)=(.*) source=(\w+)$", line)
        if m:
            out[m.group(1)] = (m.group(2), m.group(3))
    if not out:
        raise BenchError(f"{path}: no settings from BrokerConfigs:\n{tail(read(path))}")
    return out


def broker_metrics(d, expect, consumer_perf):
    """Every figure of one broker in one run. expect: records per topic and test."""
    mk, sm = marks(d), samples(d)
    records = expect["records"]
    r = {"dir": d}

    def span(phase):
        p = mk.get(phase, {})
        if "begin" not in p or "end" not in p:
            raise BenchError(f"{d}/marks.txt: no begin and end of {phase}")
        return p["begin"], p["end"]

    # RSS
    b, e = span("idle")
    idle = [s[1] for s in sm if b["t"] <= s[0] <= e["t"]] + [b["rss"], e["rss"]]
    r["rss_idle"] = statistics.median(idle) / 1024

    # other users' load per phase: machine busy minus the broker and the benchmark's own processes
    r["foreign"] = {}
    for phase in mk:
        if phase == "restart":  # the broker and its sampler were restarted inside this span
            continue
        b, e = span(phase)
        win = [s for s in sm if b["t"] - 0.5 <= s[0] <= e["t"] + 0.5]
        if len(win) >= 2:
            dbusy, dtot, dours = win[-1][3] - win[0][3], win[-1][4] - win[0][4], win[-1][5] - win[0][5]
            if dtot > 0:
                r["foreign"][phase] = max(0.0, (dbusy - dours) / dtot * (os.cpu_count() or 1))
    load_rss = []
    for phase in ("warmup", "produce-p8", "produce-p100", "produce-lat"):
        b, e = span(phase)
        load_rss += [s[1] for s in sm if b["t"] <= s[0] <= e["t"]] + [b["rss"], e["rss"]]
    r["rss_load_max"] = max(load_rss) / 1024
    r["rss_max_all"] = max(s[1] for s in sm) / 1024

    # produce
    for phase, n, warm in (("produce-p8", records, records // 3), ("produce-p100", records, records // 3),
                           ("produce-lat", expect["lat_records"], expect["lat_warmup_records"])):
        res = produce_result(os.path.join(d, phase + ".txt"), n, warm)
        r[phase] = res
        b, e = span(phase)
        gib = res["records"] * RECORD / GIB
        cpu_s = (e["ticks"] - b["ticks"]) / CLK_TCK
        secs = e["t"] - b["t"]
        r[phase + ":cpu_per_gib"] = cpu_s / gib
        r[phase + ":cores"] = cpu_s / secs if secs > 0 else None
        r[phase + ":wal_per_gib"] = (e["wal"] - b["wal"]) / gib
        r[phase + ":seg_per_gib"] = (e["seg"] - b["seg"]) / gib
        r[phase + ":gets_per_gib"] = (e["gets"] - b["gets"]) / gib

    r["e2e"] = e2e_result(os.path.join(d, "e2e.txt"))
    for phase in ("consume-hot", "consume-cold"):
        res = consume_result(os.path.join(d, phase + ".txt"), records)
        r[phase] = res
        b, e = span(phase)
        r[phase + ":gets_per_gib"] = (e["gets"] - b["gets"]) / (res["bytes"] / GIB)
        r[phase + ":cpu_per_gib"] = (e["ticks"] - b["ticks"]) / CLK_TCK / (res["bytes"] / GIB)
    r["sealed_during"] = {p: mk[p]["end"]["seg"] - mk[p]["begin"]["seg"] for p in mk
                          if "begin" in mk[p] and "end" in mk[p] and mk[p]["end"]["seg"] > mk[p]["begin"]["seg"]}
    cp = os.path.join(d, "consumer-perf-hot.txt")
    r["consumer-perf"] = consumer_perf_result(cp, records) if consumer_perf else None
    r["evict"] = evict_result(os.path.join(d, "evict.txt"))
    r["configs"] = broker_configs(d)

    # whole-run object requests per GiB produced (all topics, end offsets at the end)
    offs = offsets(os.path.join(d, "offsets.txt"), {"bench-p8": records, "bench-p100": records,
                                                   "bench-lat": expect["lat_records"], "bench-e2e": expect["e2e_records"]})
    r["offsets"] = offs
    produced = sum(offs.values()) * RECORD / GIB
    r["produced_gib"] = produced
    summary_text = read(os.path.join(d, "log-summary.txt"))
    r["log"] = json.loads(summary_text.splitlines()[0])
    r["log_text"] = "\n".join(summary_text.splitlines()[1:])
    r["broker_warn"], r["broker_error"] = r["log"]["warn"], r["log"]["error"]
    if os.path.exists(os.path.join(d, "command.txt")):  # Stratus
        r["command"] = read(os.path.join(d, "command.txt"))
        r["objects_text"] = read(os.path.join(d, "objects-summary.txt")).strip()
        r["gets_lost"] = read(os.path.join(d, "objwatch-lost.txt")).strip()
        r["new_objects"] = max(v["objs"] for p in mk.values() for v in p.values())
        r["puts_per_gib"] = (r["log"]["wal_puts"] + r["log"]["seg_puts"]) / produced
        r["wal_puts_per_gib"] = r["log"]["wal_puts"] / produced
        r["seg_puts_per_gib"] = r["log"]["seg_puts"] / produced
        r["gets_per_gib"] = max(v["gets"] for p in mk.values() for v in p.values()) / produced
        gets = sum(mk[p]["end"]["gets"] - mk[p]["begin"]["gets"]
                   for p in ("warmup", "produce-p8", "produce-p100", "produce-lat", "e2e"))
        r["gets_produce_per_gib"] = gets / produced
        if r["gets_lost"]:
            # objwatch.py lost inotify events: no GET figure from this run
            for k in [k for k in r if k.endswith("gets_per_gib") or k == "gets_produce_per_gib"]:
                r[k] = None
    if os.path.exists(os.path.join(d, "server.properties")):  # Kafka
        r["server_properties"] = read(os.path.join(d, "server.properties"))
    quiet = read(os.path.join(d, "quiet.txt"), required=False)
    r["quiet"] = dict(l.split(None, 1) for l in quiet.splitlines() if l.strip()) if quiet else {}
    return r


# --- the table -----------------------------------------------------------------------------------
# (label, path, which brokers, required in every run, whole milliseconds)
ROWS = [
    ("produce throughput, 8 partitions (MiB/s, steady state)", ("produce-p8", "mibps"), "both", True, False),
    ("produce throughput, 100 partitions (MiB/s, steady state)", ("produce-p100", "mibps"), "both", True, False),
    ("  produce throughput, 8 partitions, whole test incl. client warm-up (MiB/s)", ("produce-p8", "total_mibps"), "both", True, False),
    ("  produce latency at max throughput, 8 p, p50 (ms)", ("produce-p8", "p50"), "both", True, True),
    ("  produce latency at max throughput, 8 p, p99 (ms)", ("produce-p8", "p99"), "both", True, True),
    ("produce at 50 MiB/s: achieved, steady state (MiB/s)", ("produce-lat", "mibps"), "both", True, False),
    ("produce latency at 50 MiB/s, p50 (ms)", ("produce-lat", "p50"), "both", True, True),
    ("produce latency at 50 MiB/s, p99 (ms)", ("produce-lat", "p99"), "both", True, True),
    ("produce latency at 50 MiB/s, p99.9 (ms)", ("produce-lat", "p999"), "both", True, True),
    ("end-to-end latency, p50 (ms)", ("e2e", "p50"), "both", True, True),
    ("end-to-end latency, p99 (ms)", ("e2e", "p99"), "both", True, True),
    ("end-to-end latency, avg (ms)", ("e2e", "avg"), "both", True, False),
    ("consume hot, 8 partitions (MiB/s)", ("consume-hot", "MBps"), "both", True, False),
    ("consume cold, 8 partitions (MiB/s)", ("consume-cold", "MBps"), "both", True, False),
    ("  consume hot, last two thirds of the records (MiB/s)", ("consume-hot", "steady_MBps"), "both", True, False),
    ("  consume cold, last two thirds of the records (MiB/s)", ("consume-cold", "steady_MBps"), "both", True, False),
    ("  consume hot, ConsumerPerformance (group member) fetch.MB.sec (cross-check)", ("consumer-perf", "fetch_mibps"), "both", False, False),
    ("broker RSS idle (MiB)", ("rss_idle",), "both", True, False),
    ("broker RSS max during produce tests (MiB)", ("rss_load_max",), "both", True, False),
    ("broker CPU s per GiB produced, 8 partitions", ("produce-p8:cpu_per_gib",), "both", True, False),
    ("broker CPU s per GiB produced, 100 partitions", ("produce-p100:cpu_per_gib",), "both", True, False),
    ("broker CPU s per GiB produced, 50 MiB/s", ("produce-lat:cpu_per_gib",), "both", True, False),
    ("  broker CPU cores busy during produce, 8 partitions", ("produce-p8:cores",), "both", True, False),
    ("broker CPU s per GiB consumed, hot", ("consume-hot:cpu_per_gib",), "both", True, False),
    ("broker CPU s per GiB consumed, cold", ("consume-cold:cpu_per_gib",), "both", True, False),
    ("object PUTs per GiB written (WAL + segment, whole run)", ("puts_per_gib",), "stratus", True, False),
    ("  WAL PUTs per GiB, during produce 8 partitions", ("produce-p8:wal_per_gib",), "stratus", True, False),
    ("  WAL PUTs per GiB, during produce 100 partitions", ("produce-p100:wal_per_gib",), "stratus", True, False),
    ("  WAL PUTs per GiB, during produce at 50 MiB/s", ("produce-lat:wal_per_gib",), "stratus", True, False),
    ("  segment PUTs per GiB (whole run)", ("seg_puts_per_gib",), "stratus", True, False),
    ("object GETs per GiB written (whole run: sealing and the two reads)", ("gets_per_gib",), "stratus", False, False),
    ("  object GETs per GiB written, during the produce tests (sealing)", ("gets_produce_per_gib",), "stratus", False, False),
    ("  object GETs per GiB consumed, hot (sealing ran at the same time, see notes)", ("consume-hot:gets_per_gib",), "stratus", False, False),
    ("  object GETs per GiB consumed, cold", ("consume-cold:gets_per_gib",), "stratus", False, False),
]

# The README-facing summary: (short label, label of a row above)
SUMMARY = [
    ("produce, 8 partitions (MiB/s)", "produce throughput, 8 partitions (MiB/s, steady state)"),
    ("produce, 100 partitions (MiB/s)", "produce throughput, 100 partitions (MiB/s, steady state)"),
    ("produce p99 at 50 MiB/s (ms)", "produce latency at 50 MiB/s, p99 (ms)"),
    ("end-to-end p50 (ms)", "end-to-end latency, p50 (ms)"),
    ("end-to-end p99 (ms)", "end-to-end latency, p99 (ms)"),
    ("consume hot (MiB/s)", "consume hot, 8 partitions (MiB/s)"),
    ("consume cold (MiB/s)", "consume cold, 8 partitions (MiB/s)"),
    ("broker RSS idle (MiB)", "broker RSS idle (MiB)"),
    ("broker RSS under load, max (MiB)", "broker RSS max during produce tests (MiB)"),
]


def g(d, *path):
    for p in path:
        if d is None:
            return None
        d = d.get(p) if isinstance(d, dict) else None
    return d


def read_env(raw):
    env = {}
    for line in read(os.path.join(raw, "env.txt")).splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            env[k] = v
    return env


def find_runs(raw):
    runs = sorted((int(m.group(1)), name) for name in os.listdir(raw) if (m := re.fullmatch(r"run-(\d+)", name)))
    if not runs:
        raise BenchError(f"{raw}: no run-N directories")
    if [n for n, _ in runs] != list(range(1, len(runs) + 1)):
        raise BenchError(f"{raw}: runs {[n for n, _ in runs]} are not 1..{len(runs)}")
    return [os.path.join(raw, name) for _, name in runs]


def expected_counts(raw, env):
    records_text = read(os.path.join(raw, "records.txt")).strip()
    lat_warm = re.search(r"lat_s=(\d+)\+(\d+)", env.get("scale", ""))
    lat_records = re.search(r"lat_records=(\d+)", env.get("scale", ""))
    e2e = re.search(r"e2e_records=(\d+)", env.get("scale", ""))
    if not (records_text.isdigit() and lat_warm and lat_records and e2e):
        raise BenchError(f"{raw}: records.txt or the scale line of env.txt is incomplete")
    return dict(records=int(records_text), lat_records=int(lat_records.group(1)),
                lat_warmup_records=int(lat_records.group(1)) // (int(lat_warm.group(1)) + int(lat_warm.group(2)))
                * int(lat_warm.group(1)),
                e2e_records=int(e2e.group(1)))


def stratus_effective(sets):
    """The settings that shape Stratus' numbers, as the broker derives them from --set (the
    defaults of src/config.rs: the WAL flush interval and the disk cache depend on the store)."""
    url = sets.get("object.store.url", "")
    if url == "" or url.startswith("file:"):
        kind, flush, disk = ("local directory under the data dir (file://; every WAL object fsynced before the ack)"
                             if url == "" else f"local directory {url} (every WAL object fsynced before the ack)"), 2, 0
    elif url.startswith("memory:"):
        kind, flush, disk = "in memory (memory://: no durability)", 0, 1 << 30
    else:
        kind, flush, disk = f"S3-compatible {url}", 100, 1 << 30
    eff = {"object store": kind}
    for key, default in (("wal.flush.interval.ms", flush), ("cache.disk.bytes", disk)):
        eff[key] = f"{sets[key]} (set)" if key in sets else f"{default} (default for this store)"
    for key in ("wal.flush.bytes", "wal.max.in.flight", "wal.buffer.max.bytes", "cache.memory.bytes",
                "log.segment.bytes", "seal.check.interval.ms"):
        if key in sets:
            eff[key] = f"{sets[key]} (set)"
    return eff


VOLATILE = re.compile(r"listener|dir|quorum|voters|port|data\.dir|log\.dirs|node\.id")


def table(raw, out_md):
    env = read_env(raw)
    expect = expected_counts(raw, env)
    consumer_perf = "consumer_perf=1" in env.get("scale", "")
    runs = find_runs(raw)
    M = {b: [] for b in BROKERS}  # broker -> metrics per run (run order)
    for i, run in enumerate(runs, 1):
        present = [b for b in BROKERS if os.path.isdir(os.path.join(run, b))]
        if not present:
            raise BenchError(f"{run}: no broker directory")
        for b in BROKERS:
            if os.path.isdir(os.path.join(run, b)):
                M[b].append(broker_metrics(os.path.join(run, b), expect, consumer_perf))
            elif M[b]:
                raise BenchError(f"{run}: {b} ran in earlier runs but not in this one")
    brokers = [b for b in BROKERS if M[b]]
    n_runs = len(runs)
    for b in brokers:
        if len(M[b]) != n_runs:
            raise BenchError(f"{raw}: {b} has {len(M[b])} runs of {n_runs}")
    K, S, F = M.get("kafka", []), M.get("stratus", []), M.get("kafka-fsync", [])

    flagged = []  # (broker, run, phase, cores)
    for b in brokers:
        for i, m in enumerate(M[b], 1):
            for phase, cores in m["foreign"].items():
                if cores > BUSY and phase in PHASES:
                    flagged.append((b, i, phase, cores))

    def values(b, path):
        return [g(m, *path) for m in M[b]]

    rows = {}
    for label, path, which, required, whole_ms in ROWS:
        phase = path[0].split(":")[0]
        vals = {}
        for b in brokers:
            if which != "both" and b != which:
                continue
            if path[0] == "consumer-perf" and not consumer_perf:
                continue
            v = values(b, path)
            if required and any(x is None for x in v):
                raise BenchError(f"{LABEL[b]}: no value for '{label.strip()}' in run(s) "
                                 f"{[i + 1 for i, x in enumerate(v) if x is None]}")
            vals[b] = v
        rows[label] = (vals, whole_ms, phase)

    def show(b, label):
        vals, whole_ms, phase = rows[label]
        v = vals.get(b)
        if v is None:
            return "—"
        have = [x for x in v if x is not None]
        if not have:
            return "— (events lost)" if "GETs" in label else "—"
        text = cell(have, whole_ms)
        if len(have) < len(v):
            text += f" ({len(have)} of {len(v)} runs)"
        if any(fb == b and fp == phase for fb, _, fp, _ in flagged):
            text += " ⚠"
        return text

    def ratio(label, peer="kafka"):
        vals, whole_ms, _ = rows[label]
        if peer not in vals or "stratus" not in vals:
            return "—"
        return ratio_cell(vals[peer], vals["stratus"], whole_ms)

    # Kafka fsync (log.flush.interval.messages=1), when it ran: its column and Stratus ÷ it
    def fsync_cols(label):
        return f" {show('kafka-fsync', label)} | {ratio(label, 'kafka-fsync')} |" if F else ""
    fsync_head = " Kafka fsync | Stratus ÷ Kafka fsync |" if F else ""
    fsync_rule = "---:|---:|" if F else ""

    runs_word = f"{n_runs} run{'s' if n_runs != 1 else ''}"
    head_k = f"Kafka, median [min–max] of {runs_word}" if n_runs > 1 else "Kafka (1 run)"
    head_s = f"Stratus, median [min–max] of {runs_word}" if n_runs > 1 else "Stratus (1 run)"
    full = [f"| metric | {head_k} | {head_s} | Stratus ÷ Kafka (medians) |{fsync_head}",
            "|---|---:|---:|---:|" + fsync_rule]
    for label, *_ in ROWS:
        full.append(f"| {label} | {show('kafka', label)} | {show('stratus', label)} | {ratio(label)} |"
                    + fsync_cols(label))

    # README-facing summary
    date = env.get("date", "?")[:10]
    commit = env.get("git", "?")
    sets = dict(kv.split("=", 1) for kv in env.get("stratus_set", "").split() if "=" in kv)
    eff = stratus_effective(sets)
    store_short = ("local-directory object store" if eff["object store"].startswith("local") else eff["object store"])
    summary = [f"| {runs_word + ', median [min–max]' if n_runs > 1 else runs_word} | Kafka | Stratus | Stratus ÷ Kafka |"
               + fsync_head, "|---|---:|---:|---:|" + fsync_rule]
    for short, label in SUMMARY:
        summary.append(f"| {short} | {show('kafka', label)} | {show('stratus', label)} | {ratio(label)} |"
                       + fsync_cols(label))
    set_text = ", ".join(f"`{k}={v}`" for k, v in sets.items()) or "no `--set`"
    flush = eff["wal.flush.interval.ms"].split()[0] + ("" if "wal.flush.interval.ms" in sets else " (default)")
    others = ", ".join(f"`{k}={v}`" for k, v in sets.items() if k != "wal.flush.interval.ms")
    summary.append("")
    summary.append(f"`{env.get('command', 'bench/run.sh')}` on {date}, commit {commit}: {runs_word}"
                   + (" alternating which broker goes first" if n_runs > 1 else "")
                   + f", {expect['records']:,} records of 1 KiB per throughput test on every broker; "
                   f"{env.get('cpus', '?')} CPUs, {env.get('mem_gib', '?')} GiB, {env.get('kafka', '?')} (default configs, "
                   f"no fsync){'; Kafka fsync: the same with log.flush.interval.messages=1' if F else ''}; Stratus: {store_short}, wal.flush.interval.ms={flush}"
                   + (f", {others}" if others else "") + ".")
    if n_runs < 3:
        summary.insert(0, f"**{runs_word} only: no trustworthy spread; use BENCH_REPEAT=3 or more for figures to quote.**\n")

    # each run's values
    orders = [env.get(f"order_run_{i}", "?") for i in range(1, n_runs + 1)]
    per_run = ["Order: " + "; ".join(f"run {i}: {o.replace(' ', ' then ')}" for i, o in enumerate(orders, 1)) + ".", "",
               "| metric | " + " | ".join(f"{LABEL[b]} runs 1–{n_runs}" for b in brokers) + " |",
               "|---|" + "---:|" * len(brokers)]
    for label, path, which, _, whole_ms in ROWS:
        vals = rows[label][0]
        if not vals:
            continue
        per_run.append(f"| {label.strip()} | " + " | ".join(
            " / ".join(fmt(x, whole_ms) for x in vals[b]) if b in vals else "—" for b in brokers) + " |")

    # settings
    settings = []
    if S:
        cmd = S[0]["command"].splitlines()
        settings.append(f"- Stratus `--set` values: {set_text} (BENCH_STRATUS_SET={env.get('stratus_set', '')!r}); "
                        + "; ".join(f"{k}: {v}" for k, v in eff.items()) + f"; log filter RUST_LOG={env.get('stratus_rust_log', '?')} "
                        "(the PUT counts need its debug lines; logging them costs some CPU).")
        removed = next((l.split("=", 1)[1] for l in cmd if l.startswith("removed_env=")), "")
        if removed.strip():
            settings.append(f"- STRATUS_* environment variables withheld from the broker: {removed.replace('-u ', '')}.")
        settings.append(f"- Stratus command (run 1): `{cmd[0]}`")
        # the broker's own view (DescribeConfigs): every --set must show as set, and runs must agree
        explicit = {k: v for k, (v, src) in S[0]["configs"].items() if src != "DEFAULT_CONFIG" and not VOLATILE.search(k)}
        for i, m in enumerate(S, 1):
            verify_sets(f"Stratus (run {i})", m["configs"], sets)
        settings.append("- Stratus settings it reports as not default (DescribeConfigs, run 1): "
                        + (", ".join(f"`{k}={v}`" for k, v in sorted(explicit.items())) or "none") + ".")
    if K:
        explicit = {k: v for k, (v, src) in K[0]["configs"].items() if src != "DEFAULT_CONFIG"}
        settings.append("- Kafka: scripts/run-kafka.sh, single-node KRaft, JVM "
                        f"{env.get('kafka_heap_opts') or '-Xmx1g -Xms256m'} -XX:+UseG1GC -XX:MaxGCPauseMillis=20"
                        f"{' ' + env['kafka_opts'] if env.get('kafka_opts') else ''}; settings it reports as not default "
                        "(DescribeConfigs, run 1): " + ", ".join(f"`{k}={v}`" for k, v in sorted(explicit.items())
                                                               if not VOLATILE.search(k)) + ".")
    for i, m in enumerate(F, 1):
        for k, v in FSYNC_SETTINGS.items():
            got = m["configs"].get(k)
            if got is None or got[0] != v:
                raise BenchError(f"Kafka fsync (run {i}) reports {k}={got[0] if got else 'nothing'}, not {v}")
    if F:
        explicit = {k: v for k, (v, src) in F[0]["configs"].items() if src != "DEFAULT_CONFIG"}
        settings.append("- Kafka fsync: the same as Kafka with " + ", ".join(f"`{k}={v}`" for k, v in FSYNC_SETTINGS.items())
                        + " (every message on disk before the ack, as Stratus does); settings it reports as not default "
                        "(DescribeConfigs, run 1): " + ", ".join(f"`{k}={v}`" for k, v in sorted(explicit.items())
                                                               if not VOLATILE.search(k)) + ".")
    for b in brokers:
        first = {k: v for k, (v, src) in M[b][0]["configs"].items() if not VOLATILE.search(k)}
        for i, m in enumerate(M[b][1:], 2):
            other = {k: v for k, (v, src) in m["configs"].items() if not VOLATILE.search(k)}
            diff = sorted(k for k in set(first) | set(other) if first.get(k) != other.get(k))
            if diff:
                raise BenchError(f"{LABEL[b]}'s settings differ between run 1 and run {i}: {diff}")
    settings.append(f"- Clients: Kafka's ProducerPerformance (1 KiB records, acks=all, default batch.size/linger.ms, "
                    f"idempotent producer by default), EndToEndLatency (acks=all, 1 KiB, one partition, "
                    f"{expect['e2e_records']:,} messages), bench/AssignConsumerPerf.java; {env.get('java', '?')}, "
                    f"client JVM {env.get('kafka_heap_opts') or '-Xmx1g'}"
                    f"{' ' + env['kafka_opts'] if env.get('kafka_opts') else ''}.")
    settings.append(f"- Record counts, the same for both brokers in every run: {expect['records']:,} per throughput test "
                    f"({read(os.path.join(raw, 'calibration.txt')).strip()}); {expect['lat_records']:,} at 50 MiB/s "
                    f"({expect['lat_warmup_records']:,} of them warm-up); {expect['e2e_records']:,} end-to-end.")
    settings.append(f"- Machine: {env.get('cpus', '?')} CPUs ({env.get('cpu_model', '?')}), {env.get('mem_gib', '?')} GiB, "
                    f"Linux {env.get('kernel', '?')}; data dirs on {env.get('work_fs', '?')}; load average "
                    f"{env.get('loadavg_start', '?')} at start, {env.get('loadavg_end', '?')} at end; "
                    f"{env.get('date', '?')} to {env.get('date_end', '?')}.")
    settings.append(f"- Code: commit {commit} ({env.get('git_subject', '')}); binary {env.get('stratus_bin', '?')}, "
                    f"{env.get('stratus_version', '?')}, built {env.get('stratus_built', '?')}, sha256 "
                    f"{env.get('stratus_sha256', '?')}…; {env.get('kafka', '?')} ({env.get('kafka_clients', '?')}).")

    # notes
    notes = []
    if flagged:
        notes.append(f"- ⚠: other processes on the machine used more than {BUSY} cores on average during that test in "
                     "at least one run (the machine may be shared), so the spread may include their load: "
                     + ", ".join(f"{LABEL[b]} run {i} {p} {c:.2f}" for b, i, p, c in flagged) + ".")
    for b in brokers:
        for i, m in enumerate(M[b], 1):
            ev = m["evict"]
            cold_res = ev["before"] / ev["alloc"] * 100 if ev["alloc"] else 0
            hot, cold = m["consume-hot"], m["consume-cold"]
            lat = m["produce-lat"]
            extra = ""
            if ev["alloc"] and ev["after"] > 0.05 * ev["alloc"]:
                extra += f" ⚠ {ev['after'] / MIB:.0f} MiB of its data files were still in the page cache after eviction."
            if abs(lat["mibps"] - 50) > 5:
                extra += (f" ⚠ The 50 MiB/s test ran at {lat['mibps']:.1f} MiB/s in its measured part: "
                          + ("the broker (or the shared machine) could not sustain the rate, so its latencies are "
                             "queueing delays." if lat["mibps"] < 50 else
                             "the client fell behind during its warm-up and caught up later (ProducerPerformance's "
                             "throttle is cumulative), so its latencies include that backlog."))
            if b == "stratus" and m.get("sealed_during"):
                extra += " Segments sealed during: " + ", ".join(f"{p} {n}" for p, n in m["sealed_during"].items()) + "."
            if m.get("gets_lost"):
                extra += f" ⚠ objwatch.py lost events ({m['gets_lost'].splitlines()[0]}): no GET figure from this run."
            notes.append(
                f"- {LABEL[b]} run {i}: {m['produced_gib']:.2f} GiB produced in all; first record after "
                f"{hot['first_record_ms']:.0f} ms hot / {cold['first_record_ms']:.0f} ms cold; before the cold read "
                f"{cold_res:.0f}% of its {ev['alloc'] / GIB:.2f} GiB of data files were in the page cache, after eviction "
                f"{ev['after'] / MIB:.0f} MiB (drop_caches: {ev['drop']}); other processes (cores, mean per phase): "
                + ", ".join(f"{p} {v:.2f}" for p, v in m["foreign"].items()) + f"; max RSS {m['rss_max_all']:.0f} MiB; "
                f"broker log: {m['broker_warn']} WARN, {m['broker_error']} ERROR lines." + extra)
    for i, m in enumerate(S, 1):
        lg = m["log"]
        notes.append(f"- Stratus run {i} objects: {lg['wal_puts']:,} WAL PUTs (mean {lg['wal_bytes_mean'] / MIB:.2f} MiB, "
                     f"{lg['wal_partitions_mean']:.1f} partitions each), {lg['seg_puts']:,} segment PUTs; objects created "
                     f"in the store (inotify cross-check) {m['new_objects']:,} vs {lg['wal_puts'] + lg['seg_puts']:,} PUTs "
                     f"logged; GETs by phase and kind: {m['objects_text'].replace(chr(10), '; ')}")

    title = "# Stratus vs Apache Kafka"
    md = f"""{title}

## Summary

{chr(10).join(summary)}

## All figures

{chr(10).join(full)}

Each figure: the median over the runs, and in brackets the lowest and highest run; the ratio is the
Stratus median ÷ the Kafka median. Lower is better for latency, RSS, CPU and request counts. `< 1`: under
one millisecond (the tools print whole milliseconds). MiB = 2^20 B, GiB = 2^30 B.

## Each run

{chr(10).join(per_run)}

## Settings and machine

{chr(10).join(settings)}

## How

Both brokers on this machine one after the other, on 127.0.0.1, each run of each broker with a fresh
temporary data dir (deleted after it), the order alternating between runs. Every run writes and reads the
same record counts on both brokers: the throughput tests' count was calibrated once ({read(os.path.join(raw, 'calibration.txt')).strip()}).
Produce throughput is ProducerPerformance's steady-state line (the first third of the records is
--warmup-records: a new client JVM needs several seconds of JIT on 2 cores). Consume throughput is
bench/AssignConsumerPerf.java (the Java consumer with assign(), ConsumerPerformance's settings); Kafka's
ConsumerPerformance, a group member, reads the same topic again as a cross-check. Cold reads: the page cache
of the broker's data files is evicted (posix_fadvise DONTNEED, verified with mincore) and Stratus is also
restarted, emptying its memory and disk caches. Object PUTs are Stratus' "wal flushed"/"sealed segment" debug
log lines; GETs are the object files it opens read-only (inotify on its object directory; one open per
ranged GET). A run fails, and no report is written, if any tool fails or times out, if a producer has fewer
records acknowledged than it sent, if a consumer reads fewer records than were written, or if a topic's end
offsets differ from the records written.

## Notes

{chr(10).join(notes)}
"""
    print(md)
    with open(out_md, "w") as f:
        f.write(md)
    return md


def verify_sets(label, configs, sets):
    """Every --set value must be what the broker reports (DescribeConfigs), as not default."""
    for k, v in sets.items():
        got = configs.get(k)
        if not got or got[0] != v or got[1] == "DEFAULT_CONFIG":
            raise BenchError(f"{label} reports {k}={got} in DescribeConfigs, but the run set {k}={v}")


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
    if not counts:
        print("no GETs")


# --- self-test -----------------------------------------------------------------------------------
def main():
    args = sys.argv[1:]
    cmd = args[0] if args else ""
    try:
        if cmd == "--self-test":
            from report_selftest import self_test
            sys.exit(self_test())
        elif cmd == "calibrate":
            explain = "--explain" in args
            rest = [a for a in args[1:] if a != "--explain"]
            calibrate(rest[0], rest[1], explain)
        elif cmd == "check":
            check(*args[1:])
        elif cmd in ("broker-log", "stratus-log"):
            broker_log(args[1])
        elif cmd == "objects-summary":
            objects_summary(args[1], args[2])
        elif cmd == "table":
            table(args[1], args[2])
        elif cmd == "groups-table":
            from report_groups import groups_table
            groups_table(args[1], args[2])
        else:
            sys.exit(__doc__)
    except BenchError as e:
        print(f"report.py: ERROR: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
