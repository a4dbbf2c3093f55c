#!/usr/bin/env python3
"""bench/groups.sh's comparison: consumer-group figures of Stratus and Apache Kafka per protocol,
as "median [min–max]" with the ratio of the medians (report.py groups-table RAW_DIR OUT.md)."""
import os

from report_parse import BROKERS, LABEL, BenchError, read, tail, fmt, cell, ratio_cell
from report import VOLATILE, read_env, find_runs, broker_configs, verify_sets


GROUP_METRICS = (("stable_ms", "group stable after the first subscribe (ms)", True),
                 ("rebalance_ms", "rebalance after one consumer leaves (ms)", True),
                 ("commits_per_s", "synchronous offset commits per second, all consumers", False),
                 ("commit_errors", "  commits that failed during the commit phase (count)", False))


def group_result(path):
    text = read(path)
    res = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) == 2 and f[0] in dict((m[0], 1) for m in GROUP_METRICS):
            res[f[0]] = float(f[1])
    missing = [m for m, *_ in GROUP_METRICS if m not in res]
    if missing:
        raise BenchError(f"{path}: GroupBench printed no {', '.join(missing)}:\n{tail(text)}")
    if res["stable_ms"] < 0 or res["rebalance_ms"] < 0 or res["commits_per_s"] <= 0:
        raise BenchError(f"{path}: GroupBench did not measure: {res}")
    return res


def groups_table(raw, out_md):
    env = read_env(raw)
    runs = find_runs(raw)
    protocols = env.get("protocols", "classic consumer").split()
    R = {}  # (broker, protocol, metric) -> values in run order
    configs = {}
    brokers = [b for b in BROKERS if os.path.isdir(os.path.join(runs[0], b))]
    if not brokers:
        raise BenchError(f"{runs[0]}: no broker directory")
    for run in runs:
        for b in brokers:
            d = os.path.join(run, b)
            if not os.path.isdir(d):
                raise BenchError(f"{d}: missing ({b} ran in run 1)")
            configs.setdefault(b, broker_configs(d))
            for proto in protocols:
                res = group_result(os.path.join(d, proto + ".txt"))
                for m, *_ in GROUP_METRICS:
                    R.setdefault((b, proto, m), []).append(res[m])
    n = len(runs)
    runs_word = f"{n} run{'s' if n != 1 else ''}"
    sets = dict(kv.split("=", 1) for kv in env.get("stratus_set", "").split() if "=" in kv)
    if "stratus" in configs:
        verify_sets("Stratus", configs["stratus"], sets)
    lines = [f"| metric | protocol | Kafka, median [min–max] of {runs_word} | Stratus, median [min–max] of {runs_word} "
             "| Stratus ÷ Kafka |", "|---|---|---:|---:|---:|"]
    each = ["| metric | protocol | " + " | ".join(f"{LABEL[b]} runs 1–{n}" for b in brokers) + " |",
            "|---|---|" + "---:|" * len(brokers)]
    for proto in protocols:
        for m, label, _ in GROUP_METRICS:
            k, s_ = R.get(("kafka", proto, m)), R.get(("stratus", proto, m))
            lines.append(f"| {label} | {proto} | {cell(k) if k else '—'} | {cell(s_) if s_ else '—'} | "
                         f"{ratio_cell(k, s_) if k and s_ and m != 'commit_errors' else '—'} |")
            each.append(f"| {label.strip()} | {proto} | "
                        + " | ".join(" / ".join(fmt(x) for x in R[(b, proto, m)]) for b in brokers) + " |")
    orders = "; ".join(f"run {i}: {env.get(f'order_run_{i}', '?').replace(' ', ' then ')}" for i in range(1, n + 1))
    kafka_explicit = ", ".join(f"`{k}={v}`" for k, (v, src) in sorted(configs.get("kafka", {}).items())
                               if src != "DEFAULT_CONFIG" and not VOLATILE.search(k))
    warn = (f"**{runs_word} only: no trustworthy spread; use BENCH_REPEAT=3 or more for figures to quote.**\n\n"
            if n < 3 else "")
    md = f"""# Consumer groups: Stratus vs Apache Kafka

{warn}{chr(10).join(lines)}

Each figure: the median over the runs, and in brackets the lowest and highest run; the ratio is the Stratus
median ÷ the Kafka median. Lower is better for the *ms* rows, higher for commits per second.

`{env.get('command', 'bench/groups.sh')}` on {env.get('date', '?')}, commit {env.get('git', '?')}:
{env.get('consumers', '?')} consumers in one JVM (bench/GroupBench.java; classic protocol with the
cooperative-sticky assignor, session.timeout.ms=10000, heartbeat.interval.ms=500), {env.get('partitions', '?')}
partitions, {env.get('commit_s', '?')} s of commits; {env.get('cpus', '?')} CPUs, {env.get('mem_gib', '?')} GiB;
{env.get('kafka', '?')}, {env.get('java', '?')}.

Settings: Stratus {env.get('stratus_version', '?')} (built {env.get('stratus_built', '?')}) with
{", ".join(f"`{k}={v}`" for k, v in sets.items()) or "no --set"} (each confirmed by the broker's DescribeConfigs) and
no STRATUS_* environment variables; Kafka from scripts/run-kafka.sh (single-node KRaft), not default:
{kafka_explicit or "none"}. Each run of each broker starts with a fresh data dir.

## Each run

Order: {orders}.

{chr(10).join(each)}
"""
    print(md)
    with open(out_md, "w") as f:
        f.write(md)
    return md
