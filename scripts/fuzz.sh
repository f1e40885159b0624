#!/usr/bin/env bash
# Fuzzes what the bridge parses from untrusted bytes, with cargo fuzz (libFuzzer), on the stable
# toolchain (no sanitizer: the code under test is safe Rust; libFuzzer still catches panics,
# unbounded allocations and runaway memory).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#   scripts/fuzz.sh build          # only builds every target, as the runs above need them
#
# Runs each target (default: all of fuzz/fuzz_targets) for SECONDS (default 30) from its
# committed corpus in fuzz/corpus/TARGET; inputs it finds go to a scratch directory, not into
# the corpus. A crash leaves its input in fuzz/artifacts/TARGET and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$HOME/.cache/bridge-host"
export PATH="$TOOLS/bin:$PATH"
cd fuzz
# The same flags for `build` and `run`, so that a run finds the build up to date.
flags=(--sanitizer none --target-dir "$TOOLS/fuzz-target")
if [ "${1:-}" = build ]; then
  exec cargo fuzz build "${flags[@]}"
fi
seconds=${1:-30}
shift || true
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=(amqp_headers kafka_headers kafka_header_names target_allowlist message_json config message_api)
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for target in "${targets[@]}"; do
  mkdir -p "$scratch/$target" "corpus/$target"
  echo "== fuzz $target (${seconds} s)"
  status=0
  cargo fuzz run "${flags[@]}" "$target" \
    "$scratch/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -malloc_limit_mb=512 \
    -print_final_stats=1 >"$scratch/$target.log" 2>&1 || status=$?
  grep -E '^(Done|INFO: Seed|stat::number_of_executed_units)' "$scratch/$target.log" || true
  if [ "$status" -ne 0 ] || ! grep -q '^Done ' "$scratch/$target.log"; then
    tail -40 "$scratch/$target.log"
    echo "fuzz target $target failed (exit $status); a failing input is in fuzz/artifacts/$target"
    exit 1
  fi
done
