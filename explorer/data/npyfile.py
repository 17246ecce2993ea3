"""A .npy array of images, or a .npz of ``images`` with optional ``labels`` and ``class_names``, memory-mapped.

Images are uint8 (N, H, W), (N, H, W, 1|3) or (N, 1|3, H, W), or floats in [0, 1] (clipped). Nothing is
unpickled: a .npy is opened with ``np.load(mmap_mode="r", allow_pickle=False)``. A .npz is a zip archive,
which numpy cannot memory-map; here a member stored uncompressed (``np.savez``) is memory-mapped where it
lies inside the archive, so only the rows read come into memory. A compressed member
(``np.savez_compressed``) has to be inflated whole: it is read once, on first use, and held (up to
``MAX_HELD_BYTES``; save larger ones with ``np.savez``). Labels and class names are small and read at once.
"""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

import numpy as np

from explorer.data.lazy import FileSource, fingerprint
from explorer.data.source import SourceKind, register
from explorer.errors import DatasetError

SUFFIXES = (".npy", ".npz")
MAX_HELD_BYTES = 2**30
IMAGE_KEYS = ("images", "x", "X", "data")
LABEL_KEYS = ("labels", "y", "Y", "targets")
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., name length, extra length: 30 bytes


def _npz_array(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str) -> np.ndarray:
    """A member of a .npz: memory-mapped when stored, else read whole (bounded); never unpickled."""
    fmt = np.lib.format
    if info.compress_type != zipfile.ZIP_STORED:
        if info.file_size > MAX_HELD_BYTES:
            raise DatasetError(
                f"{label}: {info.filename} is compressed and {info.file_size / 2**30:.1f} GiB; save it with "
                "np.savez (uncompressed) so it can be memory-mapped"
            )
        with archive.open(info) as f:
            return np.load(f, allow_pickle=False)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        sig, name_len, extra_len = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
        if sig != b"PK\x03\x04":
            raise DatasetError(f"{label}: the archive is damaged at {info.filename}")
        f.seek(info.header_offset + _LOCAL_HEADER.size + name_len + extra_len)
        start = f.tell()
        version = fmt.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise DatasetError(f"{label}: {info.filename} uses .npy format {version}; save it with np.savez")
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read(f)
        offset = f.tell()
    if dtype.hasobject:
        raise DatasetError(f"{label}: {info.filename} holds Python objects, which are never unpickled")
    if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize > info.file_size - (offset - start):
        raise DatasetError(f"{label}: {info.filename} declares shape {shape}, more than it holds")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(shape), order="F" if fortran else "C")


class NpySource(FileSource):
    def __init__(self, name: str, location: str | os.PathLike) -> None:
        self.name = name
        self.path = Path(location).expanduser()
        label = f"{name} ({self.path.name})"
        labels = names = None
        try:
            if self.path.suffix.lower() == ".npy":
                images = np.load(self.path, mmap_mode="r", allow_pickle=False)
            else:
                with zipfile.ZipFile(self.path) as archive:
                    infos = {i.filename.removesuffix(".npy"): i for i in archive.infolist()}
                    arrays = {k: info for k, info in infos.items() if not info.is_dir()}
                    key = next((k for k in IMAGE_KEYS if k in arrays), None)
                    if key is None:
                        raise DatasetError(f"{label}: no {' or '.join(IMAGE_KEYS)} array (it holds {sorted(arrays)})")
                    images = _npz_array(self.path, archive, arrays[key], label)
                    if (lk := next((k for k in LABEL_KEYS if k in arrays), None)) is not None:
                        labels = np.asarray(_npz_array(self.path, archive, arrays[lk], label))
                    if "class_names" in arrays:
                        names = [
                            str(v) for v in np.asarray(_npz_array(self.path, archive, arrays["class_names"], label))
                        ]
        except (OSError, ValueError, EOFError, struct.error, zipfile.BadZipFile) as exc:
            raise DatasetError(f"{label} cannot be read as a numpy array ({exc})") from None
        if images.ndim == 4 and images.shape[1] in (1, 3) and images.shape[3] not in (1, 3):
            images = images.transpose(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C), still a view of the file
        if images.ndim == 4 and images.shape[3] == 1:
            images = images[..., 0]
        if not (images.ndim == 3 or (images.ndim == 4 and images.shape[3] == 3)):
            raise DatasetError(f"{label}: images must be (N, H, W), (N, H, W, 3) or (N, 3, H, W), not {images.shape}")
        if images.dtype != np.uint8 and images.dtype.kind != "f":
            raise DatasetError(f"{label}: images must be uint8 or floats in [0, 1], not {images.dtype}")
        self.images = images
        n = len(images)
        if labels is None:
            labels = np.full(n, -1, dtype=np.int64)
        elif labels.shape != (n,) or labels.dtype.kind not in "iu":
            raise DatasetError(f"{label}: labels must be {n} integers, not {labels.dtype} {labels.shape}")
        self._labels = np.where(labels >= 0, labels, -1).astype(np.int64)
        self._labels.setflags(write=False)
        top = int(self._labels.max(initial=-1))
        self._class_names = names if names is not None else [str(k) for k in range(top + 1)] if top < 10_000 else []
        self.digest = fingerprint("npy/1", [self.path])

    def __len__(self) -> int:
        return len(self.images)

    def where(self, i: int) -> str:
        return f"{self.path.name}[{i}]"

    def _load(self, index: np.ndarray) -> list[np.ndarray | str]:
        order = np.argsort(index, kind="stable")  # rows in file order: the pages are read front to back
        rows = np.asarray(self.images[index[order]])
        if rows.dtype != np.uint8:
            rows = np.rint(np.clip(np.nan_to_num(rows.astype(np.float32)), 0, 1) * 255).astype(np.uint8)
        out: list[np.ndarray | str] = [""] * len(index)
        for k, pos in enumerate(order.tolist()):
            out[pos] = rows[k]
        return out


def _claims(location: str) -> bool:
    path = Path(os.path.expanduser(location.strip()))
    return path.suffix.lower() in SUFFIXES and path.is_file()


KIND = register(SourceKind("npy", "a .npy or .npz array of images (memory-mapped)", _claims, NpySource))
