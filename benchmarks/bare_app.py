"""The latency benchmark's bare comparison page: ``streamlit run benchmarks/bare_app.py``.

Nothing but Streamlit and Plotly: the app's default map (the shipped 10,000-point bundle of
the default checkpoint) as one scattergl trace that never changes between reruns, box, lasso
and point selection, and per selection one grid of the selected Fashion-MNIST test images,
laid out as the app lays out its map and its panel. No model and no overlays, so its time from
mouse-up to thumbnails is what Streamlit and Plotly alone cost on this machine.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from explorer.data import load_dataset
from explorer.figures import images
from explorer.maps.pipeline import SHIPPED_BUNDLES, cached_map
from explorer.maps.projection import ProjectionParams
from explorer.store import DiskCache, data_digest, sha256

# the app's default checkpoint and map size (explorer/ui/state.py, the sidebar's defaults)
DEFAULT_CHECKPOINT = SHIPPED_BUNDLES.parent / "fashion-mnist-vae-conv16.safetensors"
MAX_THUMBS = 64  # as many as the app's selection grid shows


def shipped_map() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The app's default map: embedding (N, 2) float32, labels (N,) and the mapped images (N, 28, 28) uint8."""
    ds = load_dataset("fashion-mnist", "test")  # the default 10,000 images are the whole test split
    digest = sha256(DEFAULT_CHECKPOINT.read_bytes())
    md = cached_map(digest, data_digest(ds.images, ds.labels), ProjectionParams(), DiskCache(SHIPPED_BUNDLES))
    if md is None:
        raise RuntimeError(f"no shipped map of {DEFAULT_CHECKPOINT.name} in {SHIPPED_BUNDLES}")
    return np.asarray(md.projection.embedding, np.float32), ds.labels, ds.images


@st.cache_resource(show_spinner=False)
def _figure_and_images() -> tuple[dict, np.ndarray]:
    embedding, labels, imgs = shipped_map()
    trace = {
        "type": "scattergl",
        "mode": "markers",
        "x": embedding[:, 0],
        "y": embedding[:, 1],
        "customdata": np.arange(len(embedding), dtype=np.int32),
        "marker": {"size": 4, "opacity": 0.8, "color": labels, "colorscale": "Turbo"},
        "hovertemplate": "index %{customdata}<extra></extra>",
    }
    layout = {"autosize": True, "margin": {"l": 10, "r": 10, "t": 30, "b": 10}, "dragmode": "select"}
    return {"data": [trace], "layout": layout}, imgs


# the app's page geometry (explorer/ui/map_view.py): the map fills the window's height and most of its width,
# so both pages draw the same number of pixels for every selection
CSS = """<style>
.st-key-bare-map .stPlotlyChart, .st-key-bare-map .js-plotly-plot { height: max(420px, calc(100vh - 196px)) !important; }
[data-testid="stMainBlockContainer"] { padding-top: 4rem; padding-bottom: 1rem; padding-left: 2rem; padding-right: 2rem; }
</style>"""


def page() -> None:
    st.set_page_config(page_title="Bare Streamlit + Plotly", layout="wide")
    st.html(CSS)
    figure, imgs = _figure_and_images()
    left, right = st.columns([5, 3], gap="medium")
    with left, st.container(key="bare-map"):
        event = st.plotly_chart(
            figure, key="map", on_select="rerun", selection_mode=("points", "box", "lasso"), width="stretch",
            height="stretch", config={"responsive": True},
        )  # fmt: skip
    ids = [int(p["customdata"]) for p in event["selection"]["points"]]
    with right:
        if ids:
            st.markdown(f"**{len(ids)} selected**")
            st.image(images.grid(imgs[ids[:MAX_THUMBS]], cols=8, scale=2), width="stretch")
        else:
            st.info("Select points on the map.")


if __name__ == "__main__":  # streamlit runs the script as __main__; the benchmark imports shipped_map only
    page()
