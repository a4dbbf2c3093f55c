#!/usr/bin/env bash
# thr.sh [LABEL] [--set k=v ...]: full-speed produce into 8 partitions on a fresh broker
# (15 s of warm-up into another topic, then 1.5 M records of 1 KiB, the first 0.5 M as
# warm-up records); prints ProducerPerformance's steady-state throughput and the broker's
# CPU (clock ticks) and peak RSS over that produce.
set -u
LABEL=${1:-run}; shift || true
. "$(dirname "$0")/common.sh"
start_broker "$@"
topic t8 8; topic warm 8
timeout 15 "$K" producer-perf --topic warm --num-records 100000000 --record-size 1024 --throughput -1 \
  --command-property "bootstrap.servers=$BOOT" acks=all > "$D/warm.txt" 2>&1
c0=$(cpu_ticks)
produce t8 1500000 -1 --warmup-records 500000 > "$D/p.txt" 2>&1
c1=$(cpu_ticks)
echo "== $LABEL $(tail -1 "$D/p.txt" | cut -d, -f2,3), broker CPU $((c1 - c0)) ticks, peak RSS $(status_mib VmHWM) MiB"
