"""The Compare page in Chromium: a box drawn on the left map selects the same images on the right one."""

import pytest
from browsing import MAP, drag

pytestmark = pytest.mark.e2e

# row ids each map draws as selected: customdata at the selectedpoints of every class trace
SELECTED_IDS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).slice(0, 2).map(g =>
    g.data.flatMap(t => (t.selectedpoints || []).map(i => t.customdata[i])).sort((a, b) => a - b))"""


def _maps_ready(page, timeout=180_000):
    page.wait_for_function(
        """() => { const g = document.querySelectorAll('.js-plotly-plot');
                   return g.length >= 2 && g[0].data && g[1].data && g[1].querySelector('.nsewdrag'); }""",
        timeout=timeout,
    )


def test_a_box_on_one_map_selects_the_same_images_on_both(server, page, screenshots):
    page.goto(server + "/compare")
    _maps_ready(page)
    area = page.locator(f"{MAP} .nsewdrag").first.bounding_box()
    assert area and area["width"] > 200, area
    x0, y0 = area["x"] + area["width"] * 0.35, area["y"] + area["height"] * 0.35
    x1, y1 = area["x"] + area["width"] * 0.65, area["y"] + area["height"] * 0.65
    drag(page, x0, y0, x1, y1)
    page.get_by_text("selected** on the left map", exact=False).or_(
        page.get_by_text("selected on the left map", exact=False)
    ).first.wait_for(timeout=120_000)
    _maps_ready(page)
    page.wait_for_function(f"() => ({SELECTED_IDS})()[1].length > 0", timeout=60_000)
    left, right = page.evaluate(SELECTED_IDS)
    assert left == right and len(right) > 10, (len(left), len(right))
    count = page.locator("strong", has_text="selected").first.inner_text()
    assert count.split()[0].replace(",", "") == str(len(right)), count
    page.get_by_text("Metrics", exact=False).first.wait_for(timeout=120_000)
    page.screenshot(path=str(screenshots / "compare.png"), full_page=True)
