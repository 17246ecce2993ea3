"""Bytes from strangers: what they are, how much of them is read, and whether their containers are sound.

Everything a user can hand the explorer (model files, dataset uploads) passes through here before any
parser that could be made to allocate, unpack or run something:

- ``sniff`` names a file's format from its magic bytes (never from its name);
- ``read_bounded`` reads a file or takes bytes, refusing anything over one size limit;
- ``open_zip`` checks a zip archive's directory (entries, unpacked size, compression ratio) before any
  member is unpacked: the one zip-bomb check, for dataset uploads, ``torch.save`` files and ``.keras`` files;
- ``safetensors_header`` validates a safetensors header (sizes, dtypes, offsets) before any tensor exists;
  ``load_safetensors`` then lets the ``safetensors`` library, which re-checks the same, build the tensors.

Formats that need native or pickle-based parsers (``torch.load``, HDF5) are parsed in a limited child
process instead: see ``explorer.untrusted.sandbox``. Every refusal is a ``CheckpointError`` or a
``DatasetError`` (the caller chooses) with a message that says what to do.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from explorer.errors import CheckpointError, ExplorerError

if TYPE_CHECKING:
    import torch

Source = str | os.PathLike | bytes | bytearray | memoryview

MAX_FILE_BYTES = 2 * 2**30  # one limit for every model file: far above any model this app can display
MAX_HEADER_BYTES = 16 * 2**20  # a safetensors JSON header; an autoencoder's is a few KiB

# The zip-bomb check, one for every archive. Deflate cannot pass ~1032x, and real members stay far below
# 200x: torch.save stores tensors uncompressed (1x), float weights deflate ~1.1x, PNGs are compressed already
# and compressed .npy image arrays land around 2-20x. Members under 1 MiB are exempt: they cannot exhaust
# memory, and small all-zero arrays (labels of one class) legitimately compress by far more.
MAX_ZIP_RATIO = 200
ZIP_RATIO_EXEMPT_BYTES = 2**20
# 100,000 images (the largest dataset upload) plus their class folders; torch.save writes one member per
# tensor storage and a .keras file about four.
MAX_ZIP_MEMBERS = 120_000

DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or the end record of an empty archive
_CENTRAL_DIR_SIGNATURE = b"PK\x01\x02"


def max_upload_bytes() -> int:
    """The largest file a browser may hand over: EXPLORER_MAX_UPLOAD_MB (explorer.settings, default 200 MB),
    never above MAX_FILE_BYTES. Read at each call, so a test or a host's environment applies without a restart
    of the importing code; files read from disk by the command line keep MAX_FILE_BYTES."""
    from explorer.settings import current

    return min(current().max_upload_bytes, MAX_FILE_BYTES)


def human_size(n: float) -> str:
    """'512 bytes', '3.5 MiB', '2 GiB'."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} bytes"


# --- what is it -------------------------------------------------------------------------------------------


def _looks_like_safetensors(data: bytes) -> bool:
    """An 8-byte header length that fits the data, followed by the start of a JSON object."""
    if len(data) < 10:
        return False
    (n,) = struct.unpack("<Q", data[:8])
    return 2 <= n <= len(data) - 8 and data[8:9] == b"{"


def _looks_like_onnx(data: bytes) -> bool:
    # An ONNX ModelProto starts with field 1 (ir_version, varint: tag 0x08) and names its producer early on.
    head = data[:4096]
    return head[:1] == b"\x08" and len(head) > 2 and head[1] < 0x80 and (b"onnx" in head.lower() or b"pytorch" in head)


def sniff(data: bytes) -> str | None:
    """The format of ``data`` from its content: empty, safetensors, zip, pickle, hdf5, gzip, npy, png, jpeg,
    onnx, or None when unrecognised."""
    if not data:
        return "empty"
    # before the pickle test: a safetensors header of 640 bytes starts 0x80 0x02, as a protocol-2 pickle does
    if _looks_like_safetensors(data):
        return "safetensors"
    if data[:4] in _ZIP_MAGIC:
        return "zip"
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):  # PROTO opcode, protocol 2-5
        return "pickle"
    for magic, name in (
        (b"\x89HDF\r\n\x1a\n", "hdf5"),
        (b"\x1f\x8b", "gzip"),
        (b"\x93NUMPY", "npy"),
        (b"\x89PNG", "png"),
        (b"\xff\xd8\xff", "jpeg"),
    ):
        if data.startswith(magic):
            return name
    return "onnx" if _looks_like_onnx(data) else None


# --- how much of it ---------------------------------------------------------------------------------------


def read_bounded(
    source: Source,
    *,
    what: str = "file",
    label: str | None = None,
    limit: int = MAX_FILE_BYTES,
    error: type[ExplorerError] = CheckpointError,
) -> bytes:
    """The bytes of a path (or the bytes given), refused when missing or larger than ``limit``.

    ``what`` names the file in messages ("no checkpoint file at ..."); ``label`` is its name (default: the
    path's file name).
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)  # no copy when it already is bytes
        check_size(len(data), label=label or what, limit=limit, error=error)
        return data
    path = Path(source)
    label = label or path.name
    try:
        if not path.is_file():
            raise error(f"no {what} at {path}" if not path.exists() else f"{path} is a folder, not a {what}")
        check_size(path.stat().st_size, label=label, limit=limit, error=error)
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)  # +1: a file that grew after stat() is still caught
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or 'operating system error'}") from None
    check_size(len(data), label=label, limit=limit, error=error)
    return data


def check_size(
    size: int, *, label: str, limit: int = MAX_FILE_BYTES, error: type[ExplorerError] = CheckpointError
) -> None:
    """Refuse ``size`` bytes of ``label`` when over ``limit``."""
    if size > limit:
        raise error(f"{label} is {human_size(size)}, more than the {human_size(limit)} allowed")


# --- zip archives -----------------------------------------------------------------------------------------


def open_zip(data: bytes, *, label: str, max_unpacked: int, error: type[ExplorerError]) -> zipfile.ZipFile:
    """A zip archive whose directory passed the bomb checks; refused before any member is unpacked.

    ``max_unpacked`` bounds the declared size of all members together. Read members with ``open_member``.
    """
    # zipfile builds one object per directory entry before anything can be counted, and refuses an entry
    # without this signature, so the signature count bounds its work (an over-count only refuses sooner).
    entries = data.count(_CENTRAL_DIR_SIGNATURE)
    if entries > MAX_ZIP_MEMBERS:
        raise error(f"{label} has {entries} entries; at most {MAX_ZIP_MEMBERS} are allowed")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, struct.error):
        raise error(
            f"{label} is not a readable zip archive: it is truncated or corrupt; copy or download it again"
        ) from None
    total = sum(info.file_size for info in infos)
    if total > max_unpacked:
        raise error(f"{label} would unpack to {human_size(total)}; at most {human_size(max_unpacked)} is allowed")
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size >= ZIP_RATIO_EXEMPT_BYTES and ratio > MAX_ZIP_RATIO:
            raise error(
                f"{label}: member {info.filename!r} would expand {ratio:.0f}x ({info.compress_size} -> "
                f"{info.file_size} bytes), beyond the {MAX_ZIP_RATIO}x allowed; it looks like a zip bomb and "
                "was not unpacked"
            )
    return archive


@contextlib.contextmanager
def open_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo | str, *, label: str, error: type[ExplorerError]
) -> Iterator[BinaryIO]:
    """One member of an archive from ``open_zip``; zipfile stops at its declared size, which was checked."""
    name = info if isinstance(info, str) else info.filename
    try:
        with archive.open(info) as member:
            yield member  # type: ignore[misc]
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        # BadZipFile's text is our kind of message ("Bad CRC-32 for file ...", "Truncated file header")
        raise error(f"{label}: member {name!r} cannot be unpacked ({exc}); the archive is damaged") from None
    except NotImplementedError:
        raise error(f"{label}: member {name!r} uses a compression method this reader does not support") from None
    except RuntimeError:  # zipfile's refusal of an encrypted member
        raise error(f"{label}: member {name!r} is encrypted; store it without a password") from None


def read_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo | str, *, label: str, error: type[ExplorerError]
) -> bytes:
    with open_member(archive, info, label=label, error=error) as member:
        return member.read()


# --- safetensors ------------------------------------------------------------------------------------------


def safetensors_header(buf: bytes | memoryview, *, label: str | None = None) -> tuple[dict[str, Any], int]:
    """Validate a safetensors header; returns (header, offset of the data section).

    Every size is checked against the real length before anything is allocated, so a header that claims
    2**62 bytes or a terabyte tensor is refused cheaply, and each fault is named (tensor, offsets, sizes).
    """
    prefix = f"{label}: " if label else ""
    size = len(buf)
    if size == 0:
        raise CheckpointError(f"{prefix}the file is empty")
    if size < 8:
        raise CheckpointError(f"{prefix}the file is {size} bytes long: too short for a safetensors header (truncated?)")
    (n,) = struct.unpack("<Q", bytes(buf[:8]))
    if n > MAX_HEADER_BYTES or n > size - 8:
        raise CheckpointError(
            f"{prefix}the header claims {n} bytes but the file has {size - 8} after the length field "
            f"(limit {human_size(MAX_HEADER_BYTES)}); the file is truncated or not a safetensors file"
        )
    try:
        header = json.loads(bytes(buf[8 : 8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CheckpointError(
            f"{prefix}the safetensors header is not valid JSON; this is not a safetensors file"
        ) from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{prefix}the safetensors header must be a JSON object")
    data_len = size - 8 - n
    spans = []
    for key, info in header.items():
        if key == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise CheckpointError(f"{prefix}__metadata__ must map strings to strings")
            continue
        spans.append((*_tensor_span(key, info, data_len, prefix), key))
    spans.sort()
    pos = 0
    for begin, end, key in spans:
        if begin != pos:
            what = "overlaps the previous tensor" if begin < pos else f"leaves a gap at byte {pos}"
            raise CheckpointError(f"{prefix}tensor {key!r}: data at [{begin}, {end}) {what}; the offsets are corrupt")
        pos = end
    if pos != data_len:
        raise CheckpointError(
            f"{prefix}the data section has {data_len} bytes but the tensors cover {pos}; the file is corrupt"
        )
    return header, 8 + n


def _tensor_span(key: str, info: Any, data_len: int, prefix: str) -> tuple[int, int]:
    where = f"{prefix}tensor {key!r}"
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise CheckpointError(f"{where}: entry must have exactly dtype, shape and data_offsets")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in DTYPE_BYTES:
        raise CheckpointError(f"{where}: unsupported dtype {dtype!r}; expected one of {sorted(DTYPE_BYTES)}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise CheckpointError(f"{where}: shape must be a list of non-negative integers, got {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise CheckpointError(f"{where}: data_offsets must be [begin, end] with begin <= end, got {offsets!r}")
    need = math.prod(shape) * DTYPE_BYTES[dtype]
    if need != offsets[1] - offsets[0]:
        raise CheckpointError(
            f"{where}: shape {shape} of {dtype} needs {need} bytes but its offsets span {offsets[1] - offsets[0]}"
        )
    if offsets[1] > data_len:
        raise CheckpointError(
            f"{where}: data ends at byte {offsets[1]} but the data section has only {data_len} bytes (truncated file?)"
        )
    return offsets[0], offsets[1]


def load_safetensors(buf: bytes, *, label: str | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(header, tensors) of safetensors bytes: our checks first, then the library's own as it builds them."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    header, _ = safetensors_header(buf, label=label)
    try:
        tensors = load(buf)
    except SafetensorError:  # a check of the library's that ours lacks
        raise CheckpointError(
            f"{label or 'the file'}: the safetensors library refused the file although its header looked sound"
        ) from None
    return header, tensors
