"""Two pages about how well the model keeps images: "Anomalies" (the worst-reconstructed images, and whether
reconstruction error tells other data apart) and "Compression" (what a latent code costs against a PNG).

Pages only ask and show; the numbers come from ``explorer.maps.ops``, ``explorer.quality.compression`` and ``explorer.quality.anomaly``.
Session keys start ``an_`` and ``cz_``.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from explorer.data import dataset_names
from explorer.figures import images
from explorer.figures.charts import log_histogram_figure
from explorer.figures.map import overlay_trace
from explorer.maps.encode import encode_dataset
from explorer.maps.selection import Picked
from explorer.quality import compression
from explorer.quality.anomaly import auroc, rank_by_error
from explorer.ui import map_view, sidebar, state, views
from explorer.ui.insight import CHART
from explorer.ui.state import Context, label
from explorer.ui.views import scale

# ----------------------------------------------------------------------------------------- anomalies

WORST = [8, 16, 24, 32, 48, 64]
OTHER_SIZES = [500, 1000, 2000]
FLAG_QUANTILE = 0.95  # "flag anything worse than 95 % of the mapped images"


@state.shared("results", spinner="Encoding the other images…")
def _encoded(
    digest: str, data_key: str, _ckpt: state.CheckpointRef, _images: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(codes (N, L), reconstruction MSE (N,)) of images, keyed by the checkpoint's and the images' digests: one
    pass, as the mapped images' own codes and errors were made."""
    enc = encode_dataset(state.model(_ckpt), _images)
    return enc.latents, enc.recon_error


def _worst(ctx: Context) -> list[dict]:
    """The mapped images this model reconstructs worst, beside their reconstructions and as crosses on the map."""
    from explorer.maps import ops

    err = ctx.map.encoded.recon_error
    n = st.select_slider("Show the worst", WORST, value=16, key="an_n")
    ranked = rank_by_error(err, n)  # (n,) row ids, worst first
    originals = ctx.dataset.images[ranked]
    recon, _ = ops.reconstruct(state.model(ctx.ckpt), originals)
    pairs = np.concatenate([originals, recon], axis=2)  # (n, H, 2W[, 3]): original | reconstruction
    st.markdown(
        f"**The {n} worst reconstructed of {len(err):,} mapped images** — original | reconstruction, MSE "
        f"(median of all: {np.median(err):.4f})"
    )
    st.image(
        images.captioned_grid(pairs, [f"#{i} {err[i]:.4f}" for i in ranked.tolist()], cols=4, scale=scale(ctx)),
        width="stretch",
        output_format="PNG",
    )
    counts = np.bincount(ctx.map.labels[ranked][ctx.map.labels[ranked] >= 0], minlength=0)
    by_class = sorted(((int(c), k) for k, c in enumerate(counts) if c), reverse=True)
    if by_class:
        names = ctx.map.class_names
        st.caption("By class: " + ", ".join(f"{names[k] if k < len(names) else k} {c}" for c, k in by_class) + ".")
    st.button(
        "Select them on the map",
        key="an_select",
        on_click=map_view.set_pick,
        args=(Picked(tuple(int(i) for i in ranked)),),
        help="Other pages then show them too",
    )
    points = ctx.map.projection.embedding[ranked]
    hover = [f"#{i} {label(ctx, i)}: MSE {err[i]:.4f}" for i in ranked.tolist()]
    return [overlay_trace(points, "samples", name=f"{n} worst reconstructed", labels=hover)]


def _out_of_distribution(ctx: Context) -> list[dict]:
    """Reconstruction error as an outlier score: the mapped images against another dataset."""
    st.markdown("#### Out-of-distribution check")
    here = st.session_state.get("ds")
    choices = [d for d in dataset_names() + list(state.uploaded_datasets()) if d != here]
    if not choices:
        st.info("Upload another dataset in the sidebar to compare with.")
        return []
    c1, c2 = st.columns([3, 2])
    # digits are 8x8 pictures blown up 3.5x: a poor first comparison when a 28x28 set is there
    first = next((k for k, d in enumerate(choices) if d != "digits"), 0)
    other = c1.selectbox(
        "Other images",
        choices,
        index=first,
        key="an_other",
        help="Their test split, fitted to this model's input size like the mapped images",
    )
    n = c2.select_slider("How many", OTHER_SIZES, value=1000, key="an_other_n")
    ds, data_key = state.dataset_subset(other, "test", n, ctx.ckpt.input_shape)
    codes, outlier = _encoded(ctx.ckpt.digest, data_key, ctx.ckpt, ds.images)
    inlier = ctx.map.encoded.recon_error
    score = auroc(inlier, outlier)
    flagged = float((outlier > np.quantile(inlier, FLAG_QUANTILE)).mean())
    m1, m2 = st.columns(2)
    m1.metric(
        "AUROC",
        f"{score:.3f}",
        help="The chance that a random image of the other set has a larger reconstruction error than a random "
        "mapped image: 0.5 cannot tell them apart, 1.0 separates them completely",
    )
    m2.metric(
        f"Caught at the {FLAG_QUANTILE:.0%} line",
        f"{flagged:.0%}",
        help=f"The share of {ds.name} whose error exceeds that of {FLAG_QUANTILE:.0%} of the mapped images",
    )
    fig = log_histogram_figure({ctx.dataset.name: inlier, ds.name: outlier}, x_title="reconstruction MSE (log scale)")
    st.plotly_chart(fig, key="an_hist", config=CHART, width="stretch")
    if st.toggle("Show them on the map", key="an_show", help="Where this model puts the other images"):
        return [overlay_trace(ctx.map.projection.transform(codes), "samples", name=ds.name)]
    return []


def _anomaly_panel(ctx: Context, pick: Picked) -> list[dict]:
    st.subheader("Anomalies")
    return _worst(ctx) + _out_of_distribution(ctx)


def anomalies_view() -> None:
    views.page("map_anomalies", _anomaly_panel)


# ----------------------------------------------------------------------------------------- compression

BITS = [2, 3, 4, 5, 6, 8]
MEASURED = [64, 256, 1024]
EXAMPLES = 8
RANGE_IMAGES = 2000  # images whose codes set another checkpoint's 8-bit ranges


@state.shared("results", spinner="Encoding, storing and decoding the codes…")
def _compression(
    digest: str, data_key: str, n: int, bits: int, _ckpt: state.CheckpointRef, _images: np.ndarray, _latents
) -> compression.Compression:
    """The current map's images and codes: the 8-bit ranges come from every mapped image's code."""
    model = state.model(_ckpt)
    lo, hi = compression.latent_range(_latents)
    return compression.compression(
        model, _images[:n], lo=lo, hi=hi, bits=bits, examples=EXAMPLES, sparse=model.sparse_codes
    )


@state.shared("results")
def _shipped_row(
    digest: str, data_key: str, n: int, bits: int, _ckpt: state.CheckpointRef, _images
) -> compression.Compression:
    """Another checkpoint on test images of its own dataset; its 8-bit ranges from the codes of all of them."""
    model = state.model(_ckpt)
    lo, hi = compression.latent_range(compression.encode(model, _images))
    return compression.compression(
        model, _images[:n], lo=lo, hi=hi, bits=bits, examples=0, sparse=model.sparse_codes, jpeg=True
    )


def _db(value: float) -> str:
    return "∞ (lossless)" if not np.isfinite(value) else f"{value:.2f}"


def _storage_table(comp: compression.Compression) -> list[dict]:
    s, png = comp.sizes, comp.png
    rows: list[tuple[str, float, float]] = [
        ("pixels, uncompressed", s.raw, np.inf),
        ("PNG, optimised", png, np.inf),
        ("code, float32", s.float32, comp.psnr["float32"]),
        ("code, float16", s.float16, comp.psnr["float16"]),
        (f"code, {s.bits}-bit", s.quantized, comp.psnr["quantized"]),
    ]
    if comp.sparse is not None:  # the same float16 values, only the non-zeros stored
        rows.append(("code, non-zeros as (index, float16)", comp.sparse, comp.psnr["float16"]))
    if comp.jpeg is not None:  # the lossy baseline, at each image's PSNR from its quantized code
        rows.append((f"JPEG at the {s.bits}-bit code's PSNR, whole files", comp.jpeg.file_bytes, comp.jpeg.psnr))
        rows.append((f"JPEG at the {s.bits}-bit code's PSNR, coded data only", comp.jpeg.payload_bytes, comp.jpeg.psnr))

    def versus(size: float) -> str:
        return "—" if size == png else f"{png / size:.1f}× smaller" if size < png else f"{size / png:.1f}× larger"

    table = [
        {"storage": n, "bytes per image": f"{b:,.0f}", "vs PNG": versus(b), "PSNR (dB)": _db(d)} for n, b, d in rows
    ]
    table.append({"storage": f"{s.bits}-bit range table", "bytes per image": f"{s.table:,} once",
                  "vs PNG": "shared by all images", "PSNR (dB)": ""})  # fmt: skip
    return table


def _all_shipped(n: int, bits: int) -> None:
    rows = []
    bar = st.progress(0.0, text="Measuring every shipped checkpoint…")
    refs = state.checkpoints(shipped_only=True).values()
    for k, ref in enumerate(refs):
        ds, data_key = state.dataset_subset(state.home_dataset(ref), "test", RANGE_IMAGES, ref.input_shape)
        comp = _shipped_row(ref.digest, data_key, n, bits, ref, ds.images)
        s = comp.sizes
        rows.append({
            "checkpoint": ref.name, "kind": ref.kind.upper(), "latent": s.latent_dim, "images": ds.name,
            "PNG bytes": round(comp.png), "float16 bytes": s.float16, "float16 dB": round(comp.psnr["float16"], 1),
            f"{s.bits}-bit bytes": s.quantized, f"{s.bits}-bit dB": round(comp.psnr["quantized"], 1),
            "JPEG bytes at that PSNR (coded data)": None if comp.jpeg is None else round(comp.jpeg.payload_bytes),
            "sparse bytes": None if comp.sparse is None else round(comp.sparse),
        })  # fmt: skip
        bar.progress((k + 1) / len(refs), text=f"Measured {ref.name}")
    bar.empty()
    st.dataframe(rows, hide_index=True, width="stretch")
    st.caption(
        f"Each on {n} test images of the data it was trained on; its {bits}-bit ranges from {RANGE_IMAGES:,} of them. "
        "Bytes exclude the shared range table."
    )


def compression_view() -> None:
    ctx = sidebar.render()
    if ctx is None:
        return
    st.header("Compression")
    st.markdown(
        "A code is a lossy compressor: store it, and the decoder redraws the image. Here each image's code is "
        "stored as float16 and as integers of a few bits per dimension (each dimension's range taken from the "
        "codes of the mapped images), then decoded and compared with the original PNG, which is lossless."
    )
    c1, c2 = st.columns(2)
    bits = int(c1.select_slider("Bits per dimension of the quantized code", BITS, value=8, key="cz_bits"))
    n = int(c2.select_slider("Images measured", MEASURED, value=256, key="cz_n"))
    n = min(n, len(ctx.dataset))
    comp = _compression(ctx.ckpt.digest, ctx.data_key, n, bits, ctx.ckpt, ctx.dataset.images, ctx.map.encoded.latents)
    s = comp.sizes
    st.markdown(f"**{ctx.ckpt.name}** — {s.latent_dim:,} numbers per code, mean PSNR over {n} images")
    left, right = st.columns([3, 2], gap="medium")
    with left:
        st.dataframe(_storage_table(comp), hide_index=True, width="stretch")
        st.caption(
            f"The {bits}-bit code also needs each dimension's minimum and maximum to decode: {s.table:,} bytes "
            f"(two float32 per dimension), stored once with the model and shared by every image: over "
            f"{len(ctx.map.labels):,} images it adds {s.table / len(ctx.map.labels):.2f} bytes to each. "
            "PSNR is the mean over images of 10·log10(1 / MSE), pixels in [0, 1]."
        )
        if comp.jpeg is not None:
            j = comp.jpeg
            ratio = j.payload_bytes / s.quantized
            st.caption(
                f"JPEG, image by image at the lowest quality (mean {j.quality:.0f}) that reaches the PSNR of that "
                f"image's {bits}-bit code: {j.file_bytes:,.0f} bytes a file, {j.payload_bytes:,.0f} bytes of coded "
                f"data once headers and tables are shared. At equal PSNR the code is "
                + (f"**{ratio:.1f}× smaller**" if ratio >= 1 else f"**{1 / ratio:.1f}× larger**")
                + " than JPEG's coded data (the decoder, which the code needs, is not counted)."
                + (f" {j.short} image(s) stayed below their target even at quality 100." if j.short else "")
            )
    with right:
        shown = min(EXAMPLES, n)
        rows = np.concatenate(
            [ctx.dataset.images[:shown], comp.examples["float32"], comp.examples["float16"], comp.examples["quantized"]]
        )
        st.image(images.grid(rows, cols=shown, scale=scale(ctx, 42)), width="stretch", output_format="PNG")
        st.caption(f"Rows: original · decoded from float32 · float16 · {bits}-bit codes")
    if st.toggle("Every shipped checkpoint", key="cz_all", help="A table over all of them (slower the first time)"):
        _all_shipped(n, bits)
