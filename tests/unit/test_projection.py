"""The built-in UMAP, its neighbour search (exact and approximate), PCA, fast transform and inverse,
bundle storage, and ``python -m explorer project``."""

import numpy as np
import pytest

from explorer.cli import main
from explorer.errors import ExplorerError
from explorer.maps import neighbours
from explorer.maps.projection import Projection, ProjectionParams, curve_params, fit, knn, layout_epochs


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


def _recall(found, true):
    return (found[:, :, None] == true[:, None, :]).any(2).mean()


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "manhattan"])
def test_approximate_knn_finds_the_true_neighbours(blobs, metric):
    z = np.concatenate([blobs[0], blobs[0][:, ::-1] + 1.0, blobs[0] * 0.5 - 2.0])  # 3,000 points in 15 clusters
    idx, dist = neighbours.approximate_knn(z, 10, metric=metric)
    true, _ = knn(z, z, 10, metric=metric, exclude_self=True)
    assert _recall(idx, true) > 0.97
    assert not (idx == np.arange(len(z))[:, None]).any()
    assert all(len(set(row)) == 10 for row in idx)
    assert (np.diff(dist, axis=1) >= 0).all()
    x = neighbours.prepare(z, metric)
    direct = np.linalg.norm(x[idx] - x[:, None], ord=1 if metric == "manhattan" else 2, axis=2)
    assert np.allclose(dist, direct, atol=1e-4)
    again, _ = neighbours.approximate_knn(z, 10, metric=metric)
    assert np.array_equal(again, idx)


def test_tree_leaves_are_balanced_intervals_of_a_line():
    x = np.random.default_rng(0).normal(size=(1000, 1)).astype(np.float32)
    order, sizes = neighbours._tree_leaves(x, 100, np.random.default_rng(0))
    assert np.array_equal(np.sort(order), np.arange(1000)) and sizes.sum() == 1000
    assert sizes.max() <= 100 and sizes.max() - sizes.min() <= 1
    rank = np.argsort(np.argsort(x[:, 0]))
    for leaf in np.split(order, np.cumsum(sizes)[:-1]):
        r = np.sort(rank[leaf])
        assert r[-1] - r[0] == len(r) - 1  # a split along a line cuts it into intervals


def test_large_inputs_take_the_approximate_path(blobs, monkeypatch):
    z, labels = blobs
    monkeypatch.setattr(neighbours, "EXACT_MAX_POINTS", 500)
    steps = []
    proj = fit(z, ProjectionParams(n_neighbors=10), progress=lambda f, m: steps.append((f, m)))
    assert any("tree" in m for _, m in steps), "the approximate search reports its trees"
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    idx, _ = knn(proj.embedding, proj.embedding, 10, exclude_self=True)
    assert (labels[idx] == labels[:, None]).mean() > 0.95


def test_layout_epochs_follow_the_size():
    assert layout_epochs(1000) == layout_epochs(6000) == 500 and layout_epochs(10_000) == 300
    assert layout_epochs(25_000) == layout_epochs(70_000) == layout_epochs(1_000_000) == 120
    sizes = [100, 2400, 3000, 10_000, 10**7]
    assert [layout_epochs(n) for n in sizes] == sorted((layout_epochs(n) for n in sizes), reverse=True)


def test_project_command_maps_synthetic_latents(capsys):
    assert main(["project", "--synthetic", "600x8", "--neighbors", "5"]) == 0
    assert "mapped 600 synthetic 8-D latents" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["project", "--synthetic", "600"])
    assert main(["project"]) == 2
    assert main(["project", "some.safetensors", "--synthetic", "600x8"]) == 2


def test_project_command_maps_train_and_test_together(tmp_path, monkeypatch, capsys):
    from explorer import models
    from explorer.checkpoint import checkpoint_bytes

    monkeypatch.setenv("EXPLORER_CACHE_DIR", str(tmp_path / "cache"))
    ckpt = tmp_path / "ae.safetensors"
    ckpt.write_bytes(checkpoint_bytes(models.build(models.config_class("ae")(hidden=(16,), latent_dim=4))))
    args = ["project", str(ckpt), "--dataset", "digits", "--split", "all", "--n", "0", "--method", "pca"]
    assert main(args) == 0
    assert "mapped 1797 images of digits:all" in capsys.readouterr().out
