"""Precompute a map (latents + projection) for a checkpoint.

Encodes a dataset with the checkpoint and fits its map into the disk cache, or with
``--bundle`` into ``checkpoints/bundles`` (shipped with the app, read at cold start).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    from explorer.projection import METRICS

    p.add_argument("checkpoint")
    p.add_argument("--dataset", default=None, help="default: the dataset the checkpoint was trained on")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--n", type=int, default=10000, help="images to map (0 = all)")
    p.add_argument("--method", default="umap", choices=["umap", "pca"])
    p.add_argument("--dims", type=int, default=2, choices=[2, 3])
    p.add_argument("--neighbors", type=int, default=15)
    p.add_argument("--min-dist", type=float, default=0.1)
    p.add_argument("--metric", default="euclidean", choices=METRICS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--engine", default="builtin", choices=["builtin", "umap-learn"])
    p.add_argument(
        "--bundle", action="store_true", help="write into checkpoints/bundles (shipped) instead of the cache"
    )


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from explorer.checkpoint import load_checkpoint
    from explorer.data import load_dataset
    from explorer.projection import ProjectionParams
    from explorer.workspace import SHIPPED_BUNDLES, DiskCache, cache_dir, compute_map, sha256, subset_for

    t0 = time.perf_counter()
    raw = Path(args.checkpoint).read_bytes()
    model = load_checkpoint(raw)
    name = args.dataset or model.info.get("dataset", {}).get("name", "fashion-mnist")
    ds = subset_for(load_dataset(name, args.split), args.n, model.input_shape)
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
