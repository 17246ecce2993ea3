"""Every view runs on the shipped checkpoints without an exception (Streamlit AppTest, real models)."""

import pytest
from streamlit.testing.v1 import AppTest

from explorer.selection import Picked
from explorer.ui import state
from explorer.workspace import REPO as ROOT

VIEWS = ["decode_view", "interpolate_view", "sample_view", "traverse_view"]
CHECKPOINTS = [p.stem for p in state.shipped_checkpoints()]


def view_app(view: str) -> AppTest:
    return AppTest.from_string(f"from explorer.ui import views\nviews.{view}()\n", default_timeout=180)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_CACHE_DIR", str(tmp_path / "cache"))


def test_app_entry_runs():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    assert not at.exception, at.exception
    assert at.sidebar.selectbox(key="ckpt").value == state.DEFAULT_CHECKPOINT


@pytest.mark.parametrize("view", VIEWS)
def test_view_runs_on_the_default_checkpoint(view):
    at = view_app(view).run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == 1


@pytest.mark.parametrize("ckpt", CHECKPOINTS)
@pytest.mark.parametrize("view", VIEWS)
def test_every_view_on_every_shipped_checkpoint(view, ckpt):
    at = view_app(view)
    at.session_state["ckpt"] = ckpt
    at.session_state["n"] = 1000  # a small map: checkpoints without a shipped bundle are mapped here
    at.run()
    assert not at.exception, at.exception


def test_selection_shows_reconstructions_and_spot_decodes():
    at = view_app("decode_view").run()
    key = at.session_state["map_decode:map"]
    assert key
    at.session_state["map_decode:pick"] = Picked((3, 10, 42), (0.0, 0.0))
    at.run()
    assert not at.exception, at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "3 selected" in text and "Decoded at (0.00, 0.00)" in text
    assert len(at.get("image")) >= 2


def test_typed_coordinate_errors_are_explained():
    at = view_app("decode_view").run()
    at.text_input(key="typed_xy").input("one, two").run()
    assert not at.exception
    assert any("Coordinate not understood" in e.value for e in at.error)


def test_interpolate_between_selected_points():
    at = view_app("interpolate_view").run()
    at.session_state["map_interp:pick"] = Picked((5, 99), None)
    at.run()
    assert not at.exception, at.exception
    assert any("#5" in m.value and "#99" in m.value for m in at.markdown)


def test_colour_options_and_3d_projection():
    at = view_app("decode_view").run()
    for option in at.sidebar.selectbox(key="color").options:
        at.sidebar.selectbox(key="color").select(option).run()
        assert not at.exception, (option, at.exception)
    at.sidebar.radio(key="proj").set_value("PCA 2-D").run()
    assert not at.exception
