#!/usr/bin/env bash
# Refresh the README's pictures (docs/*.png) from a real server and Chromium:
#   bash scripts/screenshots.sh
# The browser tests always save their pictures to tests/e2e/artifacts/ (ignored by git); this
# runs the tests that take them and copies each one over the tracked picture of the same name.
# A new picture is added to docs/ by hand once; from then on this command keeps it current.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${VIRTUAL_ENV:-}" ] || . .venv/bin/activate
artifacts=tests/e2e/artifacts
rm -f "$artifacts"/*.png  # a picture left by an earlier run must not pass for a fresh one
python -m pytest -q -p no:cacheprovider tests/e2e/test_browser.py tests/e2e/test_session.py \
  -k "test_box_selection_decodes_and_spot_decodes or test_interpolation_path_is_drawn_on_the_map or test_hovering_a_point_shows_its_image"
for picture in docs/*.png; do
  cp "$artifacts/$(basename "$picture")" "$picture"
  echo "refreshed $picture"
done
