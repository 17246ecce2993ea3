"""The sidebar: which checkpoint, which images, which projection, what colour. Returns a Context."""

from __future__ import annotations

import numpy as np
import streamlit as st

from explorer import settings, store
from explorer.data import SPLITS, dataset_names, host
from explorer.errors import ExplorerError
from explorer.maps.encode import Encoded
from explorer.maps.faithfulness import K
from explorer.maps.pipeline import MapData, map_key
from explorer.maps.precomputed import host_latents, seed_latents
from explorer.maps.projection import METRICS, ProjectionParams
from explorer.ui import bridge, links, state, warmup
from explorer.ui.map_view import NEIGHBOURHOOD

SIZES = [1000, 2000, 5000, 10000, 20000, 0]  # 0 = all
DEFAULT_N = 10000
PROJECTIONS = {"UMAP 2-D": ("umap", 2), "UMAP 3-D": ("umap", 3), "PCA 2-D": ("pca", 2)}
ENGINES = {"built-in (fast)": "builtin", "reference UMAP (umap-learn)": "umap-learn"}
# the sidebar's widgets: remembered with each map drawn, put back by Cancel
SETTINGS = ("ckpt", "ds_for", "ds", "split", "n", "proj", "nn", "md", "metric", "seed", "engine")
SHOWN = "map:shown"  # (Context, the settings behind it) of the last map drawn in this session
CANCELLED = "map:cancelled"  # key of a map whose computation was cancelled and had nothing to go back to


def colour_options(encoded: Encoded) -> list[str]:
    """What the map can be coloured by: label, error, one code coordinate, the model's own statistics, and how
    much of each image's latent neighbourhood the map kept."""
    # latents read from another program's file may come without errors: then there is nothing to colour by
    errors = ["reconstruction error"] if np.isfinite(encoded.recon_error).any() else []
    return [
        "label",
        *errors,
        encoded.code_name,
        *(encoded.title(k) for k in encoded.stats),
        NEIGHBOURHOOD,
    ]


def faithfulness_note(ctx: state.Context) -> None:
    """At the foot of the sidebar, on request (a few seconds of CPU the first time a map is asked about): how far
    to trust its islands. Colouring by the neighbours kept asks too."""
    asked = st.session_state.setdefault("faith:asked", set())
    if ctx.color_by == NEIGHBOURHOOD:
        asked.add(ctx.key)
    if ctx.key not in asked:
        st.sidebar.button(
            "How faithful is this map?", key="faith_ask", on_click=lambda: asked.add(ctx.key),
            help="Trustworthiness and continuity of the layout, and how many of each image's latent neighbours it keeps",
        )  # fmt: skip
        return
    with st.spinner("Measuring which neighbourhoods the map kept…"):
        f = state.map_faithfulness(ctx)
    st.sidebar.caption(
        f"Map faithfulness (k = {K}, {f.measured_on:,} images): trustworthiness {f.trustworthiness:.3f}, "
        f"continuity {f.continuity:.3f}; on average {100 * float(f.kept.mean()):.0f} % of an image's latent "
        "neighbours are its map neighbours. Colour by “neighbours kept by the map” to see where.",
        help="Trustworthiness: map neighbours that were neighbours in latent space (1 = no false islands). "
        "Continuity: latent neighbours kept together on the map (1 = nothing torn apart). A random layout scores "
        "about 0.5.",
    )


def _upload_panel(sb) -> None:
    """Upload a dataset (.npz, .zip of images); models have their own page ("Your model")."""
    with sb.expander("Upload a dataset", expanded=False):
        st.caption("Models: open **Your model** in the top bar.")
        data_file = st.file_uploader(
            "Dataset: .npz (images, labels) or .zip of PNG/JPEG, one folder per class",
            type=None,
            key="up_data",
            max_upload_size=settings.upload_cap_mb(settings.current(), st.get_option("server.maxUploadSize")),
            help=settings.UPLOAD_TROUBLE_HELP,
        )
        if data_file is not None:
            token = state.sha256(data_file.getvalue())
            if st.session_state.get("up_data_done") != token:
                st.session_state["up_data_done"] = token
                ref = state.find_checkpoint(st.session_state.get("ckpt"))
                shape = ref.input_shape if ref is not None else (1, 28, 28)  # fitted to the model in use
                try:
                    label = state.add_dataset(data_file.name, data_file.getvalue(), shape)
                    st.session_state["ds"] = label
                    st.session_state["up_msg"] = ("ok", f"Loaded dataset {label}")
                except ExplorerError as exc:
                    st.session_state["up_msg"] = ("error", f"Refused: {exc}")
    if msg := st.session_state.get("up_msg"):
        (sb.success if msg[0] == "ok" else sb.error)(msg[1])


def datasets() -> list[str]:
    """What the Dataset box offers: the built-in sets, the host's own (EXPLORER_DATA), this session's uploads."""
    return dataset_names() + host.configured_names() + list(state.uploaded_datasets())


def _fields() -> tuple:
    names = state.checkpoint_names()
    return links.sidebar_fields(
        names, datasets(), list(SPLITS), SIZES, list(PROJECTIONS),
        list(ENGINES), list(METRICS), names[0] if names else "",
    )  # fmt: skip


def checkpoint_picker(sb) -> tuple[state.CheckpointRef, tuple] | None:
    """The checkpoint every page acts on: one choice for the whole session, read from a link (or, after Back,
    from the address), carried from page to page, and put in the address by each page (``links.stage``).
    Returns (the checkpoint, the sidebar's link fields), or None when there is no checkpoint at all."""
    if not state.checkpoint_names():
        sb.error("No checkpoints in checkpoints/. Train one with `python -m explorer train ...` or open Your model.")
        return None
    fields = _fields()
    links.restore_sidebar(fields, state.checkpoint_by_digest)
    fields = _fields()  # a link may have brought back a kept upload
    name = sb.selectbox(
        "Checkpoint",
        state.checkpoint_names(),
        key="ckpt",
        help="Shipped checkpoints, then your uploads (this session only)",
    )
    ckpt = state.checkpoint(name)
    meta = ckpt.meta
    metrics = meta.get("metrics", {})
    device = meta.get("training", {}).get("device", "?")
    home = state.home_dataset(ckpt)
    sb.caption(
        f"**{ckpt.describe()}** · "
        + (f"trained on {home} ({device})" if device != "imported" else f"imported; its errors point to {home}")
        + (f" · test MSE {metrics['mse']:.4f}" if "mse" in metrics else "")
    )
    links.remember_sidebar(fields)
    return ckpt, fields


def stage_checkpoint(ckpt: state.CheckpointRef) -> None:
    """The checkpoint alone in the address (pages without the map's sidebar: Metrics, Compare), written now:
    what these pages compute may take a while, and the address should name the model meanwhile."""
    links.stage("sidebar", {"model": ckpt.digest} if ckpt.uploaded else {"ckpt": ckpt.name})
    links.flush()


def render() -> state.Context | None:
    # first in the main area on every page and every run, so a progress bar shown here never moves the rest
    slot = st.empty()
    sb = st.sidebar
    sb.header("Latent space explorer")
    if settings.current().allow_uploads:
        _upload_panel(sb)
    notices = st.container()  # at the top of the page, under the progress slot
    picked = checkpoint_picker(sb)
    if picked is None:
        return None
    ckpt, fields = picked
    name = ckpt.name
    trained_on = state.home_dataset(ckpt)

    offered = datasets()
    default = trained_on
    before = st.session_state.get("ds_for")
    if before != name:  # another checkpoint starts on the data it was trained on
        st.session_state["ds_for"] = name
        if before is not None or st.session_state.get("ds") not in offered:
            st.session_state["ds"] = default
    elif st.session_state.get("ds") not in offered:
        st.session_state["ds"] = default
    ds_name = sb.selectbox("Dataset", offered, key="ds", help="Built-in sets, the server's own datasets, your uploads")
    hosted = ds_name in host.configured_names()
    split = sb.radio(
        "Split",
        ["test", "train", "all"],
        horizontal=True,
        key="split",
        disabled=ds_name not in dataset_names(),
        help="all: train and test together (Fashion-MNIST: 70,000 images with “Images to map: all”). The server's "
        "own datasets and uploads have one split: all of them.",
    )
    try:
        total = state.dataset_size(ds_name, split)
    except ExplorerError as exc:
        st.error(f"Cannot read {ds_name} ({split}): {exc}")
        return None
    sizes = [v for v in SIZES if 0 < v < total] + [0]  # sizes this dataset has, then all of it
    if hosted and total > max(SIZES):  # a host's dataset may hold millions: a map takes a subset of it
        sizes = [v for v in SIZES if v > 0]
    if st.session_state.get("n") not in sizes:  # e.g. 10,000 of a 1,000-image split: all of them
        st.session_state["n"] = sizes[-1]
    n = sb.select_slider(
        "Images to map", sizes, format_func=lambda v: f"all {total:,}" if v == 0 else f"{v:,}", key="n"
    )

    warm = warmup.warm_reference_umap()  # the first run of the server starts it; later runs read its status
    proj_label = sb.radio("Projection", list(PROJECTIONS), horizontal=True, key="proj")
    method, dims = PROJECTIONS[proj_label]
    with sb.expander("UMAP parameters", expanded=False):
        n_neighbors = st.slider("Neighbours", 5, 100, key="nn", disabled=method != "umap")
        min_dist = st.slider("Minimum distance", 0.0, 0.99, step=0.01, key="md", disabled=method != "umap")
        metric = st.selectbox("Metric", METRICS, key="metric", disabled=method != "umap")
        seed = st.number_input("Seed", 0, 2**31 - 1, key="seed", disabled=method != "umap")
        engine = st.radio("Engine", list(ENGINES), key="engine", disabled=method != "umap")
        if ENGINES[engine] == "umap-learn":
            st.caption(
                "umap-learn runs on the explorer's own neighbour graph. "
                + (
                    "Compiled ahead at server start: the first map takes some seconds more, later ones less."
                    if warm["ready"]
                    else "Its first use in this server compiles it (up to a minute)."
                )
            )
    params = ProjectionParams(method, dims, n_neighbors, min_dist, metric, int(seed), engine=ENGINES[engine])
    if method == "pca":
        params = ProjectionParams("pca", dims)

    try:
        read_from = ""
        if hosted:  # read from the server's disk as fitted; bad files are skipped and said so
            with st.spinner(f"Reading {ds_name}…"):
                got = host.configured_subset(ds_name, n, ckpt.input_shape)
            ds = got.dataset
            if got.skipped:
                notices.warning(f"{ds_name}: {got.skipped}. The map shows the images that could be read.")
            data_key, read_from = _precomputed(ckpt, ds_name, got, notices)
        else:
            ds, data_key = state.dataset_subset(ds_name, split, n, ckpt.input_shape)
        md = state.ready_map(ckpt, data_key, params) or _compute(slot, ckpt, ds, data_key, params)
    except ExplorerError as exc:
        st.error(f"Cannot map {ds_name} ({split}) with {name}: {exc}")
        return None
    if md is None:  # cancelled, with no earlier map to go back to
        return None

    # the options come from the encoded data, so the sidebar needs no model (and no torch) before the map
    options = colour_options(md.encoded)
    links.pending_colour(options)
    if st.session_state.get("color") not in options:  # a colouring of another model's map
        st.session_state.pop("color", None)
    color_by = sb.selectbox("Colour by", options, key="color")
    color_dim = 0
    if color_by == md.encoded.code_name:
        code = md.encoded.code_name
        color_dim = int(sb.number_input(code[0].upper() + code[1:], 0, ckpt.latent_dim - 1, 0))
    sb.caption(
        f"{len(ds):,} images of {ds.name} · {params.label()} · "
        + ("precomputed" if md.source == "bundle" else "cached" if md.source == "cache" else f"{md.seconds:.1f} s")
        + (f" · {read_from}" if read_from else "")
    )
    ctx = state.Context(ckpt, ds, data_key, params, md, color_by, color_dim)
    links.remember_sidebar(fields)
    digest = ckpt.digest if ckpt.uploaded else None
    links.stage(
        "sidebar", links.sidebar_params(fields, color_by, digest, trained_on, all_is_default=total <= DEFAULT_N)
    )
    links.show_notices(notices)
    _say_unwritable_cache()
    with sb:
        bridge.copy_link(key="copy_link")
    st.session_state[SHOWN] = (ctx, {k: st.session_state[k] for k in SETTINGS if k in st.session_state})
    return ctx


def _precomputed(ckpt: state.CheckpointRef, ds_name: str, got: host.HostSubset, notices) -> tuple[str, str]:
    """Latents the host computed elsewhere for this dataset, put where the map looks for the checkpoint's own
    when they are its (``precomputed.seed_latents``). Returns the data key to map under, and where the latents
    came from ("" when they are not used)."""
    found = host_latents(ds_name)
    if found is None:
        return got.digest, ""
    key, note = seed_latents(
        found,
        checkpoint=(ckpt.name, ckpt.digest, ckpt.latent_dim),
        source_index=got.source_index,
        data_key=got.digest,
        cache=state.disk_cache(),
    )
    if key is None:
        notices.info(note)
        return got.digest, ""
    return key, note


def _say_unwritable_cache() -> None:
    """Once per session and cause: the server's cache folder cannot be written (a full disk), so what is computed
    stays in memory only. The page works on; the host's log names the folder."""
    said = st.session_state.setdefault("cache:said", set())
    for why in sorted(set(store.write_problems().values()) - said):
        said.add(why)
        st.toast(f"The server cannot write its cache ({why}): results are kept in memory only for now.", icon="⚠️")


def _cancel() -> None:
    """Cancel's on_click: the settings of the map shown before go back, so the rerun draws that map again."""
    shown = st.session_state.get(SHOWN)
    if shown is not None:
        st.session_state.update(shown[1])
    else:
        st.session_state[CANCELLED] = st.session_state.get("map:computing")


def _compute(slot, ckpt: state.CheckpointRef, ds, data_key: str, params: ProjectionParams) -> MapData | None:
    """A new map under a progress bar and a Cancel button, with the previous map still in view below them."""
    key = map_key(ckpt.digest, data_key, params)
    what = f"{len(ds):,} images with {params.label()}"
    if st.session_state.get(CANCELLED) == key:
        st.info(f"Mapping {what} was cancelled.")
        st.button("Map them anyway", on_click=lambda: st.session_state.pop(CANCELLED, None))
        return None
    st.session_state["map:computing"] = key
    # The slot at the top of the page: until this run ends, the map of the previous run stays below it
    # (Streamlit keeps an earlier run's elements on screen, faded, until this run replaces them).
    with slot.container():
        c1, c2 = st.columns([8, 1], vertical_alignment="bottom")
        bar = c1.progress(0.0, text=f"Mapping {what}…")
        c2.button("Cancel", on_click=_cancel, key="map_cancel", help="Stop, and go back to the map shown before")

    def progress(f: float, message: str) -> None:
        bar.progress(min(max(f, 0.0), 1.0), text=f"{params.label()}: {message}")

    md = state.new_map(ckpt, ds, params, progress, data_key)
    slot.empty()
    return md
