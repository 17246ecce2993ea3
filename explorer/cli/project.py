"""Precompute a map (latents + projection) for a checkpoint, or time a map of synthetic latents.

Encodes a dataset with the checkpoint and fits its map into the disk cache, or with
``--bundle`` into ``checkpoints/bundles`` (shipped with the app, read at cold start).
``--split all`` maps train and test together (Fashion-MNIST: 70,000 images with ``--n 0``).
``--synthetic 1000000x32`` fits a map of that many seeded random latents through the same
``projection.fit`` and only reports the time (nothing to store it under).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from explorer.checkpoint import load_checkpoint
from explorer.data import SPLITS, load_dataset
from explorer.errors import ExplorerError
from explorer.maps.pipeline import SHIPPED_BUNDLES, compute_map, subset_for
from explorer.maps.projection import ENGINES, METHODS, METRICS, ProjectionParams, fit
from explorer.store import DiskCache, cache_dir, sha256


def synthetic_shape(text: str) -> tuple[int, int]:
    """``"NxD"`` -> (N, D), for ``--synthetic``."""
    try:
        n, d = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N x D like 1000000x32, got {text!r}") from None
    if not (3 <= n <= 10_000_000 and 1 <= d <= 4096):
        raise argparse.ArgumentTypeError(f"N must be 3..10,000,000 and D 1..4096, got {n} x {d}")
    return n, d


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", nargs="?", help="the checkpoint to encode with (not with --synthetic)")
    p.add_argument("--dataset", default=None, help="default: the dataset the checkpoint was trained on")
    p.add_argument("--split", default="test", choices=SPLITS, help="all: train and test together")
    p.add_argument("--n", type=int, default=10000, help="images to map (0 = all)")
    p.add_argument(
        "--synthetic", type=synthetic_shape, metavar="NxD", help="map N random D-dim latents instead, timing only"
    )
    p.add_argument("--method", default="umap", choices=METHODS)
    p.add_argument("--dims", type=int, default=2, choices=[2, 3])
    p.add_argument("--neighbors", type=int, default=15)
    p.add_argument("--min-dist", type=float, default=0.1)
    p.add_argument("--metric", default="euclidean", choices=METRICS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--engine", default="builtin", choices=ENGINES)
    p.add_argument(
        "--bundle", action="store_true", help="write into checkpoints/bundles (shipped) instead of the cache"
    )


def synthetic_latents(n: int, d: int, seed: int = 0):
    """(n, d) float32 latents shaped like a trained model's: 10 Gaussian clusters of unequal spread."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(10, d)).astype(np.float32)
    which = rng.integers(0, 10, size=n)
    spread = rng.uniform(0.5, 1.5, size=10).astype(np.float32)
    z = rng.standard_normal(size=(n, d), dtype=np.float32)
    z *= spread[which, None]
    z += centres[which]
    return z


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    if bool(args.checkpoint) == bool(args.synthetic):
        raise ExplorerError("give either a checkpoint to encode with or --synthetic NxD")
    t0 = time.perf_counter()
    if args.method == "pca":
        params = ProjectionParams("pca", args.dims)
    else:
        params = ProjectionParams(
            "umap", args.dims, args.neighbors, args.min_dist, args.metric, args.seed, engine=args.engine
        )
    bar = tqdm(total=100, desc=params.label(), mininterval=1)

    def progress(f: float, message: str) -> None:
        bar.n = int(100 * f)
        bar.set_postfix_str(message)
        bar.refresh()

    if args.synthetic:
        n, d = args.synthetic
        z = synthetic_latents(n, d, seed=args.seed)
        t_fit = time.perf_counter()
        fit(z, params, progress=progress)
        bar.close()
        print(
            f"mapped {n} synthetic {d}-D latents with {params.label()} in {time.perf_counter() - t_fit:.1f} s "
            f"({time.perf_counter() - t0:.1f} s in all); not stored"
        )
        return 0

    raw = Path(args.checkpoint).read_bytes()
    model = load_checkpoint(raw)
    name = args.dataset or model.info.get("dataset", {}).get("name", "fashion-mnist")
    ds = subset_for(load_dataset(name, args.split), args.n, model.input_shape)
    cache = DiskCache(cache_dir())
    store = DiskCache(SHIPPED_BUNDLES) if args.bundle else cache
    md = compute_map(
        model, sha256(raw), ds.images, ds.labels, ds.class_names, params, cache, progress=progress, store_in=store
    )
    bar.close()
    print(
        f"mapped {len(ds)} images of {ds.name} with {params.label()} in {md.seconds:.1f} s "
        f"({time.perf_counter() - t0:.1f} s in all); stored in {store.root}"
    )
    return 0
