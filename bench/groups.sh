#!/usr/bin/env bash
# Consumer groups, Stratus vs Apache Kafka on this machine, repeated.
#
#   bench/groups.sh                                   # 3 runs, 50 consumers, 100 partitions,
#                                                     # both protocols: ~8 min on 2 cores
#   BENCH_CONSUMERS=20 BENCH_REPEAT=1 bench/groups.sh # a quick look (one run: no spread)
#
# Build the broker first (this script builds nothing):
#   CARGO_TARGET_DIR=/tmp/bench-target cargo build --release
#
# BENCH_REPEAT runs (default 3); each run starts every broker once, with a fresh data dir on
# free loopback ports, in alternating order (run 1: kafka, stratus; run 2: stratus, kafka;
# ...). On each, for each group protocol (classic with the cooperative-sticky assignor, and
# consumer / KIP-848), bench/GroupBench.java runs BENCH_CONSUMERS consumers in one JVM on a
# BENCH_PARTITIONS-partition topic and measures:
#   stable_ms      from the first subscribe until every partition is owned by exactly one
#                  consumer and the shares are even (both brokers run with
#                  group.initial.rebalance.delay.ms=0, as scripts/run-kafka.sh sets for Kafka)
#   rebalance_ms   from one consumer's close() until the others own every partition again
#   commits_per_s  synchronous OffsetCommits per second from all consumers together
# The run FAILS (no table) if GroupBench exits non-zero: the group never became stable or
# never rebalanced within 120 s, no commit succeeded, or a consumer died; or if a broker exits.
# bench/report.py groups-table writes bench/results/groups.md: per figure and protocol,
# Kafka median [min–max], Stratus median [min–max], the ratio of the medians, each run's
# values, the settings (Stratus' --set values as the broker reports them) and the machine.
# Raw outputs: bench/results/groups-last-run/.
#
# Environment:
#   BENCH_REPEAT=3  BENCH_CONSUMERS=50  BENCH_PARTITIONS=100  BENCH_COMMIT_S=10
#   BENCH_PROTOCOLS="classic consumer"  BENCH_BROKERS="kafka stratus" (run 1's order)
#   BENCH_STRATUS_SET="k=v ..."   extra Stratus settings (--set), recorded in the report
#   BENCH_RESULTS=DIR (default bench/results)   STRATUS_BIN   KAFKA_HOME
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1

BENCH="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$BENCH")"
CACHE="${STRATUS_CACHE:-$HOME/.cache/stratus}"
KAFKA_HOME="${KAFKA_HOME:-$(ls -d "$CACHE"/kafka-*/ 2>/dev/null | sort -V | tail -1)}"
KAFKA_HOME="${KAFKA_HOME%/}"
export KAFKA_HOME
STRATUS_BIN="${STRATUS_BIN:-/tmp/bench-target/release/stratus}"
CONSUMERS="${BENCH_CONSUMERS:-50}"
PARTITIONS="${BENCH_PARTITIONS:-100}"
COMMIT_S="${BENCH_COMMIT_S:-10}"
PROTOCOLS="${BENCH_PROTOCOLS:-classic consumer}"
BROKERS="${BENCH_BROKERS:-kafka stratus}"
REPEAT="${BENCH_REPEAT:-3}"
STRATUS_SET="group.initial.rebalance.delay.ms=0 ${BENCH_STRATUS_SET:-}"

die() { echo "groups: $*" >&2; exit 2; }
[[ "$REPEAT" =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPEAT must be a positive integer"
for b in $BROKERS; do case "$b" in kafka|stratus) ;; *) die "unknown broker '$b'";; esac; done
[ -d "$KAFKA_HOME/lib" ] || die "no Kafka jars under $CACHE (run scripts/install-test-deps.sh)"
case " $BROKERS " in *" stratus "*)
  [ -x "$STRATUS_BIN" ] || die "no Stratus binary at $STRATUS_BIN (cargo build --release, or set STRATUS_BIN)" ;;
esac

WORK="$(mktemp -d "${TMPDIR:-/tmp}/stratus-groups-bench.XXXXXX")"
RESULTS="${BENCH_RESULTS:-$BENCH/results}"
RAW="$RESULTS/groups-last-run"
rm -rf "$RAW"
mkdir -p "$RAW"

PID="" NAME="" RUN=""
stop_pid() {  # cleanup: TERM, wait up to 60 s, KILL (errors tolerated)
  local pid="$1" i
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 600; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$PID"
  rm -rf "$WORK"
  [ "$rc" = 0 ] || echo "groups: FAILED (exit $rc); no table was written; outputs in $RAW" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
fail() { log "FAILED: ${NAME:+$NAME, run $RUN: }$*"; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_listening() {  # PID PORT: the port is open and belongs to PID
  local i
  for ((i = 0; i < 600; i++)); do
    kill -0 "$1" 2>/dev/null || fail "the broker exited before listening on $2"
    if ss -ltnpH "sport = :$2" 2>/dev/null | grep -q "pid=$1,"; then return 0; fi
    sleep 0.1
  done
  fail "the broker does not listen on 127.0.0.1:$2 after 60 s"
}

start_broker() {  # NAME PORT DIR -> sets PID
  local port="$2" dir="$3" sets=() unset=() kv v
  if [ "$1" = kafka ]; then
    # scripts/run-kafka.sh sets group.initial.rebalance.delay.ms=0
    PID=$("$REPO/scripts/run-kafka.sh" --data-dir "$dir/data" --port "$port" --controller-port "$(free_port)")
  else
    for kv in $STRATUS_SET; do sets+=(--set "$kv"); done
    # the broker gets no STRATUS_* variables (they would change its settings unseen)
    for v in $(compgen -e); do if [[ "$v" == STRATUS_* ]]; then unset+=(-u "$v"); fi; done
    env "${unset[@]+"${unset[@]}"}" "$STRATUS_BIN" --data-dir "$dir/data" --listeners "PLAINTEXT://127.0.0.1:$port" \
      "${sets[@]}" > "$dir/stratus.log" 2>&1 < /dev/null &
    PID=$!
  fi
  wait_listening "$PID" "$port"
}

# the table's run metadata
{
  echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "command=$(for v in BENCH_REPEAT BENCH_CONSUMERS BENCH_PARTITIONS BENCH_COMMIT_S BENCH_PROTOCOLS BENCH_BROKERS BENCH_STRATUS_SET; do
    [ -z "${!v:-}" ] || printf '%s="%s" ' "$v" "${!v}"; done)bench/groups.sh"
  echo "git=$(git -C "$REPO" rev-parse --short=10 HEAD)$([ -z "$(git -C "$REPO" status --porcelain -- src Cargo.toml Cargo.lock)" ] || echo '+dirty(src)')"
  if [ -x "$STRATUS_BIN" ]; then
    echo "stratus_version=$("$STRATUS_BIN" --version)"
    echo "stratus_built=$(date -u -r "$STRATUS_BIN" +%Y-%m-%dT%H:%M:%SZ)${STRATUS_BUILD_COMMIT:+ from $STRATUS_BUILD_COMMIT}"
  fi
  echo "stratus_set=$STRATUS_SET"
  echo "kafka=$(basename "$KAFKA_HOME")"
  echo "java=$(java -version 2>&1 | head -1)"
  echo "cpus=$(nproc)"
  echo "mem_gib=$(awk '/MemTotal/ {printf "%.1f", $2/1048576}' /proc/meminfo)"
  echo "consumers=$CONSUMERS"
  echo "partitions=$PARTITIONS"
  echo "commit_s=$COMMIT_S"
  echo "protocols=$PROTOCOLS"
  echo "repeat=$REPEAT"
} > "$RAW/env.txt"

ORDER=($BROKERS)
JAVA=(java -Xmx2g -cp "$KAFKA_HOME/lib/*" -Dlog4j2.configurationFile="$KAFKA_HOME/config/log4j2.properties")
for ((r = 1; r <= REPEAT; r++)); do
  order=()
  if ((r % 2 == 1)); then order=("${ORDER[@]}"); else for ((i = ${#ORDER[@]} - 1; i >= 0; i--)); do order+=("${ORDER[i]}"); done; fi
  echo "order_run_$r=${order[*]}" >> "$RAW/env.txt"
  for NAME in "${order[@]}"; do
    RUN=$r
    out="$RAW/run-$r/$NAME"
    dir="$WORK/run-$r/$NAME"
    mkdir -p "$out" "$dir"
    port=$(free_port)
    log "run $r of $REPEAT: $NAME starting"
    start_broker "$NAME" "$port" "$dir"
    timeout -k 10 120 "${JAVA[@]}" "$BENCH/BrokerConfigs.java" "127.0.0.1:$port" 1 > "$out/configs.txt" 2>&1 \
      || { tail -n 20 "$out/configs.txt" >&2; fail "BrokerConfigs failed"; }
    timeout -k 10 120 "$REPO/scripts/kafka-cli" topics --bootstrap-server "127.0.0.1:$port" --create --topic gbench \
      --partitions "$PARTITIONS" --replication-factor 1 > "$out/topics.txt" 2>&1 \
      || { tail -n 20 "$out/topics.txt" >&2; fail "creating the topic failed"; }
    for proto in $PROTOCOLS; do
      log "$NAME, run $r: $proto protocol, $CONSUMERS consumers"
      rc=0
      timeout -k 10 600 "${JAVA[@]}" "$BENCH/GroupBench.java" "127.0.0.1:$port" gbench "$PARTITIONS" "$CONSUMERS" \
        "$proto" "$COMMIT_S" > "$out/$proto.txt" 2> "$out/$proto.err" || rc=$?
      cat "$out/$proto.txt" >&2
      if [ "$rc" != 0 ]; then
        tail -n 20 "$out/$proto.err" >&2
        fail "GroupBench ($proto) failed (exit status $rc$([ "$rc" != 124 ] || echo ': timed out after 600 s'))"
      fi
      kill -0 "$PID" 2>/dev/null || fail "the broker exited during the $proto test"
    done
    stop_pid "$PID"; PID=""
    [ "$NAME" != stratus ] || tail -n 2000 "$dir/stratus.log" > "$out/broker.log"
    [ "$NAME" != kafka ] || tail -n 2000 "$dir/data/kafka.log" > "$out/broker.log"
    rm -rf "$dir"
  done
done

python3 "$BENCH/report.py" groups-table "$RAW" "$RESULTS/groups.md"
