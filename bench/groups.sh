#!/usr/bin/env bash
# Consumer groups, Stratus vs Apache Kafka on this machine in one run.
#
#   bench/groups.sh                  # 50 consumers, 100 partitions, both protocols
#   BENCH_CONSUMERS=20 bench/groups.sh
#
# For each broker in turn (Kafka first, then Stratus, each with a fresh data dir on free
# loopback ports, default settings), and for each group protocol (classic with the
# cooperative-sticky assignor, and consumer / KIP-848), bench/GroupBench.java runs
# BENCH_CONSUMERS consumers in one JVM on a BENCH_PARTITIONS-partition topic and measures:
#   stable_ms      from the first subscribe until every partition is owned by exactly one
#                  consumer and the shares are even (both brokers run with
#                  group.initial.rebalance.delay.ms=0, as scripts/run-kafka.sh sets for Kafka)
#   rebalance_ms   from one consumer's close() until the others own every partition again
#   commits_per_s  synchronous OffsetCommits per second from all consumers together
# Prints a table with Stratus ÷ Kafka and writes it to bench/results/groups.md.
set -euo pipefail

BENCH="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$BENCH")"
CACHE="${STRATUS_CACHE:-$HOME/.cache/stratus}"
KAFKA_HOME="${KAFKA_HOME:-$(ls -d "$CACHE"/kafka-*/ 2>/dev/null | sort -V | tail -1)}"
KAFKA_HOME="${KAFKA_HOME%/}"
STRATUS_BIN="${STRATUS_BIN:-/tmp/bench-target/release/stratus}"
CONSUMERS="${BENCH_CONSUMERS:-50}"
PARTITIONS="${BENCH_PARTITIONS:-100}"
COMMIT_S="${BENCH_COMMIT_S:-10}"
PROTOCOLS="${BENCH_PROTOCOLS:-classic consumer}"

[ -x "$STRATUS_BIN" ] || { echo "no Stratus binary at $STRATUS_BIN (cargo build --release, or set STRATUS_BIN)" >&2; exit 2; }
[ -d "$KAFKA_HOME/lib" ] || { echo "no Kafka jars under $CACHE (run scripts/install-test-deps.sh)" >&2; exit 2; }

WORK="$(mktemp -d /tmp/stratus-groups-bench.XXXXXX)"
PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 300); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}

start_broker() { # name port -> sets PID
  local name="$1" port="$2"
  if [ "$name" = kafka ]; then
    PID=$("$REPO/scripts/run-kafka.sh" --data-dir "$WORK/kafka" --port "$port" --controller-port "$(free_port)" | tail -1)
  else
    # scripts/run-kafka.sh gives Kafka group.initial.rebalance.delay.ms=0: the same here.
    "$STRATUS_BIN" --data-dir "$WORK/stratus" --listeners "PLAINTEXT://127.0.0.1:$port" \
      --set group.initial.rebalance.delay.ms=0 >"$WORK/stratus.log" 2>&1 &
    PID=$!
  fi
  wait_port "$port" || { echo "$name did not start" >&2; exit 1; }
}

declare -A R
for broker in kafka stratus; do
  port=$(free_port)
  start_broker "$broker" "$port"
  "$REPO/scripts/kafka-cli" topics --bootstrap-server "127.0.0.1:$port" --create --topic gbench \
    --partitions "$PARTITIONS" --replication-factor 1 >/dev/null
  for proto in $PROTOCOLS; do
    echo "== $broker, $proto protocol, $CONSUMERS consumers" >&2
    out=$(java -Xmx2g -cp "$KAFKA_HOME/lib/*" -Dlog4j2.configurationFile="$KAFKA_HOME/config/log4j2.yaml" \
      "$BENCH/GroupBench.java" "127.0.0.1:$port" gbench "$PARTITIONS" "$CONSUMERS" "$proto" "$COMMIT_S" 2>"$WORK/$broker-$proto.err" || true)
    echo "$out" >&2
    for k in stable_ms rebalance_ms commits_per_s; do
      R["$broker,$proto,$k"]=$(echo "$out" | awk -v k="$k" '$1==k {print $2}')
    done
  done
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
done

mkdir -p "$BENCH/results"
{
  echo "# Consumer groups: Stratus vs Apache Kafka"
  echo
  echo "$CONSUMERS consumers, $PARTITIONS partitions, one JVM (bench/GroupBench.java), $(nproc) CPUs, $(date -u +%FT%TZ)"
  echo
  echo "| metric | protocol | Kafka | Stratus | Stratus ÷ Kafka |"
  echo "|---|---|---:|---:|---:|"
  for proto in $PROTOCOLS; do
    for k in stable_ms rebalance_ms commits_per_s; do
      kv="${R[kafka,$proto,$k]:-}"; sv="${R[stratus,$proto,$k]:-}"
      ratio=$(python3 -c "import sys
try: print(f'{float(sys.argv[2])/float(sys.argv[1]):.2f}')
except Exception: print('—')" "${kv:-x}" "${sv:-x}")
      echo "| $k | $proto | ${kv:-—} | ${sv:-—} | $ratio |"
    done
  done
  echo
  echo "Lower is better for *_ms, higher for commits_per_s. Command: \`bench/groups.sh\`"
} | tee "$BENCH/results/groups.md"
