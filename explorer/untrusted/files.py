"""How much of a stranger's file is read, and what it is: one size limit, and the format from magic bytes."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from explorer.errors import CheckpointError, ExplorerError
from explorer.settings import current

Source = str | os.PathLike | bytes | bytearray | memoryview

MAX_FILE_BYTES = 2 * 2**30  # one limit for every model file: far above any model this app can display

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or the end record of an empty archive


def max_upload_bytes() -> int:
    """The largest file a browser may hand over: EXPLORER_MAX_UPLOAD_MB (explorer.settings, default 200 MB),
    never above MAX_FILE_BYTES. Read at each call, so a test or a host's environment applies without a restart
    of the importing code; files read from disk by the command line keep MAX_FILE_BYTES."""
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
