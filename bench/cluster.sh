#!/usr/bin/env bash
# Cluster benchmark: Stratus on MinIO (1 and 3 brokers), Stratus on a local directory and
# Apache Kafka, on this machine in one run; failover and move times; object PUTs at 100
# and 1000 partitions; request cost per GB. See bench/cluster.py. Writes
# bench/results/cluster.md.
#
#   bench/cluster.sh                   # ~15 min on 2 cores
#   BENCH_SCALE=0.3 bench/cluster.sh   # smoke run
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${STRATUS_CACHE:-$HOME/.cache/stratus}"
"$REPO/scripts/install-test-deps.sh" </dev/null
export CARGO_TARGET_DIR="${BENCH_TARGET_DIR:-/tmp/bench-target}"
(cd "$REPO" && cargo build --release)
export STRATUS_BIN="$CARGO_TARGET_DIR/release/stratus"
export PATH="$PATH:$CACHE/bin"
exec "$CACHE/venv/bin/python" "$REPO/bench/cluster.py"
