#!/usr/bin/env bash
# Install (first time) and serve the explorer: bash scripts/run.sh [streamlit options]
# Serves as production does: no file watcher, no rerun on save (also in .streamlit/config.toml). While editing the
# code:  bash scripts/run.sh --server.fileWatcherType auto --server.runOnSave true  (later options win).
# Settings from the environment (EXPLORER_*): docs/DEPLOY.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate 2>/dev/null || true
# two malloc arenas instead of eight per core: a server's threads then return freed memory instead of each
# holding on to its own peak
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
exec python -m streamlit run app.py --server.fileWatcherType none --server.runOnSave false "$@"
