"""Plotly selection events -> what the user picked. Pure functions, tested on synthetic dicts.

Streamlit hands over ``{"points": [...], "box": [...], "lasso": [...]}``. Point indices are
per trace, so the map puts each point's global row id in ``customdata``; overlay traces
(paths, samples) carry no id and are ignored. A box drawn over empty space returns no
points but still its corners in data coordinates: its centre is a "pick any spot".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Picked:
    ids: tuple[int, ...] = ()  # global row ids, in the order plotly listed them, no duplicates
    spot: tuple[float, float] | None = None  # centre of the box or lasso, in map coordinates

    def __bool__(self) -> bool:
        return bool(self.ids) or self.spot is not None


def _point_id(point: dict[str, Any], n_rows: int | None) -> int | None:
    cd = point.get("customdata")
    if isinstance(cd, (list, tuple)):
        cd = cd[0] if cd else None
    if cd is None or isinstance(cd, bool):
        return None
    try:
        value = float(cd)
    except (TypeError, ValueError):
        return None
    if not value.is_integer() or value < 0 or (n_rows is not None and value >= n_rows):
        return None
    return int(value)


def _centre(region: dict[str, Any]) -> tuple[float, float] | None:
    try:
        xs = np.asarray(region.get("x", []), dtype=float)
        ys = np.asarray(region.get("y", []), dtype=float)
    except (TypeError, ValueError):
        return None
    if xs.size == 0 or xs.size != ys.size or not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        return None
    return float(xs.min() + xs.max()) / 2.0, float(ys.min() + ys.max()) / 2.0


def picked(selection: dict[str, Any] | None, n_rows: int | None = None) -> Picked:
    """Global ids of the selected map points, and the centre of the last box or lasso drawn."""
    if not selection:
        return Picked()
    seen: dict[int, None] = {}
    for point in selection.get("points") or []:
        if isinstance(point, dict) and (pid := _point_id(point, n_rows)) is not None:
            seen.setdefault(pid, None)
    spot = None
    for region in (selection.get("box") or []) + (selection.get("lasso") or []):
        if isinstance(region, dict) and (c := _centre(region)) is not None:
            spot = c
    return Picked(tuple(seen), spot)


def parse_point(text: str, dims: int = 2) -> tuple[float, ...]:
    """A typed map coordinate like "1.5, -2" -> (1.5, -2.0) (or a shape "1,28,28" with dims=3);
    ValueError with a readable message."""
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    if len(parts) != dims:
        raise ValueError(f"type {dims} numbers separated by a comma, e.g. {', '.join(['1.5'] * dims)}")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise ValueError(f"{text!r} is not {dims} numbers") from None
    if not all(np.isfinite(values)) or max(abs(v) for v in values) > 1e6:
        raise ValueError("coordinates must be finite numbers of reasonable size")
    return values


def find(text: str, labels: np.ndarray, class_names: list[str]) -> np.ndarray:
    """Row ids for a "go to" query: "#12" or "12" (one index), or a class name (every image of it, any case).
    ValueError with a readable message for an index out of range or an unknown name."""
    query = text.strip().lstrip("#").strip()
    n = len(labels)
    if query.lstrip("-").isdigit():
        i = int(query)
        if not 0 <= i < n:
            raise ValueError(f"#{i} is not on this map: indices run from 0 to {n - 1}")
        return np.array([i])
    names = {name.lower(): k for k, name in enumerate(class_names)}
    if query.lower() not in names:
        known = ", ".join(class_names) if class_names else "none (this dataset has no class names)"
        raise ValueError(
            f"no image or class called {text.strip()!r}; type an index from 0 to {n - 1}, or one of: {known}"
        )
    ids = np.flatnonzero(np.asarray(labels) == names[query.lower()])
    if not len(ids):
        raise ValueError(f"no image of class {class_names[names[query.lower()]]!r} is on this map")
    return ids
