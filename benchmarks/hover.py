"""Browser latency, pointer on a point -> its image shown: the app's hover images on a 10,000- and a 70,000-point
map, next to Plotly's own hover label on the same maps and on the bare Streamlit + Plotly page.

``python -m benchmarks --only hover [--runs N]``. One run starts the real app and benchmarks/bare_app.py on free
loopback ports and drives headless Chromium. For each map it moves the pointer off the map and then, in one step,
onto a mapped point (N points, spread over the map), and reads in the page:

- from the ``pointermove`` event's time to the first animation frame after the app drew the image of the point
  Plotly reports under the pointer
  (``window.__lxMap.last.paintedAt``, set by explorer/ui/map_bridge.py);
- from the same event to the first frame in which Plotly's hover label is on the page (its own hover, which
  needs no server either: the floor any page-side hover can reach).

Both ends are ``performance.now()`` in the page, so Playwright's round trips do not count. The 70,000-point map
is Fashion-MNIST's train and test splits together (``split=all``, all images), computed by the app on first use
(about half a minute) if no cached map exists. A run fails when a hover shows no image; never on a slow number.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from explorer.devserver import CHROMIUM, CHROMIUM_ARGS, running_app

if TYPE_CHECKING:
    from playwright.async_api import Page, ViewportSize

BARE_APP = Path(__file__).resolve().parent / "bare_app.py"
VIEWPORT: ViewportSize = {"width": 1500, "height": 950}  # the browser tests' window
LOAD_TIMEOUT_MS = 300_000
HOVER_TIMEOUT_MS = 10_000
MAPS = {"10k": "/", "70k": "/?split=all&n=0"}

RECORDER = """
window.__hover = {moved: null};
window.addEventListener('pointermove', (e) => { window.__hover.moved = performance.now(); }, true);
"""
# points spread over the map: every k-th point of every trace, in page pixels with their row ids
POINTS = """(count) => {
  const gd = document.querySelector('.js-plotly-plot');
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  const r = gd.querySelector('.nsewdrag').getBoundingClientRect();
  const all = [];
  for (const t of gd._fullData) {
    if (!t.customdata || t.visible !== true) continue;
    for (let i = 0; i < t._length; i += 97) all.push([r.left + xa.l2p(t.x[i]), r.top + ya.l2p(t.y[i]), Number(t.customdata[i])]);
  }
  const step = Math.max(1, Math.floor(all.length / count));
  return all.filter((_, i) => i % step === 0).slice(0, count);
}"""
LABEL_SHOWN = "() => document.querySelector('.hoverlayer .hovertext') ? performance.now() : false"
MAP_DRAWN = """(n) => { const gd = document.querySelector('.js-plotly-plot');
  if (!gd || !gd._fullData || !gd.querySelector('.nsewdrag')) return false;
  return gd._fullData.reduce((s, t) => s + (t.visible === true && t.customdata ? t._length || 0 : 0), 0) >= n; }"""
IDLE = "() => document.querySelector('[data-testid=\"stApp\"]')?.dataset.testScriptState === 'notRunning'"


class HoverError(RuntimeError):
    """A hover that showed no image."""


@dataclass(frozen=True)
class Hover:
    image_ms: dict[str, list[float]]  # map -> pointer on the point -> its image painted (the app)
    label_ms: dict[str, list[float]]  # map -> pointer on the point -> Plotly's hover label (the app)
    bare_label_ms: list[float]  # the bare page's 10k map: pointer -> Plotly's hover label


# the row id of the point Plotly reports under the pointer (a denser map may pick a neighbour of the target)
LISTEN = """() => { const gd = document.querySelector('.js-plotly-plot'); window.__hover.id = null;
  gd.on('plotly_hover', (e) => { const p = e.points[0]; window.__hover.id = p.customdata === undefined ? null : Number(p.customdata); }); }"""


async def _open(page: Page, url: str, n: int) -> None:
    await page.goto(url)
    await page.wait_for_function(MAP_DRAWN, arg=n, polling="raf", timeout=LOAD_TIMEOUT_MS)
    await page.wait_for_function(IDLE, timeout=LOAD_TIMEOUT_MS)
    await page.evaluate(LISTEN)


async def _hover(page: Page, x: float, y: float, images: bool) -> tuple[float | None, float]:
    """Pointer off the map, then onto (x, y) in one step: (ms to the image of the point Plotly reports, or None
    without images; ms to Plotly's label)."""
    await page.mouse.move(5, 5)
    await page.wait_for_function("() => !document.querySelector('.hoverlayer .hovertext')", timeout=HOVER_TIMEOUT_MS)
    await page.mouse.move(x, y)
    label = await page.wait_for_function(LABEL_SHOWN, polling="raf", timeout=HOVER_TIMEOUT_MS)
    moved = float(await page.evaluate("() => window.__hover.moved"))
    label_ms = float(await label.json_value()) - moved
    if not images:
        return None, label_ms
    painted = await page.wait_for_function(
        "() => { const l = window.__lxMap && window.__lxMap.last;"
        " return l && l.id === window.__hover.id && l.paintedAt > window.__hover.moved && l.paintedAt; }",
        polling="raf",
        timeout=HOVER_TIMEOUT_MS,
    )
    return float(await painted.json_value()) - moved, label_ms


async def _measure(runs: int) -> Hover:
    from playwright.async_api import TimeoutError as PlaywrightTimeout
    from playwright.async_api import async_playwright

    image_ms: dict[str, list[float]] = {}
    label_ms: dict[str, list[float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="hover-") as tmp,
        running_app(Path(tmp) / "app-cache", Path(tmp) / "app.log", {"EXPLORER_WARM_UMAP": "0"}) as app_url,
        running_app(Path(tmp) / "bare-cache", Path(tmp) / "bare.log", script=BARE_APP) as bare_url,
    ):
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
            try:
                for name, path in MAPS.items():
                    context = await browser.new_context(viewport=VIEWPORT)
                    await context.add_init_script(RECORDER)
                    page = await context.new_page()
                    await _open(page, app_url + path, 10_000 if name == "10k" else 70_000)
                    # every sheet fetched and decoded before the first hover (the page starts on them at once)
                    await page.wait_for_function(
                        "() => window.__lxMap && Object.values(window.__lxMap.images).length > 0 && "
                        "Object.values(window.__lxMap.images).every(i => i.complete && i.naturalWidth > 0)",
                        timeout=LOAD_TIMEOUT_MS,
                    )
                    image_ms[name], label_ms[name] = [], []
                    for x, y, rid in await page.evaluate(POINTS, runs):
                        try:
                            image, label = await _hover(page, x, y, True)
                        except PlaywrightTimeout:
                            raise HoverError(f"{name}: hovering near point {rid} showed no image") from None
                        image_ms[name].append(image if image is not None else math.nan)
                        label_ms[name].append(label)
                    await context.close()
                context = await browser.new_context(viewport=VIEWPORT)
                await context.add_init_script(RECORDER)
                page = await context.new_page()
                await _open(page, bare_url, 10_000)
                bare = [(await _hover(page, x, y, False))[1] for x, y, _ in await page.evaluate(POINTS, runs)]
                await context.close()
            finally:
                await browser.close()
    return Hover(image_ms, label_ms, bare)


def measure(runs: int) -> Hover:
    if not Path(CHROMIUM).exists():
        raise HoverError(f"no Chromium at {CHROMIUM} (set EXPLORER_CHROMIUM)")
    return asyncio.run(_measure(runs))


def _p(xs: list[float], q: float) -> float:
    return float(np.nanpercentile(xs, q)) if xs else math.nan


def table(result: Hover) -> str:
    lines = [
        "Hover: pointer onto a point -> shown (ms, headless Chromium); Plotly's label is the page's own floor",
        f"{'map':>4} {'hovers':>6} {'image p50':>9} {'image p95':>9} {'label p50':>9} {'label p95':>9}",
    ]
    for name in result.image_ms:
        img, lab = result.image_ms[name], result.label_ms[name]
        lines.append(
            f"{name:>4} {len(img):>6} {_p(img, 50):>9.0f} {_p(img, 95):>9.0f} {_p(lab, 50):>9.0f} {_p(lab, 95):>9.0f}"
        )
    bare = result.bare_label_ms
    lines.append(
        f"bare page, 10k: Plotly's label p50 {_p(bare, 50):.0f} ms, p95 {_p(bare, 95):.0f} ms ({len(bare)} hovers)"
    )
    return "\n".join(lines)
