"""Plotly figures for the map, built as plain dicts (fast to build and to serialise)."""

from __future__ import annotations

from typing import Any

import numpy as np

# Ten well-separated hues that all read on white (category10); cycled beyond ten classes.
PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
]  # fmt: skip
OVERLAY = {"path": "#d62728", "samples": "#111111", "spot": "#ff00ff", "selected": "rgba(0, 0, 0, 0.6)"}


def coords(embedding: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
    # numpy arrays, not lists: plotly validates them in one step and sends them as typed
    # arrays, which makes a 10k-point figure 4x faster to pass through st.plotly_chart
    emb = np.asarray(embedding, dtype=np.float32)
    out = {"x": emb[rows, 0], "y": emb[rows, 1]}
    if emb.shape[1] == 3:
        out["z"] = emb[rows, 2]
    return out


def map_figure(
    embedding: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    *,
    color: np.ndarray | None = None,
    color_title: str = "",
    title: str = "",
    height: int | None = 620,
    revision: str = "map",
    click: bool = False,
    meta: str | None = None,
) -> dict:
    """Scatter of the mapped points, one trace per class; the global row id of each point is its customdata.

    With ``color`` the markers take a value's colour on one shared scale (its bar on the right) and
    the class traces stay, so the legend still names and filters classes. Selected points keep
    their look and the rest fade: Plotly styles a selection itself, so selecting never changes
    the figure and Streamlit never re-sends it. ``revision`` (``uirevision``) keeps zoom, pan and
    legend filters across reruns for as long as it stays the same. ``height`` None: as high as the page
    makes the chart. ``meta`` names the sprite sheets a page shows hovered images from (``layout.meta.lx``).
    """
    dims = embedding.shape[1]
    kind = "scattergl" if dims == 2 else "scatter3d"
    size = (4 if len(embedding) <= 20_000 else 3) if dims == 2 else 2
    values = None if color is None else np.asarray(color, dtype=np.float32)
    finite = values[np.isfinite(values)] if values is not None else np.zeros(0)
    cmin, cmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    traces: list[dict[str, Any]] = []
    names = lambda lab: class_names[lab] if 0 <= lab < len(class_names) else "unlabelled"  # noqa: E731
    for i, lab in enumerate(np.unique(labels)):
        rows = np.flatnonzero(labels == lab)
        name = names(int(lab))
        marker: dict[str, Any] = {"size": size, "opacity": 0.8, "color": PALETTE[int(lab) % len(PALETTE)]}
        hover = f"<b>{name}</b><br>index %{{customdata}}<extra></extra>"
        if values is not None:
            marker.update(color=values[rows], colorscale="Viridis", cmin=cmin, cmax=cmax, showscale=i == 0)
            if i == 0:
                # under the plot, below the tick labels: the class legend keeps the right-hand column
                marker["colorbar"] = {
                    "title": {"text": color_title, "side": "top"}, "orientation": "h", "thickness": 10,
                    "len": 0.6, "x": 0.5, "y": -0.08, "yanchor": "top",
                }  # fmt: skip
            hover = f"<b>{name}</b><br>index %{{customdata}}<br>{color_title} %{{marker.color:.4g}}<extra></extra>"
        trace: dict[str, Any] = {
            "type": kind, "mode": "markers", "name": name, "marker": marker, "legendgroup": name,
            "customdata": rows.astype(np.int32), "hovertemplate": hover, **coords(embedding, rows),
        }  # fmt: skip
        if values is not None:
            # the points wear the value's colours: the legend names each class with a neutral dot of its
            # own (a point-less trace of the same group), so a click still hides or shows that class
            trace["showlegend"] = False
            traces.append({
                "type": kind, "mode": "markers", "name": name, "legendgroup": name, "hoverinfo": "skip",
                "marker": {"size": 7, "color": "#9a9a9a"}, "x": [None], "y": [None], **({"z": [None]} if dims == 3 else {}),
            })  # fmt: skip
        if dims == 2:  # Plotly's own selection look (3-D traces have no selection state)
            trace["selected"] = {"marker": {"opacity": 1.0}}
            trace["unselected"] = {"marker": {"opacity": 0.12}}
        traces.append(trace)
    layout: dict[str, Any] = {
        "height": height,
        "margin": {"l": 10, "r": 10, "t": 40 if title else 10, "b": 70 if values is not None else 10},
        "title": {"text": title, "font": {"size": 14}} if title else None,
        # a column at the right: under the plot it covered the x-axis labels, above it the tool bar
        # below the tool bar that Plotly shows over the top right corner on hover
        "legend": {"itemsizing": "constant", "orientation": "v", "x": 1.02, "xanchor": "left", "y": 0.93},
        # A drag draws a selection box by default. Streamlit then reports clicks on points to nobody, so
        # ``click`` trades the box for panning and lets a click (shift: add) select the point under it.
        "dragmode": ("pan" if click else "select") if dims == 2 else "orbit",
        "hovermode": "closest",
        "plot_bgcolor": "white",
        "xaxis": {"showgrid": False, "zeroline": False, "title": None},
        "yaxis": {"showgrid": False, "zeroline": False, "title": None},
        "uirevision": revision,
    }
    if height is None:
        del layout["height"]
        layout["autosize"] = True
    if meta is not None:
        layout["meta"] = {"lx": meta}
    if dims == 3:  # Plotly's default camera sits close enough to crop a UMAP's far clusters
        axis = {"title": {"text": ""}, "showspikes": False}
        layout["scene"] = {
            "camera": {"eye": {"x": 1.7, "y": 1.7, "z": 1.1}}, "aspectmode": "cube",
            "xaxis": axis, "yaxis": axis, "zaxis": axis,
        }  # fmt: skip
    return {"data": traces, "layout": layout}


def with_overlays(figure: dict, overlays: list[dict]) -> dict:
    """A shallow copy of ``figure`` with extra traces on top (no customdata: never selectable ids)."""
    return {"data": [*figure["data"], *overlays], "layout": figure["layout"]}


def overlay_trace(points: np.ndarray, kind: str, *, name: str, labels: list[str] | None = None) -> dict:
    """Path (line with markers), samples (crosses) or a picked spot (star) drawn over the map."""
    dims = points.shape[1]
    xyz = coords(points, np.arange(len(points)))
    trace: dict[str, Any] = {
        "type": "scattergl" if dims == 2 else "scatter3d",
        "name": name,
        "text": labels or [f"{name} {i}" for i in range(len(points))],
        "hovertemplate": "%{text}<extra></extra>",
        **xyz,
    }
    if kind == "path":
        trace.update(mode="lines+markers", line={"color": OVERLAY["path"], "width": 3},
                     marker={"size": 7, "color": OVERLAY["path"]})  # fmt: skip
    elif kind == "selected":
        # rings around chosen points (go-to results, a selection carried over from another page): thin and
        # translucent, so a thousand of them do not hide the colours under them
        trace.update(mode="markers", hoverinfo="skip", hovertemplate=None,
                     marker={"size": 7, "symbol": "circle-open", "color": OVERLAY["selected"], "line": {"width": 1}})  # fmt: skip
    elif kind == "samples":
        trace.update(mode="markers", marker={"size": 9, "symbol": "x", "color": OVERLAY["samples"]})
    else:
        # scatter3d has no star symbol: a diamond marks the spot in 3-D
        trace.update(mode="markers", marker={"size": 16, "symbol": "star" if dims == 2 else "diamond", "color": OVERLAY["spot"],
                                             "line": {"width": 1, "color": "white"}})  # fmt: skip
    return trace


def with_view(figure: dict, view: Any) -> dict:
    """A copy of a map figure that opens on ``view`` (``explorer.ui.map_bridge.View``: a 2-D zoom, a 3-D camera,
    hidden classes by name). Plotly keeps later zooms itself (``uirevision``), so the figure stays the same."""
    hidden = set(view.hidden)
    traces = [{**t, "visible": "legendonly"} if t.get("name") in hidden else t for t in figure["data"]]
    layout = dict(figure["layout"])
    if view.range is not None and "scene" not in layout:
        x0, x1, y0, y1 = view.range
        layout["xaxis"] = {**layout.get("xaxis", {}), "range": [x0, x1], "autorange": False}
        layout["yaxis"] = {**layout.get("yaxis", {}), "range": [y0, y1], "autorange": False}
    if view.camera is not None and "scene" in layout:
        e, c, u = view.camera[:3], view.camera[3:6], view.camera[6:]
        xyz = lambda v: {"x": v[0], "y": v[1], "z": v[2]}  # noqa: E731
        layout["scene"] = {**layout["scene"], "camera": {"eye": xyz(e), "center": xyz(c), "up": xyz(u)}}
    return {"data": traces, "layout": layout}
