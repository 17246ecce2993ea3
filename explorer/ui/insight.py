"""Two map pages that probe the model with one image: "Your image" (drop one in or pick one, edit it, see
where it lands and what the model makes of it) and "Denoising" (the same noise through several checkpoints).

Pages only ask and show: edits, PSNR and curves come from ``explorer.quality.compression``; session keys start ``img_``
and ``dn_``.
"""

from __future__ import annotations

import numpy as np
import streamlit as st
from streamlit.errors import StreamlitAPIException

from explorer.data.uploads import load_user_image
from explorer.errors import ExplorerError
from explorer.figures import images
from explorer.figures.charts import bar_figure, curve_figure
from explorer.figures.map import overlay_trace
from explorer.maps.selection import Picked
from explorer.quality import compression
from explorer.ui import features, state, views
from explorer.ui.state import Context, label
from explorer.ui.views import scale

SOURCES = ("from the data", "upload")
TOP_FEATURES = 32  # bars drawn for a sparse code; every active feature is still listed
NEIGHBOURS = 8
CHART = {"displaylogo": False, "displayModeBar": False}


# ----------------------------------------------------------------------------------------- shared


def comparable(ctx: Context) -> dict[str, state.CheckpointRef]:
    """Every other checkpoint (shipped, then this session's uploads) that takes the current model's input shape."""
    refs = state.checkpoints().items()
    return {n: r for n, r in refs if n != ctx.ckpt.name and r.input_shape == ctx.ckpt.input_shape}


def short(ref: state.CheckpointRef) -> str:
    """'dae-conv32' for 'fashion-mnist-dae-conv32': the dataset prefix repeats on every shipped name."""
    return ref.name.removeprefix(f"{ref.trained_on}-") if ref.trained_on else ref.name


def index_input(ctx: Context, pick: Picked, key: str) -> int:
    """An image index that follows the map: a new pick starts from its first image."""
    default = pick.ids[0] if pick.ids else 0
    return int(
        st.number_input(
            "Image index",
            0,
            len(ctx.map.labels) - 1,
            default,
            key=f"{key}:{default}",
            help="Click a point on the map, or type an index",
        )
    )


def upscaled(image: np.ndarray, ctx: Context, target: int = 112) -> np.ndarray:
    """One uint8 image (H, W[, 3]) as RGB, enlarged by an integer factor to about ``target`` pixels."""
    return images.grid(image[None], cols=1, scale=scale(ctx, target))


# ----------------------------------------------------------------------------------------- your image


def _uploaded(ctx: Context) -> tuple[np.ndarray, str] | None:
    """The dropped file in the model's input shape, (1, H, W[, 3]) uint8 and a caption; None before a drop.

    Decoded once per file and input shape (kept in the session), so edits rerun without re-reading it."""
    file = st.file_uploader(
        "A PNG or JPEG image", type=["png", "jpg", "jpeg"], key="img_file", help="Read with size limits, never stored"
    )
    if file is None:
        st.info("Drop a picture: it is centre-cropped to the model's aspect ratio and resized to its input.")
        return None
    token = (file.file_id, tuple(ctx.ckpt.input_shape))
    held = st.session_state.get("img_upload")
    if held is None or held[0] != token:
        try:
            image, (h0, w0) = load_user_image(file.getvalue(), filename=file.name, input_shape=ctx.ckpt.input_shape)
            held = (token, image, f"{file.name} ({h0}×{w0})")
        except ExplorerError as exc:
            held = (token, None, str(exc))
        st.session_state["img_upload"] = held
    if held[1] is None:
        raise compression.ProbeError(f"Image not used: {held[2]}")
    return held[1][None], held[2]


def _edit_controls(h: int, w: int) -> compression.Edits:
    with st.expander("Edit the image", expanded=True):
        c1, c2, c3 = st.columns([3, 3, 2])
        noise = c1.selectbox("Noise", ["none", *compression.NOISES], key="img_noise")
        level = c2.slider(
            "Noise level",
            0.0,
            1.0,
            0.3,
            0.05,
            key="img_level",
            disabled=noise == "none",
            help="gaussian: σ in pixel units (0–1); salt and pepper: the fraction of pixels flipped",
        )
        seed = int(c3.number_input("Seed", 0, 2**31 - 1, 0, key="img_seed"))
        c1, c2, c3 = st.columns(3)
        dx = c1.slider("Shift right", -w // 2, w // 2, 0, key="img_dx")
        dy = c2.slider("Shift down", -h // 2, h // 2, 0, key="img_dy")
        size = c3.slider("Occlusion", 0, min(h, w), 0, key="img_occ", help="Side of a black square in pixels; 0: none")
        top = left = 0
        if size:
            c1, c2, c3 = st.columns(3)
            top = c1.slider("Square top", 0, h - 1, (h - size) // 2, key="img_top")
            left = c2.slider("Square left", 0, w - 1, (w - size) // 2, key="img_left")
        invert = st.checkbox("Invert", key="img_invert", help="The shipped data is light on dark; most photos are not")
    return compression.Edits(
        invert=invert, dx=dx, dy=dy, occlusion=size, top=top, left=left, noise=noise, level=level, seed=seed
    )


def _features(ctx: Context, code: np.ndarray) -> None:
    """A sparse code's active features: bars of the strongest, and every one linked to its feature page."""
    active = np.flatnonzero(code > 0)
    active = active[np.argsort(-code[active], kind="stable")]  # strongest first
    st.markdown(f"**{len(active)} of {len(code):,} features fire**")
    if not len(active):
        return
    shown = active[:TOP_FEATURES]
    fig = bar_figure([str(f) for f in shown], code[shown], x_title="feature", y_title="activation")
    st.plotly_chart(fig, key="img_feature_bars", config=CHART, width="stretch")
    _feature_links(code, active)
    st.caption("Each opens that feature's page: its strongest images and its decoder atom.")


def _feature_links(code: np.ndarray, active: np.ndarray, per_row: int = 4) -> None:
    """Links to /features?feature=<i> that stay in this session (a plain link opens a new tab, a new session,
    and the default checkpoint); a plain link only when the app has no Features page."""
    page = st.Page(features.features_view, title="Features", url_path="features")
    try:
        cols = st.columns(per_row)
        for k, f in enumerate(active.tolist()):
            cols[k % per_row].page_link(page, label=f"**{f}** · {code[f]:.2f}", query_params={features.PARAM: str(f)})
    except StreamlitAPIException:
        st.markdown(" · ".join(f"[{f}](./features?feature={f})\u00a0{code[f]:.2f}" for f in active))


def _image_panel(ctx: Context, pick: Picked) -> list[dict]:
    st.subheader("Your image")
    c, h, w = ctx.ckpt.input_shape
    source = st.radio("Image", SOURCES, horizontal=True, key="img_src", label_visibility="collapsed")
    home = None  # the mapped image it started from, if any
    if source == SOURCES[0]:
        home = index_input(ctx, pick, "img_index")
        base, title = ctx.dataset.images[[home]], f"#{home} ({label(ctx, home)})"
    else:
        try:
            got = _uploaded(ctx)
        except ExplorerError as exc:
            st.error(str(exc))
            return []
        if got is None:
            return []
        base, title = got
    edits = _edit_controls(h, w)
    edited = edits.apply(base)  # (1, H, W[, 3]) uint8
    from explorer.maps import ops

    model = state.model(ctx.ckpt)
    recon, err = ops.reconstruct(model, edited)
    z = compression.encode(model, edited)  # (1, L)
    changed = not np.array_equal(edited, base)

    st.markdown(f"**{title}**, {edits.describe()}")
    tiles = [(base[0], "original")] + ([(edited[0], "edited")] if changed else []) + [(recon[0], "reconstruction")]
    for col, (im, caption) in zip(st.columns(3), tiles):
        col.image(upscaled(im, ctx), caption=caption, output_format="PNG")
    worse = float((ctx.map.encoded.recon_error < err[0]).mean())
    m1, m2, m3 = st.columns(3)
    m1.metric("Error (MSE)", f"{err[0]:.4f}", help="Mean squared reconstruction error per pixel, pixels in [0, 1]")
    m2.metric("Worse than", f"{worse:.0%}", help="The share of the mapped images this model reconstructs better")
    recon_db = compression.psnr(base, recon)
    m3.metric(
        "PSNR vs original",
        f"{recon_db:.1f} dB",
        delta=f"{recon_db - compression.psnr(base, edited):+.1f} dB vs edited" if changed else None,
        help="Reconstruction against the unedited image; the change is what the model undid (or added) "
        "compared with the edited input itself",
    )

    idx, _ = ops.nearest(ctx.map.encoded.latents, z, k=min(NEIGHBOURS + 1, len(ctx.map.labels)))
    near = [j for j in idx[0].tolist() if j != home][:NEIGHBOURS]
    st.image(
        images.captioned_grid(
            ctx.dataset.images[near], [f"#{j} {label(ctx, j)}" for j in near], cols=4, scale=scale(ctx, 112)
        ),
        caption="its nearest mapped images in latent space",
        width="stretch",
        output_format="PNG",
    )
    if model.sparse_codes:
        _features(ctx, z[0])

    point = ctx.map.projection.transform(z)  # (1, d)
    overlays = []
    if home is not None and changed:  # how far the edit moved it
        start = ctx.map.projection.embedding[[home]]
        overlays.append(overlay_trace(np.concatenate([start, point]), "path", name="edit", labels=[title, "edited"]))
    overlays.append(overlay_trace(point, "spot", name="your image", labels=[f"{title}, {edits.describe()}"]))
    return overlays


def image_view() -> None:
    views.page("map_image", _image_panel)


# ----------------------------------------------------------------------------------------- denoising


DEFAULT_COMPARE = ("fashion-mnist-dae-conv32", "fashion-mnist-ae-conv32")  # trained alike, with and without noise
LEVELS = {
    "gaussian": (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6),
    "salt and pepper": (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5),
}
CURVE_IMAGES = 64


@state.shared("results", spinner="Measuring PSNR across noise levels…")
def _curve(
    digest: str, data_key: str, noise: str, levels: tuple[float, ...], seed: int, _ckpt: state.CheckpointRef, _images
) -> tuple[np.ndarray, np.ndarray]:
    # keyed by the checkpoint and the images' digests: the model and the array are not hashed
    return compression.denoise_curve(state.model(_ckpt), _images, noise=noise, levels=list(levels), seed=seed)


def _trained_noise(ref: state.CheckpointRef) -> str:
    """'trained on gaussian noise 0.3' for a checkpoint whose config names a training noise, else ''."""
    cfg = ref.meta.get("config", {})
    return f"trained on {cfg['noise']} noise {cfg['noise_level']:g}" if "noise" in cfg and "noise_level" in cfg else ""


def _denoise_panel(ctx: Context, pick: Picked) -> list[dict]:
    from explorer.maps import ops

    st.subheader("Denoising")
    c1, c2 = st.columns([2, 3])
    with c1:
        i = index_input(ctx, pick, "dn_index")
    noise = c2.radio("Noise", list(compression.NOISES), horizontal=True, key="dn_noise")
    c1, c2 = st.columns([3, 1])
    level = c1.slider(f"Noise level: {compression.NOISES[noise]}", 0.0, 1.0, 0.3, 0.05, key="dn_level")
    seed = int(c2.number_input("Seed", 0, 2**31 - 1, 0, key="dn_seed"))
    others = comparable(ctx)
    compare = st.multiselect(
        "Compare with",
        list(others),
        default=[n for n in DEFAULT_COMPARE if n in others],
        key=f"dn_compare:{ctx.ckpt.name}",  # each checkpoint keeps its own list (and never lists itself)
        format_func=lambda n: short(others[n]),
        help="Other checkpoints with the same input size get exactly the same noisy image",
    )
    refs = [ctx.ckpt, *(others[n] for n in compare)]

    clean = ctx.dataset.images[[i]]  # (1, H, W[, 3])
    noisy = compression.add_noise(clean, noise=noise, level=level, seed=seed)
    st.markdown(
        f"**#{i} ({label(ctx, i)})** with {noise} noise {level:.2f}; below, each model's reconstruction. PSNR against the clean image:"
    )
    # first row: the clean image and its noisy copy; then each checkpoint's reconstruction of the noisy copy
    rows = [[(clean[0], "clean", np.inf), (noisy[0], "noisy", compression.psnr(clean, noisy))]]
    recons = []
    for ref in refs:
        recon, _ = ops.reconstruct(state.model(ref), noisy)
        recons.append((recon[0], short(ref), compression.psnr(clean, recon)))
    per_row = 4  # narrower tiles would wrap the names under them
    rows += [recons[k : k + per_row] for k in range(0, len(recons), per_row)]
    for row in rows:
        for col, (im, name, db) in zip(st.columns(per_row), row):
            col.image(upscaled(im, ctx, 96), output_format="PNG", width="stretch")
            col.caption(f"{name}  \n**{db:.1f} dB**" if np.isfinite(db) else f"{name}  \n&nbsp;")
    notes = [f"{short(r)}: {t}" for r in refs if (t := _trained_noise(r))]
    if notes:
        st.caption("; ".join(notes) + ".")

    levels = LEVELS[noise]
    sample = ctx.dataset.images[:CURVE_IMAGES]
    curves: dict[str, np.ndarray] = {}
    for ref in refs:
        noisy_db, recon_db = _curve(ref.digest, ctx.data_key, noise, levels, seed, ref, sample)
        curves.setdefault("noisy input", noisy_db)
        curves[short(ref)] = recon_db
    st.markdown(f"**Mean PSNR over {len(sample)} images** of the mapped data")
    fig = curve_figure(
        np.asarray(levels),
        curves,
        x_title=compression.NOISES[noise],
        y_title="PSNR (dB)",
        dashed=("noisy input",),
        marker=level,
    )
    st.plotly_chart(fig, key="dn_curve", config=CHART, width="stretch")

    # where the noise moves the image on the map, for the current model
    z = compression.encode(state.model(ctx.ckpt), noisy)
    point = ctx.map.projection.transform(z)
    start = ctx.map.projection.embedding[[i]]
    return [
        overlay_trace(np.concatenate([start, point]), "path", name="noise", labels=[f"#{i} clean", "noisy"]),
        overlay_trace(point, "spot", name="noisy image", labels=[f"#{i} + {noise} noise {level:.2f}"]),
    ]


def denoise_view() -> None:
    views.page("map_denoise", _denoise_panel)
