"""k nearest neighbours for maps: exact up to ``EXACT_MAX_POINTS`` points, approximate above.

Exact search is chunked torch matrix products; its cost grows with N^2 (16-D latents on 2 cores:
10,000 points 0.4 s, 40,000 6.6 s, 70,000 about a minute). Above the threshold a forest of
random-projection trees proposes candidates and one round of "neighbours of neighbours" (the
observation behind NN-descent: a neighbour's neighbour is likely a neighbour) refines them: on
all 70,000 Fashion-MNIST latents it finds 98.8 % of the true 15 nearest neighbours in 2 s. It is
plain numpy, so nothing is compiled in a fresh process (pynndescent spent 24 s on that here).

From ``LIBRARY_MIN_POINTS`` points up, euclidean and cosine graphs come from faiss's IVF-Flat
index instead: k-means cells, each point compared with the points of the few cells nearest it. On
1,000,000 32-D latents it built the graph in 21 s at 99.2 % recall where the trees took 133 s on the
same busy machine (``python -m benchmarks.neighbours``; docs/BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Progress = Callable[[float, str], None]

# Measured on 16-D latents, 2 cores, exact against approximate (recall of the 15-NN): 10,000 points
# 0.4 s / 0.3 s (99.6 %), 20,000 1.6 s / 0.6 s (99.3 %), 30,000 3.7 s / 0.8 s, 40,000 6.6 s / 1.0 s.
# Up to here the exact answer costs about a second more; beyond it the cost runs away.
EXACT_MAX_POINTS = 20_000
N_TREES = 8
REFINE_CHUNK = 4096  # rows per batch of candidate distances: (4096, ~240, D) floats
# faiss IVF-Flat from here up (euclidean and cosine): 4 sqrt(N) cells, and as many of the nearest searched
# as hold about IVF_CANDIDATES points (8 of 4,000 at 1M). On 1M 32-D latents 1,000 candidates (4 cells)
# found 96.0 % of the 15-NN in 17 s; on 50,000 32-D Gaussian clusters 450 found 94 %, 900 found 99.7 %.
LIBRARY_MIN_POINTS = 200_000
IVF_CANDIDATES = 2000
IVF_QUERY_CHUNK = 65_536


def no_progress(fraction: float, message: str) -> None:
    """A ``Progress`` that shows nothing: the default of every long step that can report."""


def prepare(x: np.ndarray, metric: str) -> np.ndarray:
    """float32 rows; unit length for ``cosine``, so euclidean order is cosine order."""
    x = np.asarray(x, dtype=np.float32)
    if metric == "cosine":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def knn(
    data: np.ndarray, queries: np.ndarray, k: int, *, metric: str = "euclidean", exclude_self: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest rows of ``data`` for each query row: (indices (M, k), distances (M, k)).

    Chunked torch matrix products, for a map's points or a handful of new queries against them.
    With ``exclude_self`` the queries are the data and each row's own index is skipped.
    """
    import torch

    a = torch.from_numpy(prepare(data, metric))  # (N, L)
    q = torch.from_numpy(prepare(queries, metric))  # (M, L)
    kk = min(k + int(exclude_self), len(a))
    a_sq = (a * a).sum(1)
    out_i, out_d = [], []
    chunk = max(1, int(2**22 // max(len(a), 1)))  # about 16 MB of distances per chunk, made in place
    for s in range(0, len(q), chunk):
        qb = q[s : s + chunk]
        if metric == "manhattan":
            d = torch.cdist(qb, a, p=1)
        else:
            # squared euclidean by |q|^2 - 2 q.a + |a|^2; cosine data is unit-normalised first
            d = torch.addmm(a_sq[None, :], qb, a.T, alpha=-2.0)  # one (chunk, N) array, then updated in place
            d.add_((qb * qb).sum(1, keepdim=True)).clamp_min_(0.0)
        if exclude_self:
            rows = torch.arange(len(qb))
            d[rows, rows + s] = float("inf")
        dist, idx = torch.topk(d, kk, dim=1, largest=False)
        if metric != "manhattan":
            # the expansion above loses precision for near-identical rows: recompute the k winners directly
            dist = (qb[:, None, :] - a[idx]).norm(dim=2)
            if exclude_self:
                dist[idx == (torch.arange(len(qb))[:, None] + s)] = float("inf")
            dist, order = dist.sort(dim=1)
            idx = idx.gather(1, order)
        out_i.append(idx[:, :k])
        out_d.append(dist[:, :k])
    return torch.cat(out_i).numpy(), torch.cat(out_d).numpy().astype(np.float32)


def _tree_leaves(x: np.ndarray, leaf_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One random-projection tree, built a level at a time: every node is split at the median of
    its points' projections on the line through two of its random members, so leaves are balanced.
    Returns ``order`` (N,), the points grouped leaf by leaf, and each leaf's size (S,)."""
    order = np.arange(len(x))
    xo = x  # x[order], kept in step: gathers within ever smaller nodes stay local in memory
    sizes = np.array([len(x)])
    while sizes.max() > leaf_size:
        starts = np.cumsum(sizes) - sizes
        normal = xo[starts + rng.integers(0, sizes)] - xo[starts + rng.integers(0, sizes)]  # (S, D)
        proj = np.einsum("nd,nd->n", xo, np.repeat(normal, sizes, axis=0))  # (N,)
        # nodes hold m or m - 1 points: one (S, m) grid, padded with inf, and a partition of each row
        # around both possible halves puts every node's lower half first
        m, half = int(sizes.max()), sizes // 2
        valid = np.arange(m)[None] < sizes[:, None]
        grid = np.full(valid.shape, np.inf, dtype=np.float32)
        grid[valid] = proj
        cols = np.argpartition(grid, sorted({int(half.min()) - 1, int(half.max()) - 1}), axis=1)
        local = (starts[:, None] + cols)[cols < sizes[:, None]]  # (N,) new positions, padding dropped
        order, xo = order[local], xo[local]
        sizes = np.stack([half, sizes - half], 1).ravel()
    return order, sizes


def _leaf_candidates(x: np.ndarray, order: np.ndarray, sizes: np.ndarray, k: int, p: float) -> np.ndarray:
    """Each point's k nearest within its leaf: (N, k) indices."""
    n, m = len(order), int(sizes.max())
    starts = np.cumsum(sizes) - sizes
    valid = np.arange(m)[None] < sizes[:, None]  # (S, m): leaves differ in size by at most 1
    members = np.where(valid, order[np.minimum(starts[:, None] + np.arange(m), n - 1)], 0)
    kk = min(k, m - 1)
    out = np.empty((n, k), dtype=np.int64)
    step = max(1, 2**22 // (m * m * (x.shape[1] if p == 1.0 else 1)))  # leaves per batch, <= 16 MB of floats
    for s in range(0, len(sizes), step):
        ids, ok = members[s : s + step], valid[s : s + step]  # (B, m)
        g = np.take(x, ids, axis=0)  # (B, m, D)
        if p == 1.0:
            d = np.abs(g[:, :, None, :] - g[:, None, :, :]).sum(3)  # (B, m, m)
        else:  # squared distances by |a|^2 + |b|^2 - 2 a.b: only their order matters here
            sq = np.einsum("bmd,bmd->bm", g, g)
            d = sq[:, :, None] + sq[:, None, :] - 2 * np.matmul(g, g.transpose(0, 2, 1))
        d[np.broadcast_to(~ok[:, None, :], d.shape)] = np.inf
        d[:, np.arange(m), np.arange(m)] = np.inf
        j = np.argpartition(d, kk - 1, axis=2)[..., :kk]  # (B, m, kk)
        found = np.take_along_axis(np.broadcast_to(ids[:, None, :], d.shape), j, 2)
        if kk < k:  # a leaf smaller than k + 1: repeat, the duplicates are dropped later
            found = np.concatenate([found, np.repeat(found[..., :1], k - kk, axis=2)], 2)
        out[ids[ok]] = found[ok]
    return out


def _best(x: np.ndarray, k: int, p: float, parts: list[np.ndarray], expand: np.ndarray | None = None):
    """The k nearest of each row's candidates, duplicates and the row itself skipped: (indices (N, k),
    distances (N, k)), distances computed directly. Candidates of row i: ``part[i]`` of every part
    (N, c) and, with ``expand`` (N, k), the rows ``expand[expand[i]]``, its neighbours' neighbours.

    numpy, not torch: ``np.take`` gathers the (B, C, D) candidate rows about 5x faster than torch's indexing.
    """
    n = len(x)
    idx = np.empty((n, k), dtype=np.int64)
    dist = np.empty((n, k), dtype=np.float32)
    for s in range(0, n, REFINE_CHUNK):
        r = slice(s, min(n, s + REFINE_CHUNK))
        cols = [part[r] for part in parts] + ([expand[expand[r]].reshape(r.stop - s, -1)] if expand is not None else [])
        c = np.concatenate(cols, 1)  # (B, C)
        c.sort(axis=1)  # repeats become neighbours
        rows = np.arange(r.start, r.stop)
        diff = np.take(x, c, axis=0)  # (B, C, D)
        diff -= x[r][:, None, :]
        d = np.abs(diff).sum(2) if p == 1.0 else np.einsum("bcd,bcd->bc", diff, diff)  # L1, or squared L2
        d[:, 1:][c[:, 1:] == c[:, :-1]] = np.inf
        d[c == rows[:, None]] = np.inf
        j = np.argpartition(d, k - 1, axis=1)[:, :k]
        j = np.take_along_axis(j, np.argsort(np.take_along_axis(d, j, 1), axis=1), 1)  # the k, nearest first
        idx[r] = np.take_along_axis(c, j, 1)
        dist[r] = np.take_along_axis(d, j, 1)
    return idx, (dist if p == 1.0 else np.sqrt(dist))


def approximate_knn(
    x: np.ndarray, k: int, *, metric: str = "euclidean", seed: int = 0, progress: Progress = no_progress
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest other rows of ``x`` (N, D), approximately: (indices (N, k), distances (N, k)).

    ``N_TREES`` random-projection trees with leaves of at least ``8 k`` points propose each point's
    leaf-mates; then each point's best k so far and their best k (k + k^2 candidates) are
    measured exactly and the k nearest kept. Deterministic for a given seed.
    """
    x = prepare(x, metric)
    p = 1.0 if metric == "manhattan" else 2.0
    rng = np.random.default_rng(seed)
    leaf_size = max(128, 8 * k)
    idx = _leaf_candidates(x, *_tree_leaves(x, leaf_size, rng), k, p)  # (N, k)
    for t in range(1, N_TREES + 1):
        progress(0.6 * t / N_TREES, f"neighbour search: tree {t}/{N_TREES}")
        if t < N_TREES:  # merged tree by tree, so memory stays O(N k) however many trees
            idx = _best(x, k, p, [idx, _leaf_candidates(x, *_tree_leaves(x, leaf_size, rng), k, p)])[0]
    idx, dist = _best(x, k, p, [idx], expand=idx)  # from k + k^2 candidates
    progress(1.0, "neighbour search done")
    return idx, dist


def _others(idx: np.ndarray, dist: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(M, k + 1) neighbours of ``rows``, nearest first, the row itself usually among them -> its k others."""
    own = idx == rows[:, None]
    own[~own.any(1), -1] = True  # itself not found (a duplicate came first): drop the farthest instead
    return idx[~own].reshape(len(rows), k), dist[~own].reshape(len(rows), k)


def ivf_knn(
    x: np.ndarray, k: int, *, metric: str = "euclidean", seed: int = 0, progress: Progress = no_progress
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest other rows of ``x`` (N, D) by faiss IVF-Flat, euclidean or cosine: (indices (N, k) int64,
    distances (N, k) float32), nearest first, as ``approximate_knn`` returns them."""
    import faiss

    x = np.ascontiguousarray(prepare(x, metric))
    n, d = x.shape
    nlist = max(1, int(4 * np.sqrt(n)))
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
    index.cp.seed = seed
    progress(0.0, f"neighbour search: {nlist} cells")
    index.train(x[np.random.default_rng(seed).choice(n, min(n, 40 * nlist), replace=False)])
    index.add(x)
    index.nprobe = min(nlist, int(np.ceil(IVF_CANDIDATES * nlist / n)))  # cells of about n / nlist points
    idx = np.empty((n, k), dtype=np.int64)
    dist = np.empty((n, k), dtype=np.float32)
    for s in range(0, n, IVF_QUERY_CHUNK):
        r = np.arange(s, min(n, s + IVF_QUERY_CHUNK))
        d2, found = index.search(x[r], k + 1)  # (B, k + 1): squared distances, the row itself among them
        idx[r], dist[r] = _others(found, np.sqrt(np.maximum(d2, 0.0)), r, k)
        progress(0.1 + 0.9 * r[-1] / n, "neighbour search")
    short = np.flatnonzero((idx < 0).any(1))  # fewer than k in the probed cells (rare): search those exactly
    if len(short):
        idx[short], dist[short] = _others(*knn(x, x[short], k + 1), short, k)
    return idx, dist


def knn_graph(
    x: np.ndarray,
    k: int,
    *,
    metric: str = "euclidean",
    seed: int = 0,
    progress: Progress = no_progress,
    library_min_points: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k nearest other rows: exact up to ``EXACT_MAX_POINTS`` rows, approximate above, by faiss from
    ``library_min_points`` (default ``LIBRARY_MIN_POINTS``) for euclidean and cosine."""
    if len(x) <= EXACT_MAX_POINTS:
        out = knn(x, x, k, metric=metric, exclude_self=True)
        progress(1.0, "neighbour search done")
        return out
    threshold = LIBRARY_MIN_POINTS if library_min_points is None else library_min_points
    if len(x) >= threshold and metric in ("euclidean", "cosine"):
        out = ivf_knn(x, k, metric=metric, seed=seed, progress=progress)
        progress(1.0, "neighbour search done")
        return out
    return approximate_knn(x, k, metric=metric, seed=seed, progress=progress)


def label_agreement(points: np.ndarray, labels: np.ndarray, k: int = 15) -> float:
    """Fraction of each point's k nearest other points (e.g. in a map) that share its label, averaged."""
    idx, _ = knn_graph(points, k)
    return float((labels[idx] == labels[:, None]).mean())
