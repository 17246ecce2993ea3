"""The neighbour search of large maps (faiss IVF-Flat from ``LIBRARY_MIN_POINTS`` points): it finds the true
neighbours and answers in the same form as the search of smaller maps. The threshold is lowered to 50,000
points here so the test stays quick."""

import numpy as np
import pytest

from explorer.maps import neighbours

K = 15


@pytest.fixture(scope="module")
def latents() -> np.ndarray:
    """50,000 x 32 float32: 40 anisotropic Gaussian clusters, seeded."""
    rng = np.random.default_rng(0)
    which = rng.integers(0, 40, size=50_000)
    centres = rng.normal(scale=4.0, size=(40, 32))
    scales = np.exp(rng.uniform(np.log(0.1), np.log(1.5), size=(40, 32)))
    return (rng.standard_normal((50_000, 32)) * scales[which] + centres[which]).astype(np.float32)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_large_maps_find_the_true_neighbours(latents, metric):
    idx, dist = neighbours.knn_graph(latents, K, metric=metric, library_min_points=len(latents))
    rows = np.random.default_rng(1).choice(len(latents), 500, replace=False)
    true, true_dist = neighbours.knn(latents, latents[rows], K + 1, metric=metric)
    true, true_dist = true[:, 1:], true_dist[:, 1:]  # the row itself comes first
    assert (idx[rows][:, :, None] == true[:, None, :]).any(2).mean() >= 0.95
    assert not (idx == np.arange(len(latents))[:, None]).any()  # never the row itself
    assert (np.diff(dist, axis=1) >= 0).all()  # nearest first
    # the distances are the metric's own: those of the true neighbours found agree with the exact search
    found = idx[rows] == true[:, :1]
    np.testing.assert_allclose(dist[rows][found], true_dist[:, 0][found.any(1)], rtol=1e-4, atol=1e-5)


def test_large_maps_answer_in_the_same_form(latents):
    small = neighbours.approximate_knn(latents, K)
    large = neighbours.knn_graph(latents, K, library_min_points=len(latents))
    exact = neighbours.knn_graph(latents[:2000], K)
    for a, b, c in zip(small, large, exact):
        assert a.shape == b.shape == (len(latents), K) and c.shape == (2000, K)
        assert a.dtype == b.dtype == c.dtype


def test_below_the_threshold_nothing_changes(latents):
    """Maps under ``LIBRARY_MIN_POINTS`` keep the search they had, so shipped maps do not move."""
    assert len(latents) < neighbours.LIBRARY_MIN_POINTS
    a = neighbours.knn_graph(latents, K)
    b = neighbours.approximate_knn(latents, K)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
