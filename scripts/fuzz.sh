#!/usr/bin/env bash
# Runs every fuzz target under fuzz/ for a few seconds each (default 10), with cargo-fuzz on
# the nightly toolchain. Findings are kept under fuzz/artifacts/<target>/; the corpus grows
# in fuzz/corpus/<target>/ (neither is committed). For a longer hunt:
#   scripts/fuzz.sh 600          or   cargo +nightly fuzz run request_decode
set -euo pipefail
SECONDS_EACH="${1:-10}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${STRATUS_CACHE:-$HOME/.cache/stratus}"
export PATH="$CACHE/bin:$PATH"
cd "$REPO/fuzz"
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
status=0
# A dev build (quick to compile; the CI runs are a smoke test). Safe Rust only (unsafe_code
# is forbidden), so no sanitizer: what is looked for is panics,
# overflows (debug assertions are on) and unbounded allocations (-rss_limit_mb).
for target in $(cargo +nightly fuzz list); do
  if cargo +nightly fuzz run --dev --sanitizer none "$target" -- \
      -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 >"$LOG" 2>&1; then
    runs=$(grep -oE '^#[0-9]+' "$LOG" | tail -1 | tr -d '#')
    echo "fuzz: $target: ${runs:-?} runs in ${SECONDS_EACH}s, no finding"
  else
    echo "fuzz: $target FAILED:"
    tail -40 "$LOG"
    status=1
  fi
done
exit $status
