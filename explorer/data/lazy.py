"""What the kinds of source on disk share: where their files are (a path, a folder, a glob, a brace pattern), a
digest that names them without reading them, and reading image by image, each fitted to a model's input or
skipped with its reason.

A kind subclasses ``FileSource`` and says how to get the images at some indices (``_load``); reading, fitting
and skipping are done here, the same way for every kind.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from pathlib import Path

import numpy as np

from explorer.data.dataset import fit_image
from explorer.data.source import Read, Shape
from explorer.errors import DatasetError

MAX_EXPANDED = 100_000  # files one brace pattern may name
_BRACE = re.compile(r"\{([^{}]*)\}")
_GLOB_CHARS = set("*?[")


def expand_braces(pattern: str) -> list[str]:
    """``shard-{0000..0002}.tar`` -> shard-0000.tar, shard-0001.tar, shard-0002.tar (zero padding kept);
    ``{a,b}`` lists alternatives; several groups multiply. More than ``MAX_EXPANDED`` names raises."""
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    body = match.group(1)
    if (rng := re.fullmatch(r"(\d+)\.\.(\d+)", body)) is not None:
        lo, hi = int(rng.group(1)), int(rng.group(2))
        if hi < lo or hi - lo >= MAX_EXPANDED:
            raise DatasetError(f"{pattern!r}: the range {{{body}}} must go up and name at most {MAX_EXPANDED:,} files")
        width = len(rng.group(1)) if rng.group(1).startswith("0") else 0
        choices = [str(v).zfill(width) for v in range(lo, hi + 1)]
    else:
        choices = body.split(",")
    head, tail = pattern[: match.start()], pattern[match.end() :]
    out: list[str] = []
    for choice in choices:
        out.extend(expand_braces(head + choice + tail))
        if len(out) > MAX_EXPANDED:
            raise DatasetError(f"{pattern!r} names more than {MAX_EXPANDED:,} files")
    return out


def is_pattern(location: str) -> bool:
    return bool(_GLOB_CHARS & set(location)) or _BRACE.search(location) is not None


def expand(location: str, suffixes: tuple[str, ...], *, label: str) -> list[Path]:
    """The files a location names, sorted: the file itself, the files ending in ``suffixes`` anywhere in a folder
    (hidden ones left out), or those a glob or brace pattern names. None found raises DatasetError."""
    location = os.path.expanduser(location.strip())
    if is_pattern(location):
        found: set[str] = set()
        for pattern in expand_braces(location):
            found.update(glob.glob(pattern, recursive=True) if set(pattern) & _GLOB_CHARS else [pattern])
        paths = sorted(Path(p) for p in found if Path(p).is_file())
    elif Path(location).is_dir():
        paths = sorted(
            Path(root, f)
            for root, dirs, files in os.walk(location)
            for f in files
            if not f.startswith(".") and f.lower().endswith(suffixes)
            if not any(part.startswith(".") for part in Path(root).relative_to(location).parts)
        )
    elif Path(location).is_file():
        paths = [Path(location)]
    else:
        raise DatasetError(f"{label}: {location!r} does not exist")
    if not paths:
        raise DatasetError(f"{label}: no {'/'.join(suffixes)} files at {location!r}")
    return paths


def names_files(location: str, suffixes: tuple[str, ...], *, look_at: int = 2000) -> bool:
    """Whether a location is a file, pattern or folder of files ending in ``suffixes`` (a folder: among the first
    ``look_at`` files found, so asking about a folder of a million images stays quick)."""
    location = os.path.expanduser(location.strip())
    if is_pattern(location) or Path(location).is_file():
        return location.lower().endswith(suffixes)
    if not Path(location).is_dir():
        return False
    seen = 0
    for _, _, files in os.walk(location):
        for f in files:
            if f.lower().endswith(suffixes):
                return True
            seen += 1
            if seen >= look_at:
                return False
    return False


def fingerprint(kind: str, paths: list[Path], *options: object) -> str:
    """Names a source by its files' names, sizes and modification times (never their bytes) and its options."""
    h = hashlib.sha256(f"{kind}/{options!r}".encode())
    for path in paths:
        st = path.stat()
        h.update(f"\0{path}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()


class FileSource:
    """The common part of the kinds of source on disk. A subclass sets ``name``, ``digest``, ``_labels``
    (int64 (N,), -1 where unknown), ``_class_names``, and defines ``__len__``, ``where`` and ``_load``."""

    name: str
    digest: str
    _labels: np.ndarray
    _class_names: list[str]
    _shape: Shape | None = None

    def __len__(self) -> int:
        raise NotImplementedError

    def where(self, i: int) -> str:
        raise NotImplementedError

    def _load(self, index: np.ndarray) -> list[np.ndarray | str]:
        """The images at ``index`` as decoded (uint8 (H, W) or (H, W, 3)), in order; a string says why one
        could not be read."""
        raise NotImplementedError

    @property
    def class_names(self) -> list[str]:
        return list(self._class_names)

    def labels(self) -> np.ndarray:
        return self._labels

    def natural_shape(self) -> Shape:
        """What images are fitted to when no shape is asked for: the channels and size of the first readable
        image among the first few."""
        if self._shape is None:
            for image in self._load(np.arange(min(len(self), 64))):
                if not isinstance(image, str):
                    self._shape = (1 if image.ndim == 2 else 3, int(image.shape[0]), int(image.shape[1]))
                    break
            else:
                raise DatasetError(f"{self.name}: none of its first images could be read")
        return self._shape

    def read(self, index: np.ndarray, shape: Shape | None = None) -> Read:
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise DatasetError(f"{self.name}: indices must be within 0..{len(self) - 1}")
        shape = shape or self.natural_shape()
        kept: list[np.ndarray] = []
        got: list[int] = []
        skipped: list[tuple[int, str]] = []
        for i, image in zip(index.tolist(), self._load(index), strict=True):
            if not isinstance(image, str):
                try:
                    kept.append(fit_image(image, shape))
                    got.append(i)
                    continue
                except DatasetError as exc:
                    image = str(exc)
            skipped.append((i, f"{self.where(i)}: {image}"))
        c, h, w = shape
        empty = np.empty((0, h, w) if c == 1 else (0, h, w, 3), dtype=np.uint8)
        images = np.stack(kept) if kept else empty
        return Read(images, np.asarray(got, dtype=np.int64), skipped)


def class_index(names: list[str]) -> tuple[list[str], dict[str, int]]:
    """Sorted distinct class names and each one's label."""
    ordered = sorted(set(names))
    return ordered, {n: k for k, n in enumerate(ordered)}
