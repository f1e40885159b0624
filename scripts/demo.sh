#!/usr/bin/env bash
# The quickstart, in one command: installs what is missing and starts local brokers, builds the
# bridge and its plugins, runs bridge-host with examples/quickstart/bridge.toml, sends sample
# messages both ways and shows them arriving transformed, shows `bridge-host top`, then stops
# everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/bridge-host/target}"
QUICKSTART=examples/quickstart

# Each phase says how long it took.
phase_start=$SECONDS
phase() {
  [ -n "${phase_name:-}" ] && echo "   (${phase_name}: $((SECONDS - phase_start)) s)"
  phase_name="$1"
  phase_start=$SECONDS
  echo "== $1"
}

phase "installing what is missing (only what the demo runs), starting RabbitMQ and Apache Kafka on 127.0.0.1"
scripts/setup.sh run
scripts/brokers.sh start
BRIDGE_PID=""
cleanup() {
  [ -n "$BRIDGE_PID" ] && kill "$BRIDGE_PID" 2>/dev/null && wait "$BRIDGE_PID" 2>/dev/null || true
  scripts/brokers.sh stop
}
trap cleanup EXIT

phase "building bridge-host and the built-in plugins"
cargo build --locked --release -p bridge-host
cargo build --locked --target wasm32-wasip2 --profile plugin -p header-map -p routing-key \
  --target-dir "$CARGO_TARGET_DIR/wasm-plugins"
mkdir -p "$QUICKSTART/plugins"
cp "$CARGO_TARGET_DIR"/wasm-plugins/wasm32-wasip2/plugin/{header_map,routing_key}.wasm "$QUICKSTART/plugins/"
cargo build --locked --release -p bridge-tests --example quickstart

phase "starting bridge-host (log: .run/quickstart.log)"
mkdir -p .run
RABBITMQ_PASSWORD=guest "$CARGO_TARGET_DIR/release/bridge-host" run --config "$QUICKSTART/bridge.toml" \
  >.run/quickstart.log 2>&1 &
BRIDGE_PID=$!
for _ in $(seq 60); do
  curl -fs http://127.0.0.1:8080/readyz >/dev/null 2>&1 && break
  sleep 1
done

phase "sending sample messages both ways"
"$CARGO_TARGET_DIR/release/examples/quickstart"

phase "bridge-host top while messages flow (8 s)"
# The sample client again and again in the background, so that the rates move.
(
  end=$((SECONDS + 9))
  while [ $SECONDS -lt $end ]; do
    "$CARGO_TARGET_DIR/release/examples/quickstart" >/dev/null 2>&1 || break
  done
) &
LOAD_PID=$!
timeout 8 "$CARGO_TARGET_DIR/release/bridge-host" top --url http://127.0.0.1:8080 || true
wait "$LOAD_PID" 2>/dev/null || true
echo
phase "done; stopping the bridge and the brokers"
echo "   (whole demo: ${SECONDS} s)"
