"""A folder of images: every image file under it, in sorted order; one subfolder per class gives the labels.

The folder is listed once, when the source is opened (names, sizes and times: the source's digest); images
are decoded when read, by ``explorer.untrusted.images.read_image`` under its pixel bound, so a truncated file,
a text file named .jpg or a PNG claiming 50,000 x 50,000 pixels is skipped with its reason.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from explorer.data.lazy import FileSource, class_index, names_files
from explorer.data.source import SourceKind, register
from explorer.errors import DatasetError
from explorer.untrusted.images import read_image

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MAX_FILE_BYTES = 64 * 2**20  # an image file larger than this is skipped unread


class FolderSource(FileSource):
    def __init__(self, name: str, root: str | os.PathLike) -> None:
        self.name = name
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DatasetError(f"{name}: {str(root)!r} is not a folder")
        digest = hashlib.sha256(b"folder/1")
        files: list[tuple[str, int]] = []  # (path relative to the root, size)
        for top, dirs, names in os.walk(self.root):  # symlinked folders are not followed
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__MACOSX")
            for fname in sorted(names):
                if fname.startswith(".") or not fname.lower().endswith(SUFFIXES):
                    continue
                path = Path(top, fname)
                try:
                    st = path.stat()
                except OSError:
                    continue  # a dangling link
                rel = path.relative_to(self.root).as_posix()
                files.append((rel, st.st_size))
                digest.update(f"\0{rel}\0{st.st_size}\0{st.st_mtime_ns}".encode())
        if not files:
            raise DatasetError(f"{name}: no image files ({', '.join(SUFFIXES)}) in {str(root)!r}")
        files.sort()
        self.files = [rel for rel, _ in files]
        self.sizes = np.array([size for _, size in files], dtype=np.int64)
        # a file in a subfolder belongs to the class of its top subfolder; files at the top have no class
        folders = [rel.split("/", 1)[0] if "/" in rel else None for rel in self.files]
        self._class_names, number = class_index([f for f in folders if f is not None])
        self._labels = np.array([-1 if f is None else number[f] for f in folders], dtype=np.int64)
        self._labels.setflags(write=False)
        self.digest = digest.hexdigest()

    def __len__(self) -> int:
        return len(self.files)

    def where(self, i: int) -> str:
        return self.files[i]

    def _load(self, index: np.ndarray) -> list[np.ndarray | str]:
        out: list[np.ndarray | str] = []
        for i in index.tolist():
            if self.sizes[i] > MAX_FILE_BYTES:
                out.append(f"a file of {self.sizes[i] / 2**20:.0f} MB, more than {MAX_FILE_BYTES // 2**20} MB")
                continue
            try:
                with open(self.root / self.files[i], "rb") as f:
                    data = f.read(MAX_FILE_BYTES + 1)
                out.append(read_image(data))
            except OSError as exc:
                out.append(f"unreadable ({exc.strerror or exc})")
            except DatasetError as exc:
                out.append(str(exc))
        return out


def _claims(location: str) -> bool:
    """A folder with image files in it (a folder of .parquet or .tar files is another kind's)."""
    return Path(os.path.expanduser(location.strip())).is_dir() and names_files(location, SUFFIXES, look_at=20_000)


KIND = register(SourceKind("folder", "a folder of images (one subfolder per class)", _claims, FolderSource))
