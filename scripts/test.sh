#!/usr/bin/env bash
# Set up (if needed) and run every test: bash scripts/test.sh [pytest args]
# Needs MNIST in torchvision's layout at ../shared/data or $PPCORE_DATA.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
# the end-to-end browser test drives Debian's chromium; install it when missing and possible
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -q && apt-get install -y -q chromium) >/dev/null 2>&1 \
    || echo "warning: could not install chromium; the browser test will be skipped" >&2
fi
export PPCORE_DATA=${PPCORE_DATA:-$(cd .. && pwd)/shared/data}
exec .venv/bin/python -m pytest -q "$@"
