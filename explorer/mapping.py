"""``python -m explorer project``: encode a dataset with a checkpoint and fit its map, from the shell."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from explorer.checkpoint import load_checkpoint
from explorer.data import fit_to_shape, load_dataset
from explorer.projection import ProjectionParams
from explorer.workspace import SHIPPED_BUNDLES, DiskCache, cache_dir, compute_map, sha256


def dataset_for(model, name: str, split: str, n: int):
    ds = load_dataset(name, split)
    if n and n < len(ds):
        ds = ds.subset(n, seed=0)
    if ds.shape != tuple(model.input_shape):
        ds = fit_to_shape(ds, model.input_shape)
    return ds


def project_checkpoint(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    raw = Path(args.checkpoint).read_bytes()
    model = load_checkpoint(raw)
    name = args.dataset or model.info.get("dataset", {}).get("name", "fashion-mnist")
    ds = dataset_for(model, name, args.split, args.n)
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
