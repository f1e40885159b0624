#!/usr/bin/env bash
# Builds {{name}} into a WebAssembly component.
#   ./build.sh [OUT.wasm]     (default: {{name}}.wasm here)
# Needs clang, lld and wasi-libc (Debian: apt-get install clang lld wasi-libc
# libclang-rt-14-dev-wasm32), wit-bindgen (cargo install wit-bindgen-cli) and wasm-tools
# (cargo install wasm-tools), found on PATH or in ~/.cache/bridge-host/bin. The WASI
# preview1 adapter is fetched once from crates.io (wasi-preview1-component-adapter-provider).
set -euo pipefail
cd "$(dirname "$0")"
out="$(realpath -m "${1:-{{name}}.wasm}")"
export PATH="$PATH:$HOME/.cache/bridge-host/bin"
for tool in clang wit-bindgen wasm-tools; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed (see README.md)" >&2; exit 1; }
done

adapter_version=48.0.8
adapter="$HOME/.cache/bridge-host/wasi-adapter-$adapter_version/wasi_snapshot_preview1.reactor.wasm"
if [ ! -f "$adapter" ]; then
  mkdir -p "$(dirname "$adapter")"
  crate=wasi-preview1-component-adapter-provider
  curl -fsSL "https://static.crates.io/crates/$crate/$crate-$adapter_version.crate" |
    tar xz -C "$(dirname "$adapter")" --strip-components=2 \
      "$crate-$adapter_version/artefacts/wasi_snapshot_preview1.reactor.wasm"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
wit-bindgen c wit --world transformer --out-dir "$work" >/dev/null
clang --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Werror \
  -I "$work" -o "$work/{{name}}.core.wasm" \
  plugin.c "$work/transformer.c" "$work/transformer_component_type.o"
wasm-tools component new "$work/{{name}}.core.wasm" \
  --adapt "wasi_snapshot_preview1=$adapter" -o "$out"
echo "wrote $out"
