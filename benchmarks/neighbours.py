"""``python -m benchmarks.neighbours [--n 1000000] [--dim 32] [--k 15] [--data fashion|clusters] [--methods ...]``:
the k-NN graph a UMAP layout needs (every point's k nearest other points), built by the explorer's own
search, pynndescent and faiss-cpu (HNSW and IVF-Flat), timed and scored against the exact answer.

Data (seeded):

- ``fashion`` (default): the 70,000 Fashion-MNIST images (train + test) encoded once by
  ``checkpoints/fashion-mnist-ae-conv32.safetensors`` (32-D; read from the disk cache after the first
  run) and copied to N rows; each copy moves by Gaussian noise whose length is about half the
  original's distance to its k-th nearest neighbour, so the copies fill in the same shape rather
  than sitting on top of each other. ``--dim`` must be the checkpoint's 32.
- ``clusters``: a mixture of 50 anisotropic Gaussians in ``--dim`` dimensions (random axes and
  scales spread over two orders of magnitude, unequal weights).

Methods: ``trees``, the explorer's own search (``approximate_knn``); ``explorer``, ``knn_graph`` as a map
calls it (faiss IVF-Flat with fixed settings from ``LIBRARY_MIN_POINTS`` points); ``pynndescent``;
``faiss-hnsw`` and ``faiss-ivf``, tuned as below.

Ground truth: the exact k nearest other rows of 2,000 random rows (chunked torch matrix products).
A second, disjoint set of 1,000 rows with its exact answer tunes faiss's search breadth (efSearch,
nprobe): the smallest value whose recall on that set reaches ``--target``. Every method runs once,
in a fresh process of its own with 2 threads (OpenMP, BLAS, numba, torch), so its time includes what
a fresh map would pay (imports aside; pynndescent's numba compile is timed on its own) and its peak
resident memory is its own (``ru_maxrss``, the data itself included).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "checkpoints" / "fashion-mnist-ae-conv32.safetensors"
METHODS = ("trees", "explorer", "pynndescent", "faiss-hnsw", "faiss-ivf")
THREADS = 2
EVAL_SIZE = 2000
TUNE_SIZE = 1000


# --- data -------------------------------------------------------------------------------------


def clusters(n: int, dim: int, seed: int = 0, n_clusters: int = 50) -> np.ndarray:
    """(n, dim) float32: a seeded mixture of anisotropic Gaussians, centres spread wider than the clusters."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(n_clusters, 2.0))
    which = rng.choice(n_clusters, size=n, p=weights)
    centres = rng.normal(scale=4.0, size=(n_clusters, dim))
    x = np.empty((n, dim), dtype=np.float32)
    for c in range(n_clusters):
        rows = np.flatnonzero(which == c)
        axes, _ = np.linalg.qr(rng.normal(size=(dim, dim)))  # a random rotation
        scales = np.exp(rng.uniform(np.log(0.05), np.log(1.5), size=dim))  # per-axis spread
        x[rows] = (rng.standard_normal((len(rows), dim)) * scales) @ axes.T + centres[c]
    return x


def fashion(n: int, k: int, seed: int = 0) -> np.ndarray:
    """(n, 32) float32: the 70,000 Fashion-MNIST latents of the shipped conv32 autoencoder, copied with noise."""
    from benchmarks.maps import _latents
    from explorer.maps.neighbours import knn_graph
    from explorer.store import cache_dir

    z, _ = _latents(CHECKPOINT, Path(cache_dir()), "all", 0)
    z = np.asarray(z, dtype=np.float32)
    _, dist = knn_graph(z, k)
    rng = np.random.default_rng(seed)
    base = rng.permutation(n) % len(z)  # every latent used n // 70,000 or one more times
    scale = 0.5 * dist[base, -1:] / math.sqrt(z.shape[1])  # per-axis sd: noise length about half of r_k
    return (z[base] + rng.standard_normal((n, z.shape[1]), dtype=np.float32) * scale).astype(np.float32)


def exact_neighbours(x: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The exact k nearest other rows of ``x`` for each of ``rows``: (len(rows), k) indices."""
    from explorer.maps.neighbours import knn

    near, _ = knn(x, x[rows], k + 1)
    return np.stack([r[r != q][:k] for r, q in zip(near, rows)])


def recall(found: np.ndarray, true: np.ndarray) -> float:
    """Mean fraction of each row's true neighbours that were found."""
    return float((found[:, :, None] == true[:, None, :]).any(2).mean())


# --- the methods, each run in a child process -------------------------------------------------------


def _drop_self(idx: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """(M, k + 1) neighbour lists of ``rows`` that may contain the row itself -> (M, k) of other rows."""
    own = idx == rows[:, None]
    own[~own.any(1), -1] = True  # the row was not found: drop the farthest instead
    return idx[~own].reshape(len(idx), k)


def _tune(search, values: list[int], tune_rows: np.ndarray, tune_true: np.ndarray, target: float, k: int):
    """The smallest of ``values`` whose recall on the tuning rows reaches ``target`` (else the largest)."""
    tried = {}
    for v in values:
        tried[v] = recall(_drop_self(search(tune_rows, v), tune_rows, k), tune_true)
        if tried[v] >= target:
            break
    return v, tried


def run_method(method: str, x: np.ndarray, k: int, tune_rows, tune_true, target: float) -> tuple[np.ndarray, dict]:
    """The (N, k) graph of other rows by ``method`` and what it cost: {"s": total, ...parts}."""
    info: dict = {}
    t0 = time.perf_counter()
    if method == "trees":
        from explorer.maps.neighbours import approximate_knn

        idx, _ = approximate_knn(x, k)
    elif method == "explorer":
        from explorer.maps.neighbours import knn_graph

        idx, _ = knn_graph(x, k)
    elif method == "pynndescent":
        import numba
        from pynndescent import NNDescent

        numba.set_num_threads(THREADS)
        tc = time.perf_counter()
        _ = NNDescent(x[:2000], n_neighbors=k + 1, n_jobs=THREADS, random_state=None).neighbor_graph
        info["compile s"] = time.perf_counter() - tc
        t0 = time.perf_counter()  # the compile is reported apart
        graph = NNDescent(x, n_neighbors=k + 1, n_jobs=THREADS, random_state=None).neighbor_graph[0]
        idx = _drop_self(graph, np.arange(len(x)), k)
    else:
        import faiss

        faiss.omp_set_num_threads(THREADS)
        n, d = x.shape
        if method == "faiss-hnsw":
            hnsw = faiss.IndexHNSWFlat(d, 32)
            hnsw.hnsw.efConstruction = 40
            hnsw.add(x)

            def search(rows, ef):
                hnsw.hnsw.efSearch = ef
                return hnsw.search(x[rows], k + 1)[1]

            values = [16, 24, 32, 48, 64, 96, 128]
            info["efConstruction"] = 40
        else:
            nlist = int(4 * math.sqrt(n))
            quantizer = faiss.IndexFlatL2(d)
            ivf = faiss.IndexIVFFlat(quantizer, d, nlist)
            ivf.train(x[np.random.default_rng(0).choice(n, min(n, 40 * nlist), replace=False)])
            ivf.add(x)

            def search(rows, nprobe):
                ivf.nprobe = nprobe
                return ivf.search(x[rows], k + 1)[1]

            values = [4, 6, 8, 12, 16, 24, 32, 48, 64]
            info["nlist"] = nlist
        info["build s"] = time.perf_counter() - t0
        tt = time.perf_counter()
        breadth, tried = _tune(search, values, tune_rows, tune_true, target, k)
        info["tune s"] = time.perf_counter() - tt
        info["breadth"] = breadth
        info["tuning recall"] = tried
        ts = time.perf_counter()
        idx = _drop_self(search(np.arange(n), breadth), np.arange(n), k)
        info["search s"] = time.perf_counter() - ts
    info["s"] = time.perf_counter() - t0
    return idx, info


def _peak_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ``ru_maxrss`` it is not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(method: str, work: Path, k: int, target: float) -> None:
    x = np.load(work / "x.npy")
    idx, info = run_method(method, x, k, np.load(work / "tune_rows.npy"), np.load(work / "tune_true.npy"), target)
    info["peak MB"] = _peak_mb()
    np.save(work / f"{method}.npy", idx[np.load(work / "eval_rows.npy")])
    (work / f"{method}.json").write_text(json.dumps(info))


def _run_child(method: str, work: Path, k: int, target: float, timeout: float) -> dict:
    env = {
        **os.environ,
        **{
            v: str(THREADS) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
        },
    }
    cmd = [sys.executable, "-m", "benchmarks.neighbours", "--child", method, "--work", str(work), "--k", str(k)]
    try:
        subprocess.run([*cmd, "--target", str(target)], cwd=REPO, env=env, check=True, timeout=timeout)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        return {"error": type(e).__name__}
    info = json.loads((work / f"{method}.json").read_text())
    info["recall"] = recall(np.load(work / f"{method}.npy"), np.load(work / "eval_true.npy"))
    return info


def _row(method: str, info: dict) -> str:
    if "error" in info:
        return f"| {method} | {info['error']} | | | |"
    params = {
        "trees": "the explorer's own: 8 trees + neighbours of neighbours",
        "explorer": "`knn_graph` as the layout calls it",
        "pynndescent": f"n_neighbors={{k1}}, compile {info.get('compile s', 0):.1f} s apart",
        "faiss-hnsw": f"M=32, efConstruction={info.get('efConstruction')}, efSearch={info.get('breadth')}",
        "faiss-ivf": f"nlist={info.get('nlist')}, nprobe={info.get('breadth')}",
    }[method]
    parts = f" (build {info['build s']:.1f} + search {info['search s']:.1f})" if "build s" in info else ""
    return f"| {method} | {params} | {info['s']:.1f}{parts} | {info['recall']:.3f} | {info['peak MB']:.0f} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.neighbours",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--k", type=int, default=15)
    parser.add_argument("--data", choices=("fashion", "clusters"), default="fashion")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {', '.join(METHODS)}")
    parser.add_argument("--target", type=float, default=0.96, help="recall faiss's search breadth is tuned to")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one method may take")
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.work, args.k, args.target)
        return 0
    methods = [m for m in args.methods.split(",") if m]
    if set(methods) - set(METHODS):
        parser.error(f"--methods: expected a comma list of {', '.join(METHODS)}")
    if args.data == "fashion" and args.dim != 32:
        parser.error("--data fashion gives the checkpoint's 32-D latents: use --dim 32 or --data clusters")

    import torch

    torch.set_num_threads(THREADS)
    t0 = time.perf_counter()
    x = fashion(args.n, args.k) if args.data == "fashion" else clusters(args.n, args.dim)
    rows = np.random.default_rng(1).permutation(args.n)[: EVAL_SIZE + TUNE_SIZE]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        np.save(work / "x.npy", x)
        for name, r in (("eval", rows[:EVAL_SIZE]), ("tune", rows[EVAL_SIZE:])):
            np.save(work / f"{name}_rows.npy", r)
            np.save(work / f"{name}_true.npy", exact_neighbours(x, r, args.k))
        print(f"data and exact answers: {time.perf_counter() - t0:.1f} s", flush=True)
        results = {}
        for m in methods:
            results[m] = _run_child(m, work, args.k, args.target, args.timeout)
            print(m, json.dumps(results[m]), flush=True)
    load = os.getloadavg()
    print(
        f"\n{args.n:,} x {x.shape[1]} {args.data} latents, {args.k}-NN graph of every point, {THREADS} threads, "
        f"{os.cpu_count()} CPU cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"
    )
    print(f"| method | parameters | build + query s | recall@{args.k}, {EVAL_SIZE:,} points | peak RSS MB |")
    print("|---|---|---|---|---|")
    for m, info in results.items():
        print(_row(m, info).replace("{k1}", str(args.k + 1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
