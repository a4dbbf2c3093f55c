#!/usr/bin/env bash
# Stratus vs Apache Kafka on this machine, in one run, with Kafka's own perf tools.
#
#   bench/run.sh                    # full run, ~9 min on 2 cores (more with BENCH_WAIT_QUIET_S)
#   BENCH_SCALE=0.2 bench/run.sh    # smoke run, ~3 min
#
# For each broker in turn (Kafka first, then Stratus; each on free 127.0.0.1 ports, with a
# fresh temporary data dir, started, measured and stopped before the next one):
#   warm-up      ProducerPerformance for BENCH_WARMUP_S s, 1 KiB, acks=all, 8 partitions (warms
#                the broker up); its last rates calibrate the record count of the throughput
#                tests so that each lasts ~BENCH_PRODUCE_S s
#   produce-p8   ProducerPerformance --throughput -1, 1 KiB records, acks=all, 8 partitions; the
#                first third of the records is --warmup-records (every test starts a new client
#                JVM, which needs several seconds of JIT to reach full speed on 2 cores), and the
#                table shows the steady-state line ProducerPerformance prints for the rest
#   consume-hot  bench/AssignConsumerPerf.java reads produce-p8's topic right after it
#   produce-p100 the same as produce-p8 with 100 partitions
#   produce-lat  ProducerPerformance at a fixed 51200 records/s of 1 KiB (50 MiB/s), 8 partitions,
#                BENCH_LAT_WARMUP_S s of --warmup-records, then BENCH_LAT_S s measured
#   e2e          EndToEndLatency, acks=all, 1 KiB, BENCH_E2E_RECORDS messages, 1 partition
#   consume-cold produce-p8's topic again after dropping caches: the page cache of the broker's
#                data files is evicted (bench/evict.py, posix_fadvise DONTNEED; the global
#                drop_caches only with BENCH_DROP_CACHES=1), and Stratus is restarted so that
#                its own memory and disk caches are empty too.
# The broker's RSS and CPU are sampled every second (bench/sampler.py); for Stratus, object
# PUTs come from its debug log ("wal flushed" = one WAL PUT, "sealed segment" = one segment
# PUT) and GETs from inotify on its local object store directory (bench/objwatch.py: every
# ranged GET opens the object file), which also counts new objects as a cross-check of PUTs.
# bench/report.py prints the table and writes bench/results/latest.md; the raw tool outputs
# are kept under bench/results/last-run/ (small files only; broker logs are summarised).
#
# Environment:
#   BENCH_SCALE=1          multiplies every duration and count below
#   BENCH_PRODUCE_S=30     target seconds of each throughput test, warm-up third included (x scale)
#   BENCH_WARMUP_S=15      warm-up seconds (x scale, at least 8)
#   BENCH_LAT_S=15         measured seconds of the fixed-rate latency test (x scale)
#   BENCH_LAT_WARMUP_S=10  its warm-up seconds (x scale, at least 3)
#   BENCH_E2E_RECORDS=10000  EndToEndLatency messages (x scale)
#   BENCH_RECORDS=N        fixed record count for the throughput tests instead of calibrating
#   BENCH_BROKERS="kafka stratus"   which brokers to run
#   BENCH_STRATUS_SET="k=v ..."     extra --set for Stratus
#   BENCH_WAIT_QUIET_S=0   wait up to this long before each broker and each test for other
#                          processes to use less than BENCH_QUIET_CORES=0.3 cores (the machine
#                          may be shared; their load per test is reported either way)
#   BENCH_KEEP=1           keep the temporary work dir (broker logs, data dirs)
#   BENCH_RESULTS=DIR      where latest.md and last-run/ go (default bench/results)
#   STRATUS_BIN=/tmp/bench-target/release/stratus
#   STRATUS_BUILD_COMMIT=abc123   recorded in the report (the commit the binary was built from)
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in bench/

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
PRODUCE_S=$(scaled "${BENCH_PRODUCE_S:-30}" 5)
WARMUP_S=$(scaled "${BENCH_WARMUP_S:-15}" 8)
LAT_S=$(scaled "${BENCH_LAT_S:-15}" 3)
LAT_WARMUP_S=$(scaled "${BENCH_LAT_WARMUP_S:-10}" 3)
E2E_RECORDS=$(scaled "${BENCH_E2E_RECORDS:-10000}" 500)
LAT_RATE=51200          # records/s of 1 KiB = 50 MiB/s
RECORD_SIZE=1024
BROKERS="${BENCH_BROKERS:-kafka stratus}"

[ -d "$KAFKA_HOME/lib" ] || { echo "bench: no Kafka jars under $CACHE (run scripts/install-test-deps.sh)" >&2; exit 2; }
case " $BROKERS " in *" stratus "*)
  [ -x "$STRATUS_BIN" ] || { echo "bench: $STRATUS_BIN missing; build it with: cd $REPO && CARGO_TARGET_DIR=/tmp/bench-target cargo build --release" >&2; exit 2; } ;;
esac

WORK="$(mktemp -d /tmp/stratus-bench.XXXXXX)"
RESULTS="${BENCH_RESULTS:-$BENCH/results}"
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
exec 3>&1 4>&2  # the script's own stdout/stderr: a trap may run inside a redirected command
cleanup() {
  local rc=$? i
  trap - EXIT INT TERM
  exec 1>&3 2>&4
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
count_lines() { local n; n=$(grep -c -- "$1" "$2" 2>/dev/null) || true; echo "${n:-0}"; }

# mark PHASE EVENT: one line "epoch name event cpu_ticks rss_kb wal_puts seg_puts gets new_objects"
mark() {
  local wal=0 seg=0 gets=0 objs=0
  if [ "$NAME" = stratus ]; then
    wal=$(count_lines "wal flushed" "$BLOG")
    seg=$(count_lines "sealed segment" "$BLOG")
    gets=$(count_lines "^G " "$DIR/objects.txt")
    objs=$(count_lines "^P " "$DIR/objects.txt")
  fi
  echo "$(date +%s.%N) $1 $2 $(cpu_ticks "$BPID") $(rss_kb "$BPID") $wal $seg $gets $objs" >> "$OUTD/marks.txt"
}

start_watcher() {  # Stratus' object requests; started before the broker
  mkdir -p "$DIR/data/objects"
  python3 "$BENCH/objwatch.py" "$DIR/data/objects" "$DIR/objects.txt" 3>&- 4>&- &
  WATCHER=$!; PIDS+=("$WATCHER")
  local i
  for ((i = 0; i < 50; i++)); do grep -q "^# watching" "$DIR/objects.txt" 2>/dev/null && return 0; sleep 0.1; done
}
start_monitors() {
  python3 "$BENCH/sampler.py" "$BPID" "$OUTD/samples.csv" "$$" 3>&- 4>&- &
  SAMPLER=$!; PIDS+=("$SAMPLER")
}
stop_monitors() {
  if [ -n "$WATCHER" ]; then stop_pid "$WATCHER" 5; forget_pid "$WATCHER"; WATCHER=""; fi
  if [ -n "$SAMPLER" ]; then stop_pid "$SAMPLER" 5; forget_pid "$SAMPLER"; SAMPLER=""; fi
}

start_kafka() {
  local port cport
  port=$(free_port); cport=$(free_port)
  while [ "$cport" = "$port" ]; do cport=$(free_port); done
  BPID=$("$RUN_KAFKA" --data-dir "$DIR/data" --port "$port" --controller-port "$cport" 3>&- 4>&-)
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
    "${extra[@]+"${extra[@]}"}" >> "$BLOG" 2>&1 </dev/null 3>&- 4>&- &
  BPID=$!
  PIDS+=("$BPID")
  BOOT="127.0.0.1:$STRATUS_PORT"
  wait_listening "$BPID" "$STRATUS_PORT"
}

start_broker() {
  if [ "$NAME" = kafka ]; then start_kafka; else start_watcher; start_stratus; fi
  start_monitors
}
stop_broker() {
  stop_pid "$BPID" 60
  forget_pid "$BPID"
  BPID=""
  stop_monitors
}

# --- workload steps ------------------------------------------------------------------------
# T SECONDS CMD...: every client run is bounded, and runs in the background while the script
# waits, so that a TERM/INT to the script interrupts the wait and the cleanup stops it by PID.
T() {
  timeout -k 10 "$@" 3>&- 4>&- &
  local p=$! rc=0
  PIDS+=("$p")
  wait "$p" || rc=$?
  forget_pid "$p"
  return "$rc"
}

# the helpers compiled from bench/*.java: "${JAVA_TOOL[@]}" CLASS ARGS...
JAVA_TOOL=(java -Xmx1g -Dlog4j2.configurationFile="$KAFKA_HOME/config/log4j2.properties"
  -cp "$WORK/classes:$KAFKA_HOME/lib/*")

producer_perf() {  # producer_perf OUTFILE TOPIC RECORDS WARMUP_RECORDS THROUGHPUT [timeout]
  T "${6:-900}" "$KAFKA_CLI" producer-perf --topic "$2" --num-records "$3" --warmup-records "$4" \
    --record-size "$RECORD_SIZE" --throughput "$5" --reporting-interval 1000 \
    --command-property "bootstrap.servers=$BOOT" acks=all > "$OUTD/$1" 2>&1
}

consume() {  # consume OUTFILE TOPIC RECORDS
  T 600 "${JAVA_TOOL[@]}" AssignConsumerPerf "$BOOT" "$2" "$3" 15000 > "$OUTD/$1" 2>&1
}

# Other users of the machine: with BENCH_WAIT_QUIET_S=N, wait up to N s before each broker
# and each measured test until processes other than ours use less than BENCH_QUIET_CORES
# (default 0.3) cores. The load during each test is recorded either way (samples.csv).
gate() {  # gate LABEL
  [ "${BENCH_WAIT_QUIET_S:-0}" -gt 0 ] || return 0
  local busy
  busy=$(python3 "$BENCH/quiet.py" "$$" "${BPID:-$$}" "$BENCH_WAIT_QUIET_S" "${BENCH_QUIET_CORES:-0.3}")
  log "$NAME $1: other processes use $busy cores"
  echo "quiet_${NAME}_$1=$busy" >> "$RAW/env.txt"
}

run_broker() {
  NAME="$1"
  BPID=""
  gate start
  DIR="$WORK/$NAME"
  OUTD="$RAW/$NAME"
  mkdir -p "$DIR" "$OUTD"
  log "$NAME: starting"
  start_broker
  log "$NAME: pid $BPID on $BOOT"

  sleep 3
  mark idle begin; sleep 5; mark idle end

  T 120 "${JAVA_TOOL[@]}" CreateTopics "$BOOT" bench-warm:8 bench-p8:8 bench-p100:100 bench-lat:8 bench-e2e:1 \
    > "$OUTD/topics.txt" 2>&1

  log "$NAME: warm-up ${WARMUP_S}s (calibrates the record count)"
  gate warmup
  mark warmup begin
  # Runs until WARMUP_S seconds after its first progress line (JVM start is not counted).
  "$KAFKA_CLI" producer-perf --topic bench-warm --num-records 1000000000 \
    --record-size "$RECORD_SIZE" --throughput -1 --reporting-interval 1000 \
    --command-property "bootstrap.servers=$BOOT" acks=all > "$OUTD/warmup.txt" 2>&1 3>&- 4>&- &
  local wpid=$! i
  PIDS+=("$wpid")
  for ((i = 0; i < 1200; i++)); do
    grep -q "records/sec" "$OUTD/warmup.txt" 2>/dev/null && break
    kill -0 "$wpid" 2>/dev/null || break
    sleep 0.1
  done
  sleep "$WARMUP_S"
  stop_pid "$wpid" 20; forget_pid "$wpid"
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
  gate produce-p8
  mark produce-p8 begin; producer_perf produce-p8.txt bench-p8 "$records" $((records / 3)) -1; mark produce-p8 end
  log "$NAME: consume-hot"
  gate consume-hot
  mark consume-hot begin; consume consume-hot.txt bench-p8 "$records"; mark consume-hot end
  if [ "$NAME" = kafka ]; then
    # Cross-check of AssignConsumerPerf with Kafka's own ConsumerPerformance (needs a group
    # coordinator, which Stratus does not have yet).
    T 600 "$KAFKA_CLI" consumer-perf --bootstrap-server "$BOOT" --topic bench-p8 --num-records "$records" \
      --timeout 15000 > "$OUTD/consumer-perf-hot.txt" 2>&1 || true
  fi
  log "$NAME: produce-p100"
  gate produce-p100
  mark produce-p100 begin; producer_perf produce-p100.txt bench-p100 "$records" $((records / 3)) -1; mark produce-p100 end
  log "$NAME: produce-lat (${LAT_WARMUP_S}+${LAT_S}s at $LAT_RATE records/s)"
  gate produce-lat
  mark produce-lat begin
  producer_perf produce-lat.txt bench-lat $((LAT_RATE * (LAT_WARMUP_S + LAT_S))) $((LAT_RATE * LAT_WARMUP_S)) \
    "$LAT_RATE" $(((LAT_WARMUP_S + LAT_S) * 10 + 120))
  mark produce-lat end
  log "$NAME: e2e ($E2E_RECORDS messages)"
  gate e2e
  mark e2e begin
  # EndToEndLatency commits offsets at the end; that fails on Stratus (no coordinator yet)
  # after the results are printed, so its exit status is not checked here.
  T 900 "$KAFKA_CLI" e2e-latency "$BOOT" bench-e2e "$E2E_RECORDS" all "$RECORD_SIZE" > "$OUTD/e2e.txt" 2>&1 || true
  mark e2e end

  log "$NAME: dropping caches for the cold read"
  if [ "$NAME" = stratus ]; then
    mark restart begin
    stop_broker  # and the object watcher: evict.py opens every file
    python3 "$BENCH/evict.py" "$DIR/data" > "$OUTD/evict.txt" 2>&1
    start_broker
    sleep 2
    mark restart end
  else
    python3 "$BENCH/evict.py" "$DIR/data" > "$OUTD/evict.txt" 2>&1
  fi
  log "$NAME: consume-cold"
  gate consume-cold
  mark consume-cold begin; consume consume-cold.txt bench-p8 "$records"; mark consume-cold end

  log "$NAME: stopping"
  T 120 "$KAFKA_CLI" get-offsets --bootstrap-server "$BOOT" > "$OUTD/offsets.txt" 2>&1 || true
  du -sb "$DIR/data" > "$OUTD/du.txt" 2>/dev/null || true
  stop_broker
  # Keep the broker log small: Kafka's tail (warnings only), Stratus' without the per-WAL-PUT
  # lines (report.py summarises those).
  if [ "$NAME" = stratus ]; then
    python3 "$BENCH/report.py" stratus-log "$BLOG" > "$OUTD/stratus-log-summary.txt"
    python3 "$BENCH/report.py" objects-summary "$DIR/objects.txt" "$OUTD" > "$OUTD/objects-summary.txt"
    grep -v -e "wal flushed" "$BLOG" | tail -n 2000 > "$OUTD/broker.log" || true
    grep -c "^# OVERFLOW" "$DIR/objects.txt" > "$OUTD/objwatch-overflows.txt" || true
  else
    tail -n 2000 "$BLOG" > "$OUTD/broker.log" || true
  fi
}

# --- main ------------------------------------------------------------------------------------
mkdir -p "$WORK/classes"
javac -nowarn -cp "$KAFKA_HOME/lib/*" -d "$WORK/classes" "$BENCH/AssignConsumerPerf.java" "$BENCH/CreateTopics.java"

{
  echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "command=BENCH_SCALE=$SCALE bench/run.sh"
  echo "git=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$REPO" diff --quiet HEAD -- src 2>/dev/null || echo '+dirty-src')"
  echo "stratus_bin=$STRATUS_BIN (built $(date -u -r "$STRATUS_BIN" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo '?')${STRATUS_BUILD_COMMIT:+ from $STRATUS_BUILD_COMMIT})"
  echo "kafka=$(basename "$KAFKA_HOME")"
  echo "java=$(java -version 2>&1 | head -1)"
  echo "cpus=$(nproc)"
  echo "mem_gib=$(awk '/MemTotal/ {printf "%.1f", $2/1048576}' /proc/meminfo)"
  echo "scale=$SCALE produce_s=$PRODUCE_S warmup_s=$WARMUP_S lat_s=$LAT_WARMUP_S+$LAT_S e2e_records=$E2E_RECORDS"
  echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
} > "$RAW/env.txt"

for b in $BROKERS; do run_broker "$b"; done
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >> "$RAW/env.txt"

python3 "$BENCH/report.py" table "$RAW" "$RESULTS/latest.md"
