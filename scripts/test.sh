#!/usr/bin/env bash
# Install (first time) and run every test: lint, types, unit, app (AppTest) and browser (Chromium) tests.
#   bash scripts/test.sh            everything
#   bash scripts/test.sh -m "not e2e"   skip the browser tests (extra arguments go to pytest)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
[ -n "${VIRTUAL_ENV:-}" ] || . .venv/bin/activate
python -m ruff check .
python -m ruff format --check .
python -m mypy
python -m pytest -q "$@"
