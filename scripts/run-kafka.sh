#!/usr/bin/env bash
# Start a reference single-node KRaft Apache Kafka (broker+controller in one JVM) from the
# jars installed by scripts/install-test-deps.sh. Runs in the background; prints its PID on
# stdout and writes it to the pid file. Stop it with: kill "$(cat DATA_DIR/kafka.pid)".
#
#   scripts/run-kafka.sh --data-dir DIR [--port 9092] [--controller-port 9093]
#                        [--pid-file FILE] [--set key=value]... [--wait] [--foreground]
#                        [--node-id 1] [--roles broker,controller|broker|controller]
#                        [--voters ID@HOST:PORT,...] [--cluster-id ID]
#
# Storage is formatted (with --cluster-id, or a random one) when DIR has none yet, so the
# same DIR can be restarted. Output goes to DIR/kafka.log. For a cluster: one node with
# --roles controller (its --controller-port in every node's --voters) and brokers with
# --roles broker, all with the same --cluster-id.
set -euo pipefail

SCRIPTS="$(cd "$(dirname "$0")" && pwd)"
CACHE="${STRATUS_CACHE:-$HOME/.cache/stratus}"
PORT=9092
CPORT=9093
DATA=""
PIDFILE=""
WAIT=0
FOREGROUND=0
OVERRIDES=()
NODE_ID=1
ROLES=broker,controller
VOTERS=""
CLUSTER_ID=""

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --data-dir) DATA="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --controller-port) CPORT="$2"; shift 2 ;;
    --pid-file) PIDFILE="$2"; shift 2 ;;
    --set) OVERRIDES+=("$2"); shift 2 ;;
    --wait) WAIT=1; shift ;;
    --foreground) FOREGROUND=1; shift ;;
    --node-id) NODE_ID="$2"; shift 2 ;;
    --roles) ROLES="$2"; shift 2 ;;
    --voters) VOTERS="$2"; shift 2 ;;
    --cluster-id) CLUSTER_ID="$2"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "run-kafka: unknown argument $1" >&2; usage ;;
  esac
done
[ -n "$DATA" ] || usage
mkdir -p "$DATA"
DATA="$(cd "$DATA" && pwd)"
PIDFILE="${PIDFILE:-$DATA/kafka.pid}"

KAFKA_HOME="${KAFKA_HOME:-$(ls -d "$CACHE"/kafka-*/ 2>/dev/null | sort -V | tail -1)}"
KAFKA_HOME="${KAFKA_HOME%/}"
[ -d "$KAFKA_HOME/lib" ] || { echo "run-kafka: no Kafka jars (run scripts/install-test-deps.sh)" >&2; exit 2; }

CONF="$DATA/server.properties"
VOTERS="${VOTERS:-$NODE_ID@127.0.0.1:$CPORT}"
case "$ROLES" in
  broker) LISTENERS="PLAINTEXT://127.0.0.1:$PORT"; ADVERTISED="advertised.listeners=PLAINTEXT://127.0.0.1:$PORT" ;;
  controller) LISTENERS="CONTROLLER://127.0.0.1:$CPORT"; ADVERTISED="" ;;
  *) LISTENERS="PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT"; ADVERTISED="advertised.listeners=PLAINTEXT://127.0.0.1:$PORT" ;;
esac
cat > "$CONF" <<PROPS
process.roles=$ROLES
node.id=$NODE_ID
controller.quorum.voters=$VOTERS
listeners=$LISTENERS
$ADVERTISED
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DATA/logs
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
delete.topic.enable=true
PROPS
for kv in "${OVERRIDES[@]+"${OVERRIDES[@]}"}"; do
  key="${kv%%=*}"
  # a later value for the same key wins: drop the earlier line
  grep -v -E "^${key//./\\.}=" "$CONF" > "$CONF.tmp" || true
  mv "$CONF.tmp" "$CONF"
  echo "$kv" >> "$CONF"
done

export KAFKA_HOME
if [ ! -f "$DATA/logs/meta.properties" ]; then
  CLUSTER_ID="${CLUSTER_ID:-$("$SCRIPTS/kafka-cli" storage random-uuid)}"
  "$SCRIPTS/kafka-cli" storage format -t "$CLUSTER_ID" -c "$CONF" >"$DATA/format.log" 2>&1 || {
    cat "$DATA/format.log" >&2; exit 1; }
fi

JAVA_CMD=(java ${KAFKA_HEAP_OPTS:--Xmx1g -Xms256m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20
  -Djava.awt.headless=true
  -Dlog4j2.configurationFile="$KAFKA_HOME/config/log4j2.properties"
  ${KAFKA_OPTS:-} -cp "$KAFKA_HOME/lib/*" kafka.Kafka "$CONF")

if [ "$FOREGROUND" = 1 ]; then
  echo $$ > "$PIDFILE"
  exec "${JAVA_CMD[@]}"
fi

nohup "${JAVA_CMD[@]}" >"$DATA/kafka.log" 2>&1 </dev/null &
PID=$!
echo "$PID" > "$PIDFILE"
echo "$PID"

if [ "$WAIT" = 1 ]; then
  [ "$ROLES" = controller ] && PORT="$CPORT"
  for _ in $(seq 1 300); do
    if ! kill -0 "$PID" 2>/dev/null; then
      echo "run-kafka: broker exited; log:" >&2; tail -30 "$DATA/kafka.log" >&2; exit 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then exit 0; fi
    sleep 0.2
  done
  echo "run-kafka: broker did not listen on 127.0.0.1:$PORT within 60 s" >&2
  exit 1
fi
