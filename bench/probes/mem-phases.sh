#!/usr/bin/env bash
# mem-phases.sh [LABEL] [--set k=v ...]: mem.sh's phases (1.5 M records of 1 KiB into 8
# partitions, then 100, then a consume of the first topic) and 300 k records at 50 MiB/s,
# with the broker's RSS (anonymous, resident, peak) and its upkeep counters after each
# phase and each second of the idle time after it: the seals and WAL compactions that run
# once producers stop set the peak as often as the producers do.
set -u
LABEL=${1:-run}; shift || true
. "$(dirname "$0")/common.sh"
start_broker "$@"
counters() {
  curl -s "http://127.0.0.1:$HP/metrics" | awk '/^stratus_(segments_sealed_total|wal_compactions_total|wal_index_entries|wal_index_bytes) / {
    sub("stratus_", "", $1); printf "%s=%s ", $1, $2 }'
}
sample() {
  echo "$LABEL $1 anon=$(status_mib RssAnon) rss=$(status_mib VmRSS) peak=$(status_mib VmHWM) cpu=$(cpu_ticks) $(counters)"
}
idle() { for i in $(seq "$1"); do sleep 1; sample "  idle ${i}s"; done; }
topic t8 8; topic t100 100
produce t8 1500000 -1 > "$D/p8.txt" 2>&1; sample after-p8; idle 6
produce t100 1500000 -1 > "$D/p100.txt" 2>&1; sample after-p100; idle 6
"$K" consumer-perf --bootstrap-server "$BOOT" --topic t8 --messages 1500000 --timeout 60000 > "$D/c.txt" 2>&1
sample after-consume
produce t8 300000 51200 > "$D/lat.txt" 2>&1; sample after-50MiB/s; idle 12
