"""The host's own datasets (EXPLORER_DATA, EXPLORER_DATA_FILE; see explorer.settings), opened when first asked
for and kept open: a source holds its index (file names, row counts, member offsets, labels), never images."""

from __future__ import annotations

import threading

from explorer.data.source import ImageSource, open_source
from explorer.errors import DatasetError
from explorer.settings import DataEntry
from explorer.settings import current as current_settings

_opened: dict[DataEntry, ImageSource] = {}
_opening = threading.Lock()  # one opening at a time: two sessions asking for one folder list it once


def configured_names() -> list[str]:
    """The names of the host's datasets, in the order given (cheap: nothing is opened)."""
    return [entry.name for entry in current_settings().data_sources]


def configured_source(name: str) -> ImageSource:
    """The host's dataset ``name``, opened on first use and kept (listing a folder of a million images is done
    once per process). An unknown name, or a location no kind reads, raises DatasetError."""
    entry = next((e for e in current_settings().data_sources if e.name == name), None)
    if entry is None:
        known = ", ".join(configured_names()) or "none (set EXPLORER_DATA)"
        raise DatasetError(f"no dataset of the host's is called {name!r}; there are: {known}")
    with _opening:
        if (source := _opened.get(entry)) is None:
            source = _opened[entry] = open_source(entry.name, entry.location, **entry.options())
        return source


def configured() -> dict[str, ImageSource]:
    """Every dataset of the host's, opened, by name."""
    return {name: configured_source(name) for name in configured_names()}


def forget_configured() -> None:
    """Close nothing, forget everything: the next ``configured_source`` lists its files again."""
    with _opening:
        _opened.clear()
