"""``python -m benchmarks.maps [--runs N] [--only PARTS] [--checkpoint PATH] [--cache-dir DIR]``: maps of whole
datasets and the built-in UMAP's quality against umap-learn. Prints medians.

1. fresh: ``python -m explorer project`` in a new process per run, timed from outside, for 10,000
   Fashion-MNIST test images, all 70,000 images (``--split all --n 0``) and 1,000,000 synthetic
   32-D latents (``--synthetic 1000000x32``, one run). The first run of each dataset also encodes
   the images (printed on its own); later runs read the latents from the disk cache and fit afresh.
   One more 10k run with an empty numba cache shows what the first map after installing costs.
2. knn: the approximate neighbour search against the exact one: recall of the true 15 nearest
   neighbours of 2,000 of the 70,000 latents, and what a 10,000-point map loses when forced onto
   the approximate path (trustworthiness on a 5,000-point sample, 15-NN label agreement; seeds 0
   and 1); the same scores for the 70,000-point map.
3. quality: the built-in UMAP against umap-learn (with its own neighbour search) on scikit-learn's
   digits and 3,000 raw Fashion-MNIST test images, means of seeds 0 and 1; and what
   ``warm_reference_umap`` costs in a fresh process, with umap-learn's numba cache and without.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = REPO / "checkpoints" / "fashion-mnist-vae-conv16.safetensors"
PARTS = ("fresh", "knn", "quality")
K = 15
SEEDS = (0, 1)


def _project(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(whole process s, the command's own figure s) of one ``python -m explorer project`` in a new process."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "explorer", "project", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - t0
    found = re.search(r" in ([\d.]+) s \(", out.stdout)
    if found is None:
        raise RuntimeError(f"unexpected output of project {args}: {out.stdout}")
    return wall, float(found.group(1))


def fresh(runs: int, checkpoint: Path, cache: Path) -> dict[str, float]:
    env = {**os.environ, "EXPLORER_CACHE_DIR": str(cache)}
    out: dict[str, float] = {}
    for label, args in (("10k", ["--split", "test", "--n", "10000"]), ("70k", ["--split", "all", "--n", "0"])):
        cmd = [str(checkpoint), "--dataset", "fashion-mnist", *args]
        out[f"fresh {label}: first run, encoding included, whole process s"] = _project(cmd, env)[0]
        times = [_project(cmd, env) for _ in range(runs)]
        out[f"fresh {label}: whole process s"] = statistics.median(t[0] for t in times)
        out[f"fresh {label}: read latents + fit s"] = statistics.median(t[1] for t in times)
    with tempfile.TemporaryDirectory() as numba_cache:
        cold = [str(checkpoint), "--dataset", "fashion-mnist", "--split", "test", "--n", "10000"]
        out["fresh 10k, empty numba cache (first map after install): whole process s"] = _project(
            cold, {**env, "NUMBA_CACHE_DIR": numba_cache}
        )[0]
    wall, fit_s = _project(["--synthetic", "1000000x32"], env)
    out["fresh 1M x 32 synthetic: whole process s"] = wall
    out["fresh 1M x 32 synthetic: fit s"] = fit_s
    return out


def _latents(checkpoint: Path, cache: Path, split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Latents and labels of a Fashion-MNIST split from the disk cache, encoding them on a miss."""
    from explorer.checkpoint import load_checkpoint
    from explorer.data import load_dataset
    from explorer.maps.encode import Encoded, encode_dataset
    from explorer.maps.pipeline import latents_key, subset_for
    from explorer.store import DiskCache, data_digest, sha256

    raw = checkpoint.read_bytes()
    model = load_checkpoint(raw)
    ds = subset_for(load_dataset("fashion-mnist", split), n, model.input_shape)
    store = DiskCache(cache)
    key = latents_key(sha256(raw), data_digest(ds.images, ds.labels))
    data = store.get(key)
    if data is None:
        enc = encode_dataset(model, ds.images)
        store.put(key, enc.to_bytes())
    else:
        enc = Encoded.from_bytes(data)
    return enc.latents, ds.labels


@contextmanager
def _approximate_only():
    from explorer.maps import neighbours

    saved = neighbours.EXACT_MAX_POINTS
    neighbours.EXACT_MAX_POINTS = 0
    try:
        yield
    finally:
        neighbours.EXACT_MAX_POINTS = saved


def _map_quality(x: np.ndarray, emb: np.ndarray, labels: np.ndarray, sample: int = 5000) -> tuple[float, float]:
    """Trustworthiness (k = 15) on a seeded sample of at most ``sample`` points, and 15-NN label agreement."""
    from sklearn.manifold import trustworthiness

    from explorer.maps.neighbours import label_agreement

    s = np.sort(np.random.default_rng(0).permutation(len(x))[:sample])
    return float(trustworthiness(x[s], emb[s], n_neighbors=K)), label_agreement(emb, labels, K)


def knn_quality(checkpoint: Path, cache: Path) -> dict[str, float]:
    from explorer.maps.neighbours import approximate_knn, knn
    from explorer.maps.projection import ProjectionParams, fit

    out: dict[str, float] = {}
    z, labels = _latents(checkpoint, cache, "all", 0)
    t0 = time.perf_counter()
    idx, _ = approximate_knn(z, K)
    out["approximate 15-NN of 70k latents, in process s"] = time.perf_counter() - t0
    queries = np.random.default_rng(1).choice(len(z), 2000, replace=False)
    near, _ = knn(z, z[queries], K + 1)
    true = [row[row != q][:K] for row, q in zip(near, queries)]
    out["approximate 15-NN recall, 2,000 of 70k"] = float(
        np.mean([len(np.intersect1d(idx[q], t)) / K for q, t in zip(queries, true)])
    )
    z10, y10 = _latents(checkpoint, cache, "test", 10000)
    exact10, _ = knn(z10, z10, K, exclude_self=True)
    idx10, _ = approximate_knn(z10, K)
    out["approximate 15-NN recall, all of 10k"] = float((idx10[:, :, None] == exact10[:, None, :]).any(2).mean())
    for label in ("exact", "approximate"):
        with _approximate_only() if label == "approximate" else nullcontext():
            scores = [_map_quality(z10, fit(z10, ProjectionParams(seed=seed)).embedding, y10) for seed in SEEDS]
        t, a = np.mean(scores, axis=0)
        out[f"10k map, {label} k-NN, seeds 0 and 1: trustworthiness"] = t
        out[f"10k map, {label} k-NN, seeds 0 and 1: 15-NN label agreement"] = a
    t, a = _map_quality(z, fit(z, ProjectionParams()).embedding, labels)
    out["70k map (approximate k-NN): trustworthiness"] = t
    out["70k map (approximate k-NN): 15-NN label agreement"] = a
    return out


def _quality_sets():
    from sklearn.datasets import load_digits

    from explorer.data import load_dataset

    digits = load_digits()
    yield "digits", digits.data.astype(np.float32), digits.target
    ds = load_dataset("fashion-mnist", "test")
    s = np.sort(np.random.default_rng(0).permutation(len(ds))[:3000])
    yield "fashion-mnist 3k pixels", ds.images[s].reshape(len(s), -1).astype(np.float32) / 255, ds.labels[s]


def umap_quality() -> dict[str, float]:
    import umap

    from explorer.maps.projection import ProjectionParams, fit

    out: dict[str, float] = {}
    warm = "from explorer.maps.projection import warm_reference_umap; print(warm_reference_umap())"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", warm], cwd=REPO, check=True, capture_output=True)
    out["warm_reference_umap, fresh process, whole process s"] = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as numba_cache:
        t0 = time.perf_counter()
        env = {**os.environ, "NUMBA_CACHE_DIR": numba_cache}
        subprocess.run([sys.executable, "-c", warm], cwd=REPO, env=env, check=True, capture_output=True)
        out["warm_reference_umap, fresh process, empty numba cache, whole process s"] = time.perf_counter() - t0
    for name, x, y in _quality_sets():
        builtin, reference = [], []
        for seed in SEEDS:
            t0 = time.perf_counter()
            emb = fit(x, ProjectionParams(seed=seed)).embedding
            builtin.append((*_map_quality(x, emb, y), time.perf_counter() - t0))
            t0 = time.perf_counter()
            emb = umap.UMAP(n_neighbors=K, min_dist=0.1, random_state=seed, n_jobs=1).fit_transform(x)
            reference.append((*_map_quality(x, emb, y), time.perf_counter() - t0))
        for engine, rows in (("builtin", builtin), ("umap-learn", reference)):
            t, a, s = np.mean(rows, axis=0)
            out[f"{name}, {engine}: trustworthiness"] = t
            out[f"{name}, {engine}: 15-NN label agreement"] = a
            out[f"{name}, {engine}: fit s (with scoring)"] = s
    return out


def _parts(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or set(parts) - set(PARTS):
        raise argparse.ArgumentTypeError(f"expected a comma list of {', '.join(PARTS)}; got {text!r}")
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.maps", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="fresh runs per dataset after the first (median)")
    parser.add_argument("--only", type=_parts, default=list(PARTS), help=f"comma list of {', '.join(PARTS)}")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--cache-dir", type=Path, default=None, help="latents cache to reuse (default: a new one)")
    args = parser.parse_args(argv)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache_dir or Path(tmp)
        if "fresh" in args.only:
            results.update(fresh(max(1, args.runs), args.checkpoint, cache))
        if "knn" in args.only:
            results.update(knn_quality(args.checkpoint, cache))
        if "quality" in args.only:
            results.update(umap_quality())
    width = max(len(k) for k in results)
    print(f"on {os.cpu_count()} CPU cores; fresh-map figures are medians of {args.runs} runs")
    for key, value in results.items():
        print(f"{key:<{width}}  {value:9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
