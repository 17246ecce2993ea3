"""The decoded mosaic: a grid over a 2-D map decoded through the inverse mapping, laid out like the map."""

import base64
import dataclasses
import io

import numpy as np
import pytest
import torch
from PIL import Image

from explorer import models as zoo
from explorer.maps import mosaic, ops
from explorer.maps.projection import Projection, ProjectionParams


def make_model(shape=(1, 28, 28)):
    return zoo.build(zoo.config_class("ae")(input_shape=shape, backbone="mlp", latent_dim=8, hidden=(32,))).eval()


def plane_map(dims=2, side=50) -> Projection:
    """A PCA map with an exact inverse: a dense side x side grid over [-1, 1]^2 on a plane in 8-D latent space."""
    rng = np.random.default_rng(0)
    u = np.linspace(-1.0, 1.0, side)
    emb = np.stack(np.meshgrid(*[u] * dims), axis=-1).reshape(-1, dims).astype(np.float32)  # (side^dims, dims)
    comps = np.linalg.qr(rng.standard_normal((8, dims)))[0].T.astype(np.float32)  # (dims, 8) orthonormal rows
    mean = rng.standard_normal(8).astype(np.float32)
    return Projection(ProjectionParams(method="pca", n_components=dims), emb, emb @ comps + mean, mean, comps)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return make_model()


@pytest.fixture(scope="module")
def plane():
    return plane_map()


def test_cells_decode_what_the_inverse_of_their_centres_decodes_to(model, plane):
    m = mosaic.decoded_grid(model, plane, cells=12)
    assert m.images.shape == (12, 12, 28, 28) and m.centres.shape == (12, 12, 2) and m.far.shape == (12, 12)
    z, far = plane.inverse(m.centres.reshape(-1, 2))
    assert np.array_equal(m.images.reshape(144, 28, 28), ops.decode(model, z))
    np.testing.assert_array_equal(m.far.ravel(), far)
    # the default extent: the embedding's bounds ([-1, 1] on both axes) and a margin of MARGIN * span each side
    edge = 1.0 + 2.0 * mosaic.MARGIN
    np.testing.assert_allclose(m.extent, (-edge, edge, -edge, edge), rtol=1e-6)


def test_row_0_is_the_top_of_the_map_and_col_0_its_left(model, plane):
    extent = (-1.0, 1.0, -0.5, 0.5)
    m = mosaic.decoded_grid(model, plane, extent=extent, cells=20)
    dx, dy = 2.0 / 20, 1.0 / 20
    np.testing.assert_allclose(m.centres[0, 0], (-1.0 + dx / 2, 0.5 - dy / 2), atol=1e-6)
    np.testing.assert_allclose(m.centres[-1, -1], (1.0 - dx / 2, -0.5 + dy / 2), atol=1e-6)
    assert not m.far_from_data.any()
    corner = ops.decode(model, plane.inverse(np.array([[-1.0 + dx / 2, 0.5 - dy / 2]]))[0])[0]  # (28, 28)
    picture = m.image(gap=2)
    assert picture.shape == (20 * 30, 20 * 30, 3) and picture.dtype == np.uint8
    top_left = picture[1:29, 1:29]  # each cell is 30 px with its 28 px tile centred in it
    assert np.array_equal(top_left, np.repeat(corner[..., None], 3, axis=2))
    assert (picture[0] == 255).all() and (picture[:, 29:31] == 255).all()  # white gaps around the tiles
    assert np.array_equal(m.image(gap=0)[:28, :28, 0], corner)


def test_cells_far_from_the_data_are_marked(model, plane):
    m = mosaic.decoded_grid(model, plane, extent=(-10.0, 10.0, -10.0, 10.0), cells=12)
    far = m.far_from_data
    assert far.any() and not far.all()  # the map's 2 x 2 square sits in the middle of a 20 x 20 extent
    assert (m.far[far] > mosaic.FAR).all()
    marked = m.image(gap=0).reshape(12, 28, 12, 28, 3).transpose(0, 2, 1, 3, 4)  # (row, col, H, W, 3)
    plain = dataclasses.replace(m, far=np.zeros_like(m.far)).image(gap=0).reshape(12, 28, 12, 28, 3)
    plain = plain.transpose(0, 2, 1, 3, 4)
    differs = (marked != plain).any(axis=(2, 3, 4))  # (12, 12)
    assert np.array_equal(differs, far)
    assert (marked[far][:, 0, -1] == mosaic.MARK).all()  # the red top-right corner


def test_colour_models_tile_in_colour(plane):
    torch.manual_seed(0)
    m = mosaic.decoded_grid(make_model((3, 16, 16)), plane, cells=12)
    assert m.images.shape == (12, 12, 16, 16, 3)
    picture = m.image(gap=2)
    assert picture.shape == (12 * 18, 12 * 18, 3)
    assert not m.far_from_data.any()  # the default extent of a dense map: every cell near data
    assert np.array_equal(picture[1:17, 1:17], m.images[0, 0])


@pytest.mark.parametrize("cells", [11, 31, 0, 20.0, True, "20"])
def test_grid_sizes_outside_12_to_30_are_refused(model, plane, cells):
    with pytest.raises(ops.LatentError, match="between 12 and 30 cells a side"):
        mosaic.decoded_grid(model, plane, cells=cells)


@pytest.mark.parametrize("extent", [(1.0, -1.0, -1.0, 1.0), (0.0, 1.0, 2.0, 2.0), (0.0, np.nan, 0.0, 1.0)])
def test_empty_or_non_finite_extents_are_refused(model, plane, extent):
    with pytest.raises(ops.LatentError, match="x0 < x1 and y0 < y1"):
        mosaic.decoded_grid(model, plane, extent=extent)


def test_a_3d_map_is_refused(model):
    with pytest.raises(ops.LatentError, match="2-D map; this map is 3-D"):
        mosaic.decoded_grid(model, plane_map(dims=3, side=12))


def test_gap_is_bounded(model, plane):
    m = mosaic.decoded_grid(model, plane, cells=12)
    for gap in (-1, 17, 1.5):
        with pytest.raises(ops.LatentError, match="gap"):
            m.image(gap=gap)


def test_layout_image_stretches_the_png_over_the_extent(model, plane):
    extent = (-1.5, 0.5, -0.25, 2.0)
    m = mosaic.decoded_grid(model, plane, extent=extent, cells=15)
    spec = m.layout_image(gap=2, opacity=0.7)
    x0, x1, y0, y1 = extent
    assert {k: spec[k] for k in ("xref", "yref", "x", "y", "xanchor", "yanchor", "sizing", "layer", "opacity")} == {
        "xref": "x", "yref": "y", "x": x0, "y": y1, "xanchor": "left", "yanchor": "top",
        "sizing": "stretch", "layer": "below", "opacity": 0.7,
    }  # fmt: skip
    assert spec["sizex"] == pytest.approx(x1 - x0) and spec["sizey"] == pytest.approx(y1 - y0)
    prefix = "data:image/png;base64,"
    assert spec["source"].startswith(prefix)
    png = base64.b64decode(spec["source"][len(prefix) :])
    assert png == m.png(gap=2)
    decoded = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert np.array_equal(decoded, m.image(gap=2))  # lossless, 15 * 30 px a side
