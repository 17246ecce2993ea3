"""Latent-space operations: interpolation, decoding, seeded sampling, traversal, nearest neighbours."""

import numpy as np
import pytest
import torch

from explorer import models as zoo
from explorer.errors import ExplorerError
from explorer.maps import ops


def make_model(kind: str, shape=(1, 28, 28)):
    kwargs = {"input_shape": shape, "backbone": "mlp", "latent_dim": 8, "hidden": (32,)}
    if kind == "sae":
        kwargs.update(latent_dim=64, k=4)
    return zoo.build(zoo.config_class(kind)(**kwargs)).eval()


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)  # module-scoped: built once, with fixed weights
    return {kind: make_model(kind) for kind in ("ae", "vae", "sae")}


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def encoded(model, n=200, seed=0):
    x = torch.rand(n, *model.input_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.encode(x).numpy()


# ----------------------------------------------------------------------------------- interpolation


@pytest.mark.parametrize("method", ["lerp", "slerp"])
def test_interpolation_endpoints_are_exact_and_decode_like_the_endpoints(models, rng, method):
    model = models["ae"]
    z0, z1 = rng.standard_normal((2, 8)).astype(np.float32)
    path = ops.interpolate(z0, z1, 7, method)
    assert path.shape == (7, 8) and path.dtype == np.float32
    assert np.array_equal(path[0], z0) and np.array_equal(path[-1], z1)
    images = ops.decode(model, path)
    assert np.array_equal(images[0], ops.decode(model, z0[None])[0])
    assert np.array_equal(images[-1], ops.decode(model, z1[None])[0])


def test_slerp_keeps_equal_norms_and_interpolates_unequal_norms_linearly(rng):
    a, b = rng.standard_normal((2, 16))
    b *= np.linalg.norm(a) / np.linalg.norm(b)
    path = ops.interpolate(a, b, 11, "slerp")
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), np.linalg.norm(a), rtol=1e-6)
    # unequal norms: the norm goes linearly from |a| to |3b|
    t = np.linspace(0, 1, 11)
    path = ops.slerp(a, 3 * b, t)
    expected = (1 - t) * np.linalg.norm(a) + t * np.linalg.norm(3 * b)
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), expected, rtol=1e-6)
    # the direction moves at constant angular speed along the great circle
    cos = (path / np.linalg.norm(path, axis=1, keepdims=True)) @ (a / np.linalg.norm(a))
    angles = np.arccos(np.clip(cos, -1, 1))
    np.testing.assert_allclose(np.diff(angles), angles[-1] / 10, rtol=1e-4)


def test_slerp_falls_back_to_lerp_for_zero_or_parallel_vectors(rng):
    a = rng.standard_normal(8)
    t = np.linspace(0, 1, 5)
    np.testing.assert_allclose(ops.slerp(np.zeros(8), a, t), ops.lerp(np.zeros(8), a, t))
    np.testing.assert_allclose(ops.slerp(a, 2 * a, t), ops.lerp(a, 2 * a, t))
    assert np.isfinite(ops.slerp(a, -a, t)).all()


def test_lerp_midpoint_is_the_average(rng):
    a, b = rng.standard_normal((2, 8)).astype(np.float32)
    path = ops.interpolate(a, b, 3, "lerp")
    np.testing.assert_allclose(path[1], (a + b) / 2, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("steps", [0, 1, 257, 2.5, True])
def test_bad_steps_are_refused(steps):
    with pytest.raises(ExplorerError, match="steps"):
        ops.interpolate(np.zeros(4), np.ones(4), steps)


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(ExplorerError, match="lerp, slerp"):
        ops.interpolate(np.zeros(4), np.ones(4), 5, "cubic")
    with pytest.raises(ExplorerError):
        ops.interpolate(np.zeros(4), np.ones(5), 5)


# ----------------------------------------------------------------------------------- decode and reconstruct


@pytest.mark.parametrize(("shape", "image_shape"), [((1, 28, 28), (28, 28)), ((3, 16, 16), (16, 16, 3))])
def test_decode_returns_uint8_images(shape, image_shape, rng):
    model = make_model("ae", shape)
    z = rng.standard_normal((5, 8)).astype(np.float32)
    images = ops.decode(model, z, batch_size=2)  # several batches
    assert images.dtype == np.uint8 and images.shape == (5, *image_shape)
    with torch.no_grad():
        expected = (model.decode(torch.from_numpy(z)) * 255).round()
    if shape[0] == 3:
        expected = expected.permute(0, 2, 3, 1)
    assert np.array_equal(images, expected.reshape(images.shape).numpy().astype(np.uint8))
    with pytest.raises(ExplorerError, match="latents"):
        ops.decode(model, np.zeros((2, 7), np.float32))
    with pytest.raises(ExplorerError, match="finite"):
        ops.decode(model, np.full((1, 8), np.nan, np.float32))


def test_reconstruct_gives_images_and_per_image_mse(models, rng):
    model = models["vae"]
    images = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    recon, mse = ops.reconstruct(model, images, batch_size=4)
    assert recon.shape == images.shape and recon.dtype == np.uint8
    assert mse.shape == (6,) and mse.dtype == np.float32 and (mse >= 0).all() and (mse <= 1).all()
    x = torch.from_numpy(images).float()[:, None] / 255
    with torch.no_grad():
        expected = (model.reconstruct(x) - x).pow(2).mean(dim=(1, 2, 3)).numpy()
    np.testing.assert_allclose(mse, expected, rtol=1e-5)
    with pytest.raises(ExplorerError):
        ops.reconstruct(model, np.zeros((2, 16, 16), np.uint8))


# ----------------------------------------------------------------------------------- sampling


def test_prior_samples_are_seeded(models):
    vae = models["vae"]
    a = ops.sample(vae, 5, seed=3)
    assert a.shape == (5, 8) and a.dtype == np.float32
    assert np.array_equal(a, ops.sample(vae, 5, seed=3))
    assert not np.array_equal(a, ops.sample(vae, 5, seed=4))
    assert not np.any(ops.sample_prior(vae, 5, temperature=0.0, seed=3))
    np.testing.assert_allclose(ops.sample_prior(vae, 5, temperature=0.5, seed=3), a / 2, rtol=1e-6)


def test_aggregate_posterior_samples_are_seeded_and_follow_the_data(models):
    ae = models["ae"]
    z = encoded(ae, 400)
    post = ops.AggregatePosterior.fit(z, n_components=10)
    assert post.n_components == 10 and post.latent_dim == 8
    a = ops.sample(ae, 300, seed=1, posterior=post)
    assert a.shape == (300, 8) and a.dtype == np.float32
    assert np.array_equal(a, ops.sample(ae, 300, seed=1, posterior=post))
    assert not np.array_equal(a, ops.sample(ae, 300, seed=2, posterior=post))
    np.testing.assert_allclose(a.mean(0), z.mean(0), atol=0.5 * z.std(0).max())
    # temperature 0 gives the component means; refitting with the same seed gives the same mixture
    cold = post.sample(50, temperature=0.0, seed=1)
    assert len(np.unique(cold, axis=0)) <= post.n_components
    again = ops.AggregatePosterior.fit(z, n_components=10)
    assert np.array_equal(again.sample(20, seed=5), post.sample(20, seed=5))


def test_aggregate_posterior_caps_components_and_subsamples():
    z = np.random.default_rng(0).standard_normal((100, 4))
    assert ops.AggregatePosterior.fit(z, n_components=10).n_components == 5  # 100 rows / 20 per component
    big = np.random.default_rng(1).standard_normal((6000, 80))  # > 64 dims: diagonal covariances
    post = ops.AggregatePosterior.fit(big, max_rows=1000)
    assert post.chols.shape == (10, 80)
    with pytest.raises(ExplorerError):
        ops.AggregatePosterior.fit(z[:1])


def test_sae_samples_are_valid_codes(models):
    sae = models["sae"]
    z = encoded(sae, 300)
    assert ((z > 0).sum(1) <= 4).all()
    post = ops.AggregatePosterior.for_model(sae, z)
    s = ops.sample(sae, 200, seed=0, posterior=post)
    assert s.shape == (200, 64)
    assert (s >= 0).all() and ((s != 0).sum(1) <= 4).all()
    assert (s != 0).any()
    # the projection is the caller's choice: without it the samples are dense
    dense = ops.AggregatePosterior.fit(z).sample(200, seed=0)
    assert (dense < 0).any()
    custom = ops.AggregatePosterior.fit(z, post=lambda v: np.maximum(v, 0)).sample(10, seed=0)
    assert (custom >= 0).all()


def test_project_sparse_keeps_the_k_largest():
    z = np.array([[0.5, -2.0, 3.0, 1.0], [-1.0, -2.0, -3.0, 0.1]], np.float32)
    out = ops.project_sparse(z, 2)
    assert np.array_equal(out, np.array([[0.0, 0.0, 3.0, 1.0], [0.0, 0.0, 0.0, 0.1]], np.float32))


def test_sampling_without_a_posterior_is_a_clear_error(models):
    with pytest.raises(ExplorerError, match="AggregatePosterior"):
        ops.sample(models["ae"], 4)
    with pytest.raises(ExplorerError, match="prior"):
        ops.sample_prior(models["ae"], 4)
    with pytest.raises(ExplorerError):
        ops.sample(models["vae"], 0)


# ----------------------------------------------------------------------------------- traversal


def test_traverse_changes_only_the_chosen_dim(rng):
    z = rng.standard_normal(8).astype(np.float32)
    values = np.linspace(-2, 2, 5)
    out = ops.traverse(z, 3, values)
    assert out.shape == (5, 8)
    np.testing.assert_allclose(out[:, 3], values)
    others = np.delete(out, 3, axis=1)
    assert np.array_equal(others, np.tile(np.delete(z, 3), (5, 1)))
    assert z[3] not in values  # the input is not modified
    for dim in (8, -1, 1.5):
        with pytest.raises(ExplorerError, match="dimension"):
            ops.traverse(z, dim, values)


def test_traverse_range_dense_and_sparse(rng):
    dense = rng.normal(2.0, 0.5, (1000, 3))
    values = ops.traverse_range(dense, 1, n=7, spread=3.0)
    assert values.shape == (7,)
    np.testing.assert_allclose(values[[0, -1]], [2.0 - 1.5, 2.0 + 1.5], atol=0.15)
    np.testing.assert_allclose(values[3], dense[:, 1].mean(), rtol=1e-5)

    sparse = np.zeros((1000, 3))
    sparse[:100, 0] = np.linspace(0.01, 2.0, 100)  # fires on 10% of inputs
    values = ops.traverse_range(sparse, 0, n=5)
    assert values[0] == 0.0
    np.testing.assert_allclose(values[-1], 1.5 * np.percentile(sparse[:100, 0], 99), rtol=1e-5)
    np.testing.assert_allclose(ops.traverse_range(sparse, 2, n=3), [0.0, 0.5, 1.0])  # never fires
    with pytest.raises(ExplorerError):
        ops.traverse_range(sparse, 3)


# ----------------------------------------------------------------------------------- nearest


def test_nearest_matches_brute_force(rng):
    data = rng.standard_normal((500, 6)).astype(np.float32)
    queries = rng.standard_normal((37, 6)).astype(np.float32)
    idx, dist = ops.nearest(data, queries, 4)
    full = np.sqrt(((queries[:, None].astype(np.float64) - data[None]) ** 2).sum(-1))  # (M, N)
    ref = np.argsort(full, axis=1)[:, :4]
    assert idx.shape == dist.shape == (37, 4)
    assert np.array_equal(idx, ref)
    np.testing.assert_allclose(dist, np.take_along_axis(full, ref, axis=1), rtol=1e-6)
    # a data point is its own nearest neighbour, at distance 0
    idx, dist = ops.nearest(data, data[[7]], 1)
    assert idx[0, 0] == 7 and dist[0, 0] == 0.0
    assert ops.nearest(data[:3], queries, 3)[0].shape == (37, 3)
    with pytest.raises(ExplorerError):
        ops.nearest(data, queries, 501)
