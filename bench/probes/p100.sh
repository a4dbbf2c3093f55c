#!/usr/bin/env bash
# p100.sh [LABEL] [--set k=v ...]: 2,545,000 records of 1 KiB into 100 partitions at full speed
# (as bench/run.sh's produce-p100); prints the throughput, the broker's CPU seconds and peak RSS.
set -u
LABEL=${1:-run}; shift || true
. "$(dirname "$0")/common.sh"
start_broker "$@"
topic t100 100
c0=$(cpu_ticks)
produce t100 2545000 -1 > "$D/p100.txt" 2>&1
c1=$(cpu_ticks)
echo "== $LABEL p100: $(tail -1 "$D/p100.txt" | cut -d, -f2) cpu_s=$(( (c1 - c0) / 100 )) rss_hwm=$(status_mib VmHWM)"
