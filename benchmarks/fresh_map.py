"""``python -m benchmarks.fresh_map CHECKPOINT SEED``: one process's way to a 10k map; prints ``hit`` or ``computed``.

The benchmark times this whole process, so the figure includes what a new server process pays:
imports, loading the checkpoint and, when the disk cache misses, encoding and the UMAP fit.
"""

from __future__ import annotations

import sys
from pathlib import Path

from explorer.checkpoint import load_checkpoint
from explorer.data import load_dataset
from explorer.maps.pipeline import cached_map, compute_map, subset_for
from explorer.maps.projection import ProjectionParams
from explorer.store import DiskCache, cache_dir, data_digest, sha256

N_IMAGES = 10000


def main(checkpoint: Path, seed: int) -> str:
    raw = checkpoint.read_bytes()
    model = load_checkpoint(raw)
    ds = subset_for(load_dataset("fashion-mnist", "test"), N_IMAGES, model.input_shape)
    params = ProjectionParams(seed=seed)
    cache = DiskCache(cache_dir())
    if cached_map(sha256(raw), data_digest(ds.images, ds.labels), params, cache) is not None:
        return "hit"
    compute_map(model, sha256(raw), ds.images, ds.labels, ds.class_names, params, cache)
    return "computed"


if __name__ == "__main__":
    print(main(Path(sys.argv[1]), int(sys.argv[2])))
