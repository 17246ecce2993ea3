"""How faithful a map is to the latent space it was drawn from: which neighbourhoods survive the projection.

- ``neighbours_kept``: for each image, the share of its k nearest images in latent space that are also among
  its k nearest on the map. Near 1, the island it sits in is real; near 0, its map neighbours are strangers.
- ``trustworthiness_continuity``: Venna and Kaski's two numbers (2001). Trustworthiness penalises map
  neighbours that were far apart in latent space (false islands), by how far down the latent ranking they
  were; continuity penalises latent neighbours the map tore apart, by their rank on the map. Both are 1 for a
  map that keeps every k-neighbourhood, and about 0.5 for a random one. Computed on a seeded subset of at most
  ``MAX_POINTS`` images, with ranks among that subset (the sums are over all pairs, so the full map would
  cost N^2).

Pure numpy and SciPy; the latent-space neighbours of a large map come from ``explorer.maps.neighbours``.
"""

from __future__ import annotations

import numpy as np

from explorer.maps.neighbours import knn_graph

K = 15  # the neighbourhood size: UMAP's default number of neighbours
MAX_POINTS = 4000


def _map_neighbours(embedding: np.ndarray, k: int) -> np.ndarray:
    from scipy.spatial import cKDTree

    emb = np.asarray(embedding, dtype=np.float64)
    _, idx = cKDTree(emb).query(emb, k=k + 1)  # (N, k + 1): each point first, then its neighbours
    return np.asarray(idx[:, 1:], dtype=np.int64)


def neighbours_kept(latents: np.ndarray, embedding: np.ndarray, *, k: int = K, metric: str = "euclidean") -> np.ndarray:
    """(N,) float32 in [0, 1]: the share of each image's k latent-space neighbours that are its map neighbours too."""
    n = len(latents)
    if n != len(embedding):
        raise ValueError(f"{n} latents but {len(embedding)} map points")
    k = max(1, min(k, n - 1))
    if n < 2:
        return np.ones(n, np.float32)
    latent_idx, _ = knn_graph(np.asarray(latents, np.float32), k, metric=metric)  # (N, k)
    map_idx = _map_neighbours(embedding, k)  # (N, k)
    hits = np.zeros(n, np.int64)
    for s in range(0, n, 65536):  # shared members per row, (rows, k, k) comparisons at a time
        a, b = latent_idx[s : s + 65536], map_idx[s : s + 65536]
        hits[s : s + 65536] = (a[:, :, None] == b[:, None, :]).any(axis=2).sum(axis=1)
    return (hits / k).astype(np.float32)


def _ranks(d: np.ndarray) -> np.ndarray:
    """Row-wise ranks of distances (1 = nearest), self excluded by an infinite distance."""
    order = np.argsort(d, axis=1, kind="stable")
    ranks = np.empty_like(order)
    rows = np.arange(d.shape[0])[:, None]
    ranks[rows, order] = np.arange(1, d.shape[1] + 1)[None, :]
    return ranks


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] - 2.0 * a @ b.T + (b * b).sum(1)[None, :]
    return np.maximum(d, 0.0)  # squared: the order is what counts


def trustworthiness_continuity(
    latents: np.ndarray, embedding: np.ndarray, *, k: int = K, max_points: int = MAX_POINTS, seed: int = 0
) -> tuple[float, float, int]:
    """(trustworthiness, continuity, images used) of a map at neighbourhood size k (see the module's note)."""
    x = np.asarray(latents, np.float64)
    y = np.asarray(embedding, np.float64)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} latents but {len(y)} map points")
    if len(x) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), max_points, replace=False))
        x, y = x[keep], y[keep]
    m = len(x)
    k = min(k, (m - 1) // 2)  # the normalisation below needs 2m - 3k - 1 > 0
    if k < 1:
        return 1.0, 1.0, m
    trust = cont = 0.0
    for s in range(0, m, 256):
        rows = np.arange(s, min(m, s + 256))
        dx, dy = _distances(x[rows], x), _distances(y[rows], y)
        dx[np.arange(len(rows)), rows] = np.inf
        dy[np.arange(len(rows)), rows] = np.inf
        rx, ry = _ranks(dx), _ranks(dy)
        near_x, near_y = rx <= k, ry <= k
        trust += float(((rx - k) * (near_y & ~near_x)).sum())  # on the map, not in latent space
        cont += float(((ry - k) * (near_x & ~near_y)).sum())  # in latent space, not on the map
    scale = 2.0 / (m * k * (2 * m - 3 * k - 1))
    return 1.0 - scale * trust, 1.0 - scale * cont, m
