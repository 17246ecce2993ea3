"""Plotly figures of the Features pages, as plain dicts like ``explorer.figures.map`` (kept apart so the
map's figure module stays about the map): the map of features, a feature's footprint on the data map,
and its activation histogram."""

from __future__ import annotations

from typing import Any

import numpy as np

from explorer.figures.map import coords

SCALE = "Viridis"


def _axes() -> dict[str, Any]:
    bare = {"showgrid": False, "zeroline": False, "showticklabels": False, "title": None}
    return {"xaxis": bare, "yaxis": bare, "plot_bgcolor": "white", "hovermode": "closest"}


def feature_map_figure(
    embedding: np.ndarray,
    frequency: np.ndarray,
    dense: np.ndarray,
    *,
    current: int | None = None,
    height: int = 480,
    revision: str = "features",
) -> dict:
    """Features at their map positions (F, 2), coloured by log10 of their activation frequency (F,).

    Rows of ``embedding`` that are NaN (features left out of the map, e.g. dead ones) are not drawn.
    Dense features are diamonds; each point's customdata is its feature id, so a click names the
    feature. ``current`` is drawn as a ring on top (no id)."""
    emb = np.asarray(embedding, dtype=np.float32)
    freq = np.asarray(frequency, dtype=np.float64)
    dense = np.asarray(dense, dtype=bool)
    placed = np.isfinite(emb).all(1) & (freq > 0)
    logf = np.log10(np.where(freq > 0, freq, 1.0)).astype(np.float32)  # (F,), only read where placed
    lo, hi = (float(logf[placed].min()), float(logf[placed].max())) if placed.any() else (-4.0, 0.0)
    traces: list[dict[str, Any]] = []
    groups = [("live", placed & ~dense, "circle", 7), ("dense", placed & dense, "diamond", 9)]
    for i, (name, rows_mask, symbol, size) in enumerate(groups):
        rows = np.flatnonzero(rows_mask)
        marker: dict[str, Any] = {
            "size": size, "symbol": symbol, "color": logf[rows], "colorscale": SCALE, "cmin": lo, "cmax": hi,
            "line": {"width": 0.5, "color": "white"}, "showscale": i == 0,
        }  # fmt: skip
        if i == 0:
            marker["colorbar"] = {
                "title": {"text": "log₁₀ share of images active", "side": "right"}, "thickness": 10, "len": 0.8,
            }  # fmt: skip
        traces.append({
            "type": "scattergl", "mode": "markers", "name": f"{name} ({len(rows):,})", "marker": marker,
            "customdata": rows.astype(np.int32), "text": [f"{100 * freq[r]:.2f}%" for r in rows],
            "hovertemplate": "feature %{customdata}<br>active on %{text} of images<extra></extra>", **coords(emb, rows),
        })  # fmt: skip
    if current is not None and placed[current]:
        traces.append({
            "type": "scattergl", "mode": "markers", "name": f"feature {current}", "hoverinfo": "skip",
            "marker": {"size": 18, "symbol": "circle-open", "color": "#d62728", "line": {"width": 3}},
            **coords(emb, np.array([current])),
        })  # fmt: skip
    layout = {
        "height": height,
        "margin": {"l": 4, "r": 4, "t": 4, "b": 4},
        "legend": {"orientation": "h", "x": 0.0, "y": 1.0, "yanchor": "bottom", "itemsizing": "constant"},
        # a click selects the feature under the pointer (a drag would draw a selection box instead)
        "dragmode": "pan",
        "uirevision": revision,
        **_axes(),
    }
    return {"data": traces, "layout": layout}


def footprint_figure(
    embedding: np.ndarray, values: np.ndarray, *, title: str, height: int = 460, revision: str = "footprint"
) -> dict:
    """The data map (N, 2 or 3) with the images where a feature fires coloured by its activation (N,),
    strongest drawn on top, and the rest as faint grey dots. customdata is each image's row id."""
    values = np.asarray(values, dtype=np.float32)
    dims = np.shape(embedding)[1]
    kind = "scattergl" if dims == 2 else "scatter3d"
    off = np.flatnonzero(~(values > 0))
    on = np.flatnonzero(values > 0)
    on = on[np.argsort(values[on], kind="stable")]  # weakest first: the strongest end up on top
    top = float(values[on].max()) if len(on) else 1.0
    traces: list[dict[str, Any]] = [
        {
            "type": kind, "mode": "markers", "name": f"inactive ({len(off):,})",
            "marker": {"size": 3 if dims == 2 else 1.5, "color": "#cfcfcf", "opacity": 0.6},
            "customdata": off.astype(np.int32), "hovertemplate": "#%{customdata}: inactive<extra></extra>",
            **coords(embedding, off),
        },
        {
            "type": kind, "mode": "markers", "name": f"active ({len(on):,})",
            "marker": {
                "size": 6 if dims == 2 else 3, "color": values[on], "colorscale": SCALE, "cmin": 0.0, "cmax": top,
                "showscale": True,
                "colorbar": {"title": {"text": "activation", "side": "right"}, "thickness": 10, "len": 0.8},
            },
            "customdata": on.astype(np.int32),
            "hovertemplate": "#%{customdata}: activation %{marker.color:.3g}<extra></extra>", **coords(embedding, on),
        },
    ]  # fmt: skip
    if dims == 2:
        for t in traces:
            t["selected"] = {"marker": {"opacity": 1.0}}
            t["unselected"] = {"marker": {"opacity": 0.15}}
    layout = {
        "height": height,
        "title": {"text": title, "font": {"size": 13}},
        "margin": {"l": 4, "r": 4, "t": 34, "b": 4},
        "legend": {"orientation": "h", "x": 0.0, "y": 0.0, "yanchor": "top", "itemsizing": "constant"},
        "dragmode": "select" if dims == 2 else "orbit",
        "uirevision": revision,
        **_axes(),
    }
    return {"data": traces, "layout": layout}


def histogram_figure(counts: np.ndarray, edges: np.ndarray, *, height: int = 230) -> dict:
    """Bars of a histogram of non-zero activations: counts (B,), edges (B + 1,)."""
    edges = np.asarray(edges, dtype=np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    bar = {
        "type": "bar", "x": centres, "y": np.asarray(counts), "width": np.diff(edges) * 0.95,
        "marker": {"color": "#3b6fb6"}, "hovertemplate": "activation %{x:.3g}: %{y} images<extra></extra>",
    }  # fmt: skip
    layout = {
        "height": height,
        "margin": {"l": 40, "r": 8, "t": 8, "b": 36},
        "xaxis": {"title": {"text": "activation (images where active)"}, "zeroline": False},
        "yaxis": {"title": {"text": "images"}, "zeroline": False},
        "plot_bgcolor": "white",
        "bargap": 0.0,
        "showlegend": False,
    }
    return {"data": [bar], "layout": layout}
