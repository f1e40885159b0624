#!/usr/bin/env bash
# Builds the Python pii-mask plugin into a WebAssembly component.
#   ./build.sh [OUT.wasm]     (default: pii-mask.wasm here)
# Needs Python 3.10 or later; installs componentize-py (the version in requirements.txt) into
# a virtual environment, ./.venv or $COMPONENTIZE_PY_VENV, on the first run.
set -euo pipefail
cd "$(dirname "$0")"
out="$(realpath -m "${1:-pii-mask.wasm}")"
venv="${COMPONENTIZE_PY_VENV:-.venv}"
if [ ! -x "$venv/bin/componentize-py" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r requirements.txt
fi
"$venv/bin/componentize-py" --wit-path ../../../wit --world transformer \
  componentize app --output "$out"
