"""Image sources: a dataset as something read by index or in batches, never one array in memory.

A source knows its length, its labels (-1 where unknown), its class names and where each image came
from; its images are read by index, resized to the shape a model takes as they are read. A file that
cannot be read (truncated, absurd, of another mode) is skipped and reported, never raised: one bad
JPEG in a million must not stop a run.

The kinds of source are a table (``KINDS``): a row names a kind, says whether a location is its own
(``claims``) and opens it. Adding a kind is one new file in ``explorer/data/`` and one row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from explorer.data.dataset import Dataset, fit_to_shape, readonly
from explorer.errors import DatasetError
from explorer.store import data_digest

Shape = tuple[int, int, int]  # (C, H, W), what a model takes


@dataclass(frozen=True)
class Read:
    """What reading some indices gave: the images that could be read, in the order asked, and the rest.

    ``images`` is uint8 (k, H, W) or (k, H, W, 3); ``index`` (k,) says which asked index each one is;
    ``skipped`` lists (index, reason) for the ones that could not be read."""

    images: np.ndarray
    index: np.ndarray
    skipped: list[tuple[int, str]] = field(default_factory=list)


class ImageSource(Protocol):
    """A dataset read lazily. ``read`` never raises for one bad image: it skips it and says why."""

    name: str

    def __len__(self) -> int: ...

    @property
    def class_names(self) -> list[str]: ...

    def labels(self) -> np.ndarray:
        """int64 (N,), -1 where unknown; cheap (from names or a column, not from the images)."""
        ...

    def where(self, i: int) -> str:
        """Where image ``i`` came from: a path, a shard and key, a row."""
        ...

    def read(self, index: np.ndarray, shape: Shape | None = None) -> Read:
        """Images ``index`` (ascending or not), resized to ``shape`` when given."""
        ...


class ArraySource:
    """A source over images already in memory: the built-in sets and small uploads."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.name = dataset.name

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def class_names(self) -> list[str]:
        return list(self.dataset.class_names)

    def labels(self) -> np.ndarray:
        return self.dataset.labels

    def where(self, i: int) -> str:
        return f"{self.name}[{i}]"

    def read(self, index: np.ndarray, shape: Shape | None = None) -> Read:
        index = np.asarray(index, dtype=np.int64)
        part = Dataset(self.name, readonly(self.dataset.images[index]), self.dataset.labels[index], self.class_names)
        if shape is not None:
            part = fit_to_shape(part, shape)
        return Read(part.images, index)


@dataclass(frozen=True)
class Batch:
    """One batch of a pass over a source: the images read, their ids (positions in the source), labels and
    origins, and what was skipped in this batch."""

    ids: np.ndarray
    images: np.ndarray
    labels: np.ndarray
    where: list[str]
    skipped: list[tuple[int, str]]


def batches(
    source: ImageSource, batch_size: int, shape: Shape | None = None, *, start: int = 0, stop: int | None = None
) -> Iterator[Batch]:
    """Images ``start`` to ``stop`` in order, ``batch_size`` indices at a time (a batch holds fewer images when
    some were skipped; an empty batch is still yielded, so a caller can count its way through)."""
    if batch_size < 1:
        raise DatasetError(f"batch size must be at least 1, got {batch_size}")
    stop = len(source) if stop is None else min(stop, len(source))
    labels = source.labels()
    for lo in range(start, stop, batch_size):
        asked = np.arange(lo, min(lo + batch_size, stop), dtype=np.int64)
        got = source.read(asked, shape)
        yield Batch(got.index, got.images, labels[got.index], [source.where(int(i)) for i in got.index], got.skipped)


def subset(source: ImageSource, n: int, seed: int = 0, shape: Shape | None = None) -> tuple[Dataset, list]:
    """The first ``n`` images of a permutation seeded by ``seed`` (the same choice ``Dataset.subset`` makes),
    read and held in memory as a ``Dataset``, with the (index, reason) of the images that were skipped.
    A map is made of such a subset; the source itself stays on disk."""
    ds, _, skipped = read_subset(source, n, seed, shape)
    return ds, skipped


def read_subset(
    source: ImageSource, n: int, seed: int = 0, shape: Shape | None = None
) -> tuple[Dataset, np.ndarray, list]:
    """``subset``, with the source's index of each image read (int64, in the dataset's order)."""
    if n < 1:
        raise DatasetError(f"a subset needs at least 1 image, got n={n}")
    total = len(source)
    index = np.arange(total) if n >= total else np.random.default_rng(seed).permutation(total)[:n]
    got = source.read(index, shape)
    if len(got.index) == 0:
        raise DatasetError(f"{source.name}: none of the {len(index):,} images chosen could be read")
    labels = source.labels()[got.index]
    index = np.asarray(got.index, dtype=np.int64)
    return Dataset(source.name, readonly(got.images), readonly(labels), source.class_names), index, got.skipped


@dataclass(frozen=True)
class SourceKind:
    """One row of the table of source kinds."""

    name: str  # "folder", "parquet", ...
    label: str  # what people are shown: "a folder of images"
    claims: Callable[[str], bool]  # is this location (a path, a glob) one of mine?
    open: Callable[..., ImageSource]  # (name shown, location, **options) -> source
    options: tuple[str, ...] = ()  # the keyword options ``open`` takes, e.g. a Parquet file's image column


KINDS: list[SourceKind] = []


def register(kind: SourceKind) -> SourceKind:
    """Add a row to the table; a second row with the same name raises."""
    if any(k.name == kind.name for k in KINDS):
        raise DatasetError(f"source kind {kind.name!r} is registered twice")
    KINDS.append(kind)
    return kind


def open_source(name: str, location: str, **options: str | None) -> ImageSource:
    """The source at ``location``, opened by the first row of the table that claims it, with the ``options``
    given (those left None are not given)."""
    given = {k: v for k, v in options.items() if v is not None}
    for kind in KINDS:
        if kind.claims(location):
            if unknown := sorted(set(given) - set(kind.options)):
                takes = ", ".join(kind.options) or "none"
                raise DatasetError(f"{name}: {kind.label} takes no {', '.join(unknown)} (its options: {takes})")
            return kind.open(name, location, **given)
    known = ", ".join(k.label for k in KINDS) or "none registered"
    raise DatasetError(f"{name}: {location!r} is no source the explorer reads ({known})")


def skipped_summary(skipped: list[tuple[int, str]], total: int, most: int = 3) -> str:
    """'2 of 1,000 images skipped: #17 truncated file; #40 ...' for a message, or '' when none were."""
    if not skipped:
        return ""
    shown = "; ".join(f"#{i} {why}" for i, why in skipped[:most])
    more = f"; and {len(skipped) - most:,} more" if len(skipped) > most else ""
    share = f" ({len(skipped) / total:.1%})" if total and len(skipped) / total >= 0.001 else ""
    return f"{len(skipped):,} of {total:,} images skipped{share}: {shown}{more}"


def batch_count(source: ImageSource, batch_size: int) -> int:
    return math.ceil(len(source) / batch_size)


def source_digest(source: ImageSource) -> str:
    """Names what a source holds, cheaply: its own ``digest`` when it has one (the kinds on disk make it from
    their files' names, sizes and times), else its images and labels hashed (an ``ArraySource``)."""
    digest = getattr(source, "digest", None)
    if isinstance(digest, str):
        return digest
    if isinstance(source, ArraySource):
        return data_digest(source.dataset.images, source.dataset.labels)
    raise DatasetError(f"{source.name}: this source has no digest")
