"""Two maps of the same images, one selection: a box or lasso on either map picks images on both.

Both maps plot the same images, so a row id means the same image on each. After a selection on
either map both charts are drawn anew with the ids as each trace's ``selectedpoints`` (per-trace
positions, found through ``customdata``): Plotly shows them as it shows a selection of its own, and
what each map shows depends on the server's state only, not on what a chart remembers. Pure
functions on plain dicts, tested without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from explorer.maps.selection import picked

SIDES = ("a", "b")


@dataclass(frozen=True)
class Linked:
    """The shared selection of two maps.

    ``generation`` counts how often the charts were restarted (it is part of their widget keys):
    a chart keeps drawing its own last selection until its widget is replaced."""

    ids: tuple[int, ...] = ()  # row ids of the selected images, as the source map listed them
    source: str | None = None  # the side the selection was drawn on ("a" or "b"), None when nothing is selected
    generation: int = 0


def select(linked: Linked, side: str, selection: dict[str, Any] | None, n_rows: int) -> Linked:
    """A selection event from the chart of map ``side`` -> the new shared selection.

    Points selected: they become the selection of both maps. No points (a double-click, or a box
    over empty space): nothing is selected on either. Both charts restart either way, so neither
    keeps drawing a selection of its own that is no longer the shared one."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    ids = picked(selection, n_rows=n_rows).ids
    return Linked(ids, side if ids else None, linked.generation + 1)


def cleared(linked: Linked) -> Linked:
    """Nothing selected on either map (a Clear button)."""
    return Linked((), None, linked.generation + 1)


def highlight(figure: dict, ids: tuple[int, ...] | list[int] | np.ndarray) -> dict:
    """A copy of a map figure (``explorer.figures.map.map_figure``) with the images ``ids`` shown as selected.

    Every trace with ids (``customdata``) gets the positions of its selected points, an empty list
    when it has none (so it fades like the unselected points of other traces); traces without ids
    (overlays) are left alone. No ids: the figure as it is."""
    wanted = np.asarray(list(ids), dtype=np.int64)
    if not wanted.size:
        return figure
    traces = []
    for trace in figure["data"]:
        if "customdata" in trace:
            rows = np.asarray(trace["customdata"]).ravel()
            trace = {**trace, "selectedpoints": np.flatnonzero(np.isin(rows, wanted)).tolist()}
        traces.append(trace)
    return {"data": traces, "layout": figure["layout"]}
