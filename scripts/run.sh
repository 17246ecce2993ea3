#!/usr/bin/env bash
# Install (first time) and open the explorer: bash scripts/run.sh [streamlit options]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate 2>/dev/null || true
exec python -m streamlit run app.py "$@"
