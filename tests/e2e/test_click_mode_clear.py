"""Click mode (the map pans on drag): a double-click clears the selection, as the caption says."""

import pytest
from test_browser import _point_on_screen, plot_area, wait_for_map

pytestmark = pytest.mark.e2e


def test_double_click_clears_in_click_mode(server, page):
    page.goto(server)
    wait_for_map(page)
    page.get_by_text("click selects").click()
    page.get_by_text("Click a point to select it", exact=False).wait_for(timeout=60_000)
    wait_for_map(page)
    point = _point_on_screen(page)
    page.mouse.move(point["x"], point["y"])
    page.mouse.click(point["x"], point["y"])
    page.get_by_text(f"#{point['id']} (", exact=False).first.wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    area = plot_area(page)
    cleared = page.get_by_text("Click a point or draw a box", exact=False)
    for _ in range(3):  # on a busy machine two clicks can arrive too far apart to count as a double-click
        page.mouse.dblclick(area["x"] + 5, area["y"] + 5)
        try:
            cleared.wait_for(timeout=20_000)
            break
        except Exception:  # noqa: BLE001
            continue
    cleared.wait_for(timeout=1_000)
