#!/usr/bin/env bash
# Set up (if needed) and start the app on http://127.0.0.1:8501
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -z "${PPCORE_DATA:-}" ] && [ -d ../shared/data/MNIST ]; then
  export PPCORE_DATA=$(cd .. && pwd)/shared/data
fi
exec .venv/bin/streamlit run app.py "$@"
