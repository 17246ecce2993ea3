"""The Features pages of a sparse autoencoder: an atlas of every feature, and a page per feature.

The feature shown lives in the address (``/features?feature=12``), so a feature page can be linked
and bookmarked; a value that is not a feature of the model is dropped with a warning. What is heavy
is cached: by the checkpoint's digest what depends on the decoder only (directions, atom pictures,
the map of features), by the map key what depends on the mapped images (frequencies, strongest
features). A rerun after that slices arrays and draws. All numbers come from explorer.quality.features.

Models whose codes are not sparse get an explanation instead: their latent dimensions are used by
every image, so frequencies, dead or dense features and "top activating images" say nothing; the
Traverse page is where those dimensions are explored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from explorer.errors import ConfigError
from explorer.figures import features as feature_figures
from explorer.figures import images
from explorer.maps.selection import Picked, picked
from explorer.ui import links, map_view, sidebar, state, timing
from explorer.ui.state import Context, label

if TYPE_CHECKING:
    from explorer.quality.features import FeatureStats


PARAM = "feature"  # the URL query parameter naming the feature shown
PER_PAGE = 64  # atoms per page of the atlas
COLS = 8
DEAD_FRAME = (160, 160, 160)  # grey, and the atom faded: a dead feature recedes
DENSE_FRAME = (245, 158, 11)  # amber: apart from the atoms' red and blue
SHOW = ("all", "live", "dense", "dead")
PLOT_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["toImage", "lasso2d"]}


@dataclass(frozen=True)
class Atoms:
    """What the decoder says about each feature: directions (F, D), the same at unit length, and pictures."""

    directions: np.ndarray
    unit: np.ndarray
    pictures: np.ndarray  # (F, H, W, 3) uint8, one per feature


# ----------------------------------------------------------------------------------- caches


@state.shared("results", spinner="Reading each feature's decoder direction…")
def _atoms(digest: str, _model) -> Atoms:
    from explorer.quality import features as feat

    directions = feat.decoder_directions(_model)  # (F, D)
    return Atoms(directions, feat.unit_rows(directions), feat.atom_images(directions, tuple(_model.input_shape)))


@state.shared("results", spinner="Counting feature activations…")
def _stats(key: str, dense_share: float, _codes: np.ndarray) -> FeatureStats:
    from explorer.quality import features as feat

    return feat.feature_stats(_codes, dense_share=dense_share)


@state.shared("results", spinner="Laying out a map of the features (a few seconds)…")
def _feature_map(key: str, _directions: np.ndarray, _live: np.ndarray) -> np.ndarray:
    """UMAP of the live features' decoder directions, (F, 2) with NaN for dead ones; ``key`` names the
    checkpoint and the images. Kept in the disk cache too, so a restarted server skips the fit."""
    from explorer.quality import features as feat

    cache = state.disk_cache()
    if (raw := cache.get(key)) is not None and (emb := feat.map_from_bytes(raw, len(_directions))) is not None:
        return emb
    emb = feat.feature_map(_directions, _live)
    cache.put(key, feat.map_to_bytes(emb))
    return emb


@state.shared("results")
def _footprint(key: str, feature: int, _ctx: Context) -> dict:
    values = _ctx.map.encoded.latents[:, feature]  # (N,)
    return feature_figures.footprint_figure(
        _ctx.map.projection.embedding, values, title=f"Where feature {feature} fires on the map", revision=key
    )


# ----------------------------------------------------------------------------------- the page


def features_view() -> None:
    timing.mark("script_start", view="features")
    ctx = sidebar.render()
    if ctx is None:
        return
    model = state.model(ctx.ckpt)
    if not model.sparse_codes:
        if (raw := st.query_params.get(PARAM)) is not None:  # kept for when a sparse checkpoint is chosen
            links.stage("page", {PARAM: raw[:20]})
        _not_sparse(ctx, model)
        return
    from explorer.quality import features as feat

    dense_pct = st.sidebar.slider(
        "Dense above (% of images)", 1, 50, int(100 * feat.DENSE_SHARE), key="feat_dense",
        help="A feature active on more than this share of the mapped images is flagged dense",
    )  # fmt: skip
    stats = _stats(ctx.key, dense_pct / 100, ctx.map.encoded.latents)
    atoms = _atoms(ctx.ckpt.digest, model)
    feature = _feature_from_url(stats.n_features)
    links.stage("page", {} if feature is None else {PARAM: str(feature)})
    if feature is None:
        _atlas(ctx, stats, atoms)
    else:
        _feature_page(ctx, model, stats, atoms, feature)
    timing.mark("page_drawn", view="features")


def _feature_from_url(n_features: int) -> int | None:
    """The feature named in the address, or None for the atlas; a bad value is dropped with a warning."""
    from explorer.quality import features as feat

    raw = st.query_params.get(PARAM)
    if raw is None:
        return None
    try:
        return feat.parse_feature(raw, n_features)
    except feat.FeatureError as exc:
        st.warning(f"Ignored feature={raw[:40]!r} in the address: {exc}. Showing the atlas of all features instead.")
        del st.query_params[PARAM]
        return None


def _open(feature: int | None) -> None:
    """Button and chart callback: show a feature's page (None: the atlas), and put it in the address."""
    if feature is None:
        if PARAM in st.query_params:
            del st.query_params[PARAM]
    else:
        st.query_params[PARAM] = str(int(feature))


def _not_sparse(ctx: Context, model) -> None:
    st.subheader("Features")
    st.info(
        f"Feature pages are for sparse autoencoders. **{ctx.ckpt.name}** is a {model.kind.upper()} whose "
        f"{model.latent_dim} {model.code_name}s are dense: every image uses all of them, so there is no activation "
        "frequency, no dead or dense feature and no “top activating images” to show. Its dimensions can be "
        "explored one at a time on the **Traverse** page."
    )
    for name in _sparse_checkpoints():
        st.button(f"Open the sparse autoencoder {name}", key=f"feat_switch_{name}", on_click=_switch, args=(name,))


def _sparse_checkpoints() -> list[str]:
    """Shipped checkpoints and this session's uploads whose kind has sparse codes (asked of the class, not by name)."""
    from explorer import models

    out = []
    for name, ref in state.checkpoints().items():
        try:
            if models.model_class(ref.kind).sparse_codes:
                out.append(name)
        except ConfigError:
            continue
    return out


def _switch(name: str) -> None:
    st.session_state["ckpt"] = name  # the sidebar's checkpoint box, as if chosen there


# ----------------------------------------------------------------------------------- atlas


def _flag(stats: FeatureStats, f: int) -> str:
    return "dead" if stats.dead[f] else "dense" if stats.dense[f] else ""


def _tile(atoms: Atoms, stats: FeatureStats, f: int, target: int = 84) -> np.ndarray:
    """Feature f's atom, upscaled to about ``target`` pixels, faded in a grey frame if dead, in an amber one if dense."""
    from explorer.quality import features as feat

    pic = atoms.pictures[f]
    tile = images.grid(pic[None], cols=1, scale=images.scale_for(pic.shape[0], target))
    width = max(2, tile.shape[0] // 28)
    if stats.dead[f]:
        return feat.framed((255 - (255 - tile.astype(np.int16)) // 2).astype(np.uint8), DEAD_FRAME, width)
    return feat.framed(tile, DENSE_FRAME, width) if stats.dense[f] else tile


def _summary(ctx: Context, stats: FeatureStats) -> None:
    c = st.columns(5)
    live = int((~stats.dead).sum())
    c[0].metric("Features", f"{stats.n_features:,}")
    c[1].metric("Live", f"{live:,}", help=f"Active on at least one of the {stats.n_images:,} mapped images")
    c[2].metric("Dead", f"{int(stats.dead.sum()):,}", help="Never active on the mapped images")
    c[3].metric("Dense", f"{int(stats.dense.sum()):,}", help=f"Active on more than {stats.dense_share:.0%} of images")
    c[4].metric("Active per image", f"{stats.mean_l0():.1f}", help="Mean number of non-zero features (L0)")


def _atlas(ctx: Context, stats: FeatureStats, atoms: Atoms) -> None:
    from explorer.quality import features as feat

    st.subheader("Feature atlas")
    st.caption(
        f"Every feature of **{ctx.ckpt.name}**, measured on {stats.n_images:,} images of {ctx.dataset.name}. "
        "Each picture is what the feature paints (its decoder direction): red adds brightness, blue removes it. "
        "Amber frame: dense; grey frame and faded: dead. Click a feature's number, or a point on the map, to open "
        "its page."
    )
    _summary(ctx, stats)
    left, right = st.columns([3, 2], gap="large")
    with left:
        c1, c2, c3 = st.columns([4, 5, 3], vertical_alignment="bottom")
        by = c1.selectbox("Sort by", feat.SORTS, key="feat_sort")
        show = c2.segmented_control("Show", SHOW, default=SHOW[0], required=True, key="feat_show") or SHOW[0]
        descending = c3.toggle("Highest first", value=True, key="feat_desc")
        order = stats.order(by, descending=descending)
        keep = {"all": None, "live": ~stats.dead, "dense": stats.dense, "dead": stats.dead}[show]
        if keep is not None:
            order = order[keep[order]]
        pages = max(1, -(-len(order) // PER_PAGE))
        if not len(order):
            st.info(f"No {show} features on these images.")
        else:
            page = st.pagination(pages, key=f"feat_page:{by}:{descending}:{show}") if pages > 1 else 1
            shown = order[(page - 1) * PER_PAGE : page * PER_PAGE]
            st.caption(f"Features {(page - 1) * PER_PAGE + 1}–{(page - 1) * PER_PAGE + len(shown)} of {len(order):,}")
            _atom_grid(stats, atoms, shown)
    with right:
        _atlas_map(ctx, stats, atoms)


def _atom_grid(stats: FeatureStats, atoms: Atoms, shown: np.ndarray) -> None:
    for start in range(0, len(shown), COLS):
        cols = st.columns(COLS, gap="small")
        for col, f in zip(cols, shown[start : start + COLS].tolist()):
            flag = _flag(stats, f)
            with col, st.container(gap=None):
                st.image(_tile(atoms, stats, f), width="stretch")
                # the number opens the page; beside it, how often the feature fires
                with st.container(horizontal=True, gap="xxsmall", vertical_alignment="center", wrap=False):
                    st.button(
                        f"{f}", key=f"feat_open_{f}", on_click=_open, args=(f,), type="tertiary",
                        help=f"Open feature {f}: active on {stats.count[f]:,} images, mean activation "
                        f"{stats.mean_active[f]:.3g} when active" + (f" ({flag})" if flag else ""),
                    )  # fmt: skip
                    st.caption("dead" if flag == "dead" else _pct(stats.frequency[f]), width="content")


def _chart_pick(widget: str, n_features: int) -> None:
    """on_select of a feature map: open the feature clicked."""
    ids = picked(map_view.chart_selection(widget), n_rows=n_features).ids
    if ids:
        _open(ids[0])


def _atlas_map(ctx: Context, stats: FeatureStats, atoms: Atoms, current: int | None = None) -> None:
    from explorer.quality import features as feat

    st.markdown("**Map of the features**")
    emb = _feature_map(feat.feature_map_key(ctx.ckpt.digest, ctx.data_key), atoms.directions, ~stats.dead)
    fig = feature_figures.feature_map_figure(
        emb, stats.frequency, stats.dense, current=current, revision=ctx.ckpt.digest
    )
    widget = f"feat_map:{current}"
    st.plotly_chart(
        fig,
        key=widget,
        on_select=lambda: _chart_pick(widget, stats.n_features),
        selection_mode=("points",),
        width="stretch",
        config=PLOT_CONFIG,
    )
    dead = int(stats.dead.sum())
    st.caption(
        "UMAP of the decoder directions (cosine): features that paint alike sit together. "
        "Colour: how often a feature fires. Click a point to open that feature; drag to pan."
        + (f" The {dead:,} dead features are left out." if dead else "")
    )


# ----------------------------------------------------------------------------------- one feature


def _pct(share: float) -> str:
    """A share as a short percentage: 96%, 3.1%, 0.04%."""
    pct = 100 * float(share)
    return f"{pct:.0f}%" if pct >= 10 else f"{pct:.1f}%" if pct >= 1 else f"{pct:.2f}%"


def _thumbs(ctx: Context, ids: np.ndarray, values: np.ndarray, size: int = 56) -> None:
    """Images in a wrapping row, each at ``size`` pixels with its index and activation under it."""
    if not len(ids):
        return
    scale = images.scale_for(ctx.dataset.images.shape[1], size)
    pics = [images.grid(ctx.dataset.images[[i]], cols=1, scale=scale) for i in ids.tolist()]
    st.image(pics, caption=[f"#{i} {v:.1f}" for i, v in zip(ids.tolist(), values.tolist())], width=size)


def _feature_page(ctx: Context, model, stats: FeatureStats, atoms: Atoms, f: int) -> None:
    from explorer.quality import features as feat

    codes = ctx.map.encoded.latents  # (N, F)
    _header(stats, f)
    c1, c2, c3 = st.columns([2, 4, 3], gap="medium")
    with c1:
        st.image(_tile(atoms, stats, f, target=200), caption="decoder atom: red adds, blue removes", width="stretch")
        _facts(stats, f)
    with c2:
        ids, values = feat.top_activating(codes, f, k=14)
        st.markdown("**Top activating images**")
        if len(ids):
            _thumbs(ctx, ids, values)
        else:
            st.info(f"Feature {f} never fires on these {stats.n_images:,} images (a dead feature).")
        _similar(stats, atoms, f)
    with c3:
        st.markdown("**Activation histogram**")
        counts, edges = feat.activation_histogram(codes, f)
        if len(counts):
            st.plotly_chart(
                feature_figures.histogram_figure(counts, edges), key="feat_hist", width="stretch", config=PLOT_CONFIG
            )
        st.caption(
            f"Density: active on {stats.frequency[f]:.2%} of images ({stats.count[f]:,} of {stats.n_images:,}); "
            "zeros left out."
        )
        sids, svals, total = feat.strongest_for(stats, codes, f, k=8)
        if total:
            st.markdown(f"**The strongest feature of {total:,} image{'s' if total != 1 else ''}**")
            _thumbs(ctx, sids, svals, size=48)
        else:
            st.caption(f"Feature {f} is never an image's strongest feature.")
    st.divider()
    left, right = st.columns([3, 2], gap="large")
    with left:
        _bands(ctx, codes, f)
    with right:
        st.plotly_chart(
            _footprint(ctx.key, f, ctx),
            key=f"feat_foot:{f}",
            on_select=lambda: _footprint_pick(f"feat_foot:{f}", len(codes)),
            selection_mode=("points", "box", "lasso"),
            width="stretch",
            config=PLOT_CONFIG,
        )
        st.caption("Drag a box over the map to choose images to steer below (every page shares the selection).")
    st.divider()
    _steering(ctx, model, stats, f)


def _header(stats: FeatureStats, f: int) -> None:
    c1, c2, c3 = st.columns([1.2, 5, 1.6], vertical_alignment="center")
    c1.button("← All features", key="feat_back", on_click=_open, args=(None,))
    flag = _flag(stats, f)
    badge = {"dead": " :gray-badge[dead]", "dense": " :orange-badge[dense]"}.get(flag, "")
    c2.markdown(f"### Feature {f}{badge}")
    c3.number_input(
        "Go to feature", 0, stats.n_features - 1, f, key=f"feat_goto:{f}",
        on_change=lambda: _open(st.session_state.get(f"feat_goto:{f}")),
    )  # fmt: skip


def _facts(stats: FeatureStats, f: int) -> None:
    from explorer.quality import features as feat

    if stats.dead[f]:
        st.markdown(f"Never active on these {stats.n_images:,} images.")
        return
    rank = int(np.flatnonzero(stats.order(feat.SORTS[0]) == f)[0]) + 1
    st.markdown(
        f"- active on **{stats.frequency[f]:.2%}** of images\n"
        f"- mean activation **{stats.mean_active[f]:.3g}** when active, {stats.mean_all[f]:.3g} over all\n"
        f"- largest **{stats.max_activation[f]:.3g}**\n"
        f"- rank {rank:,} of {stats.n_features:,} by frequency"
    )


def _similar(stats: FeatureStats, atoms: Atoms, f: int, k: int = 8) -> None:
    from explorer.quality import features as feat

    ids, cos = feat.most_similar(atoms.unit, f, k=k)
    st.markdown("**Most similar features** (cosine of decoder directions)")
    cols = st.columns(k, gap="small")
    for col, j, c in zip(cols, ids.tolist(), cos.tolist()):
        with col, st.container(gap=None):
            st.image(_tile(atoms, stats, j, target=56), width="stretch")
            st.button(f"{j}", key=f"feat_sim_{j}", on_click=_open, args=(j,), type="tertiary", width="stretch",
                      help=f"Open feature {j} (cosine {c:.3f})")  # fmt: skip
            st.caption(f"{c:.2f}")


def _bands(ctx: Context, codes: np.ndarray, f: int) -> None:
    from explorer.quality import features as feat

    bands = feat.quantile_bands(codes, f, n_bands=5, per_band=10)
    st.markdown("**Across its range**: images from each fifth of its non-zero activations, strongest band first")
    if not bands:
        st.caption("None: the feature never fires on these images.")
    for band in bands:
        st.caption(
            f"quantiles {band.q_lo:.0%}–{band.q_hi:.0%} · activation {band.lo:.2f}–{band.hi:.2f} · {band.size:,} images"
        )
        _thumbs(ctx, band.ids, band.values, size=52)


def _footprint_pick(widget: str, n_rows: int) -> None:
    """on_select of the footprint: the images selected become the session's pick (every page sees it)."""
    ids = picked(map_view.chart_selection(widget), n_rows=n_rows).ids
    map_view.set_pick(Picked(ids) if ids else Picked())


@st.fragment
def _steering(ctx: Context, model, stats: FeatureStats, f: int) -> None:
    """Add alpha x this feature to one image's code and decode; reruns alone when its widgets change."""
    from explorer.quality import features as feat

    st.markdown(f"**Steering**: add α × feature {f} to an image's code, then decode")
    pick = map_view.current_pick(ctx)
    n = len(ctx.map.labels)
    default = int(pick.ids[0]) if pick.ids else 0
    controls, strip = st.columns([2, 5], gap="large")
    with controls:
        c1, c2 = st.columns(2)
        i = int(c1.number_input("Image index", 0, n - 1, default, key=f"feat_steer_i:{default}"))
        steps = c2.select_slider("Steps", [5, 7, 9, 11], value=7, key="feat_steer_steps")
        reach = feat.steering_range(stats, f)
        lo, hi = st.slider(
            "α from, to", -reach, 2 * reach, (0.0, reach), step=round(reach / 50, 3) or 0.01, key=f"feat_alpha:{f}",
            help="α is added to the feature's activation; below zero it takes the feature away (never past zero)",
        )  # fmt: skip
        have = float(ctx.map.encoded.latents[i, f])
        src = "the first image of your selection" if pick.ids and i == default else f"image #{i}"
        st.caption(
            f"Steering {src} ({label(ctx, i)}), whose feature {f} activation is {have:.2f}. "
            "α = 0 is its reconstruction. Select images on any map to steer one of them."
        )
    alphas = np.linspace(lo, hi, steps)
    frames = feat.steered_images(model, ctx.map.encoded.latents[i], f, alphas)  # (T, H, W[, 3]) uint8
    scale = images.scale_for(frames.shape[1], 68)
    pics = [images.grid(p[None], cols=1, scale=scale) for p in np.concatenate([ctx.dataset.images[[i]], frames])]
    with strip:
        st.image(pics, caption=[f"#{i} original", *(f"α {a:+.2f}" for a in alphas)], width=68)
