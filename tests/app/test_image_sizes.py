"""A model whose input is neither 28x28 nor 32x32 (64x64 colour) works in every view: the dataset is resized
and coloured to fit it, and thumbnails, strips and downloads come out at a sensible size."""

import numpy as np
import pytest
from apptests import upload_app

from explorer.figures.images import scale_for
from explorer.maps.selection import Picked

VIEWS = ["decode_view", "interpolate_view", "sample_view", "traverse_view"]


@pytest.fixture(scope="module")
def colour_64(checkpoint_file):
    return checkpoint_file(
        "rgb64", "vae", input_shape=(3, 64, 64), backbone="conv", hidden=(8, 16), dense=32, latent_dim=6
    )


@pytest.mark.parametrize("view", VIEWS)
def test_every_view_with_a_64x64_colour_model(colour_64, view):
    at = upload_app(colour_64, view).run()
    if view == "decode_view":  # its panel waits for a pick on the map: three images and a spot
        at.session_state["pick"] = Picked((1, 2, 3), (0.0, 0.0))
        at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any("latent 6" in c.value for c in at.sidebar.caption)
    assert len(at.get("plotly_chart")) == 1
    images = at.get("image")
    assert images, "the panel shows images"


def test_thumbnails_are_about_the_same_size_for_small_and_large_inputs():
    assert scale_for(28, 56) == 2 and scale_for(64, 56) == 1 and scale_for(8, 56) == 7
    assert scale_for(256, 56) == 1 and scale_for(1, 56) == 32  # never below 1, never above the cap


def test_a_colour_dataset_is_fitted_to_the_model():
    from explorer.data import fit_to_shape, load_dataset

    ds = fit_to_shape(load_dataset("fashion-mnist", "test").subset(10, seed=0), (3, 64, 64))
    assert ds.images.shape == (10, 64, 64, 3) and ds.images.dtype == np.uint8
