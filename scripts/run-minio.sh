#!/usr/bin/env bash
# Start a single-node, single-drive MinIO server (built by scripts/install-test-deps.sh) in
# the foreground: the script execs MinIO, so the PID of this script is MinIO's PID.
#
#   scripts/run-minio.sh DATA_DIR PORT [extra `minio server` flags...]
#
# S3 API on 127.0.0.1:PORT (MinIO also binds [::1]:PORT), web console on 127.0.0.1:PORT+1.
# Credentials: MINIO_ROOT_USER / MINIO_ROOT_PASSWORD (default stratus / stratus-secret).
# Path-style addressing (http://127.0.0.1:PORT/bucket/key) works as is; virtual-host style
# would need MINIO_DOMAIN. Ready when GET http://127.0.0.1:PORT/minio/health/live is 200.
set -euo pipefail

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 2 ] || usage
DATA="$1"; PORT="$2"; shift 2
case "$PORT" in ''|*[!0-9]*) echo "run-minio: bad port: $PORT" >&2; usage ;; esac

CACHE="${STRATUS_CACHE:-$HOME/.cache/stratus}"
MINIO="$CACHE/bin/minio"
[ -x "$MINIO" ] || MINIO="$(command -v minio || true)"
[ -n "$MINIO" ] || { echo "run-minio: minio not found; run scripts/install-test-deps.sh" >&2; exit 1; }

mkdir -p "$DATA"
export MINIO_ROOT_USER="${MINIO_ROOT_USER:-stratus}"            # >= 3 characters
export MINIO_ROOT_PASSWORD="${MINIO_ROOT_PASSWORD:-stratus-secret}"  # >= 8 characters
# Test mode: small buffer pool (256 MiB instead of up to half the RAM), no root-drive
# check, deletes purged at once. MinIO also turns this on by itself when CI is set.
export MINIO_CI_CD="${MINIO_CI_CD:-1}"
export MINIO_UPDATE="${MINIO_UPDATE:-off}"  # no update checks (no network here)
exec "$MINIO" server --address "127.0.0.1:$PORT" --console-address "127.0.0.1:$((PORT + 1))" \
  "$@" "$DATA"
