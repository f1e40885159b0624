#!/usr/bin/env bash
# Builds the Go pii-mask plugin with the standard Go toolchain (GOOS=wasip1, go:wasmexport)
# and bindings from wit-bindgen-go. NOT WORKING YET: the component builds, but the Go runtime
# and the WASI preview1 adapter do not yet run together (see README.md).
#   ./build.sh [OUT.wasm]
# Needs Go 1.24+, wit-bindgen-go (go.bytecodealliance.org v0.7.0) and wasm-tools, on PATH or in
# ~/.cache/bridge-host/bin, and the adapter that ../c/build.sh fetches.
set -euo pipefail
cd "$(dirname "$0")"
out="$(realpath -m "${1:-pii-mask.wasm}")"
export PATH="$PATH:$HOME/.cache/bridge-host/bin"
adapter="$HOME/.cache/bridge-host/wasi-adapter-48.0.8/wasi_snapshot_preview1.reactor.wasm"
rm -rf internal
wit-bindgen-go generate --world transformer --out internal ../../../wit >/dev/null
./fixabi.sh $(find internal -name '*.go')
work="$(mktemp -d)"
trap 'rm -rf "$work" internal' EXIT
GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o "$work/core.wasm" .
wasm-tools component embed ../../../wit --world transformer "$work/core.wasm" -o "$work/embedded.wasm"
wasm-tools component new --realloc-via-memory-grow "$work/embedded.wasm" \
  --adapt "wasi_snapshot_preview1=$adapter" -o "$out"
echo "wrote $out"
