"""The map: a cached base figure, overlays on top, the current selection, and what the page does by itself
(hover images, 3-D clicks, rings, the view reported for links: ``explorer.ui.map_bridge``)."""

from __future__ import annotations

from functools import partial

import numpy as np
import streamlit as st

from explorer.figures import images
from explorer.figures.map import map_figure, overlay_trace, with_overlays, with_view
from explorer.maps.linked import highlight
from explorer.maps.selection import Picked, picked
from explorer.ui import map_bridge, state
from explorer.ui.map_bridge import View
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
    if ctx.color_by == NEIGHBOURHOOD:
        return state.map_faithfulness(ctx).kept, "neighbours kept"
    return None, ""


NEIGHBOURHOOD = "neighbours kept by the map"  # a colouring every map offers (explorer.maps.faithfulness)


MOUSE = ("drag selects", "click selects")
PICK = "pick"  # the selection, shared by every page of this session
PICK_IMAGES = "pick:images"  # the images it names (dataset and size): another map of them keeps it
PICK_MAP = "pick:map"  # the map its spot belongs to
PICK_FROM = "pick:from"  # the chart that made it (other charts show it by their own means)
GENERATION = "pick:gen"  # bumped by "Clear": a new chart widget starts with no selection drawn
VIEW = "map:view"  # the zoom, camera and hidden classes the person last set (explorer.ui.map_bridge.View)
FIRST_VIEW = "map:view0"  # (map key, View): a view from a link, drawn by the map's first figure
MAX_RINGS = 40  # picks of up to this many images get a ring each; larger ones are shown as a selection
CSS = """<style>
/* the map is the centre of the page: most of the width (see views.page) and the window's height */
.st-key-lx-map .stPlotlyChart, .st-key-lx-map .js-plotly-plot { height: max(420px, calc(100vh - 196px)) !important; }
/* the panel scrolls by itself beside the map, so what it shows stays next to it */
.st-key-lx-panel { max-height: calc(100vh - 110px); overflow-y: auto; overflow-x: hidden; padding-right: 0.4rem; }
[data-testid="stMainBlockContainer"] { padding-top: 4rem; padding-bottom: 1rem;
  padding-left: 2rem; padding-right: 2rem; }
</style>"""


@state.shared("results")
def _base_figure(key: str, color_by: str, color_dim: int, click: bool, sprites: str, _ctx: Context) -> dict:
    color, title = colour_values(_ctx)
    return map_figure(
        _ctx.map.projection.embedding,
        _ctx.map.labels,
        _ctx.map.class_names,
        color=color,
        color_title=title,
        revision=key,  # zoom and legend filters last until the map itself changes
        click=click,
        height=None,  # the page's height (CSS above)
        meta=sprites,
    )


@state.shared("results")
def sprites(data_key: str, _images: np.ndarray) -> images.SpriteSheets:
    """Every mapped image as PNG sprite sheets (about 4 MB for 10,000 28×28 images), made once per image set."""
    return images.sprite_sheets(_images)


def serve_sprites(ctx: Context) -> None:
    """The map's hover images, handed to the page at the end of a whole run (``map_bridge.serve_sprites``)."""
    made = map_bridge.sprite_set(ctx.data_key, sprites(ctx.data_key, ctx.dataset.images), len(ctx.map.labels))
    map_bridge.serve_sprites(key="lx-sprites", sets=[made] if made else [])


def chart_selection(widget: str) -> dict | None:
    """What a chart's last selection event holds (``points``, ``box``, ``lasso``) as a plain dict, read from the
    session in the chart's ``on_select`` callback; None when there is none. ``picked`` turns it into ids."""
    event = st.session_state.get(widget)
    selection = event.get("selection") if event is not None else None
    return dict(selection) if selection else None


def _remember(widget: str, n_rows: int) -> None:
    """on_select callback: fold the chart's new selection into the session's pick.

    Selected points replace the ids and clear the spot; a box over empty space keeps the ids
    and sets the spot (so "this point, then that spot" works); an empty selection (a
    double-click) clears both.
    """
    new = picked(chart_selection(widget), n_rows=n_rows)
    old = st.session_state.get(PICK, Picked())
    st.session_state.pop("sel_focus", None)
    if new.ids and st.session_state.get("sel_add") and old.ids:
        # adding: the union, drawn as a selection by the figure (the chart itself only knows its latest one)
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
    """A pick made outside the chart (go to, typed coordinate, a thumbnail): drawn by the figure and rings."""
    st.session_state[PICK] = pick
    st.session_state[PICK_FROM] = None
    st.session_state.pop("sel_focus", None)


def click_pick(row: int) -> None:
    """A click reported by the page (a 3-D map): that image, or with "Add to selection" one more."""
    old = st.session_state.get(PICK, Picked())
    ids = tuple(dict.fromkeys(old.ids + (row,))) if st.session_state.get("sel_add") and old.ids else (row,)
    set_pick(Picked(ids, None))


def clear_pick() -> None:
    st.session_state[PICK] = Picked()
    st.session_state.pop("sel_focus", None)
    st.session_state[GENERATION] = st.session_state.get(GENERATION, 0) + 1


def images_of(ctx: Context) -> tuple[str, int]:
    """What a row id names: the n-image subset of one dataset and split (the same on every map of them)."""
    return ctx.dataset.name, len(ctx.dataset)


def current_pick(ctx: Context) -> Picked:
    """The session's pick (readable before the map is drawn). Another map of the same images keeps the
    selected images (its spot, a place on the old map, goes); a map of other images starts empty."""
    pick = st.session_state.get(PICK, Picked())
    if st.session_state.get(PICK_IMAGES) != images_of(ctx):
        st.session_state[PICK_IMAGES] = images_of(ctx)
        st.session_state[PICK_MAP] = ctx.key
        pick = Picked()
        st.session_state[PICK] = pick
        st.session_state.pop("sel_focus", None)
    elif st.session_state.get(PICK_MAP) != ctx.key:  # another checkpoint or projection of the same images
        st.session_state[PICK_MAP] = ctx.key
        pick = Picked(pick.ids, None)
        st.session_state[PICK] = pick
        st.session_state[PICK_FROM] = None  # the new chart has not drawn it: the figure does
        st.session_state.pop(VIEW, None)
    return pick


def set_view(view: View) -> None:
    st.session_state[VIEW] = view


def open_on(ctx: Context, view: View) -> None:
    """A link's view: the map's figure opens on it (and the address keeps it until the person changes it)."""
    st.session_state[FIRST_VIEW] = (ctx.key, view)
    st.session_state[VIEW] = view


def restart_chart() -> None:
    """A new chart widget: it forgets the selection it drew itself, and the figure draws the session's."""
    st.session_state[GENERATION] = st.session_state.get(GENERATION, 0) + 1


def first_view(ctx: Context) -> View | None:
    held = st.session_state.get(FIRST_VIEW)
    return held[1] if held is not None and held[0] == ctx.key else None


def _widget(view: str) -> str:
    return f"map:{view}:{st.session_state.get(GENERATION, 0)}"


def shown_by_chart(view: str) -> bool:
    """True when this page's chart made the current pick, so Plotly already draws it."""
    return st.session_state.get(PICK_FROM) == _widget(view)


@state.shared("results", spinner="Decoding a grid over the map…")
def _mosaic(key: str, cells: int, _ctx: Context) -> dict:
    from explorer.maps.mosaic import decoded_grid

    return decoded_grid(state.model(_ctx.ckpt), _ctx.map.projection, cells=cells).layout_image(opacity=0.85)


def _figure(ctx: Context, view: str, overlays: list[dict], pick: Picked, click: bool) -> dict:
    dims = ctx.params.n_components
    fig = _base_figure(ctx.key, ctx.color_by, ctx.color_dim, click, ctx.data_key, ctx)
    if (initial := first_view(ctx)) is not None:
        fig = with_view(fig, initial)
    if pick.ids and not shown_by_chart(view):  # made elsewhere: the figure shows it
        if dims == 2:
            fig = highlight(fig, pick.ids)
        elif len(pick.ids) > MAX_RINGS:
            fig = with_overlays(
                fig, [overlay_trace(ctx.map.projection.embedding[list(pick.ids)], "selected", name="selected")]
            )
    if overlays:
        fig = with_overlays(fig, overlays)
    cells = int(st.session_state.get("mosaic_cells", 20))
    if dims == 2 and st.session_state.get("mosaic"):
        # decoded images under the points: the layout gains one picture, the traces stay as they are
        fig = {"data": fig["data"], "layout": {**fig["layout"], "images": [_mosaic(ctx.key, cells, ctx)]}}
    return fig


def marks(ctx: Context, pick: Picked, view: str) -> dict[str, list[dict]]:
    """Rings the page draws: the image looked at closely, and each image of a small pick made elsewhere than on
    this chart (a Go to, a link, another page: the chart shows its own selections itself)."""
    focus = st.session_state.get("sel_focus")
    out = [{"id": int(focus), "style": "focus"}] if focus is not None and focus in set(pick.ids) else []
    if len(pick.ids) == 1:
        out = [{"id": int(pick.ids[0]), "style": "focus"}]
    elif len(pick.ids) <= MAX_RINGS and not shown_by_chart(view):
        out += [{"id": int(i), "style": "pick"} for i in pick.ids if i != focus]
    return {ctx.data_key: out}


def render(ctx: Context, view: str, overlays: list[dict] | None = None, goto=None) -> None:
    """The controls row (``goto(container)`` draws the Go-to field first), the map, the page-side bridge."""
    dims = ctx.params.n_components
    pick = st.session_state.get(PICK, Picked())
    click = dims == 3 or st.session_state.get("mouse", MOUSE[0]) == MOUSE[1]
    mosaic = dims == 2 and st.session_state.get("mosaic")
    if dims == 2:
        c0, c1, c2, c3 = st.columns([7, 5, 6, 4] if not mosaic else [6, 5, 6, 6], vertical_alignment="center")
        st.session_state.setdefault("mouse", MOUSE[0])
        c1.segmented_control(
            "Mouse", MOUSE, key="mouse", required=True, label_visibility="collapsed",
            format_func=lambda m: "Box" if m == MOUSE[0] else "Click",
            help="Box: drag a box or lasso to select images (a small box over empty space decodes that spot). "
            "Click: click points to select them, drag to pan.",
        )  # fmt: skip
        c2.toggle("Add to selection", key="sel_add")
        with c3:
            m1, m2 = st.columns([1, 1]) if mosaic else (st.container(), None)
            m1.toggle("Mosaic", key="mosaic", help="What the decoder makes on a grid over the map")
            if m2 is not None:
                m2.select_slider(
                    "Cells", [12, 16, 20, 24, 30], value=20, key="mosaic_cells", label_visibility="collapsed"
                )
    else:
        c0, c2 = st.columns([9, 7], vertical_alignment="center")
        c2.toggle("Add to selection", key="sel_add")
    if goto is not None:
        goto(c0)
    fig = _figure(ctx, view, overlays or [], pick, click)
    widget = _widget(view)
    with st.container(key="lx-map"):
        st.plotly_chart(
            fig,
            key=widget,
            on_select=partial(_remember, widget, len(ctx.map.labels)),
            selection_mode=("points", "box", "lasso") if dims == 2 else ("points",),
            width="stretch",
            height="stretch",
            config={"displaylogo": False, "modeBarButtonsToRemove": ["toImage"], "responsive": True},
        )
    map_bridge.map_bridge(key=f"bridge:{view}", on_click=click_pick, on_view=set_view, marks=marks(ctx, pick, view))
    if dims == 3:
        st.caption("Click a point to select it; drag to rotate; hover a point to see its image.")
    elif click:
        st.caption("Click a point to select it; drag to pan; double-click clears; hover a point to see its image.")
    else:
        st.caption(
            "Drag a box or lasso to select images; a small box over empty space decodes that spot; double-click "
            "clears; hover a point to see its image."
            + (" Mosaic cells faded with a red corner are far from any mapped image." if mosaic else "")
        )
