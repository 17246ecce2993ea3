"""Every view on the shipped checkpoints through the real page script (Streamlit AppTest, real models).

Views turn errors into st.error and the sidebar draws no map when mapping fails, so "no
exception" proves little: each page must show no error, draw every mapped image on the map
exactly once, and show its panel's images.
"""

import json

import numpy as np
import pytest
from apptests import page_app, plotly_array
from streamlit.testing.v1 import AppTest

from explorer.maps.pipeline import REPO as ROOT
from explorer.maps.selection import Picked
from explorer.ui import state

VIEWS = ["decode_view", "interpolate_view", "sample_view", "traverse_view"]
CHECKPOINTS = [p.stem for p in state.shipped_checkpoints()]
DEFAULT_MAPPED = 10000


def view_app(view: str) -> AppTest:
    return page_app("views", view)


def mapped_ids(at: AppTest) -> np.ndarray:
    """Sorted row ids of the points on the page's one map (overlays carry no ids)."""
    (chart,) = at.get("plotly_chart")
    traces = json.loads(chart.proto.spec)["data"]
    ids = [plotly_array(t["customdata"]).ravel() for t in traces if "customdata" in t]
    return np.sort(np.concatenate(ids)) if ids else np.array([], dtype=np.int64)


def thumbnail_grids(at: AppTest) -> list[list[dict]]:
    """The clickable thumbnail grids of the page (explorer.ui.bridge): each a list of cells {id, src, caption}."""
    grids = [e for e in at.get("bidi_component") if e.proto.component_name == "explorer.thumbnails"]
    return [json.loads(e.proto.json)["cells"] for e in grids]


def assert_page_shown(at: AppTest, mapped: int, images: int = 1) -> None:
    """No exception or error message, every mapped image on the map once, and the panel's images
    (pictures, or grids of thumbnails, each of which must hold PNG images)."""
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    ids = mapped_ids(at)
    assert np.array_equal(ids, np.arange(mapped)), f"{len(ids)} points drawn, expected ids 0..{mapped - 1} once each"
    grids = thumbnail_grids(at)
    assert all(cells and all(c["src"].startswith("data:image/png;base64,") for c in cells) for cells in grids)
    assert len(at.get("image")) + len(grids) >= images


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
        at.session_state["pick"] = Picked((3, 10, 42), (0.0, 0.0))
        at.run()
        assert_page_shown(at, 1000, images=2)  # the spot with its neighbours, the reconstructions
    else:
        assert_page_shown(at, 1000)


def test_selection_shows_reconstructions_and_spot_decodes():
    at = view_app("decode_view").run()
    key = at.session_state["pick:map"]
    assert key
    at.session_state["pick"] = Picked((3, 10, 42), (0.0, 0.0))
    at.run()
    assert_page_shown(at, DEFAULT_MAPPED, images=2)
    text = " ".join(m.value for m in at.markdown)
    assert "3 selected" in text and "Decoded at (0.00, 0.00)" in text


def test_typed_coordinate_errors_are_explained():
    at = view_app("decode_view").run()
    at.text_input(key="typed_xy").input("one, two").run()
    assert not at.exception
    assert any("Coordinate not used" in e.value for e in at.error)


def test_interpolate_between_selected_points():
    at = view_app("interpolate_view").run()
    at.session_state["pick"] = Picked((5, 99), None)
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


def test_go_to_an_index_or_a_class_selects_it_and_bad_queries_are_explained():
    at = view_app("decode_view").run()
    at.text_input(key="goto").input("#42").run()
    assert at.session_state["pick"].ids == (42,)
    assert_page_shown(at, DEFAULT_MAPPED, images=2)  # the image with its reconstruction, and its neighbours
    assert any("#42" in m.value for m in at.markdown)
    at.text_input(key="goto").input("sandal").run()
    ids = at.session_state["pick"].ids
    assert len(ids) > 500 and all(at.session_state["pick"].ids)
    assert any(f"{len(ids):,} selected" in m.value for m in at.markdown)
    for bad, says in (("#10000", "indices run from 0 to 9999"), ("unicorn", "Ankle boot")):
        at.text_input(key="goto").input(bad).run()
        assert any(says in e.value for e in at.error), [e.value for e in at.error]


def test_selection_is_paged_sorted_and_cleared():
    at = view_app("decode_view").run()
    at.session_state["pick"] = Picked(tuple(range(100)), None)
    at.run()
    assert any("100 selected" in m.value and "images 1–32" in m.value for m in at.markdown)
    at.number_input(key="sel_page").set_value(4).run()
    assert any("images 97–100" in m.value for m in at.markdown)
    at.selectbox(key="sel_sort").select("reconstruction error, worst first").run()
    assert_page_shown(at, DEFAULT_MAPPED, images=1)
    at.button(key="sel_clear").click().run()
    assert not at.session_state["pick"]
    assert not any("selected" in m.value for m in at.markdown)


def test_selection_carries_to_interpolate_and_traverse():
    at = view_app("decode_view").run()
    at.session_state["pick"] = Picked((7, 8, 9), None)
    at.run()
    interp = view_app("interpolate_view")
    interp.session_state["pick"] = at.session_state["pick"]
    interp.session_state["pick:map"] = at.session_state["pick:map"]
    interp.session_state["pick:images"] = at.session_state["pick:images"]
    interp.run()
    assert any("#7" in m.value and "#8" in m.value for m in interp.markdown)
    interp.selectbox(key="interp_b:8").select(9).run()
    assert any("#7" in m.value and "#9" in m.value for m in interp.markdown)
    trav = view_app("traverse_view")
    trav.session_state["pick"] = at.session_state["pick"]
    trav.session_state["pick:map"] = at.session_state["pick:map"]
    trav.session_state["pick:images"] = at.session_state["pick:images"]
    trav.run()
    assert any(m.value.startswith("**#7 ") for m in trav.markdown)


def test_the_dataset_follows_the_checkpoint():
    at = view_app("decode_view").run()
    assert at.sidebar.selectbox(key="ds").value == "fashion-mnist"
    at.sidebar.selectbox(key="ckpt").select("mnist-ae-mlp32").run()
    assert at.sidebar.selectbox(key="ds").value == "mnist"


def test_typed_coordinate_outside_the_map_is_refused():
    at = view_app("decode_view").run()
    at.text_input(key="typed_xy").input("900, 900").run()
    assert any("outside this map" in e.value for e in at.error)
    at.text_input(key="typed_xy").input("0, 0").run()
    assert at.session_state["pick"].spot == (0.0, 0.0)


def test_decoded_mosaic_lies_under_the_map():
    at = view_app("decode_view").run()
    at.toggle(key="mosaic").set_value(True).run()
    assert_page_shown(at, DEFAULT_MAPPED, images=0)
    (chart,) = at.get("plotly_chart")
    (picture,) = json.loads(chart.proto.spec)["layout"]["images"]
    assert picture["source"].startswith("data:image/png;base64,") and picture["layer"] == "below"
    at.select_slider(key="mosaic_cells").set_value(12).run()
    assert_page_shown(at, DEFAULT_MAPPED, images=0)


def test_a_clicked_thumbnail_opens_that_image_with_clickable_neighbours():
    at = view_app("decode_view").run()
    at.session_state["pick"] = Picked(tuple(range(40)), None)
    at.session_state["sel_focus"] = 7  # what a click on thumbnail #7 sets (explorer.ui.bridge.thumbnails)
    at.run()
    assert_page_shown(at, DEFAULT_MAPPED, images=2)
    near, grid = thumbnail_grids(at)  # the close-up first, where the eye is; the grid below it
    assert [c["id"] for c in grid] == list(range(32))  # page 1 of 2, by index
    assert len(near) == 8 and 7 not in [c["id"] for c in near]
    assert any(m.value.startswith("**#7 (") for m in at.markdown)


@pytest.mark.slow
def test_the_reference_umap_engine_and_the_all_split_are_offered():
    at = view_app("decode_view").run()
    assert at.sidebar.radio(key="split").options == ["test", "train", "all"]
    at.session_state["n"] = 1000
    at.sidebar.radio(key="engine").set_value("reference UMAP (umap-learn)").run()
    assert_page_shown(at, 1000, images=0)
    assert any("1,000 images" in c.value and "euclidean, umap-learn)" in c.value for c in at.sidebar.caption)


@pytest.mark.perf  # a lower bound on elapsed time, kept by a busy thread on a shared core
def test_the_warm_up_waits_for_a_quiet_server():
    import threading
    import time

    from explorer.ui.warmup import wait_until_quiet

    stop = time.monotonic() + 1.5

    def spin() -> None:  # this process busy on one core for 1.5 s
        while time.monotonic() < stop:
            sum(range(1000))

    busy = threading.Thread(target=spin)
    t0 = time.monotonic()
    busy.start()
    wait_until_quiet(window_s=1.0, share=0.3, poll_s=0.1)
    busy.join()
    assert time.monotonic() - t0 >= 1.5  # not before the work ended and a quiet second followed
