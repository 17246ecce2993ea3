"""Map gestures in the browser that need a projection other than the shipped one: click selection
on a 3-D map, and a new map's computation cancelled with the previous map kept in view."""

import pytest
from browsing import IDLE, wait_for_map

pytestmark = pytest.mark.e2e

POINTS = "() => document.querySelector('.js-plotly-plot')._fullData.reduce((n, t) => n + (t._length || 0), 0)"
SCENE_READY = """() => { const g = document.querySelector('.js-plotly-plot'); const s = g && g._fullLayout.scene;
  return !!(s && s._scene && s._scene.glplot && s._scene.glplot.cameraParams); }"""
# where point i of the first trace with enough points is drawn: the scene's own camera matrices (column-major),
# the same projection the page's click listener (explorer/ui/map_bridge.py) inverts
PROJECT = """(i) => { const g = document.querySelector('.js-plotly-plot'); const plot = g._fullLayout.scene._scene.glplot;
  const obj = plot.objects.find(o => o._trace && o._trace.data.customdata && o.points.length > i);
  const {view, projection, model} = plot.cameraParams;
  const mul = (a, b) => { const o = new Array(16).fill(0); for (let c = 0; c < 4; c++) for (let r = 0; r < 4; r++) {
    let v = 0; for (let k = 0; k < 4; k++) v += a[k * 4 + r] * b[c * 4 + k]; o[c * 4 + r] = v; } return o; };
  const m = mul(projection, mul(view, model)); const [x, y, z] = obj.points[i];
  const w = m[3] * x + m[7] * y + m[11] * z + m[15]; const rect = plot.canvas.getBoundingClientRect();
  return {x: rect.left + ((m[0] * x + m[4] * y + m[8] * z + m[12]) / w + 1) / 2 * rect.width,
          y: rect.top + (1 - (m[1] * x + m[5] * y + m[9] * z + m[13]) / w) / 2 * rect.height,
          id: Number(obj._trace.data.customdata[i])}; }"""


def open_3d(page, server):
    # 1,000 points (opened by a link): Chromium draws 3-D scenes in software here
    page.goto(server + "/?n=1000&proj=UMAP+3-D")
    page.get_by_text("Click a point to select it; drag to rotate", exact=False).wait_for(timeout=180_000)
    page.wait_for_function(SCENE_READY, timeout=60_000)


@pytest.mark.parametrize("hold_ms", [100, 800, 3000])
def test_click_selects_a_point_on_a_3d_map(server, page, hold_ms):
    """A click, the button held as briefly or as long as a person holds it, selects the point under it: the page
    finds the nearest drawn point itself, whether or not Chromium drew a frame while the button was down."""
    open_3d(page, server)
    for i in (7, 40, 150):  # points in front of others are hit, hidden ones not: try a few
        target = page.evaluate(PROJECT, i)
        page.mouse.move(target["x"], target["y"])
        page.mouse.down()
        page.wait_for_timeout(hold_ms)
        page.mouse.up()
        try:
            page.get_by_text("its nearest images in latent space").wait_for(timeout=30_000)
            break
        except Exception:  # noqa: BLE001 - another point lies in front of this one: try the next
            continue
    heading = page.locator("[data-testid='stMarkdownContainer']").filter(has_text="reconstruction MSE").first
    heading.wait_for(timeout=30_000)
    shown = int(heading.inner_text().split(" ")[0].lstrip("#"))
    assert shown == target["id"], (shown, target)
    # ringed on the map, where it is drawn
    ring = page.locator(".lx-mark.focus").first
    ring.wait_for(timeout=10_000)
    box = ring.bounding_box()
    assert box is not None and box["width"] >= 20
    assert page.locator("[data-testid='stException']").count() == 0


def test_a_drag_on_a_3d_map_rotates_and_selects_nothing(server, page):
    open_3d(page, server)
    target = page.evaluate(PROJECT, 7)
    page.mouse.move(target["x"], target["y"])
    page.mouse.down()
    page.mouse.move(target["x"] + 60, target["y"] + 20, steps=8)
    page.mouse.up()
    page.wait_for_function(IDLE, timeout=30_000)
    assert page.get_by_text("its nearest images in latent space").count() == 0


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
