"""The four views. Each reads the selection, runs its panel (right) and draws the map (left)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from explorer.errors import ExplorerError
from explorer.figures import charts, images
from explorer.figures.map import overlay_trace
from explorer.maps.selection import Picked, find, parse_point
from explorer.ui import bridge, links, map_view, sidebar, state, timing
from explorer.ui.state import Context, label

FAR = 5.0  # a spot further than this many typical spacings from any mapped point is "far from data"


def page(view: str, panel) -> None:
    """The skeleton every map page shares: sidebar, then ``panel(ctx, pick) -> overlays`` beside the map, then warm the model.

    ``view`` names the page's chart (one widget per page); other modules build their map pages with it too."""
    timing.mark("script_start", view=view)
    ctx = sidebar.render()
    if ctx is None:
        return
    st.html(map_view.CSS)
    _body(ctx, view, panel)
    links.flush()  # the whole run's address, in one message (app.py flushes again if a page staged more)
    state.model(ctx.ckpt)  # after the map is on screen: the first interaction then finds the model loaded
    map_view.serve_sprites(ctx)  # then the hover images (made once per image set)
    sidebar.faithfulness_note(ctx)  # on request


@st.fragment
def _body(ctx: Context, view: str, panel) -> None:
    """Map and panel: a selection, a panel widget or Go to reruns this part only, not the sidebar."""
    pick = map_view.current_pick(ctx)
    if (linked := links.pending_pick(len(ctx.map.labels), ctx.params.n_components)) is not None:
        map_view.set_pick(linked)  # a link's selection (or, after Back, the one before)
        map_view.restart_chart()  # the chart may still draw a selection of its own: a new one draws this
        pick = linked
    if (opens_on := links.pending_view(ctx.map.class_names, ctx.params.n_components)) is not None:
        map_view.open_on(ctx, opens_on)
    left, right = st.columns([5, 3], gap="medium")
    with right, st.container(key="lx-panel"):
        try:
            overlays = panel(ctx, pick) or []
        except ExplorerError as exc:
            st.error(str(exc))
            overlays = []
    with left:
        links.show_notices(st, links.MAP_NOTICES)
        map_view.render(ctx, view, overlays, goto=lambda where: _goto(ctx, where))
    links.stage("map", links.map_params(st.session_state.get(map_view.PICK, Picked()), ctx))
    links.flush(fragment_only=True)
    timing.mark("map_drawn", view=view)


def _goto(ctx: Context, where) -> None:
    """ "Go to #index or class" in ``where``: selects those images, which every page then shows."""
    n = len(ctx.map.labels)

    def apply() -> None:
        text = st.session_state.get("goto", "").strip()
        st.session_state["goto_msg"] = None
        if not text:
            return
        try:
            ids = find(text, ctx.map.labels, ctx.map.class_names)
        except ValueError as exc:
            st.session_state["goto_msg"] = str(exc)
            return
        map_view.set_pick(Picked(tuple(int(i) for i in ids)))

    where.text_input(
        "Go to",
        key="goto",
        on_change=apply,
        placeholder=f"Go to an index (0–{n - 1}) or a class",
        label_visibility="collapsed",
    )
    # shown once: the next thing the person does (any rerun of the map) takes it away
    if msg := st.session_state.pop("goto_msg", None):
        st.error(msg, icon=":material/search_off:")


def _seeded(key: str, default) -> str:
    """A page control's key, its default put in session state first: a link may have set its value already,
    and a widget given both a default and a state value makes Streamlit complain."""
    st.session_state.setdefault(key, default)
    return key


def scale(ctx: Context, target: int = 56) -> int:
    """Upscale for thumbnails and strips: about ``target`` pixels high whatever the model's input size."""
    return images.scale_for(ctx.ckpt.input_shape[1], target)


def _decode_spot(ctx: Context, point: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, float]:
    """Map coordinate -> (latent (L,), decoded image, distance to data in typical spacings)."""
    from explorer.maps import ops

    z, far = ctx.map.projection.inverse(np.asarray([point], dtype=np.float32))
    return z[0], ops.decode(state.model(ctx.ckpt), z)[0], float(far[0])


def _far_warning(far: float) -> None:
    if far > FAR:
        st.warning(
            f"Far from data: the nearest mapped image is {far:.0f}× the typical spacing away. "
            "The latent here is extrapolated from distant neighbours; the decoder has seen nothing like it."
        )
    else:
        st.caption(f"Distance to the nearest mapped image: {far:.1f}× the typical spacing.")


# ----------------------------------------------------------------------------------------- decode


SORTS = ("index", "reconstruction error, worst first", "most typical first")
PAGE = 32  # image pairs per page of the selection grid


def _typed_spot(ctx: Context) -> None:
    """on_change of the coordinate field: decode there once; a later box or click replaces it."""
    text = st.session_state.get("typed_xy", "").strip()
    st.session_state["typed_msg"] = None
    if not text:
        return
    try:
        spot = parse_point(text, 2)
        emb = ctx.map.projection.embedding
        lo, hi = emb.min(0), emb.max(0)
        pad = 0.5 * (hi - lo)  # half the map's size beyond its edge: still something to decode
        if not all(lo[d] - pad[d] <= spot[d] <= hi[d] + pad[d] for d in range(2)):
            raise ValueError(
                f"({spot[0]:g}, {spot[1]:g}) is outside this map, which spans x {lo[0]:.1f} to {hi[0]:.1f} "
                f"and y {lo[1]:.1f} to {hi[1]:.1f}"
            )
    except ValueError as exc:
        st.session_state["typed_msg"] = f"Coordinate not used: {exc}."
        return
    old = st.session_state.get(map_view.PICK, Picked())
    map_view.set_pick(Picked(old.ids, (spot[0], spot[1])))


def _order(ctx: Context, ids: np.ndarray, how: str) -> np.ndarray:
    if how == SORTS[1]:
        return ids[np.argsort(-ctx.map.encoded.recon_error[ids], kind="stable")]
    if how == SORTS[2]:  # closest to the selection's mean code first
        lat = ctx.map.encoded.latents[ids]
        return ids[np.argsort(np.linalg.norm(lat - lat.mean(0), axis=1), kind="stable")]
    return np.sort(ids)


def _one_image(ctx: Context, i: int, *, closable: bool = False) -> None:
    """One image: itself, its reconstruction, and its nearest images in latent space; the panel scrolls to it.
    ``closable``: a close-up of one image of a larger selection, with a button back to the grid."""
    from explorer.maps import ops

    model = state.model(ctx.ckpt)
    recon, err = ops.reconstruct(model, ctx.dataset.images[[i]])
    idx, _ = ops.nearest(ctx.map.encoded.latents, ctx.map.encoded.latents[[i]], k=min(9, len(ctx.map.labels)))
    near = [j for j in idx[0].tolist() if j != i][:8]
    bridge.scroll_here(key=f"scroll:{i}")
    head, close = st.columns([5, 1], vertical_alignment="center")
    head.markdown(f"**#{i} ({label(ctx, i)})** — reconstruction MSE {err[0]:.4f}; ringed on the map")
    if closable:
        close.button(
            "✕",
            key="sel_unfocus",
            help="Back to the selection",
            on_click=lambda: st.session_state.pop("sel_focus", None),
        )
    st.image(
        images.strip(np.concatenate([ctx.dataset.images[[i]], recon]), scale=scale(ctx, 84)),
        caption="original | reconstruction",
    )
    st.caption("its nearest images in latent space (click one to go to it)")
    bridge.thumbnails(
        ctx.dataset.images[near],
        near,
        [f"#{j}" for j in near],
        [f"#{j} ({label(ctx, j)})" for j in near],
        cols=8,
        key=f"near:{i}",
        on_click=lambda j: map_view.set_pick(Picked((j,))),
    )


def _selection_grid(ctx: Context, pick: Picked) -> None:
    from explorer.maps import ops

    ids = np.asarray(pick.ids, dtype=np.int64)
    focus = st.session_state.get("sel_focus")
    focus = focus if focus in set(pick.ids) else None
    if focus is not None:  # first, where the eye is: the grid stays below it
        _one_image(ctx, int(focus), closable=True)
        st.divider()
    c1, c2 = st.columns([3, 2])
    how = c1.selectbox("Order", SORTS, key="sel_sort")
    pages = max(1, -(-len(ids) // PAGE))
    page = int(c2.number_input(f"Page (of {pages})", 1, pages, 1, key="sel_page")) if pages > 1 else 1
    shown = _order(ctx, ids, how)[(page - 1) * PAGE : page * PAGE]
    originals = ctx.dataset.images[shown]
    recon, err = ops.reconstruct(state.model(ctx.ckpt), originals)
    pairs = np.concatenate([originals, recon], axis=2)  # (N, H, 2W[, C]): original | reconstruction
    st.markdown(
        f"**{len(ids):,} selected** — original | reconstruction, per-image MSE; click one to look closer"
        + (f"; images {(page - 1) * PAGE + 1}–{(page - 1) * PAGE + len(shown)}" if pages > 1 else "")
    )
    bridge.thumbnails(
        pairs,
        shown.tolist(),
        [f"#{i} · {e:.4f}" for i, e in zip(shown.tolist(), err)],
        [f"#{i} ({label(ctx, i)}): MSE {e:.4f}" for i, e in zip(shown.tolist(), err)],
        cols=4,
        key="sel_thumbs",
        on_click=lambda i: st.session_state.__setitem__("sel_focus", i),
        focus=focus,
    )
    mean = float(ctx.map.encoded.recon_error[ids].mean())
    st.caption(f"Mean MSE of the whole selection: {mean:.4f}.")


def _focus_label(ctx: Context):
    return lambda i: "choose an image of this page" if i is None else f"#{i} ({label(ctx, i)})"


def _decode_panel(ctx: Context, pick: Picked) -> list[dict]:
    title, clear = st.columns([3, 2], vertical_alignment="center")
    title.subheader("Map & decode")
    if pick:
        clear.button("Clear selection", on_click=map_view.clear_pick, key="sel_clear", width="stretch")
    overlays: list[dict] = []
    two_d = ctx.params.n_components == 2
    if two_d:
        st.text_input(
            "Decode at a map coordinate",
            key="typed_xy",
            placeholder="x, y  e.g. 2.5, -1",
            on_change=_typed_spot,
            args=(ctx,),
        )
        if msg := st.session_state.pop("typed_msg", None):
            st.error(msg)
    spot = pick.spot
    if spot is not None and two_d:
        from explorer.maps import ops  # not before: the first map is drawn before any model is loaded

        z, img, far = _decode_spot(ctx, spot)
        st.markdown(f"**Decoded at ({spot[0]:.2f}, {spot[1]:.2f})**")
        idx, _ = ops.nearest(ctx.map.encoded.latents, z[None], k=min(5, len(ctx.map.labels)))
        row = np.concatenate([img[None], ctx.dataset.images[idx[0]]])
        st.image(images.strip(row, scale=scale(ctx, 84)), caption="decoded spot | its 5 nearest images in latent space")
        _far_warning(far)
        if not map_view.shown_by_chart("map_decode"):  # a typed spot: the chart drew no box for it
            overlays.append(overlay_trace(np.asarray([spot], np.float32), "spot", name="decoded spot"))
    if len(pick.ids) == 1:
        _one_image(ctx, pick.ids[0])
    elif pick.ids:
        _selection_grid(ctx, pick)
    elif spot is None:
        st.info(
            "Click a point or draw a box on the map to compare images with their reconstructions, "
            "or draw a small box over empty space to decode that spot."
        )
    return overlays


def decode_view() -> None:
    page("map_decode", _decode_panel)


# ------------------------------------------------------------------------------------ interpolate


def _endpoint(ctx: Context, which: str, default: int) -> tuple[np.ndarray, str]:
    n = len(ctx.map.labels)
    i = int(st.number_input(f"{which}: image index", 0, n - 1, min(default, n - 1), key=f"interp_{which}"))
    return ctx.map.encoded.latents[i], f"#{i} ({label(ctx, i)})"


def _interpolate_panel(ctx: Context, pick: Picked) -> list[dict]:
    from explorer.maps import ops

    st.subheader("Interpolate")
    lat = ctx.map.encoded.latents
    sources = ["selection", "indices"] + (["selection → spot"] if ctx.params.n_components == 2 else [])
    source = st.radio("Endpoints from", sources, horizontal=True, key="interp_src")
    if source == "selection" and len(pick.ids) >= 2:
        c1, c2 = st.columns(2)
        choices = list(pick.ids[:500])  # a long selection offers its first 500 as endpoints
        fmt = _focus_label(ctx)
        a = c1.selectbox("From", choices, index=0, key=f"interp_a:{choices[0]}", format_func=fmt)
        b = c2.selectbox("To", choices, index=1, key=f"interp_b:{choices[1]}", format_func=fmt)
        if a == b:
            st.warning("Both ends are the same image: pick two different ones.")
        z0, z1, what = lat[a], lat[b], f"#{a} ({label(ctx, a)}) → #{b} ({label(ctx, b)})"
    elif source == "selection → spot" and pick.ids and pick.spot is not None:
        a = pick.ids[0]
        z1, _, far = _decode_spot(ctx, pick.spot)
        z0, what = lat[a], f"#{a} ({label(ctx, a)}) → spot ({pick.spot[0]:.2f}, {pick.spot[1]:.2f})"
        _far_warning(far)
    else:
        if source != "indices":
            st.caption(
                "Select at least two points (or a point and a spot) on the map; until then the indices below are used."
            )
        c1, c2 = st.columns(2)
        with c1:
            z0, n0 = _endpoint(ctx, "A", 0)
        with c2:
            z1, n1 = _endpoint(ctx, "B", 1)
        what = f"{n0} → {n1}"
    c1, c2 = st.columns(2)
    steps = c1.slider("Steps", 2, 64, key=_seeded("interp_steps", 16))
    method = c2.radio("Path", ["slerp", "lerp"], horizontal=True, key="interp_method")
    path = ops.interpolate(z0, z1, steps, method)  # (steps, L)
    frames = ops.decode(state.model(ctx.ckpt), path)
    st.markdown(f"**{what}**, {steps} steps, {method}")
    strip = images.grid(frames, cols=8, scale=scale(ctx))
    st.image(strip, width="stretch")
    return _path_downloads(ctx, frames, path, "interpolation", [f"step {i}" for i in range(steps)])


def _path_downloads(ctx: Context, frames: np.ndarray, path: np.ndarray, name: str, labels: list[str]) -> list[dict]:
    """A decoded path's two downloads (PNG strip, animated GIF) and its line on the map."""
    d1, d2 = st.columns(2)
    d1.download_button(
        "PNG strip", lambda: images.png_bytes(images.strip(frames, scale=scale(ctx))), f"{name}.png", "image/png"
    )
    d2.download_button(
        "Animated GIF", lambda: images.gif_bytes(frames, scale=scale(ctx, 112)), f"{name}.gif", "image/gif"
    )
    return [overlay_trace(ctx.map.projection.transform(path), "path", name=name, labels=labels)]


def interpolate_view() -> None:
    page("map_interp", _interpolate_panel)


# ----------------------------------------------------------------------------------------- sample


def _sample_panel(ctx: Context, pick: Picked) -> list[dict]:
    from explorer.maps import ops

    st.subheader("Sample")
    model = state.model(ctx.ckpt)
    c1, c2, c3 = st.columns(3)
    n = c1.select_slider("How many", [16, 36, 64, 100], key=_seeded("samp_n", 64))
    temperature = c2.slider("Temperature", 0.0, 2.0, step=0.05, key=_seeded("samp_t", 1.0))
    seed = int(c3.number_input("Seed", 0, 2**31 - 1, key=_seeded("samp_seed", 0)))
    if model.has_prior:
        z = ops.sample(model, n, temperature=temperature, seed=seed)
        st.caption("From the prior N(0, T²·I).")
    else:
        post = state.aggregate_posterior(ctx.key, model, ctx.map.encoded.latents)
        z = ops.sample(model, n, temperature=temperature, seed=seed, posterior=post)
        st.caption(
            f"From a {post.n_components}-component Gaussian mixture fitted to the {len(ctx.map.labels):,} encoded "
            "images (this model has no prior)" + (", projected to valid sparse codes." if model.sparse_codes else ".")
        )
    grid = images.grid(ops.decode(model, z), cols=int(np.ceil(np.sqrt(n))), scale=scale(ctx))
    st.image(grid, width="stretch")
    st.download_button("PNG grid", lambda: images.png_bytes(grid), "samples.png", "image/png")
    return [overlay_trace(ctx.map.projection.transform(z), "samples", name="samples")]


def sample_view() -> None:
    page("map_sample", _sample_panel)


# --------------------------------------------------------------------------------------- traverse


TRAVERSE_MODES = ("one dimension", "every dimension")
ALL_STEPS = 9  # values per dimension in the every-dimension grid
MAX_ROWS = 32  # dimensions (or features) it shows at most


def _traverse_all(ctx: Context, i: int) -> list[dict]:
    """Every latent dimension of image i at once: one row per dimension, the informative ones first (a VAE's by
    KL, with a bar chart of KL per dimension; other models by their spread over the data; an SAE's by this
    image's active features, strongest first)."""
    from explorer.maps import ops

    model = state.model(ctx.ckpt)
    lat = ctx.map.encoded.latents
    z = lat[i]
    kl = state.kl_per_dimension(ctx.key, model, ctx.dataset.images)
    if model.sparse_codes:
        order = [int(d) for d in np.argsort(-z) if z[d] > 0][:MAX_ROWS]
        labels = [f"{model.code_name} {d} ({z[d]:.2f})" for d in order]
        why = f"this image's {len(order)} active {model.code_name}s, strongest first"
    elif kl is not None:
        order = [int(d) for d in np.argsort(-kl)][:MAX_ROWS]
        labels = [f"dim {d} · KL {kl[d]:.2f}" for d in order]
        why = "dimensions by their KL (nats), most informative first"
    else:
        spread = lat.std(0)
        order = [int(d) for d in np.argsort(-spread)][:MAX_ROWS]
        labels = [f"dim {d} · σ {spread[d]:.2f}" for d in order]
        why = "dimensions by their spread over the mapped images, widest first"
    if not order:
        st.info("This image activates no feature: there is nothing to vary.")
        return []
    path = ops.traverse_all(lat, z, order, ALL_STEPS, sparse=model.sparse_codes)
    frames = ops.decode(model, path)
    st.markdown(f"**#{i} ({label(ctx, i)})**: {why}; each row sweeps one from low to high")
    st.image(images.labelled_rows(frames, labels, ALL_STEPS, scale=scale(ctx, 40)), width="stretch")
    if kl is not None:
        ranked = np.sort(kl)[::-1]
        st.plotly_chart(
            charts.bar_figure([f"dim {d}" for d in np.argsort(-kl)], ranked, x_title="latent dimension, by KL",
                              y_title="KL (nats)"),
            key="trav_kl", config={"displayModeBar": False},
        )  # fmt: skip
        used = int((kl > 0.1).sum())
        st.caption(
            f"{used} of {len(kl)} dimensions carry more than 0.1 nats; together {kl.sum():.1f} nats per image. "
            "A dimension near 0 has collapsed to the prior: the decoder ignores it."
        )
    return []


def _traverse_panel(ctx: Context, pick: Picked) -> list[dict]:
    from explorer.maps import ops

    st.subheader("Traverse")
    lat = ctx.map.encoded.latents
    n = len(lat)
    default = pick.ids[0] if pick.ids else 0
    mode = st.radio("Vary", TRAVERSE_MODES, horizontal=True, key="trav_mode")
    if mode == TRAVERSE_MODES[1]:
        i = int(
            st.number_input(
                "Image index", 0, n - 1, default, key=f"trav_all_i:{default}", help="The first selected image"
            )
        )
        return _traverse_all(ctx, i)
    c1, c2 = st.columns(2)
    i = int(
        c1.number_input(
            "Image index",
            0,
            n - 1,
            default,
            key=f"trav_i:{default}",  # a new selection starts from its first image
            help="The first selected image; type another index to traverse that one",
        )
    )
    z = lat[i]
    model = state.model(ctx.ckpt)
    sparse = model.sparse_codes
    code = model.code_name
    if sparse:
        # a sparse code is zero almost everywhere: start from this image's strongest unit
        top = int(np.argmax(z))
        title = f"{code.capitalize()} (this image's strongest is {top})"
        dim = int(c2.number_input(title, 0, ctx.ckpt.latent_dim - 1, top, key=f"trav_dim_{i}"))
    else:
        spread = lat.std(0)
        title = code.capitalize()
        dim = int(c2.number_input(title, 0, ctx.ckpt.latent_dim - 1, int(np.argmax(spread)), key="trav_dim"))
    steps = st.slider("Steps", 3, 32, key=_seeded("trav_steps", 12))
    values = ops.traverse_range(lat, dim, n=steps, sparse=sparse)
    path = ops.traverse(z, dim, values)
    frames = ops.decode(model, path)
    st.markdown(f"**#{i} ({label(ctx, i)})**, {code} {dim} from {values[0]:.2f} to {values[-1]:.2f}")
    st.image(images.grid(frames, cols=steps if steps <= 8 else -(-steps // 2), scale=scale(ctx)), width="stretch")
    return _path_downloads(ctx, frames, path, "traversal", [f"{v:.2f}" for v in values])


def traverse_view() -> None:
    page("map_trav", _traverse_panel)
