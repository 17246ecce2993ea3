"""The dashboard's speed, measured the way a user meets it, and the quality of the click-anywhere inverse.

1. cold start: a fresh ``streamlit run app.py``; server time = launch -> healthy, plus the
   first script run's start -> map emitted (marks written by the app when
   EXPLORER_TIMING_FILE is set); also the wall time until Chromium shows the map.
2. interactions: server rerun time of each view in a warm process (Streamlit AppTest runs
   the real script): select -> decode 64, interpolate 16 steps, sample 64, traverse 12.
3. a fresh 10k map: a new Python process loads a checkpoint, encodes 10,000 images and fits
   UMAP with an empty cache; then a second process finds it in the disk cache.
4. click-anywhere inverse: round trip of mapped points through ``inverse``, and its speed.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from explorer.devserver import CHROMIUM, CHROMIUM_ARGS, ROOT, running_app

# the checkpoint the app opens with; its 10k map ships as a bundle
DEFAULT_CHECKPOINT = ROOT / "checkpoints" / "fashion-mnist-vae-conv16.safetensors"
MAPPED = 10000  # images in the default map


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def cold_start(runs: int) -> dict[str, float]:
    """Server time to the first drawn map from a cold ``streamlit run``."""
    from playwright.sync_api import sync_playwright

    server_s, wall_s, health_s = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as tmp:
                marks = Path(tmp) / "timing.jsonl"
                t0 = time.time()
                with running_app(Path(tmp) / "cache", Path(tmp) / "log", {"EXPLORER_TIMING_FILE": str(marks)}) as url:
                    t_health = time.time()
                    page = browser.new_page()
                    page.goto(url)
                    page.wait_for_selector(".js-plotly-plot .nsewdrag", timeout=120_000)
                    t_visible = time.time()
                    page.close()
                events = [json.loads(line) for line in marks.read_text().splitlines()]
                start = next(e["t"] for e in events if e["event"] == "script_start")
                drawn = next(e["t"] for e in events if e["event"] == "map_drawn")
                health_s.append(t_health - t0)
                server_s.append((t_health - t0) + (drawn - start))
                wall_s.append(t_visible - t0)
        browser.close()
    return {
        "cold start: launch -> healthy (s)": _median(health_s),
        "cold start: server time to map (s)": _median(server_s),
        "cold start: launch -> map visible in Chromium (s)": _median(wall_s),
    }


def interactions(runs: int) -> dict[str, float]:
    """Warm rerun time of each interaction through the real script (AppTest)."""
    from streamlit.testing.v1 import AppTest

    from explorer.maps.selection import Picked

    def timed(view: str, prepare: Callable[[AppTest, int], None]) -> float:
        at = AppTest.from_string(f"from explorer.ui import views\nviews.{view}()\n", default_timeout=300)
        at.run()  # warm: model, map, figure cached
        times = []
        for i in range(runs + 1):
            prepare(at, i)
            t = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - t)
            if at.exception:
                raise RuntimeError(at.exception)
        return _median(times[1:]) * 1000  # the first changed rerun pays one-off costs (first call of the view's ops)

    def select(at: AppTest, i: int) -> None:
        at.session_state["map_decode:pick"] = Picked(tuple(range(i * 64, i * 64 + 64)), None)

    def interp(at: AppTest, i: int) -> None:
        at.session_state["map_interp:pick"] = Picked((i, MAPPED - 1 - i), None)

    def sample(at: AppTest, i: int) -> None:
        at.session_state["samp_seed"] = i

    def traverse(at: AppTest, i: int) -> None:
        at.session_state["trav_i"] = i

    def idle(at: AppTest, i: int) -> None:
        pass

    return {
        "rerun, nothing changed (ms)": timed("decode_view", idle),
        "select 64 -> decode grid (ms)": timed("decode_view", select),
        "interpolate 16 steps (ms)": timed("interpolate_view", interp),
        "sample 64 (ms)": timed("sample_view", sample),
        "traverse 12 (ms)": timed("traverse_view", traverse),
    }


def fresh_map(runs: int, checkpoint: Path) -> dict[str, float]:
    """Whole-process time of a new map with an empty cache, then of the same map from the disk cache."""
    computed: list[float] = []
    cached: list[float] = []
    for i in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "EXPLORER_CACHE_DIR": tmp}
            for store, expected in ((computed, "computed"), (cached, "hit")):
                t = time.perf_counter()
                out = subprocess.run(
                    [sys.executable, "-m", "benchmarks.fresh_map", str(checkpoint), str(1000 + i)],
                    env=env, capture_output=True, text=True, check=True, cwd=ROOT,
                )  # fmt: skip
                store.append(time.perf_counter() - t)
                if out.stdout.strip() != expected:
                    raise RuntimeError(f"expected {expected!r} from the fresh-map process, got {out.stdout!r}")
    return {
        f"fresh process: 10k map of {checkpoint.stem}, empty cache (s, whole process)": _median(computed),
        "fresh process: same map from the disk cache (s, whole process)": _median(cached),
    }


def inverse_quality() -> dict[str, float]:
    """Round trip of the default checkpoint's shipped map through ``inverse``."""
    import numpy as np

    from explorer.data import load_dataset
    from explorer.maps.pipeline import cached_map
    from explorer.maps.projection import Projection, ProjectionParams
    from explorer.store import DiskCache, cache_dir, data_digest, sha256

    raw = DEFAULT_CHECKPOINT.read_bytes()
    ds = load_dataset("fashion-mnist", "test")
    md = cached_map(sha256(raw), data_digest(ds.images, ds.labels), ProjectionParams(), DiskCache(cache_dir()))
    if md is None:
        raise RuntimeError(f"no shipped map of {DEFAULT_CHECKPOINT.name} in checkpoints/bundles")
    proj = md.projection
    rng = np.random.default_rng(0)
    held = rng.choice(len(proj.embedding), 500, replace=False)
    keep = np.setdiff1d(np.arange(len(proj.embedding)), held)
    # held-out points: the map without them, asked to invert their true positions
    rest = Projection(proj.params, proj.embedding[keep], proj.latents[keep])
    z_true = proj.latents[held]
    scale = np.linalg.norm(proj.latents - proj.latents.mean(0), axis=1).mean()

    def err(z: np.ndarray) -> float:
        return float(np.median(np.linalg.norm(z - z_true, axis=1)) / scale)

    z_blend, _ = rest.inverse(proj.embedding[held])
    z_nn, _ = rest.inverse(proj.embedding[held], k=1)
    forward = rest.transform(z_blend)
    t = time.perf_counter()
    for _ in range(20):
        proj.inverse(proj.embedding[held[:5]])
    inv_ms = (time.perf_counter() - t) / 20 * 1000
    t = time.perf_counter()
    for _ in range(20):
        proj.transform(z_true[:20])
    fwd_ms = (time.perf_counter() - t) / 20 * 1000
    return {
        "inverse, 500 held-out points: latent error / mean radius (median)": err(z_blend),
        "  same with the nearest mapped point's latent only (k=1)": err(z_nn),
        "  same with the data mean (no map)": err(np.broadcast_to(proj.latents.mean(0), z_true.shape)),
        "inverse -> transform round trip in the map (median, typical spacings)": float(
            np.median(np.linalg.norm(forward - proj.embedding[held], axis=1)) / rest.spacing
        ),
        "inverse of 5 points (ms)": inv_ms,
        "transform of 20 points (ms)": fwd_ms,
    }
