#!/usr/bin/env bash
# Installs a built bridge-host and the built-in plugins into ROOT, the image's filesystem
# (see build.sh). CARGO_TARGET_DIR says where the build is (default: target).
#   deploy/docker/install.sh ROOT [PROFILE]
set -euo pipefail
ROOT="${1:?usage: install.sh ROOT [PROFILE]}"
PROFILE="${2:-release}"
cd "$(dirname "$0")/../.."
TARGET="${CARGO_TARGET_DIR:-target}"
dir="$PROFILE"
[ "$PROFILE" = dev ] && dir=debug
install -D -m 0755 "$TARGET/$dir/bridge-host" "$ROOT/usr/local/bin/bridge-host"
for plugin in header_map routing_key dlq_policy; do
  install -D -m 0644 "$TARGET/wasm-plugins/wasm32-wasip2/plugin/$plugin.wasm" \
    "$ROOT/usr/share/bridge-host/plugins/$plugin.wasm"
done
install -D -m 0644 deploy/docker/bridge.toml "$ROOT/etc/bridge-host/bridge.toml"
