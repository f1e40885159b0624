#!/usr/bin/env bash
# Builds {{name}}.wasm (needs Python 3.10+; installs componentize-py into .venv, or uses
# $COMPONENTIZE_PY_VENV).
set -euo pipefail
cd "$(dirname "$0")"
out="$(realpath -m "${1:-{{name}}.wasm}")"
venv="${COMPONENTIZE_PY_VENV:-.venv}"
if [ ! -x "$venv/bin/componentize-py" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r requirements.txt
fi
"$venv/bin/componentize-py" --wit-path wit --world transformer componentize app --output "$out"
