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


MOUSE = ("drag selects", "click selects")
PICK = "pick"  # the selection, shared by every page of this session
PICK_MAP = "pick:map"  # the map it belongs to
PICK_FROM = "pick:from"  # the chart that made it (other charts show it as rings)
GENERATION = "pick:gen"  # bumped by "Clear": a new chart widget starts with no selection drawn


@st.cache_resource(max_entries=24, ttl=6 * 3600, show_spinner=False)
def _base_figure(key: str, color_by: str, color_dim: int, click: bool, _ctx: Context) -> dict:
    color, title = colour_values(_ctx)
    return map_figure(
        _ctx.map.projection.embedding,
        _ctx.map.labels,
        _ctx.map.class_names,
        color=color,
        color_title=title,
        revision=key,  # zoom and legend filters last until the map itself changes
        click=click,
    )


def _remember(widget: str, n_rows: int) -> None:
    """on_select callback: fold the chart's new selection into the session's pick.

    Selected points replace the ids and clear the spot; a box over empty space keeps the ids
    and sets the spot (so "this point, then that spot" works); an empty selection (a
    double-click) clears both.
    """
    event = st.session_state.get(widget)
    selection = event.get("selection") if event is not None else None
    new = picked(dict(selection) if selection else None, n_rows=n_rows)
    old = st.session_state.get(PICK, Picked())
    if new.ids and st.session_state.get("sel_add") and old.ids:
        # adding: the union, drawn as rings (the chart itself only knows its latest selection)
        st.session_state[PICK] = Picked(tuple(dict.fromkeys(old.ids + new.ids)), None)
        st.session_state[PICK_FROM] = None
        return
    if new.ids:
        st.session_state[PICK] = Picked(new.ids, None)
    elif new.spot is not None:
        st.session_state[PICK] = Picked(old.ids, new.spot)
    else:
        st.session_state[PICK] = Picked()
    st.session_state[PICK_FROM] = widget


def set_pick(pick: Picked) -> None:
    """A pick made outside the chart (go to, typed coordinate, a thumbnail): drawn as rings and a star."""
    st.session_state[PICK] = pick
    st.session_state[PICK_FROM] = None


def click_pick(row: int) -> None:
    """A click reported by the page (a 3-D map): that image, or with "Add to selection" one more."""
    old = st.session_state.get(PICK, Picked())
    ids = tuple(dict.fromkeys(old.ids + (row,))) if st.session_state.get("sel_add") and old.ids else (row,)
    set_pick(Picked(ids, None))


def clear_pick() -> None:
    st.session_state[PICK] = Picked()
    st.session_state[GENERATION] = st.session_state.get(GENERATION, 0) + 1


def current_pick(ctx: Context) -> Picked:
    """The session's pick (readable before the map is drawn). Reset when the map changes."""
    if st.session_state.get(PICK_MAP) != ctx.key:  # another checkpoint, dataset or projection
        st.session_state[PICK_MAP] = ctx.key
        st.session_state[PICK] = Picked()
    return st.session_state.get(PICK, Picked())


def _widget(view: str) -> str:
    return f"map:{view}:{st.session_state.get(GENERATION, 0)}"


def shown_by_chart(view: str) -> bool:
    """True when this page's chart made the current pick, so Plotly already draws it."""
    return st.session_state.get(PICK_FROM) == _widget(view)


@st.cache_resource(max_entries=16, ttl=6 * 3600, show_spinner="Decoding a grid over the map…")
def _mosaic(key: str, cells: int, _ctx: Context) -> dict:
    from explorer.mosaic import decoded_grid
    from explorer.ui import state

    return decoded_grid(state.model(_ctx.ckpt), _ctx.map.projection, cells=cells).layout_image(opacity=0.85)


def render(ctx: Context, view: str, overlays: list[dict] | None = None) -> None:
    dims = ctx.params.n_components
    click = dims == 3 or st.session_state.get("mouse", MOUSE[0]) == MOUSE[1]
    fig = _base_figure(ctx.key, ctx.color_by, ctx.color_dim, click, ctx)
    if overlays:
        fig = with_overlays(fig, overlays)
    cells = int(st.session_state.get("mosaic_cells", 20))
    if dims == 2 and st.session_state.get("mosaic"):
        # decoded images under the points: the layout gains one picture, the traces stay as they are
        fig = {"data": fig["data"], "layout": {**fig["layout"], "images": [_mosaic(ctx.key, cells, ctx)]}}
    widget = _widget(view)
    st.plotly_chart(
        fig,
        key=widget,
        on_select=partial(_remember, widget, len(ctx.map.labels)),
        selection_mode=("points", "box", "lasso") if dims == 2 else ("points",),
        width="stretch",
        config={"displaylogo": False, "modeBarButtonsToRemove": ["toImage"]},
    )
    if dims == 2:
        c1, c2, c3, c4 = st.columns([5, 4, 4, 3], vertical_alignment="center")
        c1.radio("Mouse", MOUSE, key="mouse", horizontal=True, label_visibility="collapsed")
        c2.toggle("Add to selection", key="sel_add")
        c3.toggle("Mosaic", key="mosaic", help="What the decoder makes on a grid over the map")
        if st.session_state.get("mosaic"):
            c4.select_slider("Cells", [12, 16, 20, 24, 30], value=20, key="mosaic_cells", label_visibility="collapsed")
        st.caption(
            (
                "Drag a box or lasso to select images; a small box over empty space decodes that spot; "
                "double-click clears."
                if not click
                else "Click a point to select it; drag to pan; double-click clears."
            )
            + (
                " Mosaic cells faded with a red corner are far from any mapped image."
                if st.session_state.get("mosaic")
                else ""
            )
        )
    else:
        from explorer.ui import bridge

        bridge.click_3d(key=f"click3d:{view}", on_click=click_pick)
        c1, c2 = st.columns([2, 5], vertical_alignment="center")
        c1.toggle("Add to selection", key="sel_add")
        c2.caption("Click a point to select it; drag to rotate.")
