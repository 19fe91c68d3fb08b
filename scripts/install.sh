#!/usr/bin/env bash
# Create .venv at the repository root and install the package (editable) with the given extras.
#   bash scripts/install.sh          # runtime only
#   bash scripts/install.sh test     # runtime + test tools
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
if [ ! -x .venv/bin/python ]; then
  python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if [ -n "$extras" ]; then
  .venv/bin/python -m pip install --quiet -e ".[$extras]"
else
  .venv/bin/python -m pip install --quiet -e .
fi
