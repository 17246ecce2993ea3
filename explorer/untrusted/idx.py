"""IDX files (the MNIST format), plain or gzip-compressed: the header is checked and the data read in bounded
chunks, so neither a lying header nor a gzip bomb allocates more than the shape it declares."""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import os
import struct
import zlib
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from explorer.errors import DatasetError

IDX_MAX_BYTES = 2**31
_IDX_TYPES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}
_CHUNK = 2**20


@contextlib.contextmanager
def _open_binary(source: str | os.PathLike | bytes) -> Iterator[BinaryIO]:
    """The bytes of ``source``, transparently gunzipped when they start with the gzip magic 1f 8b."""
    raw: BinaryIO = io.BytesIO(source) if isinstance(source, bytes | bytearray | memoryview) else open(source, "rb")
    with raw:
        magic = raw.read(2)
        raw.seek(0)
        if magic == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=raw) as unzipped:
                yield unzipped  # type: ignore[misc]
        else:
            yield raw


def _read_at_most(f: BinaryIO, limit: int) -> bytearray:
    # Chunked, so neither a lying header nor a gzip bomb makes us allocate more than ``limit`` bytes.
    out = bytearray()
    while len(out) < limit:
        chunk = f.read(min(_CHUNK, limit - len(out)))
        if not chunk:
            break
        out += chunk
    return out


def read_idx(source: str | os.PathLike | bytes, *, max_bytes: int = IDX_MAX_BYTES) -> np.ndarray:
    """Parse an IDX file (the MNIST format; plain or gzip) into a uint8 array of its declared shape."""
    where = "<bytes>" if isinstance(source, bytes | bytearray | memoryview) else os.fspath(source)
    try:
        with _open_binary(source) as f:
            head = f.read(4)
            if len(head) < 4 or head[0] or head[1]:
                raise DatasetError(
                    f"{where} is not an IDX file: it must start with two zero bytes, a type code and a dimension count "
                    f"(found {bytes(head).hex(' ') or 'nothing'})"
                )
            code, ndim = head[2], head[3]
            if code != 0x08:
                raise DatasetError(
                    f"{where}: IDX type code 0x{code:02X} ({_IDX_TYPES.get(code, 'unknown')}) is not supported; "
                    "only 0x08 (unsigned byte) is"
                )
            if not 1 <= ndim <= 4:
                raise DatasetError(f"{where}: IDX header declares {ndim} dimensions; expected 1 to 4")
            dims_raw = f.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise DatasetError(
                    f"{where} is truncated inside its header ({4 + len(dims_raw)} of {4 + 4 * ndim} bytes)"
                )
            dims = struct.unpack(f">{ndim}I", dims_raw)  # big-endian uint32 each
            size = math.prod(dims)
            if size > max_bytes:
                raise DatasetError(
                    f"{where} declares shape {dims} = {size} bytes, more than the limit of {max_bytes} bytes"
                )
            data = _read_at_most(f, size + 1)
            if len(data) < size:
                raise DatasetError(
                    f"{where} is truncated: its header declares shape {dims} = {size} data bytes but only {len(data)} follow"
                )
            if len(data) > size:
                extra = len(data) - size + len(_read_at_most(f, _CHUNK))  # counted up to 1 MiB only
                raise DatasetError(
                    f"{where} has {extra if extra <= _CHUNK else 'more than 1 MiB of'} bytes beyond the {size} its "
                    f"header declares for shape {dims}; the file is corrupt or not an IDX file"
                )
    except FileNotFoundError:
        raise DatasetError(f"IDX file {where} does not exist") from None
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; EOFError = cut-off gzip stream
        raise DatasetError(f"cannot read IDX file {where}: {exc}") from None
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)
