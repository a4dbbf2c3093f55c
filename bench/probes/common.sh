# Sourced by the probes: one fresh Stratus broker on 127.0.0.1 and Kafka's CLI tools.
# STRATUS_BIN (default /tmp/bench-target/release/stratus, as bench/run.sh), PROBE_PORT
# (19092) and PROBE_HTTP_PORT (19644) may be set; KEEP=1 keeps the broker's directory.
# PROBE_KAFKA=1 runs Apache Kafka instead (scripts/run-kafka.sh, single-node KRaft, its
# defaults; `--set k=v` are its settings), the peer to compare a probe's figures with.
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${STRATUS_BIN:-/tmp/bench-target/release/stratus}
K="$REPO/scripts/kafka-cli"
PORT=${PROBE_PORT:-19092}
HP=${PROBE_HTTP_PORT:-19644}
BOOT=127.0.0.1:$PORT

# start_broker [--set k=v ...]: starts the broker (its PID in BP, its directory in D) and
# stops it when the probe exits.
start_broker() {
  if [ -n "${PROBE_KAFKA:-}" ]; then
    D=$(mktemp -d /tmp/probe.XXXX)
    BP=$("$REPO/scripts/run-kafka.sh" --data-dir "$D/data" --port "$PORT" --controller-port "$((PORT + 1))" "$@" --wait)
    trap stop_broker EXIT
    return
  fi
  [ -x "$BIN" ] || { echo "$BIN missing: CARGO_TARGET_DIR=/tmp/bench-target cargo build --release" >&2; exit 1; }
  D=$(mktemp -d /tmp/probe.XXXX)
  NO_COLOR=1 RUST_LOG=warn "$BIN" --data-dir "$D/data" --listeners "PLAINTEXT://$BOOT" \
    --set "http.listener=127.0.0.1:$HP" "$@" > "$D/log" 2>&1 &
  BP=$!
  trap stop_broker EXIT
  for _ in $(seq 100); do
    kill -0 "$BP" 2>/dev/null || break
    (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return
    sleep 0.1
  done
  echo "the broker did not listen on $BOOT; its log:" >&2; tail -20 "$D/log" >&2; exit 1
}

stop_broker() {
  kill "$BP" 2>/dev/null; wait "$BP" 2>/dev/null
  # Kafka is not this shell's child: wait for it to exit (and free its ports).
  for _ in $(seq 300); do kill -0 "$BP" 2>/dev/null || break; sleep 0.1; done
  if [ -n "${KEEP:-}" ]; then echo "kept $D"; else rm -rf "$D"; fi
}

# start_etcd: a fresh etcd (scripts/run-etcd.sh) on port EPORT (PROBE_ETCD_PORT, default
# 23795), stopped with the broker (call it before start_broker).
start_etcd() {
  EPORT=${PROBE_ETCD_PORT:-23795}
  E=$(mktemp -d /tmp/probe-etcd.XXXX)
  ETCD_LOG_LEVEL=warn "$REPO/scripts/run-etcd.sh" "$E/data" "$EPORT" > "$E/log" 2>&1 &
  EP=$!
  eval "broker_$(declare -f stop_broker)"
  stop_broker() { broker_stop_broker; kill "$EP" 2>/dev/null; wait "$EP" 2>/dev/null; rm -rf "$E"; }
  trap 'kill "$EP" 2>/dev/null; rm -rf "$E"' EXIT
  for _ in $(seq 100); do curl -sf "127.0.0.1:$EPORT/health" > /dev/null && break; sleep 0.1; done
}

topic() {  # topic NAME PARTITIONS
  "$K" topics --bootstrap-server "$BOOT" --create --topic "$1" --partitions "$2" > /dev/null
}

produce() {  # produce TOPIC RECORDS THROUGHPUT [producer-perf options...]: 1 KiB, acks=all
  local t=$1 n=$2 rate=$3; shift 3
  "$K" producer-perf --topic "$t" --num-records "$n" --record-size 1024 --throughput "$rate" \
    --command-property "bootstrap.servers=$BOOT" acks=all "$@"
}

status_mib() { awk -v k="$1:" '$1 == k {print int($2 / 1024)}' "/proc/$BP/status"; }  # VmHWM, VmRSS
cpu_ticks() { awk '{print $14 + $15}' "/proc/$BP/stat"; }
faults() { awk '{print $10}' "/proc/$BP/stat"; }
