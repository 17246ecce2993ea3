"""Every view on the shipped checkpoints through the real page script (Streamlit AppTest, real models).

Views turn errors into st.error and the sidebar draws no map when mapping fails, so "no
exception" proves little: each page must show no error, draw every mapped image on the map
exactly once, and show its panel's images.
"""

import base64
import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from explorer.selection import Picked
from explorer.ui import state
from explorer.workspace import REPO as ROOT

VIEWS = ["decode_view", "interpolate_view", "sample_view", "traverse_view"]
CHECKPOINTS = [p.stem for p in state.shipped_checkpoints()]
DEFAULT_MAPPED = 10000


def view_app(view: str) -> AppTest:
    return AppTest.from_string(f"from explorer.ui import views\nviews.{view}()\n", default_timeout=180)


def _array(value) -> np.ndarray:
    """A Plotly array from a figure's JSON: a list, or a typed array ({"dtype", "bdata"} in base64)."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return np.asarray(value)


def mapped_ids(at: AppTest) -> np.ndarray:
    """Sorted row ids of the points on the page's one map (overlays carry no ids)."""
    (chart,) = at.get("plotly_chart")
    traces = json.loads(chart.proto.spec)["data"]
    ids = [_array(t["customdata"]).ravel() for t in traces if "customdata" in t]
    return np.sort(np.concatenate(ids)) if ids else np.array([], dtype=np.int64)


def assert_page_shown(at: AppTest, mapped: int, images: int = 1) -> None:
    """No exception or error message, every mapped image on the map once, and the panel's images."""
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    ids = mapped_ids(at)
    assert np.array_equal(ids, np.arange(mapped)), f"{len(ids)} points drawn, expected ids 0..{mapped - 1} once each"
    assert len(at.get("image")) >= images


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_CACHE_DIR", str(tmp_path / "cache"))


def test_app_entry_runs():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    assert_page_shown(at, DEFAULT_MAPPED, images=0)  # the first page waits for a selection before decoding
    assert at.sidebar.selectbox(key="ckpt").value == state.DEFAULT_CHECKPOINT


@pytest.mark.parametrize("view", VIEWS)
def test_view_runs_on_the_default_checkpoint(view):
    at = view_app(view).run()
    assert_page_shown(at, DEFAULT_MAPPED, images=0 if view == "decode_view" else 1)


@pytest.mark.parametrize("ckpt", CHECKPOINTS)
@pytest.mark.parametrize("view", VIEWS)
def test_every_view_on_every_shipped_checkpoint(view, ckpt):
    at = view_app(view)
    at.session_state["ckpt"] = ckpt
    at.session_state["n"] = 1000  # a small map: checkpoints without a shipped bundle are mapped here
    at.run()
    if view == "decode_view":  # its panel decodes nothing until something is picked on the map
        assert_page_shown(at, 1000, images=0)
        at.session_state["map_decode:pick"] = Picked((3, 10, 42), (0.0, 0.0))
        at.run()
        assert_page_shown(at, 1000, images=2)  # the spot with its neighbours, the reconstructions
    else:
        assert_page_shown(at, 1000)


def test_selection_shows_reconstructions_and_spot_decodes():
    at = view_app("decode_view").run()
    key = at.session_state["map_decode:map"]
    assert key
    at.session_state["map_decode:pick"] = Picked((3, 10, 42), (0.0, 0.0))
    at.run()
    assert_page_shown(at, DEFAULT_MAPPED, images=2)
    text = " ".join(m.value for m in at.markdown)
    assert "3 selected" in text and "Decoded at (0.00, 0.00)" in text


def test_typed_coordinate_errors_are_explained():
    at = view_app("decode_view").run()
    at.text_input(key="typed_xy").input("one, two").run()
    assert not at.exception
    assert any("Coordinate not understood" in e.value for e in at.error)


def test_interpolate_between_selected_points():
    at = view_app("interpolate_view").run()
    at.session_state["map_interp:pick"] = Picked((5, 99), None)
    at.run()
    assert_page_shown(at, DEFAULT_MAPPED)
    assert any("#5" in m.value and "#99" in m.value for m in at.markdown)


def test_colour_options_and_pca_projection():
    at = view_app("decode_view").run()
    for option in at.sidebar.selectbox(key="color").options:
        at.sidebar.selectbox(key="color").select(option).run()
        assert_page_shown(at, DEFAULT_MAPPED, images=0)
    at.sidebar.radio(key="proj").set_value("PCA 2-D").run()
    assert_page_shown(at, DEFAULT_MAPPED, images=0)
