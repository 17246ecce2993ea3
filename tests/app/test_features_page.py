"""The Features page through the real page script (AppTest) on the shipped checkpoints: the atlas, a feature
page named in the URL, a bad URL value (a warning, never an exception), and a checkpoint without sparse codes."""

import pytest
from apptests import assert_clean, page_app, plotly_array, specs
from streamlit.testing.v1 import AppTest

from explorer.maps.selection import Picked
from explorer.ui import state

SAE = "fashion-mnist-sae-topk1024"
MAPPED = 10000


def features_app(feature: str | None = None, ckpt: str | None = SAE) -> AppTest:
    at = page_app("features", "features_view", timeout=240)
    if ckpt:
        at.session_state["ckpt"] = ckpt
    if feature is not None:
        at.query_params["feature"] = feature
    return at


def ids_drawn(chart: dict) -> list[int]:
    return sorted(int(i) for t in chart["data"] if "customdata" in t for i in plotly_array(t["customdata"]).ravel())


def heading(at: AppTest) -> str:
    return next((m.value for m in at.markdown if m.value.startswith("### Feature")), "")


def test_atlas_shows_every_feature_paged_with_a_clickable_map():
    at = features_app().run()
    assert_clean(at)
    assert not at.warning
    assert any(s.value == "Feature atlas" for s in at.subheader)
    metrics = {m.label: m.value for m in at.get("metric")}
    assert metrics["Features"] == "1,024"
    assert int(metrics["Live"].replace(",", "")) + int(metrics["Dead"].replace(",", "")) == 1024
    atoms = [b for b in at.button if b.key and b.key.startswith("feat_open_")]
    assert len(atoms) == 64  # one page
    (fmap,) = specs(at)
    live = int(metrics["Live"].replace(",", ""))
    assert len(ids_drawn(fmap)) == live  # every live feature on the map, each once
    # sorted by frequency, most frequent first: the first tile is the feature active most often
    first = int(atoms[0].key.removeprefix("feat_open_"))
    at.segmented_control(key="feat_show").set_value("dead").run()
    dead_tiles = [b for b in at.button if b.key and b.key.startswith("feat_open_")]
    assert dead_tiles and first not in {int(b.key.removeprefix("feat_open_")) for b in dead_tiles}
    assert sum(c.value == "dead" for c in at.caption) == len(dead_tiles)  # each tile says so


def test_clicking_a_feature_opens_its_page_and_names_it_in_the_url():
    at = features_app().run()
    button = next(b for b in at.button if b.key and b.key.startswith("feat_open_"))
    f = button.key.removeprefix("feat_open_")
    button.click().run()
    assert_clean(at)
    assert at.query_params["feature"] in (f, [f])
    assert heading(at).startswith(f"### Feature {f}")


def test_feature_page_from_the_url_shows_its_parts():
    at = features_app().run()
    live = next(b for b in at.button if b.key and b.key.startswith("feat_open_"))  # the most frequent
    f = int(live.key.removeprefix("feat_open_"))
    at = features_app(str(f)).run()
    assert_clean(at)
    assert not at.warning
    assert heading(at).startswith(f"### Feature {f}")
    text = " ".join(m.value for m in at.markdown)
    for part in (
        "Top activating images",
        "Most similar features",
        "Activation histogram",
        "Across its range",
        "Steering",
    ):
        assert part in text, part
    assert len(at.get("image")) >= 1 + 1 + 8 + 5 + 1  # atom, top images, similar atoms, five bands, steering strip
    hist, foot = specs(at)
    assert hist["data"][0]["type"] == "bar"
    assert ids_drawn(foot) == list(range(MAPPED))  # the footprint draws every mapped image once
    assert any("Density: active on" in c.value for c in at.caption)
    similar = [b for b in at.button if b.key and b.key.startswith("feat_sim_")]
    assert len(similar) == 8
    similar[0].click().run()  # a similar feature opens its own page
    assert heading(at).startswith(f"### Feature {similar[0].key.removeprefix('feat_sim_')}")
    at.button(key="feat_back").click().run()
    assert "feature" not in at.query_params
    assert any(s.value == "Feature atlas" for s in at.subheader)


def test_steering_starts_from_the_selection_and_go_to_changes_the_feature():
    at = features_app("7").run()
    assert_clean(at)
    at.session_state["pick"] = Picked((42, 7), None)
    at.run()
    assert_clean(at)
    assert any("Steering the first image of your selection" in c.value for c in at.caption)
    assert at.number_input(key="feat_steer_i:42").value == 42
    at.number_input(key="feat_goto:7").set_value(9).run()
    assert at.query_params["feature"] in ("9", ["9"])
    assert heading(at).startswith("### Feature 9")


@pytest.mark.parametrize("bad", ["abc", "-3", "1024", "7.5", "", "1e3"])
def test_a_bad_feature_in_the_url_is_dropped_with_a_warning(bad):
    at = features_app(bad).run()
    assert_clean(at)
    assert any("Showing the atlas" in w.value for w in at.warning), [w.value for w in at.warning]
    assert any(s.value == "Feature atlas" for s in at.subheader)
    assert "feature" not in at.query_params


def test_a_checkpoint_without_sparse_codes_gets_an_explanation_and_a_way_to_an_sae():
    at = features_app(ckpt=None).run()  # the default checkpoint, a VAE
    assert_clean(at)
    assert at.sidebar.selectbox(key="ckpt").value == state.DEFAULT_CHECKPOINT
    assert any("Feature pages are for sparse autoencoders" in i.value for i in at.info)
    assert not at.get("plotly_chart") and not at.get("image")
    at.button(key=f"feat_switch_{SAE}").click().run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="ckpt").value == SAE
    assert any(s.value == "Feature atlas" for s in at.subheader)


def test_a_rerun_on_a_warm_cache_draws_the_same_feature_page():
    """A rerun with every figure cached draws the same page (how fast: benchmarks, never asserted here)."""
    at = features_app("152").run()
    assert_clean(at)
    first = (heading(at), specs(at), len(at.get("image")))
    assert first[0].startswith("### Feature 152") and first[1] and first[2]
    at.run()
    assert_clean(at)
    assert (heading(at), specs(at), len(at.get("image"))) == first


@pytest.mark.parametrize("projection", ["PCA 2-D", "UMAP 3-D"])
def test_feature_page_on_other_maps(projection):
    """Another image count and projection: statistics and the feature map follow the mapped images, and the
    footprint is drawn in the map's own dimensions."""
    at = features_app()
    at.session_state["n"] = 1000
    at.session_state["proj"] = projection
    at.run()
    assert_clean(at)
    first = next(b for b in at.button if b.key and b.key.startswith("feat_open_"))
    first.click().run()
    assert_clean(at)
    foot = specs(at)[-1]
    assert foot["data"][0]["type"] == ("scatter3d" if projection == "UMAP 3-D" else "scattergl")
    assert ids_drawn(foot) == list(range(1000))
