"""explorer.quality.features: per-feature statistics, example images, decoder directions, steering and the feature map,
on hand-made codes and on a tiny SAE built through the registry."""

import numpy as np
import pytest
import torch

from explorer import models
from explorer.maps import ops
from explorer.quality import features as feat

SPARSE_KINDS = [k for k in models.trainable_kinds() if models.model_class(k).sparse_codes]
DENSE_KINDS = [k for k in models.trainable_kinds() if not models.model_class(k).sparse_codes]


def tiny_sae(features: int = 16, k: int = 4):
    """A one-layer SAE on 8x8 images, built from the registry's sparse kind (not by name)."""
    (kind,) = SPARSE_KINDS
    config = models.config_class(kind)(input_shape=(1, 8, 8), latent_dim=features, k=k, hidden=())
    return models.build(config).eval()


def images(n: int = 200, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 8, 8), dtype=np.uint8)


def encode(model, imgs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.encode(torch.from_numpy(imgs[:, None].astype(np.float32) / 255)).numpy()  # (N, F)


# ----------------------------------------------------------------------------------- statistics


def test_frequencies_means_and_strongest_on_known_codes():
    codes = np.array(
        [
            [0.0, 2.0, 0.0, 1.0],
            [0.0, 4.0, 3.0, 0.0],
            [0.0, 0.0, 5.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
        ],
        np.float32,
    )
    s = feat.feature_stats(codes, dense_share=0.4)
    assert s.count.tolist() == [0, 2, 2, 1]
    assert s.frequency.tolist() == [0.0, 0.5, 0.5, 0.25]
    assert s.mean_active.tolist() == [0.0, 3.0, 4.0, 1.0]
    assert s.mean_all.tolist() == [0.0, 1.5, 2.0, 0.25]
    assert s.max_activation.tolist() == [0.0, 4.0, 5.0, 1.0]
    assert s.strongest.tolist() == [1, 1, 2, -1]  # the all-zero code has none
    assert s.dead.tolist() == [True, False, False, False]
    assert s.dense.tolist() == [False, True, True, False]  # more than 40% of images
    assert s.mean_l0() == 5 / 4
    assert s.order("frequency").tolist() == [1, 2, 3, 0]  # ties keep index order
    assert s.order("mean activation when active").tolist() == [2, 1, 3, 0]
    assert s.order("frequency", descending=False).tolist() == [0, 3, 1, 2]
    assert s.order("index").tolist() == [3, 2, 1, 0]
    with pytest.raises(feat.FeatureError, match="unknown sort"):
        s.order("colour")


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1])
def test_dense_threshold_must_be_a_share(bad):
    with pytest.raises(feat.FeatureError, match="dense threshold"):
        feat.feature_stats(np.ones((3, 2), np.float32), dense_share=bad)


def test_a_feature_forced_off_is_dead_and_one_forced_on_is_dense():
    model = tiny_sae()
    with torch.no_grad():
        last = model.encoder[-1]  # the dictionary's encoder row per feature: (F, D) weight, (F,) bias
        last.bias[3] = -1e4  # never among the active ones
        last.bias[5] = 1e4  # always in the top k, always positive
    codes = encode(model, images())
    s = feat.feature_stats(codes)
    assert s.dead[3] and s.count[3] == 0
    assert s.dense[5] and s.frequency[5] == 1.0
    assert s.order("frequency")[0] == 5
    assert 1.0 <= s.mean_l0() <= 4.0  # TopK keeps at most k = 4, and feature 5 always
    assert not feat.top_activating(codes, 3)[0].size


# ----------------------------------------------------------------------------------- example images


def _ramp(n_active: int = 100, n_zero: int = 50) -> np.ndarray:
    """Codes (N, 2): feature 0 takes the values 1..n_active on the first rows, then zeros; feature 1 is 1 everywhere."""
    col = np.concatenate([np.arange(1, n_active + 1), np.zeros(n_zero)]).astype(np.float32)
    return np.stack([col, np.ones_like(col)], 1)


def test_top_activating_is_sorted_and_leaves_inactive_images_out():
    codes = _ramp(10, 5)
    ids, values = feat.top_activating(codes, 0, k=4)
    assert ids.tolist() == [9, 8, 7, 6] and values.tolist() == [10, 9, 8, 7]
    ids, _ = feat.top_activating(codes, 0, k=100)
    assert sorted(ids.tolist()) == list(range(10))  # only the active ones, however many were asked for
    ids, _ = feat.top_activating(codes, 1, k=3)
    assert ids.tolist() == [0, 1, 2]  # ties: lowest index first, the same on every run


def test_quantile_bands_cover_the_non_zero_activations_strongest_first():
    bands = feat.quantile_bands(_ramp(100), 0, n_bands=5, per_band=4)
    assert len(bands) == 5
    assert [(b.q_lo, b.q_hi) for b in bands] == [(0.8, 1.0), (0.6, 0.8), (0.4, 0.6), (0.2, 0.4), (0.0, 0.2)]
    assert [(b.lo, b.hi) for b in bands] == [(81, 100), (61, 80), (41, 60), (21, 40), (1, 20)]
    assert all(b.size == 20 and len(b.ids) == 4 for b in bands)
    for b in bands:
        assert np.all(np.diff(b.values) < 0)  # strongest first within a band
        assert b.values.max() == b.hi and b.values.min() == b.lo  # spread across the whole band
    assert not any(0 in b.values for b in bands)  # zeros are never in a band
    few = feat.quantile_bands(_ramp(3), 0, n_bands=5, per_band=4)
    assert [b.size for b in few] == [1, 1, 1]
    assert feat.quantile_bands(np.zeros((5, 2), np.float32), 0) == []


def test_strongest_for_and_histogram():
    codes = np.array([[3, 1], [0, 2], [5, 4], [1, 0]], np.float32)
    stats = feat.feature_stats(codes)
    ids, values, total = feat.strongest_for(stats, codes, 0)
    assert ids.tolist() == [2, 0, 3] and values.tolist() == [5, 3, 1] and total == 3
    ids, _, total = feat.strongest_for(stats, codes, 1, k=5)
    assert ids.tolist() == [1] and total == 1
    counts, edges = feat.activation_histogram(codes, 1, bins=4)
    assert counts.sum() == 3 and len(edges) == 5 and edges[0] == 0.0 and edges[-1] == 4.0
    counts, edges = feat.activation_histogram(np.zeros((4, 2), np.float32), 0)
    assert counts.size == 0 and edges.size == 0


@pytest.mark.parametrize(
    ("text", "expected"), [("0", 0), ("15", 15), (" #7 ", 7), ("16", None), ("-1", None), ("abc", None),
                           ("1.5", None), ("", None), ("٣", None), ("9" * 40, None)],
)  # fmt: skip
def test_parse_feature_accepts_indices_only(text, expected):
    if expected is None:
        with pytest.raises(feat.FeatureError):
            feat.parse_feature(text, 16)
    else:
        assert feat.parse_feature(text, 16) == expected


# ----------------------------------------------------------------------------------- decoder directions


def test_directions_are_the_dictionary_atoms_and_only_sparse_models_have_them():
    model = tiny_sae()
    directions = feat.decoder_directions(model)
    assert directions.shape == (16, 64)
    # for the SAE's linear dictionary the decoder's response to a unit code is its atom row exactly
    np.testing.assert_allclose(directions, model.atoms.detach().numpy(), atol=1e-6)
    for kind in DENSE_KINDS:
        dense = models.build(models.config_class(kind)(input_shape=(1, 8, 8), latent_dim=4, hidden=(8,)))
        with pytest.raises(feat.FeatureError, match="not sparse features"):
            feat.decoder_directions(dense)


def test_cosine_similarity_finds_the_closest_directions():
    d = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [-1, 0, 0], [0, 0, 0]], np.float32)
    unit = feat.unit_rows(d)
    assert np.allclose(np.linalg.norm(unit[:4], axis=1), 1) and not unit[4].any()  # a zero row stays zero
    ids, cos = feat.most_similar(unit, 0, k=3)
    assert ids[0] == 1 and cos[0] == pytest.approx(0.9 / np.hypot(0.9, 0.1))
    assert 0 not in ids  # never itself
    assert ids[-1] in (2, 4) and cos[-1] == pytest.approx(0.0)
    ids, _ = feat.most_similar(unit, 0, k=10)
    assert len(ids) == 4


def test_atom_pictures_are_red_where_a_feature_adds_and_blue_where_it_removes():
    d = np.zeros((2, 16), np.float32)
    d[0, :8], d[0, 8:] = 1.0, -1.0
    pics = feat.atom_images(d, (1, 4, 4))
    assert pics.shape == (2, 4, 4, 3) and pics.dtype == np.uint8
    r, g, b = pics[0, 0, 0].astype(int)
    assert r > 200 and b < 80  # adds: red
    r, g, b = pics[0, 3, 3].astype(int)
    assert b > 200 and r < 80  # removes: blue
    assert (pics[1] == 255).all()  # nothing: white
    assert feat.atom_images(np.zeros((1, 48), np.float32), (3, 4, 4)).shape == (1, 4, 4, 3)
    framed = feat.framed(pics[0], (1, 2, 3), width=1)
    assert (framed[0, :] == (1, 2, 3)).all() and (framed[1:-1, 1:-1] == pics[0, 1:-1, 1:-1]).all()


# ----------------------------------------------------------------------------------- steering


def test_steering_adds_to_one_feature_and_alpha_zero_is_the_reconstruction():
    model = tiny_sae()
    imgs = images(4)
    codes = encode(model, imgs)
    z = codes[0]
    f = int(np.argmax(z))
    alphas = np.array([-1e3, -0.5, 0.0, 0.5, 2.0], np.float32)
    steered = feat.steer(z, f, alphas)
    assert steered.shape == (5, 16) and steered.dtype == np.float32
    assert np.array_equal(steered[2], z)  # alpha 0: the code itself
    assert steered[0, f] == 0.0  # taken away, never below zero
    assert steered[3, f] == pytest.approx(z[f] + 0.5)
    others = np.delete(np.arange(16), f)
    assert (steered[:, others] == z[others]).all()
    frames = feat.steered_images(model, z, f, alphas)
    assert frames.shape == (5, 8, 8) and frames.dtype == np.uint8
    assert np.array_equal(frames[2], ops.decode(model, z[None])[0])
    recon, _ = ops.reconstruct(model, imgs[:1])
    assert np.abs(frames[2].astype(int) - recon[0].astype(int)).max() <= 1  # the image's reconstruction
    assert not np.array_equal(frames[0], frames[4])  # the strip changes along alpha
    with pytest.raises(feat.FeatureError):
        feat.steer(z, 16, alphas)
    with pytest.raises(feat.FeatureError, match="finite"):
        feat.steer(z, f, np.array([np.nan]))


def test_steering_range_follows_the_largest_activation():
    stats = feat.feature_stats(np.array([[0, 2.0], [0, 4.0]], np.float32))
    assert feat.steering_range(stats, 1) == 6.0
    assert feat.steering_range(stats, 0) == 1.0  # dead: a unit sweep


# ----------------------------------------------------------------------------------- the map of features


def test_feature_map_places_included_features_and_keeps_copies_together():
    rng = np.random.default_rng(0)
    d = rng.normal(size=(40, 20)).astype(np.float32)
    d[7] = 3 * d[6]  # an exact copy of feature 6's direction, at another scale
    include = np.ones(40, bool)
    include[[0, 1]] = False
    emb = feat.feature_map(d, include)
    assert emb.shape == (40, 2) and emb.dtype == np.float32
    assert np.isnan(emb[[0, 1]]).all() and np.isfinite(emb[2:]).all()
    spread = np.ptp(emb[2:], axis=0).max()
    assert 0 < np.linalg.norm(emb[7] - emb[6]) < 0.05 * spread  # drawn next to its original, not on top
    assert feat.near_copies(feat.unit_rows(d)).tolist() == [*range(7), 6, *range(8, 40)]
    few = feat.feature_map(d[:3])
    assert np.isfinite(few).all() and few.shape == (3, 2)


def test_feature_map_bytes_round_trip_and_refuse_other_shapes():
    emb = np.arange(8, dtype=np.float32).reshape(4, 2)
    emb[1] = np.nan
    back = feat.map_from_bytes(feat.map_to_bytes(emb), 4)
    assert back is not None and np.array_equal(np.isnan(back), np.isnan(emb))
    assert feat.map_from_bytes(feat.map_to_bytes(emb), 5) is None
    assert feat.map_from_bytes(b"not an npz", 4) is None
    assert feat.feature_map_key("a" * 64, "b" * 64) != feat.feature_map_key("a" * 64, "c" * 64)
