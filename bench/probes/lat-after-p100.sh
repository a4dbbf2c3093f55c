#!/usr/bin/env bash
# lat-after-p100.sh [LABEL] [--set k=v ...]: 2,545,000 records of 1 KiB into 100 partitions at
# full speed, then at once 50 MiB/s into 8 partitions for 25 s (the first 10 s as warm-up
# records), as bench/run.sh's produce-p100 then produce-lat: the latency test runs while
# the first test's seals and WAL compaction do. After each phase: the broker's RSS, its
# peak, and the WAL index's entries and bytes.
set -u
LABEL=${1:-run}; shift || true
. "$(dirname "$0")/common.sh"
start_broker "$@"
topic t100 100; topic lat 8
index() {
  curl -s "http://127.0.0.1:$HP/metrics" | awk '/^stratus_wal_index_(entries|bytes) / {
    sub("stratus_wal_", "", $1); printf "%s=%s ", $1, $2 }'
}
mem() { echo "rss=$(status_mib VmRSS) peak=$(status_mib VmHWM) MiB $(index)"; }
produce t100 2545000 -1 > "$D/p100.txt" 2>&1
echo "== $LABEL 100 p: $(tail -1 "$D/p100.txt" | cut -d, -f2); $(mem)"
produce lat $((51200 * 25)) 51200 --warmup-records $((51200 * 10)) > "$D/lat.txt" 2>&1
echo "== $LABEL 50 MiB/s: $(grep -i steady "$D/lat.txt" | tail -1 | cut -d, -f2-); $(mem)"
