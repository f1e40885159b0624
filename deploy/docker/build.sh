#!/usr/bin/env bash
# The image's build steps: builds the bridge and the built-in plugins, then installs them with
# deploy/docker/install.sh (which the tests run on their own build, tests/tests/e2e/image.rs):
#   deploy/docker/build.sh ROOT [PROFILE]
# installs into ROOT (the image's filesystem):
#   ROOT/usr/local/bin/bridge-host                       the bridge (PROFILE: release by default)
#   ROOT/usr/share/bridge-host/plugins/*.wasm            the built-in plugins
#   ROOT/etc/bridge-host/bridge.toml                     an example config (replace it by a mount)
set -euo pipefail
ROOT="${1:?usage: build.sh ROOT [PROFILE]}"
PROFILE="${2:-release}"
cd "$(dirname "$0")/../.."
TARGET="${CARGO_TARGET_DIR:-target}"

cargo build --locked --profile "$PROFILE" -p bridge-host
cargo build --locked --target wasm32-wasip2 --profile plugin \
  -p header-map -p routing-key -p dlq-policy --target-dir "$TARGET/wasm-plugins"

deploy/docker/install.sh "$ROOT" "$PROFILE"
