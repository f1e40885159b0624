#!/usr/bin/env bash
# The project's test command. Installs what is missing, starts the brokers on loopback, then
# runs formatting, lints and every test. Exits non-zero if any of them fails.
set -euo pipefail
cd "$(dirname "$0")/.."

# Builds are shared between checkouts: wasmtime and librdkafka take minutes to build cold.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/bridge-host/target}"
# Test runs are not edit loops: no incremental caches, and test executables no build has
# touched for a day are pruned, so the shared target directory does not fill the disk.
export CARGO_INCREMENTAL=0
# Each test executable carries wasmtime and librdkafka with debug info (≈ 450 MB): when the disk
# runs short, every executable older than a few minutes goes (they are relinked on demand).
if [ -d "$CARGO_TARGET_DIR/debug/deps" ]; then
  find "$CARGO_TARGET_DIR/debug/deps" -maxdepth 1 -type f -perm -u+x -mtime +1 -delete
  rm -rf "$CARGO_TARGET_DIR/debug/incremental"
  free_kib=$(df -Pk "$CARGO_TARGET_DIR" | awk 'NR == 2 { print $4 }')
  if [ "${free_kib:-0}" -lt $((40 * 1024 * 1024)) ]; then
    find "$CARGO_TARGET_DIR/debug/deps" -maxdepth 1 -type f -perm -u+x -mmin +10 -delete
  fi
fi

scripts/setup.sh
export COMPONENTIZE_PY_VENV="$HOME/.cache/bridge-host/componentize-py"
scripts/brokers.sh start
trap 'scripts/brokers.sh stop' EXIT

echo "== cargo fmt"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
echo "== cargo clippy (host and native builds)"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo clippy (the fuzzing harness)"
cargo clippy --locked -p bridge-host --no-default-features --features fuzzing -- -D warnings
echo "== cargo clippy (plugins for wasm32-wasip2)"
cargo clippy --locked --target wasm32-wasip2 \
  -p bridge-guest-sdk -p header-map -p routing-key -p dlq-policy -p hostile -p bad-import -p shape-record -p tenth -p chosen-dead-letter -p pii-mask \
  -- -D warnings
echo "== cargo test"
# The end-to-end tests run the bridge-host binary as users do; the throughput tripwire runs
# its release build (a debug build would hide a bridge that waits instead of working).
cargo build --locked -p bridge-host
cargo build --locked --release -p bridge-host
# Every test binary runs even after one fails, so that a failing run reports all its failures.
# The end-to-end tests share one executable; those that measure a throughput ratio run
# afterwards on their own, with nothing else loading the machine.
alone=(many_mappings:: noisy_neighbour:: tripwire::)
status=0
cargo test --workspace --locked --no-fail-fast -- "${alone[@]/#/--skip=}" || status=$?
cargo test --workspace --locked --test e2e -- --test-threads 1 "${alone[@]}" || status=$?
[ "$status" -eq 0 ] || { echo "error: tests failed" >&2; exit "$status"; }
echo "== fuzz (each target briefly, from the committed corpus)"
scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
