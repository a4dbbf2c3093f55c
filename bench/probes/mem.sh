#!/usr/bin/env bash
# mem.sh [LABEL] [--set k=v ...]: the broker's peak RSS (VmHWM) through 1.5 M records of 1 KiB
# into 8 partitions at full speed, then 1.5 M into 100, then Kafka's ConsumerPerformance
# reading the first topic back.
set -u
LABEL=${1:-run}; shift || true
. "$(dirname "$0")/common.sh"
start_broker "$@"
topic t8 8; topic t100 100
produce t8 1500000 -1 > "$D/p8.txt" 2>&1
h8=$(status_mib VmHWM)
produce t100 1500000 -1 > "$D/p100.txt" 2>&1
h100=$(status_mib VmHWM)
"$K" consumer-perf --bootstrap-server "$BOOT" --topic t8 --messages 1500000 --timeout 60000 > "$D/c.txt" 2>&1
hc=$(status_mib VmHWM)
echo "== $LABEL produce 8 p: $(tail -1 "$D/p8.txt" | cut -d'(' -f2 | cut -d')' -f1), 100 p: $(tail -1 "$D/p100.txt" | cut -d'(' -f2 | cut -d')' -f1), consume: $(tail -1 "$D/c.txt" | cut -d, -f4) MB/s"
echo "== $LABEL peak RSS MiB: after 8 p $h8, after 100 p $h100, after the consume $hc"
