"""``python -m benchmarks.mosaic [--runs N]``: server time of the decoded mosaic on the default checkpoint's map.

The model and the shipped 10k-point map are loaded once, as the app holds them; each figure is the
median of ``--runs`` calls in this warm process, with one intra-op torch thread like the app's
server. ``total`` = ``decoded_grid`` (inverse of the cell centres + decode) + ``layout_image``
(picture, PNG, base64), what the app spends to lay a mosaic under the map.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial

from benchmarks.speed import DEFAULT_CHECKPOINT

SIZES = (12, 20, 30)
PNG_LEVELS = (1, 3, 6)  # 6 is PIL's default


def _ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def _layer(model, proj, cells: int) -> dict:
    """What the app computes to lay a mosaic under its map."""
    from explorer.maps.mosaic import decoded_grid

    return decoded_grid(model, proj, cells=cells).layout_image()


def _png(picture, level: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, format="PNG", compress_level=level)
    return buf.getvalue()


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        name = ""
    return name or platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mosaic", description=__doc__)
    parser.add_argument("--runs", type=int, default=20, help="figures are medians of this many runs")
    runs = max(1, parser.parse_args(argv).runs)

    import torch

    from explorer.checkpoint import load_checkpoint
    from explorer.data import load_dataset
    from explorer.maps import mosaic, ops
    from explorer.maps.pipeline import cached_map
    from explorer.maps.projection import ProjectionParams
    from explorer.store import DiskCache, cache_dir, data_digest, sha256

    torch.set_num_threads(1)  # as the app's server (explorer/ui/state.py)
    raw = DEFAULT_CHECKPOINT.read_bytes()
    model = load_checkpoint(raw)
    ds = load_dataset("fashion-mnist", "test")
    md = cached_map(sha256(raw), data_digest(ds.images, ds.labels), ProjectionParams(), DiskCache(cache_dir()))
    if md is None:
        raise RuntimeError(f"no shipped map of {DEFAULT_CHECKPOINT.name} in checkpoints/bundles")
    proj = md.projection

    print(f"command: python -m benchmarks.mosaic --runs {runs}")
    print(
        f"machine: {os.cpu_count()} CPU cores ({_cpu()}), Python {platform.python_version()}, torch {torch.__version__}, "
        f"load average {os.getloadavg()[0]:.1f} at the start"
    )
    print(f"map: {DEFAULT_CHECKPOINT.stem}, {len(proj.embedding):,} points ({md.source}); medians of {runs} runs, ms")
    t = time.perf_counter()
    mosaic.decoded_grid(model, proj, cells=20)
    print(f"first 20 x 20 call in this process (includes the map's typical spacing, computed once): "
          f"{(time.perf_counter() - t) * 1000:.0f} ms")  # fmt: skip

    head = f"{'cells':>7} {'inverse':>8} {'decode':>7} {'grid':>7} {'image':>6} {'layout':>7} {'total':>7} {'PNG kB':>7} {'far':>5}"
    print(head)
    for n in SIZES:
        m = mosaic.decoded_grid(model, proj, cells=n)
        centres = m.centres.reshape(-1, 2)
        z, _ = proj.inverse(centres)
        inverse = _ms(partial(proj.inverse, centres), runs)
        decode = _ms(partial(ops.decode, model, z, batch_size=mosaic.DECODE_BATCH), runs)
        grid = _ms(partial(mosaic.decoded_grid, model, proj, cells=n), runs)
        image = _ms(m.image, runs)
        layout = _ms(m.layout_image, runs)
        total = _ms(partial(_layer, model, proj, n), runs)
        print(
            f"{f'{n}x{n}':>7} {inverse:8.1f} {decode:7.1f} {grid:7.1f} {image:6.1f} {layout:7.1f} {total:7.1f} "
            f"{len(m.png()) / 1000:7.0f} {m.far_from_data.mean():5.0%}"
        )

    picture = mosaic.decoded_grid(model, proj, cells=20).image()
    print(f"PNG of the 20 x 20 picture ({picture.shape[1]} x {picture.shape[0]} RGB) by compress_level:")
    for level in PNG_LEVELS:
        ms = _ms(partial(_png, picture, level), runs)
        print(f"  level {level}: {ms:5.1f} ms, {len(_png(picture, level)) / 1000:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
