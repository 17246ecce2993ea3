"""Map gestures in the browser that need a projection other than the shipped one: click selection
on a 3-D map, and a new map's computation cancelled with the previous map kept in view."""

import pytest
from test_browser import wait_for_map  # tests/e2e is on the path: pytest imports its files by name

pytestmark = pytest.mark.e2e

# the row id of the point Plotly last reported under the mouse (3-D scenes report hovers by event only)
LISTEN = """() => { const g = document.querySelector('.js-plotly-plot'); window.__hovered = null;
  g.on('plotly_hover', e => { const p = e.points[0]; if (p.customdata !== undefined) window.__hovered = p.customdata; });
  g.on('plotly_unhover', () => { window.__hovered = null; }); }"""
HOVERED = "() => window.__hovered"
POINTS = "() => document.querySelector('.js-plotly-plot')._fullData.reduce((n, t) => n + (t._length || 0), 0)"


def _radio(page, label):
    page.locator("[data-testid='stSidebar']").get_by_text(label, exact=True).click()


def _hover_a_point(page):
    """Sweep the mouse over the 3-D scene until Plotly reports a point under it: (x, y, row id)."""
    page.evaluate(LISTEN)
    box = page.locator(".js-plotly-plot").first.bounding_box()
    assert box and box["width"] > 200, box
    for fy in (0.5, 0.45, 0.55, 0.4, 0.6, 0.35, 0.65):
        for fx in [0.3 + 0.02 * k for k in range(21)]:
            x, y = box["x"] + box["width"] * fx, box["y"] + box["height"] * fy
            page.mouse.move(x, y)
            page.wait_for_timeout(40)
            hit = page.evaluate(HOVERED)
            if hit is not None:
                return x, y, int(hit[0] if isinstance(hit, list) else hit)
    raise AssertionError("no point of the 3-D map found under the mouse")


def test_click_selects_a_point_on_a_3d_map(server, page):
    # 1,000 points (opened by a link): Chromium draws 3-D scenes in software here, and a 10,000-point
    # scene held under a pressed mouse button can starve the page of frames for minutes
    page.goto(server + "/?n=1000&proj=UMAP+3-D")
    page.get_by_text("Click a point to select it; drag to rotate", exact=False).wait_for(timeout=180_000)
    page.wait_for_function(
        "() => { const g = document.querySelector('.js-plotly-plot'); return g && g._fullLayout.scene; }",
        timeout=60_000,
    )
    x, y, row = _hover_a_point(page)
    # Plotly reports a 3-D click from a frame drawn while the button is down: hold it as a person does
    page.mouse.down()
    page.wait_for_timeout(300)
    page.mouse.up()
    page.get_by_text(f"#{row} (", exact=False).first.wait_for(timeout=60_000)
    page.get_by_text("its nearest images in latent space").wait_for(timeout=60_000)
    assert page.locator("[data-testid='stException']").count() == 0


def test_a_new_map_can_be_cancelled_and_the_old_one_stays(server, page):
    # 20,000 images, so the new map takes long enough to cancel on any machine (a link sets the size)
    page.goto(server + "/?split=train&n=20000")
    wait_for_map(page, timeout=240_000)
    page.get_by_text("Click a point or draw a box", exact=False).wait_for(timeout=240_000)
    # 20,000 of train and test together: encoded and fitted now
    page.get_by_role("radiogroup", name="Split").get_by_text("all", exact=True).click()
    cancel = page.get_by_role("button", name="Cancel")
    cancel.wait_for(timeout=60_000)
    # the map shown before stays on screen under the progress bar, with all its points
    assert page.locator("[data-testid='stProgress']").count() == 1
    assert page.evaluate(POINTS) == 20_000
    cancel.click()
    # the settings go back, and the map before is drawn again at once (it is in memory)
    page.locator("[data-testid='stSidebar']").get_by_role("radio", name="train", exact=True).and_(
        page.locator(":checked")
    ).wait_for(timeout=30_000)
    wait_for_map(page, timeout=30_000)
    page.get_by_text("Click a point or draw a box", exact=False).wait_for(timeout=30_000)
    assert page.locator("[data-testid='stProgress']").count() == 0
    assert page.evaluate(POINTS) == 20_000
    assert page.locator("[data-testid='stException']").count() == 0
