#!/usr/bin/env bash
# Builds the Rust pii-mask plugin into a WebAssembly component.
#   ./build.sh [OUT.wasm]     (default: pii-mask.wasm here)
set -euo pipefail
cd "$(dirname "$0")"
out="$(realpath -m "${1:-pii-mask.wasm}")"
target="${CARGO_TARGET_DIR:-../../../target}"
cargo build --quiet --locked -p pii-mask --target wasm32-wasip2 --profile plugin
cp "$target/wasm32-wasip2/plugin/pii_mask.wasm" "$out"
echo "wrote $out"
