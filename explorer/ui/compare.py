"""The Compare page: two checkpoints map the same images side by side, with one selection for both.

Each map is ``state.map_data`` of the same dataset subset (the same seeded images, fitted to each
model's input), so a row id names the same image on both. A box or lasso on either map selects
those images on both (``explorer.maps.linked``); below the maps, the selected images with each model's
error on them, then both models' metrics in one table. Session keys start ``cmp_``.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import streamlit as st

from explorer.data import dataset_names, host
from explorer.errors import ExplorerError
from explorer.figures import images
from explorer.figures.map import map_figure
from explorer.maps.linked import Linked, cleared, highlight, select
from explorer.maps.pipeline import MapData, map_key
from explorer.maps.projection import ProjectionParams
from explorer.ui import map_bridge, map_view, metrics_page, sidebar, state

SIZES = [1000, 2000, 5000, 10000]
PROJECTIONS = {"UMAP 2-D": ProjectionParams("umap", 2), "PCA 2-D": ProjectionParams("pca", 2)}
LINK = "cmp_link"  # the shared selection (explorer.maps.linked.Linked)
LINK_FOR = "cmp_link_for"  # the pair of maps it belongs to
SHOWN = 12  # selected images shown below the maps, with both models' reconstructions


@state.shared("results")
def _base_figure(key: str, sprites: str, _md: MapData) -> dict:
    """The map's figure, built once per map: only its selected points change between reruns."""
    return map_figure(_md.projection.embedding, _md.labels, _md.class_names, height=480, revision=key, meta=sprites)


def _on_select(side: str, widget: str, n_rows: int) -> None:
    st.session_state[LINK] = select(
        st.session_state.get(LINK, Linked()), side, map_view.chart_selection(widget), n_rows
    )


def _clear() -> None:
    st.session_state[LINK] = cleared(st.session_state.get(LINK, Linked()))


def _choices() -> tuple[state.CheckpointRef, state.CheckpointRef, str, str, int, ProjectionParams] | None:
    sb = st.sidebar
    sb.header("Compare")
    names = state.checkpoint_names()
    if len(names) < 2:
        sb.error("Comparing needs two checkpoints: add one on Your model or train one with `python -m explorer train`.")
        return None
    picked = sidebar.checkpoint_picker(sb)  # the left map: the checkpoint of every other page
    if picked is None:
        return None
    ckpt_a = picked[0]
    sidebar.stage_checkpoint(ckpt_a)
    others = [n for n in names if n != ckpt_a.name]
    home = state.home_dataset(ckpt_a)
    if st.session_state.get("cmp_b") not in others:
        # the first partner trained on the same images, whose map is already made; with none, the person
        # chooses: a partner on foreign images is a fresh layout of 10,000 points, not a thing to start unasked
        same = [n for n in others if state.checkpoint(n).trained_on == home]
        st.session_state["cmp_b"] = same[0] if same else None
    name_b = sb.selectbox(
        "Compared with (right)", others, key="cmp_b", index=None, placeholder="Choose a checkpoint to compare"
    )
    if name_b is None:
        st.info(
            f"No other checkpoint was trained on {home}. Choose one under **Compared with** in the sidebar: "
            f"both will map {home}'s images, and the new map takes a minute to lay out."
        )
        return None
    ckpt_b = state.checkpoint(name_b)
    datasets = dataset_names() + host.configured_names()  # the server's own have one split: the radio is not read
    if st.session_state.get("cmp_ds") not in datasets:
        st.session_state["cmp_ds"] = state.home_dataset(ckpt_a)
    dataset = sb.selectbox("Dataset", datasets, key="cmp_ds", help="Both checkpoints map these images")
    split = sb.radio("Split", ["test", "train"], horizontal=True, key="cmp_split")
    n = sb.select_slider("Images to map", SIZES, value=10000, format_func=lambda v: f"{v:,}", key="cmp_n")
    proj = sb.radio("Projection", list(PROJECTIONS), horizontal=True, key="cmp_proj")
    return ckpt_a, ckpt_b, dataset, split, int(n), PROJECTIONS[proj]


def _map(ckpt: state.CheckpointRef, dataset: str, split: str, n: int, params: ProjectionParams):
    ds, data_key = state.dataset_subset(dataset, split, n, ckpt.input_shape)
    return ds, state.map_data(ckpt, ds, data_key, params), map_key(ckpt.digest, data_key, params), data_key


def _selection_panel(link: Linked, sides: dict[str, tuple], ckpts: dict[str, state.CheckpointRef]) -> None:
    """The selected images, once (they are the same images on both maps), and each model's reconstructions of
    them with their errors, one row per model."""
    from explorer.maps import ops

    ids = np.asarray(link.ids, dtype=np.int64)
    (ds, md_a, *_), (ds_b, md_b, *_) = sides["a"], sides["b"]
    c1, c2 = st.columns([5, 1], vertical_alignment="center")
    where = "left" if link.source == "a" else "right"
    c1.markdown(
        f"**{len(ids):,} selected** on the {where} map · mean reconstruction MSE: "
        f"left {float(md_a.encoded.recon_error[ids].mean()):.4f}, right {float(md_b.encoded.recon_error[ids].mean()):.4f}"
    )
    c2.button("Clear", on_click=_clear, key="cmp_clear")
    shown = ids[:SHOWN]
    scale = images.scale_for(ds.images.shape[1], 56)  # about 56 pixels high whatever the input size
    st.image(
        images.captioned_grid(ds.images[shown], [f"#{i}" for i in shown], cols=SHOWN, scale=scale),
        caption="the selected images",
        width="stretch",
    )
    for side, data in (("a", ds), ("b", ds_b)):
        ckpt = ckpts[side]
        recon, err = ops.reconstruct(state.model(ckpt), data.images[shown])  # each in its model's input shape
        st.image(
            images.captioned_grid(
                recon, [f"{e:.4f}" for e in err], cols=SHOWN, scale=images.scale_for(recon.shape[1], 56)
            ),
            caption=f"{'left' if side == 'a' else 'right'}: {ckpt.name}'s reconstructions and their MSE",
            width="stretch",
        )
    if len(ids) > SHOWN:
        st.caption(f"The first {SHOWN} of {len(ids):,}.")


def _metrics(ckpts: list[state.CheckpointRef], dataset: str, split: str, n: int) -> None:
    """Both models' figures in one table, and both on PCA's error curve."""
    st.markdown(f"**Metrics** on the same {n:,} {dataset} {split} images")
    reports = [metrics_page.report_for(c, dataset, split, limit=n) for c in ckpts]
    columns = [f"{c.name} (left)" if i == 0 else f"{c.name} (right)" for i, c in enumerate(ckpts)]
    table: dict[str, dict[str, str]] = {}
    for column, report in zip(columns, reports):
        for title, model, pca in report.rows():
            table.setdefault(title, {"figure": title})[column] = metrics_page.cell(model)
            if pca is not None:
                pca_title = f"PCA: {title}"
                table.setdefault(pca_title, {"figure": pca_title})[column] = metrics_page.cell(pca)
        table.setdefault("PCA components", {"figure": "PCA components"})[column] = str(report.pca_components)
    rows = [{"figure": r["figure"], **{c: r.get(c, "—") for c in columns}} for r in table.values()]
    left, right = st.columns([1, 1], gap="medium")
    left.dataframe(rows, hide_index=True, width="stretch", height=36 * (len(rows) + 1) + 4)  # every row in view
    curves: list[tuple[str, list[tuple[int, float]]]] = []
    for c, r in zip(ckpts, reports):
        if all(r.pca_curve != other for _, other in curves):  # the same input shape gives the same PCA
            curves.append((f"PCA ({c.name}'s input)" if curves else "PCA", r.pca_curve))
    points = [(c.name, *r.model_point) for c, r in zip(ckpts, reports)]
    with right:
        st.plotly_chart(
            metrics_page.curve_figure(curves, points), key="cmp_curve", width="stretch", config={"displaylogo": False}
        )


def compare_view() -> None:
    st.subheader("Two checkpoints side by side")
    chosen = _choices()
    if chosen is None:
        return
    ckpt_a, ckpt_b, dataset, split, n, params = chosen
    if ckpt_a.digest == ckpt_b.digest:
        st.info("Both sides show the same checkpoint: choose another one on the right.")
    sides: dict[str, tuple] = {}
    try:
        for side, ckpt in (("a", ckpt_a), ("b", ckpt_b)):
            sides[side] = _map(ckpt, dataset, split, n, params)
    except ExplorerError as exc:
        st.error(f"Cannot map {dataset} ({split}) with {ckpt.name}: {exc}")
        return
    pair = (sides["a"][2], sides["b"][2])
    if st.session_state.get(LINK_FOR) != pair:  # another pair, dataset or projection: a new selection
        st.session_state[LINK_FOR] = pair
        st.session_state[LINK] = cleared(st.session_state.get(LINK, Linked()))
    link: Linked = st.session_state[LINK]
    st.caption(
        "The same images on both maps. Drag a box or lasso on either map: the images it selects light up on "
        "both. Double-click a map to clear."
    )
    columns = st.columns(2, gap="medium")
    for col, (side, ckpt) in zip(columns, (("a", ckpt_a), ("b", ckpt_b))):
        ds, md, key, sprites = sides[side]  # the sprite sheets are named by the images' digest
        widget = f"cmp_map_{side}:{link.generation}"
        with col:
            # the title above the chart: inside it, Plotly's tool bar covers it
            st.markdown(f"**{'Left' if side == 'a' else 'Right'}: {ckpt.name}** · {ckpt.describe()}")
            st.plotly_chart(
                highlight(_base_figure(key, sprites, md), link.ids),
                key=widget,
                on_select=partial(_on_select, side, widget, len(md.labels)),
                selection_mode=("points", "box", "lasso"),
                width="stretch",
                config={"displaylogo": False, "modeBarButtonsToRemove": ["toImage"]},
            )
    map_bridge.map_bridge(key="cmp_bridge")  # the maps' page-side listeners (hover images, views)
    if link.ids:
        _selection_panel(link, sides, {"a": ckpt_a, "b": ckpt_b})
    try:
        _metrics([ckpt_a, ckpt_b], dataset, split, n)
    except ExplorerError as exc:
        st.error(f"Cannot compute the metrics: {exc}")
    sets: list[dict] = []  # hovered points show their images: the sheets are made last, once the page is drawn
    for ds, md, _, sprites in sides.values():
        if sprites not in {s["key"] for s in sets}:
            made = map_bridge.sprite_set(sprites, map_view.sprites(sprites, ds.images), len(md.labels))
            sets += [made] if made is not None else []
    map_bridge.serve_sprites(key="cmp_sprites", sets=sets)
