"""WebDataset shards: plain .tar files (one path, a folder, a glob, or a brace pattern such as
``shard-{0000..0009}.tar``) whose members are grouped into samples by key.

A member's key is its path up to the first dot of its file name (``train/000017.jpg`` and
``train/000017.cls`` are one sample); a sample's image is its jpg/jpeg/png/webp member, its label its
cls/label/class member when there is one (a number, or a class name). The shards are indexed once when the
source is opened (``explorer.untrusted.archive.tar_index``: headers only, links never followed, hostile
members left out and listed in ``problems``); images are then read by seeking to their bytes.
"""

from __future__ import annotations

import numpy as np

from explorer.data.lazy import FileSource, class_index, expand, fingerprint, names_files
from explorer.data.source import SourceKind, register
from explorer.errors import DatasetError
from explorer.untrusted.archive import TarEntry, read_tar_member, tar_index
from explorer.untrusted.images import read_image

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
LABEL_EXTENSIONS = ("cls", "label", "class")
MAX_LABEL_BYTES = 256


def split_key(name: str) -> tuple[str, str]:
    """``dir/0001.seg.png`` -> (``dir/0001``, ``seg.png``): the key and the extension, as WebDataset groups them."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


class WebDatasetSource(FileSource):
    def __init__(self, name: str, location: str) -> None:
        self.name = name
        self.paths = expand(location, (".tar",), label=name)
        self.problems: list[str] = []
        shard_of: list[int] = []
        images: list[TarEntry] = []
        self.keys: list[str] = []
        raw_labels: list[str | None] = []
        for s, path in enumerate(self.paths):
            try:
                entries, left_out = tar_index(path, label=f"{name}: {path.name}", error=DatasetError)
            except DatasetError as exc:
                self.problems.append(str(exc))
                continue
            self.problems.extend(f"{path.name}: {why}" for why in left_out)
            samples: dict[str, dict[str, TarEntry]] = {}
            for entry in entries:
                key, ext = split_key(entry.name)
                samples.setdefault(key, {})[ext] = entry
            with open(path, "rb") as f:
                for key, members in samples.items():
                    image = next((members[e] for e in IMAGE_EXTENSIONS if e in members), None)
                    if image is None:
                        continue  # a sample of other things (text, features): not an image
                    found = next((members[e] for e in LABEL_EXTENSIONS if e in members), None)
                    text = None
                    if found is not None and found.size <= MAX_LABEL_BYTES:
                        text = read_tar_member(f, found).decode("utf-8", "replace").strip() or None
                    shard_of.append(s)
                    images.append(image)
                    self.keys.append(key)
                    raw_labels.append(text)
        if not images:
            why = "; ".join(self.problems[:3])
            raise DatasetError(f"{name}: no samples with an image in {location!r}" + (f" ({why})" if why else ""))
        self._shard = np.array(shard_of, dtype=np.int32)
        self._entries = images
        self._labels, self._class_names = _labels(raw_labels)
        self._labels.setflags(write=False)
        self.digest = fingerprint("webdataset/1", self.paths)

    def __len__(self) -> int:
        return len(self._entries)

    def where(self, i: int) -> str:
        return f"{self.paths[self._shard[i]].name}:{self._entries[i].name}"

    def _load(self, index: np.ndarray) -> list[np.ndarray | str]:
        out: list[np.ndarray | str] = [""] * len(index)
        by_shard: dict[int, list[int]] = {}
        for pos, i in enumerate(index.tolist()):
            by_shard.setdefault(int(self._shard[i]), []).append(pos)
        for s, positions in sorted(by_shard.items()):
            try:
                f = open(self.paths[s], "rb")  # noqa: SIM115 (closed below, after every read from this shard)
            except OSError as exc:
                for pos in positions:
                    out[pos] = f"unreadable shard ({exc.strerror or exc})"
                continue
            with f:
                for pos in sorted(positions, key=lambda p: self._entries[index[p]].offset):
                    try:
                        out[pos] = read_image(read_tar_member(f, self._entries[index[pos]]))
                    except OSError as exc:
                        out[pos] = f"unreadable ({exc})"
                    except DatasetError as exc:
                        out[pos] = str(exc)
        return out


def _labels(raw: list[str | None]) -> tuple[np.ndarray, list[str]]:
    """Numbers when every label present is a whole number (class names "0".."k"), else class names, sorted."""
    present = [t for t in raw if t is not None]
    if all(t.lstrip("-").isdigit() and len(t) <= 9 for t in present):
        labels = np.array([-1 if t is None else max(int(t), -1) for t in raw], dtype=np.int64)
        top = int(labels.max(initial=-1))
        return labels, [str(k) for k in range(top + 1)] if top < 10_000 else []
    names, number = class_index(present)
    return np.array([-1 if t is None else number[t] for t in raw], dtype=np.int64), names


def _claims(location: str) -> bool:
    return names_files(location, (".tar",))


KIND = register(SourceKind("webdataset", "WebDataset .tar shards", _claims, WebDatasetSource))
