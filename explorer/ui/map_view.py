"""The map: a cached base figure, overlays on top, and the current selection."""

from __future__ import annotations

from functools import partial

import numpy as np
import streamlit as st

from explorer.figures import map_figure, with_overlays
from explorer.selection import Picked, picked
from explorer.ui.state import Context


def colour_values(ctx: Context) -> tuple[np.ndarray | None, str]:
    """The per-image values behind the sidebar's "Colour by" choice, and their colour-bar title."""
    enc = ctx.map.encoded
    if ctx.color_by == "reconstruction error":
        return enc.recon_error, "recon MSE"
    if ctx.color_by == enc.code_name:
        return enc.latents[:, ctx.color_dim], f"{enc.code_name} {ctx.color_dim}"
    for name, values in enc.stats.items():
        if ctx.color_by == enc.title(name):
            return values, enc.title(name)
    return None, ""


@st.cache_resource(max_entries=24, ttl=6 * 3600, show_spinner=False)
def _base_figure(key: str, color_by: str, color_dim: int, _ctx: Context) -> dict:
    color, title = colour_values(_ctx)
    return map_figure(
        _ctx.map.projection.embedding, _ctx.map.labels, _ctx.map.class_names, color=color, color_title=title
    )


def _remember(key: str, n_rows: int) -> None:
    """on_select callback: fold the new selection into the sticky pick of this map.

    The pick is kept apart from the widget because a figure that changes (a new overlay)
    is a new widget to Streamlit and starts with an empty selection. Selected points
    replace the ids and clear the spot; a box over empty space keeps the ids and sets the
    spot (so "this point, then that spot" works); an empty selection clears both.
    """
    event = st.session_state.get(key)
    selection = event.get("selection") if event is not None else None
    new = picked(dict(selection) if selection else None, n_rows=n_rows)
    old = st.session_state.get(f"{key}:pick", Picked())
    if new.ids:
        st.session_state[f"{key}:pick"] = Picked(new.ids, None)
    elif new.spot is not None:
        st.session_state[f"{key}:pick"] = Picked(old.ids, new.spot)
    else:
        st.session_state[f"{key}:pick"] = Picked()


def current_pick(ctx: Context, key: str) -> Picked:
    """The sticky pick of this map (readable before the map is drawn). Reset when the map changes."""
    pick = st.session_state.get(f"{key}:pick", Picked())
    if st.session_state.get(f"{key}:map") != ctx.key:  # another checkpoint, dataset or projection
        st.session_state[f"{key}:map"] = ctx.key
        pick = st.session_state[f"{key}:pick"] = Picked()
    return pick


def render(ctx: Context, key: str, overlays: list[dict] | None = None) -> None:
    fig = _base_figure(ctx.key, ctx.color_by, ctx.color_dim, ctx)
    if overlays:
        fig = with_overlays(fig, overlays)
    dims = ctx.params.n_components
    st.plotly_chart(
        fig,
        key=key,
        on_select=partial(_remember, key, len(ctx.map.labels)),
        selection_mode=("points", "box", "lasso") if dims == 2 else ("points",),
        width="stretch",
        config={"displaylogo": False, "modeBarButtonsToRemove": ["toImage"]},
    )
    hint = (
        "Drag a box or lasso to select images; a small box over empty space decodes that spot."
        if dims == 2
        else "Click a point to select it (3-D maps have no box selection)."
    )
    st.caption(hint)
