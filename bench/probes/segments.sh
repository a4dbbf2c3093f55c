#!/usr/bin/env bash
# segments.sh [LABEL] [--set k=v ...]: a partition's record under a steady load. A fresh
# etcd (scripts/run-etcd.sh, port PROBE_ETCD_PORT or 23795) and one broker on it (local
# object store); 180 s of produce at 5 MiB/s into one partition with segment.bytes of
# 1 MiB (about 5 seals a second), merges from 100 segments on, every 5 s. Every 30 s it
# prints the segments sealed, the segments the partition's record names, that record's
# bytes in etcd, and the merges so far. `--set segment.merge.interval.ms=0` shows the
# record without merging.
set -u
LABEL=${1:-run}; shift || true
. "$(dirname "$0")/common.sh"
start_etcd
start_broker --set "metadata.store.url=etcd://127.0.0.1:$EPORT/probe" \
  --set segment.merge.min.segments=100 --set segment.merge.min.age.ms=0 \
  --set segment.merge.interval.ms=5000 --set seal.check.interval.ms=200 "$@"
"$K" topics --bootstrap-server "$BOOT" --create --topic t --partitions 1 \
  --config segment.bytes=1048576 > /dev/null
ETCDCTL=${STRATUS_CACHE:-$HOME/.cache/stratus}/bin/etcdctl
metric() { curl -s "127.0.0.1:$HP/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
record() {
  "$ETCDCTL" --endpoints "127.0.0.1:$EPORT" get --prefix /probe/partitions/ --print-value-only \
    | python3 -c 'import json, sys
v = sys.stdin.read().strip()
print(len(json.loads(v)["segments"]) if v else 0, len(v.encode()))'
}
produce t $((5120 * 180)) 5120 > "$D/p.txt" 2>&1 &
PP=$!
for t in 30 60 90 120 150 180; do
  sleep 30
  read -r named bytes < <(record)
  echo "== $LABEL ${t}s: sealed $(metric stratus_segments_sealed_total), record names $named" \
    "segments in $bytes bytes, merges $(metric stratus_segment_merges_total)"
done
wait "$PP"
echo "== $LABEL produce: $(tail -1 "$D/p.txt" | cut -d, -f2)"
