#!/usr/bin/env bash
# Builds {{name}}.wasm (needs Node.js 18+ with npm; installs componentize-js on the first run).
set -euo pipefail
cd "$(dirname "$0")"
out="$(realpath -m "${1:-{{name}}.wasm}")"
[ -d node_modules/@bytecodealliance/componentize-js ] || npm install --no-audit --no-fund --loglevel=error
node build.mjs "$out"
