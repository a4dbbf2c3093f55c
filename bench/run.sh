#!/usr/bin/env bash
# Stratus vs Apache Kafka on this machine, in one run, with Kafka's own perf tools.
#
#   bench/run.sh                    # full run, ~10 min
#   BENCH_SCALE=0.2 bench/run.sh    # smoke run, ~2-3 min
#
# For each broker in turn (Kafka first, then Stratus; each on free 127.0.0.1 ports, with a
# fresh temporary data dir, started, measured and stopped before the next one):
#   warm-up      ProducerPerformance for BENCH_WARMUP_S s, 1 KiB, acks=all, 8 partitions; its
#                rate calibrates the record count of the throughput tests (~BENCH_PRODUCE_S s)
#   produce-p8   ProducerPerformance --throughput -1, 1 KiB records, acks=all, 8 partitions
#   consume-hot  bench/AssignConsumerPerf.java reads produce-p8's topic right after it
#   produce-p100 the same as produce-p8 with 100 partitions
#   produce-lat  ProducerPerformance at a fixed 51200 records/s of 1 KiB (50 MiB/s), 8 partitions
#   e2e          EndToEndLatency, acks=all, 1 KiB, BENCH_E2E_RECORDS messages, 1 partition
#   consume-cold produce-p8's topic again after dropping caches: the page cache of the broker's
#                data files is evicted (bench/evict.py, posix_fadvise DONTNEED; the global
#                drop_caches only with BENCH_DROP_CACHES=1), and Stratus is restarted so that
#                its own memory and disk caches are empty too.
# The broker's RSS and CPU are sampled every second (bench/sampler.py); for Stratus, object
# PUTs come from its debug log ("wal flushed" = one WAL PUT, "sealed segment" = one segment
# PUT) and GETs from the files it writes into its disk cache (bench/inotify_count.py).
# bench/report.py prints the table and writes bench/results/latest.md; the raw tool outputs
# are kept under bench/results/last-run/ (small files only; broker logs are summarised).
#
# Environment:
#   BENCH_SCALE=1          multiplies every duration and count below
#   BENCH_PRODUCE_S=18     target seconds of each throughput test (x scale)
#   BENCH_WARMUP_S=8       warm-up seconds (x scale, at least 4)
#   BENCH_LAT_S=15         seconds of the fixed-rate latency test (x scale)
#   BENCH_E2E_RECORDS=10000  EndToEndLatency messages (x scale)
#   BENCH_RECORDS=N        fixed record count for the throughput tests instead of calibrating
#   BENCH_BROKERS="kafka stratus"   which brokers to run
#   BENCH_STRATUS_SET="k=v ..."     extra --set for Stratus
#   BENCH_KEEP=1           keep the temporary work dir (broker logs, data dirs)
#   STRATUS_BIN=/tmp/bench-target/release/stratus
set -euo pipefail

BENCH="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$BENCH")"
KAFKA_CLI="$REPO/scripts/kafka-cli"
RUN_KAFKA="$REPO/scripts/run-kafka.sh"
CACHE="${STRATUS_CACHE:-$HOME/.cache/stratus}"
KAFKA_HOME="${KAFKA_HOME:-$(ls -d "$CACHE"/kafka-*/ 2>/dev/null | sort -V | tail -1)}"
KAFKA_HOME="${KAFKA_HOME%/}"
export KAFKA_HOME
STRATUS_BIN="${STRATUS_BIN:-/tmp/bench-target/release/stratus}"

SCALE="${BENCH_SCALE:-1}"
scaled() { python3 -c "import sys; print(max(int(sys.argv[3]), round(float(sys.argv[1]) * float(sys.argv[2]))))" "$1" "$SCALE" "${2:-1}"; }
PRODUCE_S=$(scaled "${BENCH_PRODUCE_S:-18}" 3)
WARMUP_S=$(scaled "${BENCH_WARMUP_S:-8}" 4)
LAT_S=$(scaled "${BENCH_LAT_S:-15}" 3)
E2E_RECORDS=$(scaled "${BENCH_E2E_RECORDS:-10000}" 500)
LAT_RATE=51200          # records/s of 1 KiB = 50 MiB/s
RECORD_SIZE=1024
BROKERS="${BENCH_BROKERS:-kafka stratus}"

[ -d "$KAFKA_HOME/lib" ] || { echo "bench: no Kafka jars under $CACHE (run scripts/install-test-deps.sh)" >&2; exit 2; }
case " $BROKERS " in *" stratus "*)
  [ -x "$STRATUS_BIN" ] || { echo "bench: $STRATUS_BIN missing; build it with: cd $REPO && CARGO_TARGET_DIR=/tmp/bench-target cargo build --release" >&2; exit 2; } ;;
esac

WORK="$(mktemp -d /tmp/stratus-bench.XXXXXX)"
RESULTS="$BENCH/results"
RAW="$RESULTS/last-run"
mkdir -p "$RESULTS"
rm -rf "$RAW"
mkdir -p "$RAW"

# --- process bookkeeping: everything started in the background is stopped by PID ----------
PIDS=()
stop_pid() {  # stop_pid PID [grace seconds]: TERM, wait, then KILL
  local pid="$1" grace="${2:-20}" i
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "bench: pid $pid did not stop in ${grace}s; killing" >&2
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
}
cleanup() {
  local rc=$? i
  trap - EXIT INT TERM
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}" 20; done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    echo "bench: work dir kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  [ "$rc" = 0 ] || echo "bench: FAILED (exit $rc); partial outputs in $RAW" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
forget_pid() { local p out=(); for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || out+=("$p"); done; PIDS=("${out[@]+"${out[@]}"}"); }

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_listening PID PORT: the port accepts connections and the socket belongs to PID
# (another process may already listen on a port; never benchmark someone else's broker).
wait_listening() {
  local pid="$1" port="$2" i
  for ((i = 0; i < 600; i++)); do
    kill -0 "$pid" 2>/dev/null || { log "process $pid exited before listening on $port"; return 1; }
    if ss -ltnpH "sport = :$port" 2>/dev/null | grep -q "pid=$pid,"; then return 0; fi
    sleep 0.1
  done
  log "process $pid is not listening on 127.0.0.1:$port after 60 s"
  return 1
}

# --- per-broker state --------------------------------------------------------------------
NAME="" BPID="" BOOT="" DIR="" BLOG="" SAMPLER="" WATCHER=""

cpu_ticks() { python3 - "$1" <<'PY'
import sys
rest = open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")", 1)[1].split()
print(int(rest[11]) + int(rest[12]))
PY
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
count_lines() { [ -f "$2" ] && grep -c -- "$1" "$2" || echo 0; }

# mark PHASE EVENT: one line "epoch name event cpu_ticks rss_kb wal_puts seg_puts gets"
mark() {
  local wal=0 seg=0 gets=0
  if [ "$NAME" = stratus ]; then
    wal=$(count_lines "wal flushed" "$BLOG")
    seg=$(count_lines "sealed segment" "$BLOG")
    gets=$( (grep -vc '^#' "$DIR/gets.txt" 2>/dev/null) || echo 0)
  fi
  echo "$(date +%s.%N) $1 $2 $(cpu_ticks "$BPID") $(rss_kb "$BPID") $wal $seg $gets" >> "$OUTD/marks.txt"
}

start_monitors() {
  python3 "$BENCH/sampler.py" "$BPID" "$OUTD/samples.csv" &
  SAMPLER=$!; PIDS+=("$SAMPLER")
  if [ "$NAME" = stratus ]; then
    python3 "$BENCH/inotify_count.py" "$DIR/data/cache" "$DIR/gets.txt" &
    WATCHER=$!; PIDS+=("$WATCHER")
  fi
}
stop_monitors() {
  if [ -n "$WATCHER" ]; then stop_pid "$WATCHER" 5; forget_pid "$WATCHER"; WATCHER=""; fi
  if [ -n "$SAMPLER" ]; then stop_pid "$SAMPLER" 5; forget_pid "$SAMPLER"; SAMPLER=""; fi
}

start_kafka() {
  local port cport
  port=$(free_port); cport=$(free_port)
  while [ "$cport" = "$port" ]; do cport=$(free_port); done
  BPID=$("$RUN_KAFKA" --data-dir "$DIR/data" --port "$port" --controller-port "$cport")
  PIDS+=("$BPID")
  BOOT="127.0.0.1:$port"
  BLOG="$DIR/data/kafka.log"
  wait_listening "$BPID" "$port"
}

STRATUS_PORT=""
start_stratus() {
  [ -n "$STRATUS_PORT" ] || STRATUS_PORT=$(free_port)
  local extra=() kv
  for kv in ${BENCH_STRATUS_SET:-}; do extra+=(--set "$kv"); done
  BLOG="$DIR/stratus.log"
  # wal/maintenance at debug: one "wal flushed" line per WAL PUT, "sealed segment" per segment PUT
  NO_COLOR=1 RUST_LOG="${BENCH_RUST_LOG:-info,stratus::wal=debug,stratus::maintenance=debug}" \
    "$STRATUS_BIN" --data-dir "$DIR/data" --listeners "PLAINTEXT://127.0.0.1:$STRATUS_PORT" \
    "${extra[@]+"${extra[@]}"}" >> "$BLOG" 2>&1 </dev/null &
  BPID=$!
  PIDS+=("$BPID")
  BOOT="127.0.0.1:$STRATUS_PORT"
  wait_listening "$BPID" "$STRATUS_PORT"
}

start_broker() { if [ "$NAME" = kafka ]; then start_kafka; else start_stratus; fi; start_monitors; }
stop_broker() {
  stop_monitors
  stop_pid "$BPID" 60
  forget_pid "$BPID"
  BPID=""
}

# --- workload steps ------------------------------------------------------------------------
T() { timeout -k 10 "$@"; }  # every client run is bounded

create_topic() {  # create_topic NAME PARTITIONS
  T 120 "$KAFKA_CLI" topics --bootstrap-server "$BOOT" --create --topic "$1" --partitions "$2" \
    --replication-factor 1 >> "$OUTD/topics.txt" 2>&1
}

producer_perf() {  # producer_perf OUTFILE TOPIC RECORDS THROUGHPUT [timeout]
  T "${5:-900}" "$KAFKA_CLI" producer-perf --topic "$2" --num-records "$3" --record-size "$RECORD_SIZE" \
    --throughput "$4" --reporting-interval 1000 \
    --command-property "bootstrap.servers=$BOOT" acks=all > "$OUTD/$1" 2>&1
}

consume() {  # consume OUTFILE TOPIC RECORDS
  T 600 java -Xmx1g -Dlog4j2.configurationFile="$KAFKA_HOME/config/log4j2.properties" \
    -cp "$WORK/classes:$KAFKA_HOME/lib/*" AssignConsumerPerf "$BOOT" "$2" "$3" 15000 > "$OUTD/$1" 2>&1
}

run_broker() {
  NAME="$1"
  DIR="$WORK/$NAME"
  OUTD="$RAW/$NAME"
  mkdir -p "$DIR" "$OUTD"
  log "$NAME: starting"
  start_broker
  log "$NAME: pid $BPID on $BOOT"

  sleep 3
  mark idle begin; sleep 5; mark idle end

  create_topic bench-warm 8
  create_topic bench-p8 8
  create_topic bench-p100 100
  create_topic bench-lat 8
  create_topic bench-e2e 1

  log "$NAME: warm-up ${WARMUP_S}s (calibrates the record count)"
  mark warmup begin
  timeout -s TERM -k 10 "$WARMUP_S" "$KAFKA_CLI" producer-perf --topic bench-warm --num-records 1000000000 \
    --record-size "$RECORD_SIZE" --throughput -1 --reporting-interval 1000 \
    --command-property "bootstrap.servers=$BOOT" acks=all > "$OUTD/warmup.txt" 2>&1 || true
  mark warmup end
  local records
  if [ -n "${BENCH_RECORDS:-}" ]; then
    records="$BENCH_RECORDS"
  else
    records=$(python3 "$BENCH/report.py" calibrate "$OUTD/warmup.txt" "$PRODUCE_S")
  fi
  echo "$records" > "$OUTD/records.txt"
  log "$NAME: $records records per throughput test"

  log "$NAME: produce-p8"
  mark produce-p8 begin; producer_perf produce-p8.txt bench-p8 "$records" -1; mark produce-p8 end
  log "$NAME: consume-hot"
  mark consume-hot begin; consume consume-hot.txt bench-p8 "$records"; mark consume-hot end
  if [ "$NAME" = kafka ]; then
    # Cross-check of AssignConsumerPerf with Kafka's own ConsumerPerformance (needs a group
    # coordinator, which Stratus does not have yet).
    T 600 "$KAFKA_CLI" consumer-perf --bootstrap-server "$BOOT" --topic bench-p8 --num-records "$records" \
      --timeout 15000 > "$OUTD/consumer-perf-hot.txt" 2>&1 || true
  fi
  log "$NAME: produce-p100"
  mark produce-p100 begin; producer_perf produce-p100.txt bench-p100 "$records" -1; mark produce-p100 end
  log "$NAME: produce-lat (${LAT_S}s at $LAT_RATE records/s)"
  mark produce-lat begin
  producer_perf produce-lat.txt bench-lat $((LAT_RATE * LAT_S)) "$LAT_RATE" $((LAT_S * 10 + 120))
  mark produce-lat end
  log "$NAME: e2e ($E2E_RECORDS messages)"
  mark e2e begin
  # EndToEndLatency commits offsets at the end; that fails on Stratus (no coordinator yet)
  # after the results are printed, so its exit status is not checked here.
  T 900 "$KAFKA_CLI" e2e-latency "$BOOT" bench-e2e "$E2E_RECORDS" all "$RECORD_SIZE" > "$OUTD/e2e.txt" 2>&1 || true
  mark e2e end

  log "$NAME: dropping caches for the cold read"
  if [ "$NAME" = stratus ]; then
    mark restart begin
    stop_broker
    python3 "$BENCH/evict.py" "$DIR/data" > "$OUTD/evict.txt" 2>&1
    start_broker
    sleep 2
    mark restart end
  else
    python3 "$BENCH/evict.py" "$DIR/data" > "$OUTD/evict.txt" 2>&1
  fi
  log "$NAME: consume-cold"
  mark consume-cold begin; consume consume-cold.txt bench-p8 "$records"; mark consume-cold end

  log "$NAME: stopping"
  du -sb "$DIR/data" > "$OUTD/du.txt" 2>/dev/null || true
  stop_broker
  # Keep the broker log small: Kafka's whole (warnings only), Stratus' without the per-PUT lines
  # (report.py summarises those).
  if [ "$NAME" = stratus ]; then
    python3 "$BENCH/report.py" stratus-log "$BLOG" > "$OUTD/stratus-log-summary.txt"
    grep -v -e "wal flushed" -e "sealed segment" "$BLOG" | tail -n 2000 > "$OUTD/broker.log" || true
  else
    tail -n 2000 "$BLOG" > "$OUTD/broker.log" || true
  fi
}

# --- main ------------------------------------------------------------------------------------
mkdir -p "$WORK/classes"
javac -nowarn -cp "$KAFKA_HOME/lib/*" -d "$WORK/classes" "$BENCH/AssignConsumerPerf.java"

{
  echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "command=BENCH_SCALE=$SCALE bench/run.sh"
  echo "git=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$REPO" diff --quiet HEAD -- src 2>/dev/null || echo '+dirty-src')"
  echo "stratus_bin=$STRATUS_BIN"
  echo "kafka=$(basename "$KAFKA_HOME")"
  echo "java=$(java -version 2>&1 | head -1)"
  echo "cpus=$(nproc)"
  echo "mem_gib=$(awk '/MemTotal/ {printf "%.1f", $2/1048576}' /proc/meminfo)"
  echo "scale=$SCALE produce_s=$PRODUCE_S warmup_s=$WARMUP_S lat_s=$LAT_S e2e_records=$E2E_RECORDS"
  echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
} > "$RAW/env.txt"

for b in $BROKERS; do run_broker "$b"; done
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >> "$RAW/env.txt"

python3 "$BENCH/report.py" table "$RAW" "$RESULTS/latest.md"
