#!/usr/bin/env bash
# Install (first time) and run every test: lint, types, then two pytest tiers that must both pass:
# the functional tests (unit, app (AppTest) and browser (Chromium)), then the tests marked `perf`,
# whose assertions are limits on time or memory and so depend on how busy the machine is.
#   bash scripts/test.sh                      everything
#   bash scripts/test.sh -m "not e2e"         skip the browser tests in both tiers
#   bash scripts/test.sh tests/unit -x        other arguments go to pytest in both tiers
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
[ -n "${VIRTUAL_ENV:-}" ] || . .venv/bin/activate
python -m ruff check .
python -m ruff format --check .
python -m mypy

# a marker expression given here narrows each tier instead of replacing the tier's own
marks=""
args=()
selected=0
while [ $# -gt 0 ]; do
  case "$1" in
    -m) marks="${2:?-m needs a marker expression}"; shift 2 ;;
    -m*) marks="${1#-m}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done

tier() {  # tier NAME MARKER-EXPRESSION
  local expr="$2" rc=0
  [ -z "$marks" ] || expr="($expr) and ($marks)"
  echo "== $1 tests: pytest -m \"$expr\""
  python -m pytest -q -m "$expr" ${args[@]+"${args[@]}"} || rc=$?
  if [ "$rc" -eq 5 ]; then  # nothing of this tier among the tests chosen
    echo "== no $1 tests selected"
    return 0
  fi
  selected=1
  return "$rc"
}

tier functional "not perf"
tier "time and memory (perf)" "perf"
[ "$selected" -eq 1 ] || { echo "no tests selected" >&2; exit 5; }
