#!/usr/bin/env bash
# lat.sh [LABEL] [--set k=v ...]: produce latency at 50 MiB/s into 8 partitions on a fresh
# broker (25 s of full-speed warm-up into another topic, then 51,200 records/s of 1 KiB for
# 25 s, the first 10 s as warm-up records): ProducerPerformance's steady-state line, then
# percentiles of the broker's WAL flush stages and Produce request times over the 25 s
# (from its Prometheus histograms, so bounded by their buckets).
set -u
LABEL=${1:-run}; shift || true
. "$(dirname "$0")/common.sh"
start_broker "$@"
topic lat 8; topic warm 8
timeout 25 "$K" producer-perf --topic warm --num-records 100000000 --record-size 1024 --throughput -1 \
  --command-property "bootstrap.servers=$BOOT" acks=all > "$D/warm.txt" 2>&1
curl -s "127.0.0.1:$HP/metrics" > "$D/m0.txt"
produce lat $((51200 * 25)) 51200 --warmup-records $((51200 * 10)) > "$D/lat.txt" 2>&1
curl -s "127.0.0.1:$HP/metrics" > "$D/m1.txt"
echo "== $LABEL $(grep -i steady "$D/lat.txt" | tail -1)"
python3 - "$D/m0.txt" "$D/m1.txt" <<'PY'
import re, sys
def load(f):
    d = {}
    for line in open(f):
        if "_bucket{" in line and re.search(r"wal_flush_time|request_(total|queue|remote)_time", line):
            k, v = line.rsplit(" ", 1)
            d[k] = float(v)
    return d
a, b = load(sys.argv[1]), load(sys.argv[2])
groups = {}
for k in b:
    m = re.match(r'(\w+)_bucket\{(.*)le="([^"]+)"\}', k)
    if not m:
        continue
    name, labels, le = m.groups()
    if "wal" not in name and "Produce" not in labels:
        continue
    groups.setdefault((name, labels), []).append((float(le), b[k] - a.get(k, 0)))
for (name, labels), buckets in sorted(groups.items()):
    buckets.sort()
    total = buckets[-1][1]
    if total == 0:
        continue
    qs = " ".join(f"p{q * 100:g}<={next(le for le, c in buckets if c >= q * total) * 1000:g}ms"
                  for q in (0.5, 0.9, 0.99, 0.999))
    print(name.replace("stratus_", ""), labels.strip(","), int(total), qs)
PY
