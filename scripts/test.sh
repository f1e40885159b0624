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

# Meanwhile, at the lowest CPU priority, the rest is built: the optimised build the throughput
# tripwire runs (a debug build would hide a bridge that waits instead of working), the lints
# (in a target directory of their own, so that they never wait on the tests' cargo) and the
# fuzz targets. It takes what the debug build and the end-to-end tests (which mostly wait on
# the brokers) leave of the CPU: cold, that hides most of its time; warm, nothing is built.
background_log=$(mktemp)
set -m # its own process group, so that an early exit stops every compiler it started
(
  nice -n 19 cargo build --locked --profile tripwire -p bridge-host
  echo "== cargo clippy (host and native builds)"
  lint=(env CARGO_TARGET_DIR="$CARGO_TARGET_DIR/lint" BRIDGE_TEST_PLUGINS_DIR="$CARGO_TARGET_DIR/wasm-plugins"
    nice -n 19 cargo clippy --locked)
  "${lint[@]}" --workspace --all-targets -- -D warnings
  echo "== cargo clippy (the fuzzing harness)"
  "${lint[@]}" -p bridge-host --no-default-features --features fuzzing -- -D warnings
  echo "== cargo clippy (plugins for wasm32-wasip2)"
  "${lint[@]}" --target wasm32-wasip2 \
    -p bridge-guest-sdk -p header-map -p routing-key -p dlq-policy -p hostile -p bad-import -p shape-record -p tenth -p chosen-dead-letter -p pii-mask \
    -- -D warnings
  echo "== fuzz targets (build)"
  nice -n 19 scripts/fuzz.sh build
) >"$background_log" 2>&1 &
background=$!
set +m
cleanup() {
  set +e
  if [ -n "$background" ]; then
    kill -TERM -- "-$background" 2>/dev/null
    echo "(stopped the background builds; their output so far: $background_log)" >&2
  fi
  scripts/brokers.sh stop
}
trap cleanup EXIT

echo "== build (the bridge and every test)"
# The end-to-end tests run the bridge-host binary as users do.
cargo build --locked -p bridge-host
cargo test --workspace --locked --no-run

echo "== cargo test"
# Every test binary runs even after one fails, so that a failing run reports all its failures.
# The end-to-end tests share one executable; those that measure a throughput ratio run
# afterwards on their own, with nothing else loading the machine.
alone=(many_mappings:: noisy_neighbour:: tripwire::)
status=0
cargo test --workspace --locked --no-fail-fast -- "${alone[@]/#/--skip=}" || status=$?
echo "== optimised build, lints and fuzz build (run meanwhile)"
wait "$background" || status=$?
background=
cat "$background_log"
rm -f "$background_log"
echo "== cargo test (the ratio-measuring tests, alone)"
cargo test --workspace --locked --test e2e -- --test-threads 1 "${alone[@]}" || status=$?
[ "$status" -eq 0 ] || { echo "error: a build, a lint or a test failed (see above)" >&2; exit "$status"; }
echo "== fuzz (each target briefly, from the committed corpus)"
scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
