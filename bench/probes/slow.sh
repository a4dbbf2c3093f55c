#!/usr/bin/env bash
# slow.sh [LABEL] [--set k=v ...]: many slow partitions on a fresh broker, as
# bench/footprint.py drives them (1,000 partitions, 2,000 records/s of 200 bytes, acks=all,
# the round-robin partitioner: every request holds a batch for each of a dozen partitions)
# for SLOW_S seconds (default 120; the first third as warm-up, so that WAL compaction has
# started); prints the broker's CPU over the last two thirds per second of it, its WAL
# flushes and compactions per second, and its peak RSS.
set -u
LABEL=${1:-run}; shift || true
. "$(dirname "$0")/common.sh"
S=${SLOW_S:-120}
start_broker "$@"
topic slow 1000
"$K" producer-perf --topic slow --num-records $((2000 * S)) --record-size 200 --throughput 2000 \
  --command-property "bootstrap.servers=$BOOT" acks=all \
  partitioner.class=org.apache.kafka.clients.producer.RoundRobinPartitioner > "$D/p.txt" 2>&1 &
PP=$!
sleep $((S / 3))
metric() { curl -s "127.0.0.1:$HP/metrics" | awk -v k="$1" '$1 == k {print $2}'; }
c0=$(cpu_ticks); f0=$(metric 'stratus_wal_flush_time_seconds_count{stage="total"}'); w0=$(metric stratus_wal_compactions_total)
t0=$(date +%s.%N)
sleep $((S * 2 / 3 - 5))
c1=$(cpu_ticks); f1=$(metric 'stratus_wal_flush_time_seconds_count{stage="total"}'); w1=$(metric stratus_wal_compactions_total)
t1=$(date +%s.%N)
wait $PP
python3 - "$LABEL" "$c0" "$c1" "$t0" "$t1" "$f0" "$f1" "$w0" "$w1" "$(status_mib VmHWM)" "$(tail -1 "$D/p.txt")" <<'PY'
import os, sys
label, c0, c1, t0, t1, f0, f1, w0, w1, hwm, last = sys.argv[1:]
dt = float(t1) - float(t0)
hz = os.sysconf("SC_CLK_TCK")
print(f"== {label}: broker CPU {(int(c1) - int(c0)) / hz / dt * 100:.1f} % of a core, "
      f"WAL flushes {(float(f1) - float(f0)) / dt:.0f}/s, compactions {(float(w1) - float(w0)) / dt:.2f}/s, "
      f"peak RSS {hwm} MiB | {last.split(',')[0]}")
PY
