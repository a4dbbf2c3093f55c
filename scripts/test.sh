#!/usr/bin/env bash
# The one command that installs the test dependencies and runs every check and test:
#   install-test-deps, cargo build, cargo fmt --check, the module graph of docs/design.md,
#   cargo clippy -D warnings, cargo test, the fuzz targets (briefly), the benchmark reports'
#   self-tests,
#   then the real-client suite (pytest tests/clients) against the freshly built broker.
# Every step runs (unless it depends on a failed build); exits non-zero if any step failed.
#
#   scripts/test.sh [pytest args...]     e.g. scripts/test.sh -k kcat
# Environment:
#   STRATUS_CACHE        dependency cache (default ~/.cache/stratus)
#   CARGO_TARGET_DIR     shared cargo target dir (the broker binary is taken from it)
#   STRATUS_TEST_TARGET  stratus (default) or kafka (the reference broker; cargo steps still run)
#   STRATUS_SKIP_CARGO=1 skip the cargo steps (e.g. to check the suite against Kafka)
set -uo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
CACHE="${STRATUS_CACHE:-$HOME/.cache/stratus}"
export STRATUS_CACHE="$CACHE"
FAILED=()
START=$(date +%s)

step() {
  local name="$1"; shift
  echo
  echo "=== $name: $* ==="
  local t0=$(date +%s)
  if "$@"; then
    echo "=== $name: ok ($(( $(date +%s) - t0 ))s) ==="
    return 0
  fi
  echo "=== $name: FAILED ($(( $(date +%s) - t0 ))s) ==="
  FAILED+=("$name")
  return 1
}

step install scripts/install-test-deps.sh </dev/null || { echo "cannot continue without test dependencies"; exit 1; }
[ -d "$CACHE/bin" ] && export PATH="$PATH:$CACHE/bin"

BUILD_OK=1
if [ "${STRATUS_SKIP_CARGO:-0}" != 1 ]; then
  step build cargo build || BUILD_OK=0
  step fmt cargo fmt --all -- --check
  step module-graph python3 scripts/module-graph.py --check docs/design.md
  if [ "$BUILD_OK" = 1 ]; then
    step clippy cargo clippy --all-targets -- -D warnings
    # A real etcd for the metadata-store conformance suite (crates/meta/src/etcd.rs).
    ETCD_TMP="$(mktemp -d)"
    ETCD_PORT="$("$CACHE/venv/bin/python" -c 'import socket
for _ in range(100):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", p + 1)); t.close(); print(p); break
    except OSError:
        t.close()')"
    ETCD_LOG_LEVEL=warn scripts/run-etcd.sh "$ETCD_TMP/data" "$ETCD_PORT" >"$ETCD_TMP/etcd.log" 2>&1 </dev/null &
    ETCD_PID=$!
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$ETCD_PORT/health" >/dev/null && break; sleep 0.1; done
    STRATUS_TEST_ETCD="127.0.0.1:$ETCD_PORT" STRATUS_REQUIRE_ETCD=1 step cargo-test cargo test
    kill "$ETCD_PID" 2>/dev/null; wait "$ETCD_PID" 2>/dev/null
    rm -rf "$ETCD_TMP"
    if [ -x "$CACHE/bin/cargo-fuzz" ] && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
      step fuzz scripts/fuzz.sh "${STRATUS_FUZZ_SECONDS:-10}"
    else
      echo "=== fuzz: skipped (no nightly toolchain or cargo-fuzz; see scripts/install-test-deps.sh) ==="
    fi
  fi
fi

# The benchmark reports' arithmetic and strictness (fake tool outputs, no broker; seconds).
step bench-reports bash -c 'PYTHONDONTWRITEBYTECODE=1 python3 bench/report.py --self-test && PYTHONDONTWRITEBYTECODE=1 "$0" bench/cluster.py --self-test' "$CACHE/venv/bin/python"

TARGET_DIR="${CARGO_TARGET_DIR:-target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$REPO/$TARGET_DIR" ;; esac
export STRATUS_BIN="${STRATUS_BIN:-$TARGET_DIR/debug/stratus}"

if [ "${STRATUS_TEST_TARGET:-stratus}" = stratus ] && [ "$BUILD_OK" != 1 ]; then
  echo "=== clients: skipped (the broker did not build) ==="
  FAILED+=("clients (not run)")
else
  step clients "$CACHE/venv/bin/pytest" tests/clients -q -rfEs -p no:cacheprovider "$@"
fi

echo
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "scripts/test.sh: FAILED steps: ${FAILED[*]} (total $(( $(date +%s) - START ))s)"
  exit 1
fi
echo "scripts/test.sh: all steps passed (total $(( $(date +%s) - START ))s)"
