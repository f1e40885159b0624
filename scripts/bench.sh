#!/usr/bin/env bash
# Benchmarks. Prints one JSON object per benchmark; see docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/bridge-host/target}"
scripts/setup.sh
cargo bench --locked -p bridge-tests --bench plugin_calls 2>/dev/null | grep '^{'
# The same plugin in each language (docs/plugins.md).
COMPONENTIZE_PY_VENV="$HOME/.cache/bridge-host/componentize-py" \
  cargo bench --locked -p bridge-tests --bench plugin_languages 2>/dev/null | grep '^{'

# Bridge throughput and latency on fresh brokers.
scripts/brokers.sh start >/dev/null
trap 'scripts/brokers.sh stop' EXIT
cargo build --locked --release -p bridge-host
BRIDGE_HOST_BIN="$CARGO_TARGET_DIR/release/bridge-host" \
  cargo bench --locked -p bridge-tests --bench bridge_throughput 2>/dev/null | grep '^{'
