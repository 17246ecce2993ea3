"""The host's own datasets (EXPLORER_DATA, EXPLORER_DATA_FILE; see explorer.settings), opened when first asked
for and kept open: a source holds its index (file names, row counts, member offsets, labels), never images."""

from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np

from explorer.data.dataset import Dataset
from explorer.data.source import ImageSource, Shape, open_source, read_subset, skipped_summary, source_digest
from explorer.errors import DatasetError
from explorer.settings import DataEntry
from explorer.settings import current as current_settings
from explorer.store import budget, data_digest

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
    with _reading:
        cache = budget("images")
        for key in cache.keys():
            if isinstance(key, tuple) and key[:1] == ("host subset",):
                cache.discard(key)


# Subsets read, as the maps take them, go to the "images" budget with the built-in sets (EXPLORER_IMAGES_MEMORY_MB),
# keyed by the source's digest (its files' names, sizes and times), never by hashing the source's images.
_reading = threading.Lock()  # one read at a time: two sessions asking for the same subset read it once


class HostSubset(NamedTuple):
    dataset: Dataset
    digest: str  # ``data_digest`` of what was read: the key of its maps, as for every dataset
    skipped: str  # "2 of 1,000 images skipped: ...", and the archive members a WebDataset left out; "" for none
    source_index: np.ndarray  # each image's index in the source (what precomputed latents are looked up by)


def configured_subset(name: str, n: int, shape: Shape) -> HostSubset:
    """``n`` images (all for 0) of the host's dataset ``name``, chosen as ``subset`` chooses (seed 0), read and
    fitted to ``shape``, with what the reading found (``HostSubset``)."""
    source = configured_source(name)
    key = ("host subset", name, source_digest(source), int(n), tuple(shape))
    with _reading:
        cache = budget("images")
        if (hit := cache.get(key)) is None:
            ds, index, skipped = read_subset(source, n or len(source), seed=0, shape=shape)
            notes = [skipped_summary(skipped, len(ds) + len(skipped))]
            if left_out := getattr(source, "problems", []):  # archive members refused when it was indexed
                notes.append(f"{len(left_out):,} archive members left out: " + "; ".join(left_out[:3]))
            hit = HostSubset(ds, data_digest(ds.images, ds.labels), "; ".join(n for n in notes if n), index)
            cache.put(key, hit)
        return hit
