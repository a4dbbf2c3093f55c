#!/usr/bin/env bash
# etcd_growth.sh [LABEL] [--set k=v ...]: how fast a broker grows etcd's data. A fresh etcd
# (scripts/run-etcd.sh, port PROBE_ETCD_PORT or 23795) and one broker on it (local object
# store), 60 s of produce at 50 MiB/s into 8 partitions; prints etcd's data in use and its
# file size before, after, and 15 s later. `--set metadata.store.compaction.interval.ms=0`
# shows the growth without compaction of etcd's history; the default interval (60 s) first
# compacts at its second round, after the probe, so pass a shorter one (10000) to see it.
set -u
LABEL=${1:-run}; shift || true
. "$(dirname "$0")/common.sh"
start_etcd
start_broker --set "metadata.store.url=etcd://127.0.0.1:$EPORT/probe" "$@"
size() {
  curl -s "127.0.0.1:$EPORT/metrics" | awk '
    /^etcd_mvcc_db_total_size_in_use_in_bytes/ {u = $2}
    /^etcd_mvcc_db_total_size_in_bytes/ {t = $2}
    END {printf "in use %.1f MB, file %.1f MB", u / 1e6, t / 1e6}'
}
topic t 8
echo "== $LABEL before: $(size)"
produce t $((51200 * 60)) 51200 > "$D/p.txt" 2>&1
echo "== $LABEL after 60 s of 50 MiB/s: $(size) ($(tail -1 "$D/p.txt" | cut -d, -f2))"
sleep 15
echo "== $LABEL 15 s later: $(size)"
