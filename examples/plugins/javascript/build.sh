#!/usr/bin/env bash
# Builds the JavaScript pii-mask plugin into a WebAssembly component.
#   ./build.sh [OUT.wasm]     (default: pii-mask.wasm here)
# Needs Node.js 18 or later with npm; installs componentize-js (package-lock.json records the versions)
# into node_modules on the first run.
set -euo pipefail
cd "$(dirname "$0")"
out="$(realpath -m "${1:-pii-mask.wasm}")"
if [ ! -d node_modules/@bytecodealliance/componentize-js ]; then
  npm install --no-audit --no-fund --loglevel=error
fi
node build.mjs "$out"
