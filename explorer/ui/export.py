"""The Export page: the map beside download buttons for what it shows, as files (explorer.figures.exports makes them).

Every file is made when its button is clicked (``st.download_button`` with a callable), so opening the
page costs no more than any other map page, however large the exports would be. Those callables run
outside the page script: they only compute, and read nothing from ``st.session_state``.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from explorer.figures import exports
from explorer.figures.map import map_figure
from explorer.maps.selection import Picked
from explorer.ui import map_view, state, views
from explorer.ui.state import Context

HTML_HELP = (
    "One file with plotly.js inside (about 5 MB, plus about 3 MB of images per 10,000 points): zoom, hover with the "
    "image, and the legend work offline. Where the map came from is written under it."
)
TABLE_HELP = (
    "One row per mapped image: index, map coordinates, label, class, reconstruction error, the model's own "
    "statistics, then every latent coordinate (a VAE's posterior mean, then its σ per dimension). Where the map "
    "came from (checkpoint and its SHA-256, dataset, split, projection, explorer version) is in the Parquet "
    "metadata and in comment lines above the CSV header."
)
PROJECTOR_HELP = (
    "For the TensorFlow Embedding Projector: vectors.tsv, metadata.tsv, sprite.png (all images on one grid of at "
    f"most {exports.MAX_SPRITE_SIDE} pixels a side; tiles shrink to fit) and projector_config.json."
)


def _title(ctx: Context) -> str:
    return f"{ctx.ckpt.name} · {len(ctx.map.labels):,} images of {ctx.dataset.name} · {ctx.params.label()}"


HOVER_IMAGES_UP_TO = 20_000  # larger maps are saved without their images (they would add about 3 MB per 10,000)


def provenance(ctx: Context) -> exports.Provenance:
    p = ctx.params
    projection: dict = {"method": p.method, "dimensions": p.n_components}
    if p.method == "umap":
        projection |= {"n_neighbors": p.n_neighbors, "min_dist": p.min_dist, "metric": p.metric, "seed": p.seed,
                       "engine": p.engine}  # fmt: skip
    return exports.Provenance(ctx.ckpt.name, ctx.ckpt.digest, ctx.dataset.name, len(ctx.map.labels), projection)


def _html(ctx: Context) -> bytes:
    color, color_title = map_view.colour_values(ctx)
    emb = ctx.map.projection.embedding
    figure = map_figure(emb, ctx.map.labels, ctx.map.class_names, color=color, color_title=color_title)
    sprites = map_view.sprites(ctx.data_key, ctx.dataset.images) if len(emb) <= HOVER_IMAGES_UP_TO else None
    return exports.map_html(figure, title=_title(ctx), provenance=provenance(ctx), sprites=sprites)


def _table(ctx: Context) -> exports.MapTable:
    """The map's numbers; for a variational model with its posterior σ per dimension (encoded again, on click;
    the model's class says from the checkpoint's config whether it has a posterior, so other models stay unloaded)."""
    from explorer import models
    from explorer.maps import ops

    sigma = None
    if models.model_class(ctx.ckpt.kind).is_variational(ctx.ckpt.meta["config"]):
        sigma = ops.posterior_sigma(state.model(ctx.ckpt), ctx.dataset.images)
    return exports.MapTable.from_map(ctx.map, sigma=sigma, provenance=provenance(ctx))


def _mosaic_png(ctx: Context, cells: int) -> bytes:
    from explorer.maps.mosaic import decoded_grid

    return decoded_grid(state.model(ctx.ckpt), ctx.map.projection, cells=cells).png()


def _selection_png(ctx: Context, ids: np.ndarray) -> bytes:
    from explorer.maps import ops

    originals = ctx.dataset.images[ids]
    recon, _ = ops.reconstruct(state.model(ctx.ckpt), originals)
    return exports.selection_png(originals, recon)


def _panel(ctx: Context, pick: Picked) -> list[dict]:
    st.subheader("Export")
    table = exports.MapTable.from_map(ctx.map, provenance=provenance(ctx))
    stem = exports.file_stem(ctx.ckpt.name, ctx.dataset.name.replace(":", "-"), len(table))
    st.caption(
        f"{len(table):,} mapped images of {ctx.dataset.name}, {ctx.ckpt.latent_dim} latent dimensions, "
        f"{ctx.params.label()}. Each file is made when you click its button."
    )
    # on_click="ignore": a download does not rerun the page (and redraw the map)
    st.markdown("**The map and its numbers**")
    files = (  # label, bytes made on click, file name, type, key, help
        ("Map (HTML)", lambda: _html(ctx), f"{stem}-map.html", "text/html", "exp_html", HTML_HELP),
        ("Table (CSV)", lambda: exports.csv_bytes(_table(ctx)), f"{stem}.csv", "text/csv", "exp_csv",
         TABLE_HELP),
        ("Table (Parquet)", lambda: exports.parquet_bytes(_table(ctx)), f"{stem}.parquet",
         "application/vnd.apache.parquet", "exp_parquet", TABLE_HELP),
    )  # fmt: skip
    for column, (label, make, fname, mime, key, helptext) in zip(st.columns(len(files)), files):
        column.download_button(label, make, fname, mime, key=key, help=helptext, on_click="ignore")
    images = ctx.dataset.images
    st.download_button(
        "Embedding Projector files (zip)",
        lambda: exports.projector_zip(table, images, name=_title(ctx)),
        f"{stem}-projector.zip",
        "application/zip",
        key="exp_projector",
        help=PROJECTOR_HELP,
        on_click="ignore",
    )

    st.markdown("**Pictures**")
    if ctx.params.n_components == 2:
        cells = int(st.session_state.get("mosaic_cells", 20))  # the size the map's own Mosaic switch shows
        st.download_button(
            f"Decoded mosaic {cells}×{cells} (PNG)",
            lambda: _mosaic_png(ctx, cells),
            f"{stem}-mosaic-{cells}.png",
            "image/png",
            key="exp_mosaic",
            help="What the decoder makes on a grid over the map; faded cells with a red corner are far from data.",
            on_click="ignore",
        )
    else:
        st.caption("The decoded mosaic lies under a 2-D map: choose UMAP 2-D or PCA 2-D.")
    if pick.ids:
        ids = np.sort(np.asarray(pick.ids, dtype=np.int64))[: exports.MAX_SELECTION_IMAGES]
        shown = f"{len(ids)} of {len(pick.ids):,}" if len(pick.ids) > len(ids) else f"{len(ids)}"
        st.download_button(
            f"Selection: {shown} images (PNG)",
            lambda: _selection_png(ctx, ids),
            f"{stem}-selection-{len(pick.ids)}.png",
            "image/png",
            key="exp_selection",
            help=f"Each image beside its reconstruction, by index; at most {exports.MAX_SELECTION_IMAGES} images.",
            on_click="ignore",
        )
    else:
        st.caption("Select images on the map to export them, with their reconstructions, as one picture.")
    st.caption("Interpolations and traversals have their own PNG and GIF buttons on their pages.")
    return []


def export_view() -> None:
    views.page("map_export", _panel)
