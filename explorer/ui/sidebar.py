"""The sidebar: which checkpoint, which images, which projection, what colour. Returns a Context."""

from __future__ import annotations

import streamlit as st

from explorer.data import dataset_names
from explorer.errors import ExplorerError
from explorer.projection import METRICS, ProjectionParams
from explorer.ui import state

SIZES = [1000, 2000, 5000, 10000, 20000, 0]  # 0 = all
PROJECTIONS = {"UMAP 2-D": ("umap", 2), "UMAP 3-D": ("umap", 3), "PCA 2-D": ("pca", 2)}


def _colour_options(kind: str) -> list[str]:
    options = ["label", "reconstruction error"]
    if kind == "vae":
        options += ["latent dimension", "posterior σ", "KL"]
    elif kind == "sae":
        options += ["feature activation", "active features (L0)"]
    else:
        options += ["latent dimension"]
    return options


def render() -> state.Context | None:
    sb = st.sidebar
    sb.header("Latent space explorer")
    paths = state.shipped_checkpoints()
    if not paths:
        sb.error("No checkpoints in checkpoints/. Train one with `python -m explorer train ...`.")
        return None
    refs = {p.stem: p for p in paths}
    name = sb.selectbox("Checkpoint", list(refs), key="ckpt", help="Shipped checkpoints in checkpoints/")
    ckpt = state.checkpoint_ref(refs[name])
    meta = ckpt.meta
    trained_on = meta.get("dataset", {}).get("name", "fashion-mnist")
    metrics = meta.get("metrics", {})
    sb.caption(
        f"**{ckpt.kind.upper()}** · {meta['config']['backbone']} · latent {ckpt.latent_dim} · "
        f"trained on {trained_on} ({meta.get('training', {}).get('device', '?')})"
        + (f" · test MSE {metrics['mse']:.4f}" if "mse" in metrics else "")
    )

    names = dataset_names()
    ds_name = sb.selectbox("Dataset", names, index=names.index(trained_on) if trained_on in names else 0, key="ds")
    split = sb.radio("Split", ["test", "train"], horizontal=True, key="split")
    n = sb.select_slider(
        "Images to map", SIZES, value=10000, format_func=lambda v: "all" if v == 0 else f"{v:,}", key="n"
    )

    proj_label = sb.radio("Projection", list(PROJECTIONS), horizontal=True, key="proj")
    method, dims = PROJECTIONS[proj_label]
    with sb.expander("UMAP parameters", expanded=False):
        n_neighbors = st.slider("Neighbours", 5, 100, 15, key="nn", disabled=method != "umap")
        min_dist = st.slider("Minimum distance", 0.0, 0.99, 0.1, 0.01, key="md", disabled=method != "umap")
        metric = st.selectbox("Metric", METRICS, key="metric", disabled=method != "umap")
        seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="seed", disabled=method != "umap")
    params = ProjectionParams(method, dims, n_neighbors, min_dist, metric, int(seed))
    if method == "pca":
        params = ProjectionParams("pca", dims)

    options = _colour_options(ckpt.kind)
    color_by = sb.selectbox("Colour by", options, key="color")
    color_dim = 0
    if color_by in ("latent dimension", "feature activation"):
        color_dim = int(sb.number_input("Dimension" if ckpt.kind != "sae" else "Feature", 0, ckpt.latent_dim - 1, 0))

    try:
        ds, data_key = state.dataset_subset(ds_name, split, n, ckpt.input_shape)
        md = state.map_data(ckpt, ds, data_key, params)
    except ExplorerError as exc:
        st.error(f"Cannot map {ds_name} ({split}) with {name}: {exc}")
        return None
    sb.caption(
        f"{len(ds):,} images of {ds.name} · {params.label()} · "
        + ("precomputed" if md.source == "bundle" else "cached" if md.source == "cache" else f"{md.seconds:.1f} s")
    )
    return state.Context(ckpt, ds, data_key, params, md, color_by, color_dim)
