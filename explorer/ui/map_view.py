"""The map: a cached base figure, overlays on top, and the current selection."""

from __future__ import annotations

import numpy as np
import streamlit as st

from explorer.figures import map_figure, with_overlays
from explorer.selection import Picked, picked
from explorer.ui.state import Context


def colour_values(ctx: Context) -> tuple[np.ndarray | None, str]:
    enc = ctx.map.encoded
    match ctx.color_by:
        case "reconstruction error":
            return enc.recon_error, "recon MSE"
        case "latent dimension":
            return enc.latents[:, ctx.color_dim], f"z[{ctx.color_dim}]"
        case "feature activation":
            return enc.latents[:, ctx.color_dim], f"feature {ctx.color_dim}"
        case "posterior σ":
            return enc.sigma, "mean σ"
        case "KL":
            return enc.kl, "KL (nats)"
        case "active features (L0)":
            return enc.l0, "L0"
    return None, ""


@st.cache_resource(max_entries=24, ttl=6 * 3600, show_spinner=False)
def _base_figure(key: str, color_by: str, color_dim: int, _ctx: Context) -> dict:
    color, title = colour_values(_ctx)
    return map_figure(
        _ctx.map.projection.embedding, _ctx.map.labels, _ctx.map.class_names, color=color, color_title=title
    )


def current_pick(ctx: Context, key: str) -> Picked:
    """The selection the map widget holds right now (readable before the map is drawn)."""
    event = st.session_state.get(key)
    selection = getattr(event, "selection", None) if event is not None else None
    if selection is None and isinstance(event, dict):
        selection = event.get("selection")
    return picked(dict(selection) if selection else None, n_rows=len(ctx.map.labels))


def render(ctx: Context, key: str, overlays: list[dict] | None = None) -> None:
    fig = _base_figure(ctx.key, ctx.color_by, ctx.color_dim, ctx)
    if overlays:
        fig = with_overlays(fig, overlays)
    dims = ctx.params.n_components
    st.plotly_chart(
        fig,
        key=key,
        on_select="rerun",
        selection_mode=("points", "box", "lasso") if dims == 2 else ("points",),
        use_container_width=True,
        config={"displaylogo": False, "modeBarButtonsToRemove": ["toImage"]},
    )
    hint = (
        "Drag a box or lasso to select images; a small box over empty space decodes that spot."
        if dims == 2
        else "Click a point to select it (3-D maps have no box selection)."
    )
    st.caption(hint)
