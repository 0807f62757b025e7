#!/usr/bin/env bash
# Create .venv and install what ppcore, its app and its tests need. Idempotent: a second run
# only checks. Usage: bash scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
req=requirements.txt
[ "${1:-}" = "--dev" ] && req=requirements-dev.txt
stamp=".venv/.installed-$(cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)-$(basename $req .txt)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch is a range: pip takes the newest torch with its matching torchvision (~5 GB)
  .venv/bin/python -m pip install -q -r "$req"
  touch "$stamp"
fi
