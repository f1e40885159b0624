#!/usr/bin/env bash
# Benchmarks. Prints one JSON object per benchmark; see docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/bridge-host/target}"
scripts/setup.sh
cargo bench --locked -p bridge-tests --bench plugin_calls 2>/dev/null | grep '^{'
