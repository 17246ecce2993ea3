"""Small Plotly charts shown beside the map (bars, curves, histograms), built as plain dicts like ``figures``."""

from __future__ import annotations

from typing import Any

import numpy as np

from explorer.figures.map import PALETTE


def _layout(height: int, x_title: str, y_title: str, **extra: Any) -> dict:
    return {
        "height": height,
        "margin": {"l": 50, "r": 10, "t": 10, "b": 45},
        "plot_bgcolor": "white",
        "xaxis": {"title": {"text": x_title}, "showgrid": False, "zeroline": False},
        "yaxis": {"title": {"text": y_title}, "gridcolor": "#eee", "zeroline": False},
        "legend": {"orientation": "h", "x": 0.0, "y": 1.02, "yanchor": "bottom"},
        **extra,
    }


def bar_figure(labels: list[str], values: np.ndarray, *, x_title: str, y_title: str, height: int = 240) -> dict:
    """Vertical bars in the order given (labels are categories, so feature 7 and 70 never merge)."""
    trace = {
        "type": "bar",
        "x": list(labels),
        "y": np.asarray(values, dtype=np.float32),
        "marker": {"color": PALETTE[0]},
        "hovertemplate": "%{x}: %{y:.3f}<extra></extra>",
    }
    layout = _layout(height, x_title, y_title)
    layout["xaxis"].update(type="category", tickangle=-60, tickfont={"size": 9})
    return {"data": [trace], "layout": layout}


def curve_figure(
    x: np.ndarray,
    curves: dict[str, np.ndarray],
    *,
    x_title: str,
    y_title: str,
    dashed: tuple[str, ...] = (),
    marker: float | None = None,
    height: int = 300,
) -> dict:
    """One line with markers per named curve over the shared x; names in ``dashed`` draw dashed and grey.

    ``marker``: an x drawn as a thin vertical line (the level chosen above the chart). Infinite y (a
    perfect copy) is left out of its curve rather than stretching the axis."""
    traces = []
    colours = iter(PALETTE)
    for name, y in curves.items():
        line = {"dash": "dash", "color": "#888"} if name in dashed else {"color": next(colours)}
        traces.append({
            "type": "scatter", "mode": "lines+markers", "name": name, "line": line,
            "x": np.asarray(x, dtype=np.float32),
            "y": np.where(np.isfinite(y), y, np.nan).astype(np.float32),
            "hovertemplate": f"{name}<br>%{{x:.2f}}: %{{y:.1f}}<extra></extra>",
        })  # fmt: skip
    layout = _layout(height, x_title, y_title, hovermode="closest")
    if marker is not None:
        layout["shapes"] = [{
            "type": "line", "x0": marker, "x1": marker, "yref": "paper", "y0": 0, "y1": 1,
            "line": {"color": "#d62728", "width": 1, "dash": "dot"},
        }]  # fmt: skip
    return {"data": traces, "layout": layout}


def log_histogram_figure(groups: dict[str, np.ndarray], *, x_title: str, bins: int = 40, height: int = 300) -> dict:
    """Overlaid histograms of positive values (errors) on a log axis, each normalised to a fraction of its group.

    Bins are shared and evenly spaced in log10, so groups of different sizes and skewed values compare fairly."""
    logs = {name: np.log10(np.maximum(np.asarray(v, dtype=np.float64), 1e-12)) for name, v in groups.items()}
    every = np.concatenate([v for v in logs.values() if v.size] or [np.zeros(1)])
    lo, hi = float(every.min()), float(every.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    centres = 0.5 * (edges[:-1] + edges[1:])
    traces = []
    for colour, (name, v) in zip(PALETTE[1::2], logs.items()):
        counts, _ = np.histogram(v, bins=edges)
        traces.append({
            "type": "bar", "name": f"{name} ({v.size:,})", "x": centres, "y": counts / max(1, v.size),
            "width": float(edges[1] - edges[0]), "opacity": 0.6, "marker": {"color": colour},
            "customdata": 10.0**centres, "hovertemplate": f"{name}<br>%{{customdata:.4f}}: %{{y:.1%}}<extra></extra>",
        })  # fmt: skip
    decades = np.arange(np.floor(lo), np.ceil(hi) + 1)
    layout = _layout(height, x_title, "fraction of images", barmode="overlay", bargap=0)
    layout["xaxis"].update(tickvals=decades, ticktext=[f"{10.0**d:g}" for d in decades])
    return {"data": traces, "layout": layout}
