"""The built-in UMAP, PCA, fast transform and inverse, and bundle storage."""

import numpy as np
import pytest

from explorer.errors import ExplorerError
from explorer.projection import Projection, ProjectionParams, curve_params, fit, knn


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=6.0, size=(5, 8))
    labels = np.repeat(np.arange(5), 200)
    z = (centres[labels] + rng.normal(size=(1000, 8))).astype(np.float32)
    return z, labels


@pytest.fixture(scope="module")
def umap_proj(blobs):
    return fit(blobs[0], ProjectionParams(n_neighbors=10))


def test_knn_matches_brute_force(blobs):
    z = blobs[0][:300]
    idx, dist = knn(z, z[:20], 5)
    ref = np.sqrt(((z[:20, None] - z[None]) ** 2).sum(-1))
    assert np.array_equal(idx, np.argsort(ref, axis=1)[:, :5])
    assert np.allclose(dist, np.sort(ref, axis=1)[:, :5], atol=1e-3)
    idx_self, _ = knn(z, z, 3, exclude_self=True)
    assert not (idx_self == np.arange(300)[:, None]).any()


def test_umap_separates_clusters_and_is_deterministic(blobs, umap_proj):
    z, labels = blobs
    emb = umap_proj.embedding
    assert emb.shape == (1000, 2) and np.isfinite(emb).all()
    # each point's nearest map neighbours share its cluster
    idx, _ = knn(emb, emb, 10, exclude_self=True)
    purity = (labels[idx] == labels[:, None]).mean()
    assert purity > 0.95
    again = fit(z, ProjectionParams(n_neighbors=10))
    assert np.array_equal(again.embedding, emb)


def test_transform_places_points_near_their_neighbours(blobs, umap_proj):
    z, labels = blobs
    exact = umap_proj.transform(z[:50])
    assert np.allclose(exact, umap_proj.embedding[:50], atol=1e-3), "a mapped latent lands on its own point"
    placed = umap_proj.transform(z[:50] + 0.05)
    err = np.linalg.norm(placed - umap_proj.embedding[:50], axis=1)
    assert np.median(err) < 2 * umap_proj.spacing


def test_inverse_round_trip_is_bounded(blobs, umap_proj):
    z, _ = blobs
    back, far = umap_proj.inverse(umap_proj.embedding[::10])
    rel = np.linalg.norm(back - z[::10], axis=1) / np.linalg.norm(z[::10], axis=1)
    assert np.median(rel) < 0.25, np.median(rel)
    assert (far < 1e-3).all()
    _, far_out = umap_proj.inverse(np.array([[1e3, 1e3]], np.float32))
    assert far_out[0] > 100


def test_pca_transform_and_inverse_are_exact_inverses_in_the_plane(blobs):
    z, _ = blobs
    proj = fit(z, ProjectionParams(method="pca"))
    assert np.allclose(proj.transform(z), proj.embedding, atol=1e-4)
    back, _ = proj.inverse(proj.embedding[:5])
    assert np.allclose(proj.transform(back), proj.embedding[:5], atol=1e-4)


def test_three_d(blobs):
    assert fit(blobs[0][:300], ProjectionParams(n_components=3, n_neighbors=8)).embedding.shape == (300, 3)


def test_bundle_round_trip_without_pickle(umap_proj):
    data = umap_proj.to_bytes({"labels": np.arange(3)})
    back, extra = Projection.from_bytes(data)
    assert back.params == umap_proj.params
    assert np.array_equal(back.embedding, umap_proj.embedding)
    assert np.array_equal(extra["labels"], np.arange(3))


def test_curve_params_match_umap_defaults():
    a, b = curve_params(0.1)
    assert a == pytest.approx(1.577, rel=0.02) and b == pytest.approx(0.895, rel=0.02)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"method": "tsne"}, "method"), ({"n_components": 4}, "2 or 3"), ({"n_neighbors": 1}, "n_neighbors"),
     ({"metric": "hamming"}, "metric")],
)  # fmt: skip
def test_params_are_checked(kwargs, message):
    with pytest.raises(ExplorerError, match=message):
        ProjectionParams(**kwargs)
