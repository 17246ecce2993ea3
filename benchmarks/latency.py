"""Browser latency, box select -> thumbnails: the real app against a bare Streamlit + Plotly page.

``python -m benchmarks --only latency [--runs N] [--people 1,4]``. One run starts the real app
(``streamlit run app.py``) and benchmarks/bare_app.py on free loopback ports and drives headless
Chromium with Playwright against both:

- selection: N box selections per person, each around a different mapped point (the same boxes,
  in map coordinates, on both pages; consecutive boxes never overlap, so every selection shows
  new images), by 1 person and by several at once (one browser context each, all selecting
  against the same server at the same time). The time runs from the page's ``mouseup`` event
  to the first animation frame in which every image in the page that was not there when the
  drag began has loaded (``complete`` and ``naturalWidth > 0``). Both ends are read with
  ``performance.now()`` in the page, so Playwright's round trips do not count.
- launch -> map visible: a new browser context opens the page; the time from the navigation's
  start (the page's time origin) to the first frame in which the plot holds every mapped point
  and its drag layer. The first load is the server's first script run; the others are warm.

Before measuring, one selection on each page warms what a first selection pays once (the app's
model and decode path). The figures are for reading: a run fails on errors (a selection that
shows no new images, an exception on a page), never on a slow number.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.bare_app import shipped_map
from explorer.devserver import CHROMIUM, CHROMIUM_ARGS, running_app

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, ViewportSize

BARE_APP = Path(__file__).resolve().parent / "bare_app.py"
TARGETS = ("app", "bare")
VIEWPORT: ViewportSize = {"width": 1500, "height": 950}  # the browser tests' window: map and thumbnails side by side
BOX = 0.06  # box side, as a fraction of the map's extent on each axis: tens to hundreds of points
LOAD_TIMEOUT_MS = 180_000
SELECT_TIMEOUT_MS = 60_000
# A selection that shows nothing is a miss; more than this share of a page's selections fails the run. The bare
# page reruns as a whole, and a drag that ends during its rerun is now and then dropped by Plotly: its misses are
# printed and left out of its times (which only flatters it), and fail the run only when a third are lost.
MAX_MISSED = {"app": 0.1, "bare": 0.34}
SETTLE_S = 0.3  # after a rerun ends, before the next drag: Plotly finishes redrawing the selection

# Installed before any page script: the mouse-up time, and the images present when the drag began.
RECORDER = """
window.__latency = {up: null, before: new Set()};
window.addEventListener('mouseup', () => { window.__latency.up = performance.now(); }, true);
"""
ARM = """() => {
  window.__latency.up = null;
  window.__latency.before = new Set([...document.querySelectorAll('[data-testid="stMain"] img')].map(i => i.src));
}"""
# {visible: the frame's time} once the mouse is up and every new image in the page has loaded; {error} at once
# when the page shows an exception instead
RESULT_VISIBLE = """() => {
  const error = document.querySelector('[data-testid="stException"]');
  if (error) return {error: error.innerText};
  const s = window.__latency;
  const fresh = [...document.querySelectorAll('[data-testid="stMain"] img')].filter(i => !s.before.has(i.src));
  const ready = s.up !== null && fresh.length > 0 && fresh.every(i => i.complete && i.naturalWidth > 0);
  return ready ? {visible: performance.now()} : false;
}"""
MAP_DRAWN = """(n) => {
  const gd = document.querySelector('.js-plotly-plot');
  if (!gd || !gd._fullData || !gd.querySelector('.nsewdrag')) return false;
  const drawn = gd._fullData.reduce((sum, t) => sum + (t.visible === true ? t._length || 0 : 0), 0);
  return drawn >= n ? performance.now() : false;
}"""
IDLE = "() => document.querySelector('[data-testid=\"stApp\"]')?.dataset.testScriptState === 'notRunning'"
# map coordinates (x0, y0, x1, y1) -> the drag's start and end in page pixels
TO_PIXELS = """([x0, y0, x1, y1]) => {
  const gd = document.querySelector('.js-plotly-plot');
  const r = gd.querySelector('.nsewdrag').getBoundingClientRect();
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  return [r.left + xa.l2p(x0), r.top + ya.l2p(y1), r.left + xa.l2p(x1), r.top + ya.l2p(y0)];
}"""
EXCEPTION = "() => [...document.querySelectorAll('[data-testid=\"stException\"]')].map(e => e.innerText).join('\\n')"

Box = tuple[float, float, float, float]


class LatencyError(RuntimeError):
    """A page that did not answer a gesture as it should: the benchmark's only failure."""


@dataclass(frozen=True)
class Latency:
    selections_ms: dict[tuple[int, str], list[float]]  # (people, target) -> mouse-up -> thumbnails, per selection
    loads_s: dict[str, list[float]]  # target -> launch -> map visible, the server's first load first

    def figures(self) -> list[float]:
        return [x for xs in self.selections_ms.values() for x in xs] + [x for xs in self.loads_s.values() for x in xs]


def boxes(embedding: np.ndarray, count: int, seed: int = 0) -> list[Box]:
    """``count`` boxes centred on mapped points, each overlapping neither the one before it nor the plot's edges."""
    lo, hi = embedding.min(0), embedding.max(0)
    half = BOX / 2 * (hi - lo)
    u = (embedding - lo) / (hi - lo)
    # clear of the edges, and of the top right corner where Plotly's mode bar appears on hover
    inner = np.flatnonzero((u[:, 0] > 0.1) & (u[:, 0] < 0.9) & (u[:, 1] > 0.1) & (u[:, 1] < 0.85))
    out: list[Box] = []
    previous = None
    for i in np.random.default_rng(seed).permutation(inner):
        c = embedding[i]
        if previous is not None and (np.abs(c - previous) < 2 * half).all():
            continue
        out.append((float(c[0] - half[0]), float(c[1] - half[1]), float(c[0] + half[0]), float(c[1] + half[1])))
        previous = c
        if len(out) == count:
            return out
    raise ValueError(f"only {len(out)} of {count} boxes fit on the map")


async def _map_drawn(page: Page, n_points: int) -> float:
    handle = await page.wait_for_function(MAP_DRAWN, arg=n_points, polling="raf", timeout=LOAD_TIMEOUT_MS)
    return float(await handle.json_value())


async def _settle(page: Page) -> None:
    await page.wait_for_function(IDLE, timeout=SELECT_TIMEOUT_MS)
    await asyncio.sleep(SETTLE_S)


async def _select(page: Page, box: Box, where: str) -> float | None:
    """One box drag; returns mouse-up -> new images loaded (ms), or None when nothing new appeared (a drag
    that the page did not take as a selection: seen now and then on both pages when four people drag at once)."""
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    x0, y0, x1, y1 = await page.evaluate(TO_PIXELS, list(box))
    await page.evaluate(ARM)
    await page.mouse.move(x0, y0)
    await page.mouse.down()
    await page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=4)
    await page.mouse.move(x1, y1, steps=4)
    await page.mouse.up()
    try:
        handle = await page.wait_for_function(RESULT_VISIBLE, polling="raf", timeout=SELECT_TIMEOUT_MS)
    except PlaywrightTimeout:
        if error := await page.evaluate(EXCEPTION):
            raise LatencyError(f"{where}: the page shows an exception:\n{error}") from None
        print(f"missed: {where}: no new images {SELECT_TIMEOUT_MS / 1000:.0f} s after mouse-up", flush=True)
        return None
    result = await handle.json_value()
    up = float(await page.evaluate("() => window.__latency.up"))
    if "error" not in result:
        await _settle(page)  # an exception may also come later in the same rerun
        if error := await page.evaluate(EXCEPTION):
            result = {"error": error}
    if "error" in result:
        raise LatencyError(f"{where}: the page shows an exception:\n{result['error']}")
    return float(result["visible"]) - up


async def _person(
    browser: Browser, url: str, n_points: int, todo: list[Box], start: asyncio.Barrier, where: str
) -> list[float | None]:
    context = await browser.new_context(viewport=VIEWPORT)
    try:
        await context.add_init_script(RECORDER)
        page = await context.new_page()
        await page.goto(url)
        await _map_drawn(page, n_points)
        await _settle(page)
        await start.wait()  # everyone's map is up: the selections start together
        return [await _select(page, box, f"{where}, selection {i + 1}") for i, box in enumerate(todo)]
    finally:
        await context.close()


async def _together(
    browser: Browser, url: str, n_points: int, people: int, todo: list[Box], where: str, max_missed: float
) -> list[float]:
    """``people`` browser contexts select at once, each its own share of ``todo``; all their times."""
    start = asyncio.Barrier(people)
    share = len(todo) // people
    # a task group: when one person fails, the others stop instead of waiting at the barrier
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(
                _person(browser, url, n_points, todo[k * share : (k + 1) * share], start, f"{where}, person {k + 1}")
            )
            for k in range(people)
        ]
    times = [t for task in tasks for t in task.result()]
    missed = sum(t is None for t in times)
    if missed > max_missed * len(times):
        raise LatencyError(f"{where}: {missed} of {len(times)} selections showed nothing new")
    return [t for t in times if t is not None]


async def _loads(browser: Browser, url: str, n_points: int, runs: int, warmup: Box, where: str) -> list[float]:
    """launch -> map visible (s) of ``runs`` fresh browser contexts; after the first, one uncounted selection."""
    out = []
    for i in range(runs):
        context = await browser.new_context(viewport=VIEWPORT)
        try:
            await context.add_init_script(RECORDER)
            page = await context.new_page()
            await page.goto(url, wait_until="commit")
            out.append(await _map_drawn(page, n_points) / 1000)
            if i == 0:
                await _settle(page)
                await _select(page, warmup, f"{where}, warm-up selection")
        finally:
            await context.close()
    return out


WARM_LINE = "reference UMAP (umap-learn) warm"
WARM_TIMEOUT_S = 400.0


async def _umap_learn_warm(log: Path) -> None:
    """Wait for the app's background compile of umap-learn (it starts with the first page): a server
    that has been up a few minutes, which is what people meet, not one still compiling."""
    import os
    import time

    if os.environ.get("EXPLORER_WARM_UMAP", "1") == "0":
        return
    deadline = time.monotonic() + WARM_TIMEOUT_S
    while WARM_LINE not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise LatencyError(f"the app did not finish compiling umap-learn within {WARM_TIMEOUT_S:.0f} s")
        await asyncio.sleep(1.0)


async def _measure(runs: int, people: Sequence[int]) -> Latency:
    embedding = shipped_map()[0]
    n_points = len(embedding)
    todo = boxes(embedding, max(people) * runs + 1)
    warmup, todo = todo[-1], todo[:-1]
    from playwright.async_api import async_playwright  # the test extra: the other benchmarks run without it

    with (
        tempfile.TemporaryDirectory(prefix="latency-") as tmp,
        running_app(Path(tmp) / "app-cache", Path(tmp) / "app.log") as app_url,
        running_app(Path(tmp) / "bare-cache", Path(tmp) / "bare.log", script=BARE_APP) as bare_url,
    ):
        urls = dict(zip(TARGETS, (app_url, bare_url)))
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
            try:
                loads = {t: await _loads(browser, urls[t], n_points, runs, warmup, t) for t in TARGETS}
                await _umap_learn_warm(Path(tmp) / "app.log")
                selections = {}
                for n in people:
                    for t in TARGETS:
                        where = f"{t}, {n} at once"
                        selections[n, t] = await _together(
                            browser, urls[t], n_points, n, todo[: n * runs], where, MAX_MISSED[t]
                        )
            finally:
                await browser.close()
    return Latency(selections, loads)


def measure(runs: int, people: Sequence[int] = (1, 4)) -> Latency:
    """``runs`` box selections per person for each head count in ``people``, and ``runs`` page loads, per page."""
    if not Path(CHROMIUM).exists():
        raise LatencyError(f"no Chromium at {CHROMIUM} (set EXPLORER_CHROMIUM)")
    return asyncio.run(_measure(runs, people))


def _p(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else math.nan


def table(result: Latency) -> str:
    app_loads, bare_loads = result.loads_s["app"], result.loads_s["bare"]
    lines = [
        "Browser latency: mouse-up of a box selection -> new thumbnails loaded (ms, headless Chromium)",
        f"{'people':>6} {'selections':>10} {'app p50':>8} {'app p95':>8} {'bare p50':>9} {'bare p95':>9} {'app/bare p50':>13}",
    ]
    for n in sorted({n for n, _ in result.selections_ms}):
        app, bare = result.selections_ms[n, "app"], result.selections_ms[n, "bare"]
        lines.append(
            f"{n:>6} {len(app):>10} {_p(app, 50):>8.0f} {_p(app, 95):>8.0f} {_p(bare, 50):>9.0f} "
            f"{_p(bare, 95):>9.0f} {_p(app, 50) / _p(bare, 50):>13.2f}"
        )
    lines += [
        "",
        "Launch -> map visible: navigation start -> every mapped point drawn (s)",
        f"{'':<22} {'app':>6} {'bare':>6} {'app/bare':>9}",
        f"{'first page load':<22} {app_loads[0]:>6.2f} {bare_loads[0]:>6.2f} {app_loads[0] / bare_loads[0]:>9.2f}",
    ]
    if len(app_loads) > 1:
        warm_app, warm_bare = _p(app_loads[1:], 50), _p(bare_loads[1:], 50)
        lines.append(f"{'later loads, p50':<22} {warm_app:>6.2f} {warm_bare:>6.2f} {warm_app / warm_bare:>9.2f}")
    return "\n".join(lines)
