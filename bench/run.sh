#!/usr/bin/env bash
# Stratus vs Apache Kafka on this machine, with Kafka's own perf tools, repeated and with
# both brokers on the same record counts.
#
#   bench/run.sh                                  # full run: 3 repetitions, ~40-45 min on 2 cores
#   BENCH_BROKERS="kafka stratus" bench/run.sh    # without Kafka fsync, ~25-30 min
#   BENCH_REPEAT=5 bench/run.sh                   # more repetitions (~12-15 min each)
#   BENCH_SCALE=0.2 BENCH_REPEAT=1 bench/run.sh   # smoke run, ~3 min (one run: no spread,
#                                                 # the report says so; not for publication)
#   bench/report.py table bench/results/last-run bench/results/latest.md   # re-render the report
#   bench/report.py --self-test                   # checks the report's arithmetic on fake data
#
# Build the broker first (this script builds nothing):
#   CARGO_TARGET_DIR=/tmp/bench-target cargo build --release
#
# Repetitions: BENCH_REPEAT runs (default 3). Each run measures every broker once, each with a
# fresh temporary data dir on free 127.0.0.1 ports, started, measured and stopped before the
# next one. The order alternates so that neither broker always goes first on a warm (or
# tired) machine: run 1 kafka, stratus; run 2 stratus, kafka; run 3 kafka, stratus; ...
#
# Same record counts: the throughput tests' record count is calibrated ONCE, from the
# warm-up of the first broker of run 1 (Kafka, by default) so that a test lasts about
# BENCH_PRODUCE_S s on it, or fixed with BENCH_RECORDS=N; every run of every broker then
# writes and reads exactly that many records (so Stratus' tests may last longer or shorter
# than Kafka's). The fixed-rate and end-to-end tests have fixed counts too.
#
# Steps of one broker in one run:
#   idle         5 s with no client: the broker's idle RSS
#   settings     bench/BrokerConfigs.java records the broker's settings (DescribeConfigs)
#   warm-up      ProducerPerformance for BENCH_WARMUP_S s, 1 KiB, acks=all, 8 partitions (warms
#                the broker up; in run 1 its last rates calibrate the record count)
#   produce-p8   ProducerPerformance --throughput -1, 1 KiB records, acks=all, 8 partitions; the
#                first third of the records is --warmup-records (every test starts a new client
#                JVM, which needs several seconds of JIT to reach full speed on 2 cores), and the
#                table shows the steady-state line ProducerPerformance prints for the rest
#   consume-hot  bench/AssignConsumerPerf.java reads produce-p8's topic right after it
#   consumer-perf  Kafka's ConsumerPerformance (subscribe, group join) reads it again: a
#                cross-check of AssignConsumerPerf (BENCH_CONSUMER_PERF=0 skips it)
#   produce-p100 the same as produce-p8 with 100 partitions
#   produce-lat  ProducerPerformance at a fixed 51200 records/s of 1 KiB (50 MiB/s), 8 partitions,
#                BENCH_LAT_WARMUP_S s of --warmup-records, then BENCH_LAT_S s measured
#   e2e          EndToEndLatency, acks=all, 1 KiB, BENCH_E2E_RECORDS messages, 1 partition
#   consume-cold produce-p8's topic again after dropping caches: the page cache of the broker's
#                data files is evicted (bench/evict.py, posix_fadvise DONTNEED; the global
#                drop_caches only with BENCH_DROP_CACHES=1), and Stratus is restarted so that
#                its own memory and disk caches are empty too.
#   offsets      GetOffsetShell: every topic must hold exactly the records written to it.
# Every client is bounded in time. The run FAILS, with the tool's last lines, when any tool
# exits non-zero or times out, when a producer had fewer records acknowledged than it sent,
# when a consumer reads fewer records than were produced (or times out), when a topic's end
# offsets are not the records written, when the broker exits, or when a monitor dies: no
# figure is ever printed from a partial measurement.
#
# The broker's RSS and CPU are sampled every second (bench/sampler.py); for Stratus, object
# PUTs come from its debug log ("wal flushed" = one WAL PUT, "sealed segment" = one segment
# PUT) and GETs from inotify on its local object store directory (bench/objwatch.py: every
# ranged GET opens the object file), which also counts new objects as a cross-check of PUTs.
# bench/report.py writes bench/results/latest.md: a short summary (the README quotes it), then
# every figure as median [min-max] over the runs per broker and the Stratus / Kafka ratio of
# the medians, the values of each run, the settings and the machine. The raw tool outputs are
# kept under bench/results/last-run/ (env.txt, records.txt, calibration.txt, then
# run-N/BROKER/ per run; small files only: broker logs are summarised).
#
# Environment:
#   BENCH_REPEAT=3         runs (repetitions of every test on every broker), alternating order
#   BENCH_RECORDS=N        fixed record count of the throughput tests instead of calibrating
#   BENCH_SCALE=1          multiplies every duration and count below
#   BENCH_PRODUCE_S=30     target seconds of a throughput test on the calibrating broker,
#                          warm-up third included (x scale)
#   BENCH_WARMUP_S=15      warm-up seconds (x scale, at least 8)
#   BENCH_LAT_S=15         measured seconds of the fixed-rate latency test (x scale)
#   BENCH_LAT_WARMUP_S=10  its warm-up seconds (x scale, at least 3)
#   BENCH_E2E_RECORDS=10000  EndToEndLatency messages (x scale)
#   BENCH_BROKERS="kafka stratus kafka-fsync"   which brokers, in run 1's order (the first
#                          calibrates); kafka-fsync is Kafka with log.flush.interval.messages=1,
#                          every message on disk before the ack as Stratus does (the goals are
#                          set against Kafka's defaults; the fsync column shows the same
#                          durability)
#   BENCH_STRATUS_SET="k=v ..."     Stratus settings (--set), recorded in the report. The
#                          broker is started with no STRATUS_* environment variables (they
#                          would change its settings unseen); the report lists the ones removed.
#   BENCH_RUST_LOG=...     Stratus' log filter (default info,stratus::wal=debug,
#                          stratus::upkeep=debug: the PUT counts need those debug lines)
#   BENCH_CONSUMER_PERF=1  run the ConsumerPerformance cross-check (0: skip)
#   BENCH_WAIT_QUIET_S=0   wait up to this long before each broker and each test for other
#                          processes to use less than BENCH_QUIET_CORES=0.3 cores (the machine
#                          may be shared; their load per test is reported either way)
#   BENCH_DROP_CACHES=1    also drop the global page cache before the cold read (needs root)
#   BENCH_KEEP=1           keep the temporary work dir with every run's data dir (several GiB
#                          per broker and run; without it each data dir is deleted after its run)
#   BENCH_RESULTS=DIR      where latest.md and last-run/ go (default bench/results)
#   TMPDIR                 where the brokers' data dirs go (the report records its filesystem)
#   STRATUS_BIN=/tmp/bench-target/release/stratus
#   STRATUS_BUILD_COMMIT=abc123   recorded in the report (the commit the binary was built from)
#   KAFKA_HOME             default: the newest kafka-* under ~/.cache/stratus
#
# Duration: one run of the three brokers takes ~12-15 min at BENCH_SCALE=1 (Kafka ~3 min,
# Kafka fsync ~4 min, Stratus ~5 min: on the same record counts slower tests last longer), so
# the default 3 runs take ~40-45 min and use both cores throughout.
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
LAT_RECORDS=$((LAT_RATE * (LAT_WARMUP_S + LAT_S)))
RECORD_SIZE=1024
BROKERS="${BENCH_BROKERS:-kafka stratus kafka-fsync}"
REPEAT="${BENCH_REPEAT:-3}"
RUST_LOG_BENCH="${BENCH_RUST_LOG:-info,stratus::wal=debug,stratus::upkeep=debug}"
CONSUMER_PERF="${BENCH_CONSUMER_PERF:-1}"

die() { echo "bench: $*" >&2; exit 2; }
[[ "$REPEAT" =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPEAT must be a positive integer, not '$REPEAT'"
[ -z "${BENCH_RECORDS:-}" ] || [[ "$BENCH_RECORDS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_RECORDS must be a positive integer"
for b in $BROKERS; do case "$b" in kafka|kafka-fsync|stratus) ;; *) die "unknown broker '$b' in BENCH_BROKERS";; esac; done
[ -n "${BROKERS// /}" ] || die "BENCH_BROKERS is empty"
[ -d "$KAFKA_HOME/lib" ] || die "no Kafka jars under $CACHE (run scripts/install-test-deps.sh)"
case " $BROKERS " in *" stratus "*)
  [ -x "$STRATUS_BIN" ] || die "$STRATUS_BIN missing; build it with: cd $REPO && CARGO_TARGET_DIR=/tmp/bench-target cargo build --release" ;;
esac
for kv in ${BENCH_STRATUS_SET:-}; do [[ "$kv" == *=* ]] || die "BENCH_STRATUS_SET: '$kv' is not key=value"; done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/stratus-bench.XXXXXX")"
RESULTS="${BENCH_RESULTS:-$BENCH/results}"
RAW="$RESULTS/last-run"
mkdir -p "$RESULTS"
rm -rf "$RAW"
mkdir -p "$RAW"

# --- process bookkeeping: everything started in the background is stopped by PID ----------
PIDS=()
stop_pid() {  # stop_pid PID [grace seconds]: TERM, wait, then KILL (cleanup: errors tolerated)
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
NAME="" RUN="" BPID="" BOOT="" DIR="" BLOG="" OUTD="" SAMPLER="" WATCHER=""
cleanup() {
  local rc=$? i
  trap - EXIT INT TERM
  exec 1>&3 2>&4
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}" 20; done
  if [ "$rc" != 0 ] && [ -n "$BLOG" ] && [ -f "$BLOG" ] && [ -n "$OUTD" ] && [ -d "$OUTD" ]; then
    # the broker's log of the failed run, for the post-mortem (per-PUT lines dropped)
    { grep -v -e "wal flushed" "$BLOG" | tail -n 2000 > "$OUTD/broker.log"; } || true
    echo "bench: the last 2000 lines of $NAME's log are in $OUTD/broker.log" >&2
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    echo "bench: work dir kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  [ "$rc" = 0 ] || echo "bench: FAILED (exit $rc); no report was written; partial outputs in $RAW" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
forget_pid() { local p out=(); for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || out+=("$p"); done; PIDS=("${out[@]+"${out[@]}"}"); }

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
fail() { log "FAILED: ${NAME:+$NAME, run $RUN: }$*"; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_listening PID PORT: the port accepts connections and the socket belongs to PID
# (another process may already listen on a port; never benchmark someone else's broker).
wait_listening() {
  local pid="$1" port="$2" i
  for ((i = 0; i < 600; i++)); do
    kill -0 "$pid" 2>/dev/null || fail "broker process $pid exited before listening on $port (log: $BLOG)"
    if ss -ltnpH "sport = :$port" 2>/dev/null | grep -q "pid=$pid,"; then return 0; fi
    sleep 0.1
  done
  fail "broker process $pid is not listening on 127.0.0.1:$port after 60 s"
}

# --- per-broker state --------------------------------------------------------------------
cpu_ticks() { python3 - "$1" <<'PY'
import sys
rest = open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")", 1)[1].split()
print(int(rest[11]) + int(rest[12]))
PY
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
count_lines() {  # count_lines PATTERN FILE: matching lines; a missing or unreadable FILE fails the run
  local n rc=0
  n=$(grep -c -- "$1" "$2") || rc=$?
  [ "$rc" -le 1 ] || fail "cannot read $2 (counting '$1')"
  echo "${n:-0}"
}

# the broker, its sampler and its object watcher must all still be running
alive() {  # alive WHAT
  kill -0 "$BPID" 2>/dev/null || fail "the broker (pid $BPID) exited during $1; log: $BLOG"
  [ -z "$SAMPLER" ] || kill -0 "$SAMPLER" 2>/dev/null || fail "sampler.py died during $1 (RSS/CPU figures incomplete)"
  [ -z "$WATCHER" ] || kill -0 "$WATCHER" 2>/dev/null || fail "objwatch.py died during $1 (GET counts incomplete)"
}

# mark PHASE EVENT: one line "epoch name event cpu_ticks rss_kb wal_puts seg_puts gets new_objects"
mark() {
  alive "$1"
  local wal=0 seg=0 gets=0 objs=0
  if [ "$NAME" = stratus ]; then
    wal=$(count_lines "wal flushed" "$BLOG")
    seg=$(count_lines "sealed segment" "$BLOG")
    gets=$(count_lines "^G " "$DIR/objects.txt")
    objs=$(count_lines "^P " "$DIR/objects.txt")
  fi
  local now ticks rss
  now=$(date +%s.%N)
  ticks=$(cpu_ticks "$BPID") && rss=$(rss_kb "$BPID") && [ -n "$rss" ] \
    || fail "cannot read the broker's CPU and RSS at $1 $2 (did it exit?)"
  echo "$now $1 $2 $ticks $rss $wal $seg $gets $objs" >> "$OUTD/marks.txt"
}

start_watcher() {  # Stratus' object requests; started before the broker
  mkdir -p "$DIR/data/objects"
  touch "$DIR/objects.txt"
  local i before
  before=$(count_lines "^# watching" "$DIR/objects.txt")  # a restart appends to the same file
  python3 "$BENCH/objwatch.py" "$DIR/data/objects" "$DIR/objects.txt" 3>&- 4>&- &
  WATCHER=$!; PIDS+=("$WATCHER")
  for ((i = 0; i < 100; i++)); do
    [ "$(count_lines "^# watching" "$DIR/objects.txt")" -gt "$before" ] && return 0
    kill -0 "$WATCHER" 2>/dev/null || break
    sleep 0.1
  done
  fail "objwatch.py did not start watching $DIR/data/objects"
}
start_monitors() {
  python3 "$BENCH/sampler.py" "$BPID" "$OUTD/samples.csv" "$$" 3>&- 4>&- &
  SAMPLER=$!; PIDS+=("$SAMPLER")
}
stop_monitors() {
  if [ -n "$WATCHER" ]; then stop_pid "$WATCHER" 5; forget_pid "$WATCHER"; WATCHER=""; fi
  if [ -n "$SAMPLER" ]; then stop_pid "$SAMPLER" 5; forget_pid "$SAMPLER"; SAMPLER=""; fi
}

start_kafka() {  # start_kafka [--set k=v]...: run-kafka.sh's options
  local port cport
  port=$(free_port); cport=$(free_port)
  while [ "$cport" = "$port" ]; do cport=$(free_port); done
  BLOG="$DIR/data/kafka.log"
  BPID=$("$RUN_KAFKA" --data-dir "$DIR/data" --port "$port" --controller-port "$cport" "$@" 3>&- 4>&-)
  PIDS+=("$BPID")
  BOOT="127.0.0.1:$port"
  wait_listening "$BPID" "$port"
  [ -f "$OUTD/server.properties" ] || cp "$DIR/data/server.properties" "$OUTD/server.properties"
}

STRATUS_PORT=""
start_stratus() {
  [ -n "$STRATUS_PORT" ] || STRATUS_PORT=$(free_port)
  local cmd=("$STRATUS_BIN" --data-dir "$DIR/data" --listeners "PLAINTEXT://127.0.0.1:$STRATUS_PORT") kv unset=() v
  for kv in ${BENCH_STRATUS_SET:-}; do cmd+=(--set "$kv"); done
  # STRATUS_* variables name broker settings (STRATUS_WAL_FLUSH_INTERVAL_MS=...): only the
  # --set values recorded in the report may apply, so none reaches the broker.
  for v in $(compgen -e); do
    if [[ "$v" == STRATUS_* ]]; then unset+=(-u "$v"); fi
  done
  BLOG="$DIR/stratus.log"
  [ -f "$OUTD/command.txt" ] || {
    echo "RUST_LOG=$RUST_LOG_BENCH NO_COLOR=1 ${cmd[*]}"
    echo "removed_env=${unset[*]+"${unset[*]}"}"
  } > "$OUTD/command.txt"
  # wal/maintenance at debug: one "wal flushed" line per WAL PUT, "sealed segment" per segment PUT
  env "${unset[@]+"${unset[@]}"}" NO_COLOR=1 RUST_LOG="$RUST_LOG_BENCH" \
    "${cmd[@]}" >> "$BLOG" 2>&1 </dev/null 3>&- 4>&- &
  BPID=$!
  PIDS+=("$BPID")
  BOOT="127.0.0.1:$STRATUS_PORT"
  wait_listening "$BPID" "$STRATUS_PORT"
}

start_broker() {
  case "$NAME" in
    kafka) start_kafka ;;
    # the durability Stratus gives: every message on disk before the ack
    kafka-fsync) start_kafka --set log.flush.interval.messages=1 ;;
    *) start_watcher; start_stratus ;;
  esac
  start_monitors
}
stop_broker() {
  alive "the test before the stop"
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

# tool STEP OUTFILE SECONDS CMD...: runs a client into $OUTD/OUTFILE; fails the run, with the
# tool's last lines, if it exits non-zero or times out, or if the broker died meanwhile.
tool() {
  local step="$1" out="$OUTD/$2" secs="$3" rc=0 why
  shift 3
  T "$secs" "$@" > "$out" 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then
    case "$rc" in
      124) why="timed out after ${secs}s" ;;
      137) why="killed after its ${secs}s timeout" ;;
      *) why="exit status $rc" ;;
    esac
    log "last lines of $out:"
    tail -n 25 "$out" >&2
    fail "$step failed ($why); its output: $out"
  fi
  alive "$step"
}
# check KIND FILE ARGS...: bench/report.py validates a tool's output (complete, right counts)
check() {
  python3 "$BENCH/report.py" check "$@" || fail "$1 check of $2 failed (see above)"
}

# the helpers compiled from bench/*.java: "${JAVA_TOOL[@]}" CLASS ARGS...
JAVA_TOOL=(java -Xmx1g -Dlog4j2.configurationFile="$KAFKA_HOME/config/log4j2.properties"
  -cp "$WORK/classes:$KAFKA_HOME/lib/*")

producer_perf() {  # producer_perf STEP TOPIC RECORDS WARMUP_RECORDS THROUGHPUT [timeout]
  tool "$1" "$1.txt" "${6:-900}" "$KAFKA_CLI" producer-perf --topic "$2" --num-records "$3" --warmup-records "$4" \
    --record-size "$RECORD_SIZE" --throughput "$5" --reporting-interval 1000 \
    --command-property "bootstrap.servers=$BOOT" acks=all
  check produce "$OUTD/$1.txt" "$3" "$4"
}

consume() {  # consume STEP TOPIC RECORDS
  tool "$1" "$1.txt" 600 "${JAVA_TOOL[@]}" AssignConsumerPerf "$BOOT" "$2" "$3" 15000
  check consume "$OUTD/$1.txt" "$3"
}

# Other users of the machine: with BENCH_WAIT_QUIET_S=N, wait up to N s before each broker
# and each measured test until processes other than ours use less than BENCH_QUIET_CORES
# (default 0.3) cores. The load during each test is recorded either way (samples.csv).
gate() {  # gate LABEL
  [ "${BENCH_WAIT_QUIET_S:-0}" -gt 0 ] || return 0
  local busy
  busy=$(python3 "$BENCH/quiet.py" "$$" "${BPID:-$$}" "$BENCH_WAIT_QUIET_S" "${BENCH_QUIET_CORES:-0.3}")
  log "$NAME run $RUN $1: other processes use $busy cores"
  echo "$1 $busy" >> "$OUTD/quiet.txt"
}

RECORDS="${BENCH_RECORDS:-}"

# measure (phase markers around a step): measure PHASE CMD...
measure() { local phase="$1"; shift; gate "$phase"; mark "$phase" begin; "$@"; mark "$phase" end; }

warmup() {
  # Runs until WARMUP_S seconds after its first progress line (JVM start is not counted).
  "$KAFKA_CLI" producer-perf --topic bench-warm --num-records 1000000000 \
    --record-size "$RECORD_SIZE" --throughput -1 --reporting-interval 1000 \
    --command-property "bootstrap.servers=$BOOT" acks=all > "$OUTD/warmup.txt" 2>&1 3>&- 4>&- &
  local wpid=$! i
  PIDS+=("$wpid")
  for ((i = 0; i < 1200; i++)); do
    grep -q "records/sec" "$OUTD/warmup.txt" 2>/dev/null && break  # (a poll: the file may not exist yet)
    kill -0 "$wpid" 2>/dev/null || { tail -n 25 "$OUTD/warmup.txt" >&2; fail "warm-up producer exited before its first progress line"; }
    sleep 0.1
  done
  [ "$i" -lt 1200 ] || fail "warm-up producer printed no progress in 120 s"
  sleep "$WARMUP_S"
  kill -0 "$wpid" 2>/dev/null || { tail -n 25 "$OUTD/warmup.txt" >&2; fail "warm-up producer exited before it was stopped"; }
  stop_pid "$wpid" 20; forget_pid "$wpid"
  alive warmup
}

run_broker() {  # run_broker NAME RUN
  NAME="$1" RUN="$2"
  BPID="" SAMPLER="" WATCHER="" STRATUS_PORT=""  # (Stratus keeps its port across the cold restart only)
  DIR="$WORK/run-$RUN/$NAME"
  OUTD="$RAW/run-$RUN/$NAME"
  mkdir -p "$DIR" "$OUTD"
  gate start
  log "$NAME, run $RUN of $REPEAT: starting"
  start_broker
  log "$NAME: pid $BPID on $BOOT"

  sleep 3
  mark idle begin; sleep 5; mark idle end

  tool settings configs.txt 120 "${JAVA_TOOL[@]}" BrokerConfigs "$BOOT" 1
  tool create-topics topics.txt 120 "${JAVA_TOOL[@]}" CreateTopics "$BOOT" \
    bench-warm:8 bench-p8:8 bench-p100:100 bench-lat:8 bench-e2e:1

  log "$NAME: warm-up ${WARMUP_S}s"
  measure warmup warmup
  if [ -z "$RECORDS" ]; then
    RECORDS=$(python3 "$BENCH/report.py" calibrate "$OUTD/warmup.txt" "$PRODUCE_S") || fail "calibration from $OUTD/warmup.txt failed"
    echo "$RECORDS" > "$RAW/records.txt"
    echo "calibrated from $NAME's warm-up in run $RUN: $(python3 "$BENCH/report.py" calibrate --explain "$OUTD/warmup.txt" "$PRODUCE_S")" > "$RAW/calibration.txt"
    log "$RECORDS records per throughput test, for every broker and run ($(cat "$RAW/calibration.txt"))"
  fi

  log "$NAME: produce-p8 ($RECORDS records)"
  measure produce-p8 producer_perf produce-p8 bench-p8 "$RECORDS" $((RECORDS / 3)) -1
  log "$NAME: consume-hot"
  measure consume-hot consume consume-hot bench-p8 "$RECORDS"
  if [ "$CONSUMER_PERF" = 1 ]; then
    # Cross-check of AssignConsumerPerf with Kafka's own ConsumerPerformance (a group member).
    log "$NAME: consumer-perf (cross-check)"
    measure consumer-perf tool consumer-perf consumer-perf-hot.txt 600 "$KAFKA_CLI" consumer-perf \
      --bootstrap-server "$BOOT" --topic bench-p8 --num-records "$RECORDS" --timeout 15000
    check consumer-perf "$OUTD/consumer-perf-hot.txt" "$RECORDS"
  fi
  log "$NAME: produce-p100"
  measure produce-p100 producer_perf produce-p100 bench-p100 "$RECORDS" $((RECORDS / 3)) -1
  log "$NAME: produce-lat (${LAT_WARMUP_S}+${LAT_S}s at $LAT_RATE records/s)"
  measure produce-lat producer_perf produce-lat bench-lat "$LAT_RECORDS" $((LAT_RATE * LAT_WARMUP_S)) \
    "$LAT_RATE" $(((LAT_WARMUP_S + LAT_S) * 10 + 120))
  log "$NAME: e2e ($E2E_RECORDS messages)"
  measure e2e tool e2e e2e.txt 900 "$KAFKA_CLI" e2e-latency "$BOOT" bench-e2e "$E2E_RECORDS" all "$RECORD_SIZE"
  check e2e "$OUTD/e2e.txt"

  log "$NAME: dropping caches for the cold read"
  if [ "$NAME" = stratus ]; then
    mark restart begin
    stop_broker  # and the object watcher: evict.py opens every file
    python3 "$BENCH/evict.py" "$DIR/data" > "$OUTD/evict.txt" 2>&1 || { cat "$OUTD/evict.txt" >&2; fail "evict.py failed"; }
    start_broker
    sleep 2
    mark restart end
  else
    python3 "$BENCH/evict.py" "$DIR/data" > "$OUTD/evict.txt" 2>&1 || { cat "$OUTD/evict.txt" >&2; fail "evict.py failed"; }
  fi
  check evict "$OUTD/evict.txt"
  log "$NAME: consume-cold"
  measure consume-cold consume consume-cold bench-p8 "$RECORDS"

  log "$NAME: checking end offsets, stopping"
  tool offsets offsets.txt 120 "$KAFKA_CLI" get-offsets --bootstrap-server "$BOOT"
  check offsets "$OUTD/offsets.txt" "bench-p8=$RECORDS" "bench-p100=$RECORDS" "bench-lat=$LAT_RECORDS" "bench-e2e=$E2E_RECORDS"
  stop_broker
  # after the broker stopped: a WAL compaction deletes objects while du walks the directory
  du -sb "$DIR/data" > "$OUTD/du.txt"
  # Keep the broker log small: report.py summarises all of it (WARN/ERROR lines, and for
  # Stratus the per-PUT lines), and only its tail without the per-WAL-PUT lines is kept.
  python3 "$BENCH/report.py" broker-log "$BLOG" > "$OUTD/log-summary.txt"
  if [ "$NAME" = stratus ]; then
    python3 "$BENCH/report.py" objects-summary "$DIR/objects.txt" "$OUTD" > "$OUTD/objects-summary.txt"
    grep "^# LOST" "$DIR/objects.txt" > "$OUTD/objwatch-lost.txt" || [ $? = 1 ] || fail "cannot read $DIR/objects.txt"
  fi
  { grep -v -e "wal flushed" "$BLOG" || [ $? = 1 ]; } | tail -n 2000 > "$OUTD/broker.log"
  if [ "${BENCH_KEEP:-0}" != 1 ]; then
    # A run writes several GiB per broker: free the disk (and the page cache it holds) before
    # the next broker starts. The broker log stays in $WORK until the end.
    [ "$NAME" = stratus ] || mv "$BLOG" "$DIR/kafka.log"
    rm -rf "$DIR/data"
  fi
  log "$NAME, run $RUN: done"
  NAME="" BLOG="" OUTD=""
}

# --- main ------------------------------------------------------------------------------------
mkdir -p "$WORK/classes"
javac -nowarn -cp "$KAFKA_HOME/lib/*" -d "$WORK/classes" \
  "$BENCH/AssignConsumerPerf.java" "$BENCH/CreateTopics.java" "$BENCH/BrokerConfigs.java"

git_dirty() {  # git_dirty PATH...: "+dirty(PATH...)" when the work tree differs from HEAD there
  if [ -n "$(git -C "$REPO" status --porcelain -- "$@")" ]; then echo "+dirty($*)"; fi
}
{
  echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "command=$(for v in BENCH_SCALE BENCH_REPEAT BENCH_RECORDS BENCH_PRODUCE_S BENCH_WARMUP_S BENCH_LAT_S BENCH_LAT_WARMUP_S BENCH_E2E_RECORDS BENCH_BROKERS BENCH_STRATUS_SET BENCH_RUST_LOG BENCH_CONSUMER_PERF BENCH_WAIT_QUIET_S BENCH_DROP_CACHES; do
    [ -z "${!v:-}" ] || printf '%s="%s" ' "$v" "${!v}"; done)bench/run.sh"
  echo "git=$(git -C "$REPO" rev-parse --short=10 HEAD)$(git_dirty src Cargo.toml Cargo.lock)$(git_dirty bench)"
  echo "git_subject=$(git -C "$REPO" log -1 --format=%s)"
  echo "stratus_bin=$STRATUS_BIN"
  if [ -x "$STRATUS_BIN" ]; then
    echo "stratus_version=$("$STRATUS_BIN" --version)"
    echo "stratus_built=$(date -u -r "$STRATUS_BIN" +%Y-%m-%dT%H:%M:%SZ)${STRATUS_BUILD_COMMIT:+ from $STRATUS_BUILD_COMMIT}"
    echo "stratus_sha256=$(sha256sum "$STRATUS_BIN" | cut -c1-16)"
    "$STRATUS_BIN" --help > "$RAW/stratus-help.txt"
  fi
  echo "stratus_set=${BENCH_STRATUS_SET:-}"
  echo "stratus_rust_log=$RUST_LOG_BENCH"
  echo "kafka=$(basename "$KAFKA_HOME")"
  echo "kafka_clients=$(cd "$KAFKA_HOME/lib" && ls kafka-clients-*.jar | head -1)"
  echo "kafka_heap_opts=${KAFKA_HEAP_OPTS:-}"  # empty: run-kafka.sh's and kafka-cli's defaults
  echo "kafka_opts=${KAFKA_OPTS:-}"
  echo "java=$(java -version 2>&1 | head -1)"
  echo "cpus=$(nproc)"
  echo "cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "mem_gib=$(awk '/MemTotal/ {printf "%.1f", $2/1048576}' /proc/meminfo)"
  echo "kernel=$(uname -r)"
  echo "work_fs=$(df -PT "$WORK" | awk 'NR==2 {print $2}') ($WORK)"
  echo "repeat=$REPEAT"
  echo "brokers=$BROKERS"
  echo "records_fixed=${BENCH_RECORDS:-}"
  echo "scale=$SCALE produce_s=$PRODUCE_S warmup_s=$WARMUP_S lat_s=$LAT_WARMUP_S+$LAT_S lat_records=$LAT_RECORDS e2e_records=$E2E_RECORDS consumer_perf=$CONSUMER_PERF"
  echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
} > "$RAW/env.txt"
[ -z "${BENCH_RECORDS:-}" ] || { echo "$BENCH_RECORDS" > "$RAW/records.txt"; echo "fixed with BENCH_RECORDS" > "$RAW/calibration.txt"; }

ORDER=($BROKERS)
for ((r = 1; r <= REPEAT; r++)); do
  order=()
  if ((r % 2 == 1)); then order=("${ORDER[@]}"); else for ((i = ${#ORDER[@]} - 1; i >= 0; i--)); do order+=("${ORDER[i]}"); done; fi
  echo "order_run_$r=${order[*]}" >> "$RAW/env.txt"
  log "run $r of $REPEAT: ${order[*]}"
  for b in "${order[@]}"; do run_broker "$b" "$r"; done
done
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >> "$RAW/env.txt"
echo "date_end=$(date -u +%Y-%m-%dT%H:%M:%SZ)" >> "$RAW/env.txt"

python3 "$BENCH/report.py" table "$RAW" "$RESULTS/latest.md"
