"""The Metrics and Compare pages through the real page script (AppTest, shipped checkpoints), and the
linked selection of the Compare page as pure functions on synthetic Plotly selections."""

import numpy as np
import pytest
from apptests import assert_clean, page_app, plotly_array, specs
from streamlit.testing.v1 import AppTest

from explorer.figures.map import map_figure, overlay_trace
from explorer.maps.linked import Linked, cleared, highlight, select
from explorer.ui import state

CHECKPOINTS = [p.stem for p in state.shipped_checkpoints()]


def page(name: str) -> AppTest:
    module, view = {"metrics": ("metrics_page", "metrics_view"), "compare": ("compare", "compare_view")}[name]
    return page_app(module, view, timeout=300)


def table(at: AppTest, i: int = 0) -> dict[str, list]:
    return at.dataframe[i].value.to_dict(orient="list")


# --- Metrics -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ckpt", CHECKPOINTS)
def test_metrics_page_on_every_shipped_checkpoint(ckpt):
    at = page("metrics")
    at.session_state["ckpt"] = ckpt
    # digits, resized to each model's input: 1,438 train images keep this quick (Fashion-MNIST is tested below)
    at.session_state["met_ds_for"] = ckpt
    at.session_state["met_ds"] = "digits"
    at.run()
    assert_clean(at)
    assert "359 digits test images" in at.caption[0].value
    rows = table(at)
    model = state.model(state.checkpoint_ref({p.stem: p for p in state.shipped_checkpoints()}[ckpt]))
    expected = {"reconstruction MSE (per pixel)", "5-NN accuracy", "linear probe accuracy"}
    expected |= {"active units", "KL (nats)"} if model.has_prior else set()
    expected |= {"dead features", "dense features"} if model.sparse_codes else set()
    assert expected <= set(rows["figure"])
    (pca_column,) = [c for c in rows if c.startswith("PCA (")]
    mse_row = rows["figure"].index("reconstruction MSE (per pixel)")
    assert float(rows["model"][mse_row]) > 0 and float(rows[pca_column][mse_row]) > 0
    (curve,) = specs(at)
    assert curve["layout"]["xaxis"]["type"] == "log"
    pca, star = curve["data"]
    assert (
        plotly_array(pca["x"]).tolist()[:3] == [1, 2, 4] and star["marker"]["symbol"] == "star" and star["name"] == ckpt
    )


def test_metrics_page_scores_outliers_and_explains_what_cannot_be_computed():
    at = page("metrics")
    at.session_state["met_limit"] = 1000
    at.run()
    assert at.sidebar.selectbox(key="met_ds").value == "fashion-mnist"  # the default checkpoint's data
    at.sidebar.selectbox(key="met_ood").select("mnist").run()
    assert_clean(at)
    rows = table(at)
    auroc = float(rows["model"][rows["figure"].index("outlier AUROC")])
    assert 0.5 < auroc <= 1.0, "digits reconstruct worse than clothes in a Fashion-MNIST model"
    # digits has 1,438 train images: all of them go to the kNN and probe, none is left to evaluate
    at.sidebar.selectbox(key="met_ds").select("digits").run()
    at.sidebar.radio(key="met_split").set_value("train").run()
    assert not at.exception
    assert any("leaves none to evaluate" in e.value for e in at.error), [e.value for e in at.error]


# --- Compare -------------------------------------------------------------------------------------------


def mapped(spec: dict) -> np.ndarray:
    ids = [plotly_array(t["customdata"]).ravel() for t in spec["data"] if "customdata" in t]
    return np.sort(np.concatenate(ids))


def selected(spec: dict) -> list[int]:
    """Row ids a map figure draws as selected (its traces' selectedpoints, through customdata)."""
    out = [plotly_array(t["customdata"])[t["selectedpoints"]] for t in spec["data"] if t.get("selectedpoints")]
    return sorted(np.concatenate(out).tolist()) if out else []


def test_compare_page_default_pair_from_shipped_maps():
    at = page("compare").run()
    assert_clean(at)
    left, right, curve = specs(at)
    assert np.array_equal(mapped(left), np.arange(10000)) and np.array_equal(mapped(right), np.arange(10000))
    rows = table(at)
    names = [c for c in rows if c != "figure"]
    assert len(names) == 2 and names[0].startswith(state.DEFAULT_CHECKPOINT)
    assert {"reconstruction MSE (per pixel)", "PCA: reconstruction MSE (per pixel)", "PCA components"} <= set(
        rows["figure"]
    )
    assert [t["name"] for t in curve["data"]][-2:] == [
        n.removesuffix(" (left)").removesuffix(" (right)") for n in names
    ]


def test_compare_selection_on_one_map_lights_up_the_same_images_on_both():
    at = page("compare")
    at.session_state["cmp_n"] = 1000
    at.session_state["cmp_proj"] = "PCA 2-D"
    at.session_state["cmp_b"] = "mnist-ae-mlp32"  # another input pipeline: the same images still get the same ids
    at.run()
    assert_clean(at)
    left, right, _ = specs(at)
    assert selected(left) == selected(right) == []
    assert np.array_equal(mapped(left), np.arange(1000)) and np.array_equal(mapped(right), np.arange(1000))
    link = at.session_state["cmp_link"]
    at.session_state["cmp_link"] = Linked((3, 10, 42), "a", link.generation + 1)  # what a box on the left map makes
    at.run()
    assert_clean(at)
    left, right, _ = specs(at)
    assert selected(left) == selected(right) == [3, 10, 42]
    assert any("3 selected" in m.value and "left map" in m.value for m in at.markdown)
    # the images, then each model's reconstructions of them
    assert [i.proto.imgs[0].caption for i in at.get("image")] == [
        "the selected images",
        f"left: {state.DEFAULT_CHECKPOINT}'s reconstructions and their MSE",
        "right: mnist-ae-mlp32's reconstructions and their MSE",
    ]
    at.button(key="cmp_clear").click().run()
    left, right, _ = specs(at)
    assert selected(left) == selected(right) == [] and not at.session_state["cmp_link"].ids


# --- linked selection, pure -------------------------------------------------------------------------------


def _event(*ids, box=False) -> dict:
    points = [{"curve_number": 0, "point_index": i, "customdata": i} for i in ids]
    return {"points": points, "box": [{"x": [0, 1], "y": [0, 1]}] if box else [], "lasso": []}


def test_a_selection_on_either_map_becomes_both_maps_selection():
    link = Linked()
    link = select(link, "a", _event(5, 2, 5, 9), n_rows=10)
    assert link == Linked((5, 2, 9), "a", 1)  # in listed order, once each
    link = select(link, "b", _event(1, 99, box=True), n_rows=10)  # ids beyond the map are ignored
    assert link == Linked((1,), "b", 2)
    assert select(link, "a", _event(box=True), n_rows=10) == Linked((), None, 3)  # a box over empty space clears
    assert select(link, "b", None, n_rows=10) == Linked((), None, 3)  # a double-click clears
    assert cleared(link) == Linked((), None, 3)
    with pytest.raises(ValueError):
        select(link, "c", _event(1), n_rows=10)


def test_highlight_marks_the_same_ids_in_every_class_trace():
    emb = np.arange(12, dtype=np.float32).reshape(6, 2)
    labels = np.array([0, 1, 0, 1, 2, 0])
    fig = map_figure(emb, labels, ["a", "b", "c"])
    fig["data"].append(overlay_trace(emb[:2], "path", name="path"))
    lit = highlight(fig, (5, 1, 0))
    per_trace = [t.get("selectedpoints") for t in lit["data"]]
    # class 0 holds rows 0, 2, 5 -> positions 0 and 2; class 1 rows 1, 3 -> position 0; class 2 none; overlay untouched
    assert per_trace == [[0, 2], [0], [], None]
    assert selected(lit) == [0, 1, 5]
    assert highlight(fig, ()) is fig and "selectedpoints" not in fig["data"][0], "the cached figure is never changed"
