#!/usr/bin/env bash
# Install the explorer into ./.venv (or the active virtual environment).
#   bash scripts/setup.sh          the app
#   bash scripts/setup.sh --test   the app and what its tests need (Chromium for the browser tests)
# As root on Debian/Ubuntu it also installs the dataset-fashion-mnist package (optional: the
# test split ships with the repository) and, with --test, chromium + chromium-driver.
set -euo pipefail
cd "$(dirname "$0")/.."
test_deps=0
[ "${1:-}" = "--test" ] && test_deps=1

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || echo "setup: apt-get update failed; trying with the package lists at hand"
  apt-get install -y -qq dataset-fashion-mnist >/dev/null \
    || echo "setup: dataset-fashion-mnist not installed; the shipped test split will be used"
  if [ "$test_deps" = 1 ]; then
    apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
fi

if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
python -m pip install -q --upgrade pip
# torch first, from the one pin in requirements/torch.txt: an unpinned torch pulls a multi-GB CUDA build
python -m pip install -q -r requirements/torch.txt
if [ "$test_deps" = 1 ]; then
  # scale: the Ray engine of `encode`, whose equality test CI runs
  python -m pip install -q -e ".[test,scale]"
else
  python -m pip install -q -e .
fi
echo "setup: done ($(python -c 'import torch, streamlit; print("torch", torch.__version__, "· streamlit", streamlit.__version__)'))"
