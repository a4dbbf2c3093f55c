#!/usr/bin/env bash
# hot.sh [LABEL] [RECORDS] [--set k=v ...]: RECORDS (2,545,000) of 1 KiB into 8 partitions at
# full speed, then bench/AssignConsumerPerf.java reads them back at once ("hot", as
# bench/run.sh's consume-hot: seals still run) and once more; per read: its RESULT line,
# the broker's CPU seconds and minor page faults. Then the peak RSS.
set -u
LABEL=${1:-run}; shift || true
N=${1:-2545000}; shift || true
. "$(dirname "$0")/common.sh"
KH=$(ls -d ~/.cache/stratus/kafka-*/ | sort -V | tail -1); KH=${KH%/}
start_broker "$@"
mkdir -p "$D/classes"
javac -nowarn -cp "$KH/lib/*" -d "$D/classes" "$REPO/bench/AssignConsumerPerf.java"
topic t8 8
produce t8 "$N" -1 > "$D/p8.txt" 2>&1
echo "== $LABEL produce: $(tail -1 "$D/p8.txt" | cut -d'(' -f2 | cut -d')' -f1)"
for r in 1 2; do
  c0=$(cpu_ticks); f0=$(faults)
  java -Xmx1g -Dlog4j2.configurationFile="$KH/config/log4j2.properties" -cp "$D/classes:$KH/lib/*" \
    AssignConsumerPerf "$BOOT" t8 "$N" 15000 > "$D/c$r.txt" 2>&1
  c1=$(cpu_ticks); f1=$(faults)
  echo "== $LABEL read $r: $(grep RESULT "$D/c$r.txt" | grep -o 'MBps=[0-9.]*\|steady_MBps=[0-9.]*' | tr '\n' ' ')broker_cpu_s=$(((c1 - c0) / 100)).$(printf %02d $(((c1 - c0) % 100))) minor_faults=$((f1 - f0))"
done
echo "== $LABEL peak RSS $(status_mib VmHWM) MiB"
