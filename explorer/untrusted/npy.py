"""``.npy`` arrays inside an uploaded ``.npz``: the header (version, dtype, shape) is read and checked against
the member's size before its data is touched, and nothing is unpickled (object arrays are refused)."""

from __future__ import annotations

import math
import struct
import zipfile
from typing import NamedTuple

import numpy as np

from explorer.errors import DatasetError, ExplorerError
from explorer.untrusted.archive import open_member

_HEADER_ERRORS = (ValueError, EOFError, struct.error, SyntaxError, TypeError)


class NpyHeader(NamedTuple):
    """What a .npy header declares."""

    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def npy_header(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    *,
    label: str,
    max_bytes: int,
    error: type[ExplorerError] = DatasetError,
) -> NpyHeader:
    """The dtype and shape a member's .npy header declares, refused when the header is malformed, of a version
    numpy's savez does not write, holds Python objects, or declares more bytes than the member or ``max_bytes``."""
    key = info.filename.removesuffix(".npy")
    fmt = np.lib.format
    with open_member(archive, info, label=label, error=error) as f:
        try:
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = fmt.read_array_header_2_0(f)
            else:
                raise error(f"{label}: array {key!r} uses .npy format version {version}; save it with numpy's np.savez")
        except _HEADER_ERRORS as exc:
            raise error(f"{label}: {info.filename!r} is not a valid .npy array ({exc})") from None
    if dtype.hasobject:
        raise error(
            f"{label}: array {key!r} holds Python objects (dtype {dtype}); reading those needs unpickling, which the "
            "explorer never does for uploads. Store numbers, and class names as fixed-width strings "
            "(np.array(names, dtype=str))."
        )
    if any(d < 0 for d in shape):  # numpy's header reader lets these through; they would pass the size check
        raise error(f"{label}: {info.filename!r} is not a valid .npy array (its shape {shape} has a negative size)")
    header = NpyHeader(dtype, tuple(int(d) for d in shape))
    if header.nbytes > min(info.file_size, max_bytes):
        raise error(
            f"{label}: array {key!r} declares shape {header.shape} ({header.nbytes} bytes) but its member holds "
            f"{info.file_size} bytes (limit {max_bytes})"
        )
    return header


def load_npy(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, *, label: str, error: type[ExplorerError] = DatasetError
) -> np.ndarray:
    """The array of a member whose header ``npy_header`` passed; never unpickles."""
    with open_member(archive, info, label=label, error=error) as f:
        try:
            return np.load(f, allow_pickle=False)
        except _HEADER_ERRORS as exc:
            raise error(f"{label}: array {info.filename.removesuffix('.npy')!r} cannot be read ({exc})") from None
