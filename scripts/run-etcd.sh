#!/usr/bin/env bash
# Start a single-member etcd (built by scripts/install-test-deps.sh) in the foreground: the
# script execs etcd, so the PID of this script is etcd's PID.
#
#   scripts/run-etcd.sh DATA_DIR CLIENT_PORT [extra etcd flags...]
#
# Client URL http://127.0.0.1:CLIENT_PORT (gRPC, and the JSON gateway under /v3/), peer URL
# http://127.0.0.1:CLIENT_PORT+1; loopback only, no TLS, no auth. Restarting on the same
# DATA_DIR keeps the data. Ready when GET http://127.0.0.1:CLIENT_PORT/health is 200.
# Logs (JSON) go to stderr; quieter with ETCD_LOG_LEVEL=warn. For speed at the cost of
# durability pass --unsafe-no-fsync.
set -euo pipefail

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 2 ] || usage
DATA="$1"; CPORT="$2"; shift 2
case "$CPORT" in ''|*[!0-9]*) echo "run-etcd: bad port: $CPORT" >&2; usage ;; esac
PPORT=$((CPORT + 1))

CACHE="${STRATUS_CACHE:-$HOME/.cache/stratus}"
ETCD="$CACHE/bin/etcd"
[ -x "$ETCD" ] || ETCD="$(command -v etcd || true)"
[ -n "$ETCD" ] || { echo "run-etcd: etcd not found; run scripts/install-test-deps.sh" >&2; exit 1; }

mkdir -p "$DATA"
chmod 700 "$DATA"  # etcd warns when the data dir is group/world accessible
NAME="stratus-test"
exec "$ETCD" --name "$NAME" --data-dir "$DATA" \
  --listen-client-urls "http://127.0.0.1:$CPORT" --advertise-client-urls "http://127.0.0.1:$CPORT" \
  --listen-peer-urls "http://127.0.0.1:$PPORT" --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
  --initial-cluster "$NAME=http://127.0.0.1:$PPORT" --initial-cluster-state new \
  --initial-cluster-token "stratus-test-$CPORT" \
  "$@"
