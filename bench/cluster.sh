#!/usr/bin/env bash
# Cluster benchmark: Stratus on MinIO (1 and 3 brokers), Stratus on a local directory and
# Apache Kafka, on this machine; failover and move times; object PUTs at 100 and 1000
# partitions; request cost per GB. Every target runs the same record counts; the whole set is
# repeated BENCH_REPEAT times (default 3) on fresh brokers, in alternating order, and every
# figure is reported as median [min–max] with the Stratus ÷ Kafka ratio of the medians. A tool
# that fails or times out, a producer with records not acknowledged, a broker that dies or
# panics, or a setting the broker does not report as given fails the run (no report).
# See bench/cluster.py. Writes bench/results/cluster.md and bench/results/cluster-last-run.json.
#
#   bench/cluster.sh                                   # 3 runs, ~35 min on 2 cores (~11 min a run)
#   BENCH_SCALE=0.3 BENCH_REPEAT=1 bench/cluster.sh    # smoke run (no spread)
#   bench/cluster.py --render bench/results/cluster-last-run.json   # the report again
#   python3 bench/cluster.py --self-test               # the report's arithmetic, no broker
#
# This script installs the test dependencies and builds the release binary first
# (BENCH_TARGET_DIR, default /tmp/bench-target).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${STRATUS_CACHE:-$HOME/.cache/stratus}"
"$REPO/scripts/install-test-deps.sh" </dev/null
export CARGO_TARGET_DIR="${BENCH_TARGET_DIR:-/tmp/bench-target}"
(cd "$REPO" && cargo build --release)
export STRATUS_BIN="$CARGO_TARGET_DIR/release/stratus"
export STRATUS_BUILD_COMMIT="${STRATUS_BUILD_COMMIT:-$(git -C "$REPO" rev-parse --short=10 HEAD)}"
export PATH="$PATH:$CACHE/bin"
export PYTHONDONTWRITEBYTECODE=1
exec "$CACHE/venv/bin/python" "$REPO/bench/cluster.py" "$@"
