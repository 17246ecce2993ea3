"""Many people at once: one real server, several people in one headless Chromium, for about a minute.

``python -m explorer bench load [--people 8] [--seconds 60]``. It starts ``streamlit run app.py``
(explorer.devserver) and gives each person a browser context of their own (their own cookies, so their
own Streamlit session). Each opens the app, then repeats until the time is up:

- select: a box drag around a mapped point (consecutive boxes never overlap), mouse-up -> the selected
  images and their reconstructions loaded (the latency benchmark's own gesture and clock);
- spot: types the box's centre into "Decode at a map coordinate", Enter -> the decoded spot loaded;
- interpolate: the Interpolate link in the top bar -> the interpolation strip loaded;
- map: the Map & decode link -> that page's map drawn again.

Once, at times spread evenly over the run (people arrive one after another), each person uploads a model of their own (a small
autoencoder made here, different for everyone, under a unique file name) on "Your model", and from then on
explores that model's map (computed on the server: the heaviest thing a person can ask for). Before every
round each person opens the Checkpoint list and reads it: their own upload must be there once uploaded,
and nobody else's ever. Meanwhile the server's process tree (the server and any child it starts) is
sampled for resident memory four times a second.

It prints p50 and p95 of every interaction, the largest resident memory and the errors, and fails
(exit status 1) on any error, on any upload seen by another session, or above ``--rss-limit`` MB.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np

from benchmarks import latency
from explorer.devserver import CHROMIUM, CHROMIUM_ARGS, running_app

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

RSS_LIMIT_MB = 800
SAMPLE_EVERY_S = 0.25
STEP_TIMEOUT_MS = 120_000  # one interaction; a fresh map under load takes far longer than a click
UPLOAD_TIMEOUT_MS = 300_000  # preview, then a new 10,000-image map on a shared 2-core server
MAX_ERRORS_EACH = 3  # a person whose page keeps failing stops (every error is still reported)
STEPS = ("select", "spot", "interpolate", "map", "upload -> preview", "upload -> map")

# Generic "mark now, then wait for the page to show new loaded images" clock (the latency benchmark's, armed by
# code instead of by mouse-up). Resolves to {ms} or, at once, to {error} when the page shows an exception.
ARM = """() => {
  window.__load = {t0: performance.now(),
                   before: new Set([...document.querySelectorAll('[data-testid="stMain"] img')].map(i => i.src))};
}"""
NEW_IMAGES = """(heading) => {
  const error = document.querySelector('[data-testid="stException"]');
  if (error) return {error: error.innerText};
  const s = window.__load;
  const h = [...document.querySelectorAll('[data-testid="stMain"] h3')].map(e => e.innerText);
  if (heading && !h.some(t => t.startsWith(heading))) return false;
  const fresh = [...document.querySelectorAll('[data-testid="stMain"] img')].filter(i => !s.before.has(i.src));
  const ready = fresh.length > 0 && fresh.every(i => i.complete && i.naturalWidth > 0);
  return ready ? {ms: performance.now() - s.t0} : false;
}"""
# the decode page is back: its heading and no other page's, its map drawn, the script done
MAP_BACK = """() => {
  const error = document.querySelector('[data-testid="stException"]');
  if (error) return {error: error.innerText};
  const h = [...document.querySelectorAll('[data-testid="stMain"] h3')].map(e => e.innerText);
  if (!h.some(t => t.startsWith('Map & decode')) || h.some(t => t.startsWith('Interpolate'))) return false;
  if (document.querySelector('[data-testid="stApp"]')?.dataset.testScriptState !== 'notRunning') return false;
  const gd = document.querySelector('.js-plotly-plot');
  if (!gd || !gd._fullData || !gd.querySelector('.nsewdrag')) return false;
  const drawn = gd._fullData.reduce((sum, t) => sum + (t.visible === true ? t._length || 0 : 0), 0);
  return drawn > 0 ? {ms: performance.now() - window.__load.t0} : false;
}"""
MAP_READY = "() => { const g = document.querySelector('.js-plotly-plot'); return !!(g && g._fullData && g.querySelector('.nsewdrag')); }"
# the mapped points on screen: (x, y) of every trace that carries row ids (overlays carry none)
POINTS = """() => {
  const gd = document.querySelector('.js-plotly-plot');
  return gd._fullData.filter(t => t.customdata).flatMap(t => Array.from(t.x, (x, k) => [x, t.y[k]]));
}"""
MAP_REVISION = "() => document.querySelector('.js-plotly-plot')?.layout?.uirevision ?? null"
# a new map after an upload: another revision (the map's cache key), no progress bar, points drawn
NEW_MAP = """(old) => {
  if (document.querySelector('[data-testid="stProgress"]')) return false;
  const error = document.querySelector('[data-testid="stException"]');
  if (error) return {error: error.innerText};
  const gd = document.querySelector('.js-plotly-plot');
  if (!gd || !gd._fullData || gd.layout.uirevision === old || !gd.querySelector('.nsewdrag')) return false;
  const drawn = gd._fullData.reduce((sum, t) => sum + (t.visible === true ? t._length || 0 : 0), 0);
  return drawn > 0 ? {ms: 0} : false;
}"""


class LoadError(RuntimeError):
    """One interaction that did not end as it should."""


@dataclass
class Person:
    k: int
    upload: Path  # this person's own checkpoint file
    upload_at: float  # seconds into the run

    @property
    def label(self) -> str:
        return f"⬆ {self.upload.name}"  # how the app lists an upload


@dataclass
class LoadResult:
    people: int
    seconds: float
    rss_limit_mb: float
    times_ms: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STEPS})
    errors: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)  # the server tree's resident memory, every sample
    rounds: int = 0

    @property
    def max_rss_mb(self) -> float:
        return max(self.rss_mb, default=float("nan"))

    def problems(self) -> list[str]:
        out = [f"error: {e}" for e in self.errors] + [f"leak: {leak}" for leak in self.leaks]
        if not self.rss_mb:
            out.append("the server's memory was never sampled")
        elif self.max_rss_mb > self.rss_limit_mb:
            out.append(f"the server's resident memory reached {self.max_rss_mb:.0f} MB (limit {self.rss_limit_mb:.0f})")
        return out


# ---------------------------------------------------------------------------------- the server's memory


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc."""
    out: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:  # it exited while we looked
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])  # after "pid (comm) state"
            out.setdefault(ppid, []).append(int(entry.name))
    return out


def process_tree(root: int) -> list[int]:
    """``root`` and every process descended from it, from /proc."""
    kids, out, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += kids.get(pid, [])
    return out


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss_mb(root: int) -> float:
    """Resident memory of ``root`` and all its descendants, in MB (2**20 bytes)."""
    try:
        import psutil
    except ImportError:
        return sum(_rss_bytes(pid) for pid in process_tree(root)) / 2**20
    try:
        proc = psutil.Process(root)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def server_pid(url: str) -> int:
    """The `streamlit run` this process started for ``url`` (explorer.devserver's child on that port; the
    browser tests' own server may be another child of the same process)."""
    port = urlsplit(url).port
    for pid in _children().get(os.getpid(), []):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"streamlit" in cmd and b"run" in cmd and str(port).encode() in cmd:
            return pid
    raise LoadError(f"no streamlit server on port {port} is a child of this process")


async def _sample(pid: int, into: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        into.append(tree_rss_mb(pid))
        try:
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_S)
        except TimeoutError:
            pass


# -------------------------------------------------------------------------------------- one person


def make_uploads(folder: Path, people: int, seconds: float) -> list[Person]:
    """A different small autoencoder for every person, under a file name nobody else has."""
    import torch

    from explorer import models
    from explorer.checkpoint import checkpoint_bytes

    run = secrets.token_hex(3)
    out = []
    for k in range(people):
        torch.manual_seed(k)
        model = models.build(models.config_class("ae")(hidden=(32,), latent_dim=4 + k))
        path = folder / f"load-{run}-person{k + 1}.safetensors"
        path.write_bytes(checkpoint_bytes(model, dataset={"name": "fashion-mnist"}))
        out.append(Person(k, path, upload_at=seconds * k / max(1, people)))
    return out


async def _until(page: Page, script: str, arg: object, where: str, timeout_ms: int = STEP_TIMEOUT_MS) -> float:
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    try:
        handle = await page.wait_for_function(script, arg=arg, polling="raf", timeout=timeout_ms)
    except PlaywrightTimeout as exc:
        raise LoadError(f"{where}: nothing after {timeout_ms / 1000:.0f} s") from exc
    result = await handle.json_value()
    if "error" in result:
        raise LoadError(f"{where}: the page shows an exception:\n{result['error']}")
    return float(result["ms"])


async def _points(page: Page) -> np.ndarray:
    return np.asarray(await page.evaluate(POINTS), dtype=np.float64).reshape(-1, 2)


async def _spot(page: Page, box: latency.Box, where: str) -> float:
    x, y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    field = page.get_by_label("Decode at a map coordinate")
    await field.fill(f"{x:.4f}, {y:.4f}")
    await page.evaluate(ARM)
    await field.press("Enter")
    return await _until(page, NEW_IMAGES, None, where)


# the top bar's menus (app.py): a page listed under one opens from its dropdown
SECTION_OF = {"Your model": "Yours", "Your image": "Yours", "Export": "Yours"}


async def _go(page: Page, link: str) -> None:
    await page.evaluate(ARM)
    if section := SECTION_OF.get(link):
        await page.get_by_test_id("stTopNavSection").filter(has_text=section).first.click()
        await page.get_by_test_id("stTopNavDropdownLink").filter(has_text=link).first.click()
    else:
        await page.get_by_test_id("stTopNavLink").filter(has_text=link).first.click()


async def _checkpoints(page: Page) -> list[str]:
    """The sidebar's Checkpoint list, read by opening it (its options exist only while it is open)."""
    box = page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").filter(has_text="Checkpoint").first
    await box.get_by_role("button", name="Open").click()
    options = page.get_by_role("option")
    await options.first.wait_for(timeout=STEP_TIMEOUT_MS)
    names = [t.strip() for t in await options.all_inner_texts()]
    await page.keyboard.press("Escape")
    return names


async def _upload(page: Page, person: Person, result: LoadResult, where: str) -> None:
    old = await page.evaluate(MAP_REVISION)
    await _go(page, "Your model")
    await page.get_by_text("Model file(s)").first.wait_for(timeout=STEP_TIMEOUT_MS)
    t0 = time.perf_counter()
    await page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(person.upload))
    use = page.get_by_role("button", name="Use this model")
    await use.wait_for(timeout=UPLOAD_TIMEOUT_MS)
    result.times_ms["upload -> preview"].append(1000 * (time.perf_counter() - t0))
    t0 = time.perf_counter()
    await use.click()  # the app switches to Map & decode and maps the new model
    await _until(page, NEW_MAP, old, f"{where}, upload's map", UPLOAD_TIMEOUT_MS)
    result.times_ms["upload -> map"].append(1000 * (time.perf_counter() - t0))


async def _person(
    browser: Browser, url: str, person: Person, everyone: list[Person], t_start: float, result: LoadResult
) -> None:
    from playwright.async_api import TimeoutError as PlaywrightTimeout  # the test extra

    where = f"person {person.k + 1}"
    context = await browser.new_context(viewport=latency.VIEWPORT)
    errors = 0
    try:
        await context.add_init_script(latency.RECORDER)
        page = await context.new_page()
        page.set_default_timeout(STEP_TIMEOUT_MS)
        await page.goto(url)
        try:
            await page.wait_for_function(MAP_READY)
        except PlaywrightTimeout as exc:  # what the page showed instead says why
            error = page.get_by_test_id("stException")
            shown = await (error.first.inner_text() if await error.count() else page.inner_text("body"))
            raise LoadError(
                f"{where}: no map after {STEP_TIMEOUT_MS / 1000:.0f} s; the page shows:\n{shown[:1500]}"
            ) from exc
        await latency._settle(page)
        uploaded, revision, boxes, i = False, None, [], 0
        others = {p.label for p in everyone if p is not person}
        # past the end only to make the upload still due (a round may outlast a late upload time)
        while (time.monotonic() - t_start < result.seconds or not uploaded) and errors < MAX_ERRORS_EACH:
            try:
                if not uploaded and time.monotonic() - t_start >= person.upload_at:
                    uploaded = True  # once, whatever happens
                    await _upload(page, person, result, where)
                    await latency._settle(page)
                if (now := await page.evaluate(MAP_REVISION)) != revision:
                    # a new map (the upload's, or any other the sidebar settled on): boxes in its coordinates
                    points = await _points(page)
                    boxes, i, revision = latency.boxes(points, min(400, len(points) // 8), seed=person.k), 0, now
                listed = await _checkpoints(page)
                result.leaks += [f"{where} sees {name!r} in its checkpoint list" for name in others & set(listed)]
                if uploaded and person.label not in listed:
                    raise LoadError(f"{where}: its own upload {person.label!r} is missing from {listed}")
                box, i = boxes[i % len(boxes)], i + 1
                if (took := await latency._select(page, box, f"{where}, select")) is None:
                    raise LoadError(f"{where}: a box selection showed no new images")  # every gesture must answer
                result.times_ms["select"].append(took)
                result.times_ms["spot"].append(await _spot(page, box, f"{where}, spot"))
                await latency._settle(page)
                await _go(page, "Interpolate")
                result.times_ms["interpolate"].append(await _until(page, NEW_IMAGES, "Interpolate", f"{where}, interp"))
                await latency._settle(page)
                await _go(page, "Map & decode")
                result.times_ms["map"].append(await _until(page, MAP_BACK, None, f"{where}, back to the map"))
                await latency._settle(page)
                result.rounds += 1
            except (LoadError, latency.LatencyError) as exc:
                errors += 1
                result.errors.append(str(exc))
            except Exception as exc:  # Playwright's own errors (a closed page, a detached element) count the same
                errors += 1
                result.errors.append(f"{where}: {type(exc).__name__}: {exc}")
    finally:
        await context.close()


async def _measure(people: int, seconds: float, rss_limit_mb: float) -> LoadResult:
    from playwright.async_api import async_playwright  # the test extra

    result = LoadResult(people, seconds, rss_limit_mb)
    with tempfile.TemporaryDirectory(prefix="load-") as tmp:
        everyone = make_uploads(Path(tmp), people, seconds)
        with running_app(Path(tmp) / "cache", Path(tmp) / "server.log") as url:
            stop = asyncio.Event()
            sampler = asyncio.create_task(_sample(server_pid(url), result.rss_mb, stop))
            try:
                async with async_playwright() as p:
                    browser = await p.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
                    try:
                        t_start = time.monotonic()
                        async with asyncio.TaskGroup() as group:
                            for person in everyone:
                                group.create_task(_person(browser, url, person, everyone, t_start, result))
                    finally:
                        await browser.close()
            finally:
                stop.set()
                await sampler
    return result


def measure(people: int = 8, seconds: float = 60.0, rss_limit_mb: float = RSS_LIMIT_MB) -> LoadResult:
    if not Path(CHROMIUM).exists():
        raise LoadError(f"no Chromium at {CHROMIUM} (set EXPLORER_CHROMIUM)")
    return asyncio.run(_measure(people, seconds, rss_limit_mb))


def _p(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def table(result: LoadResult) -> str:
    lines = [
        f"{result.people} people at once for {result.seconds:.0f} s on {os.cpu_count()} CPU cores: "
        f"{result.rounds} rounds (select, spot, interpolate, map), one upload each",
        f"{'interaction':<18} {'count':>5} {'p50 ms':>8} {'p95 ms':>8}",
    ]
    for step in STEPS:
        xs = result.times_ms[step]
        lines.append(f"{step:<18} {len(xs):>5} {_p(xs, 50):>8.0f} {_p(xs, 95):>8.0f}")
    first = result.rss_mb[0] if result.rss_mb else float("nan")
    lines += [
        f"server resident memory: {first:.0f} MB at the start, {result.max_rss_mb:.0f} MB at most "
        f"(limit {result.rss_limit_mb:.0f}; {len(result.rss_mb)} samples)",
        f"errors: {len(result.errors)}, uploads seen by another session: {len(result.leaks)}",
    ]
    return "\n".join(lines)


def report(result: LoadResult) -> int:
    """Print the table and every problem; 1 when there is any."""
    print(table(result))
    problems = result.problems()
    for problem in problems:
        print(problem)
    return 1 if problems else 0
