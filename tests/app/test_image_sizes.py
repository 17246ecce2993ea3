"""A model whose input is neither 28x28 nor 32x32 (64x64 colour) works in every view: the dataset is resized
and coloured to fit it, and thumbnails, strips and downloads come out at a sensible size."""

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from explorer import models
from explorer.checkpoint import checkpoint_bytes
from explorer.figures.images import scale_for
from explorer.maps.selection import Picked

VIEWS = ["decode_view", "interpolate_view", "sample_view", "traverse_view"]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def colour_64(tmp_path_factory):
    cfg = models.config_class("vae")(input_shape=(3, 64, 64), backbone="conv", hidden=(8, 16), dense=32, latent_dim=6)
    path = tmp_path_factory.mktemp("ckpt") / "rgb64.safetensors"
    path.write_bytes(checkpoint_bytes(models.build(cfg), dataset={"name": "fashion-mnist"}))
    return path


def page(path, view: str) -> AppTest:
    script = f"""
from pathlib import Path
import streamlit as st
from explorer.ui import state, views
if "uploaded" not in st.session_state:
    st.session_state["uploaded"] = True
    ref = state.add_upload([("rgb64.safetensors", Path({str(path)!r}).read_bytes())], {{}})
    st.session_state["ckpt"] = ref.name
    st.session_state["n"] = 1000
views.{view}()
"""
    return AppTest.from_string(script, default_timeout=240)


@pytest.mark.parametrize("view", VIEWS)
def test_every_view_with_a_64x64_colour_model(colour_64, view):
    at = page(colour_64, view).run()
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
