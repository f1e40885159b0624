#!/usr/bin/env bash
# Benchmarks. Prints one JSON object per benchmark; see docs/performance.md.
#
#   scripts/bench.sh          plugin calls, plugin languages, bridge throughput and latency
#   scripts/bench.sh soak     the long soaks (docs/guarantees.md, "Faults"): one million
#                             messages with kill -9 every 30 s, and 30 minutes of steady traffic
#   scripts/bench.sh fuzz     every fuzz target for 10 minutes
#   scripts/bench.sh instructions
#                             instructions and allocations per message Kafka → Kafka and
#                             Kafka → RabbitMQ, counted by valgrind's callgrind over 20 000
#                             messages
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/bridge-host/target}"
scripts/setup.sh
case "${1:-}" in
  soak)
    scripts/brokers.sh start >/dev/null
    trap 'scripts/brokers.sh stop' EXIT
    cargo build --locked -p bridge-host
    BRIDGE_SOAK=1 cargo test --locked -p bridge-tests --test e2e -- soak:: --nocapture --test-threads 1
    exit 0
    ;;
  fuzz)
    exec scripts/fuzz.sh 600
    ;;
  instructions)
    scripts/brokers.sh start >/dev/null
    trap 'scripts/brokers.sh stop' EXIT
    cargo build --locked --release -p bridge-host
    # What goes wrong under valgrind (the bridge's log) is on standard error.
    BENCH_INSTRUCTIONS=1 BENCH_MESSAGES="${BENCH_MESSAGES:-20000}" \
    BRIDGE_HOST_BIN="$CARGO_TARGET_DIR/release/bridge-host" \
      cargo bench --locked -p bridge-tests --bench bridge_throughput | grep '^{'
    exit 0
    ;;
esac
cargo bench --locked -p bridge-tests --bench plugin_calls 2>/dev/null | grep '^{'
# The same plugin in each language (docs/plugins.md).
COMPONENTIZE_PY_VENV="$HOME/.cache/bridge-host/componentize-py" \
  cargo bench --locked -p bridge-tests --bench plugin_languages 2>/dev/null | grep '^{'

# Bridge throughput and latency on fresh brokers.
scripts/brokers.sh start >/dev/null
trap 'scripts/brokers.sh stop' EXIT
cargo build --locked --release -p bridge-host
# MirrorMaker 2, the Kafka → Kafka peer, of the broker's Kafka version.
BENCH_MIRROR_MAKER_LIBS="$(scripts/kafka.sh fetch-mirror)" \
BRIDGE_HOST_BIN="$CARGO_TARGET_DIR/release/bridge-host" \
  cargo bench --locked -p bridge-tests --bench bridge_throughput 2>/dev/null | grep '^{'
