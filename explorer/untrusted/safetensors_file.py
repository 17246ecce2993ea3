"""Safetensors files from strangers: the header (sizes, dtypes, offsets) is validated before any tensor exists.

``read_header`` gives the typed header (each tensor's dtype, shape and span; the string metadata), and
``read_document`` the JSON document a checkpoint keeps in that metadata; ``load_safetensors`` then lets the
``safetensors`` library, which re-checks the same, build the tensors.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from safetensors import SafetensorError

from explorer.errors import CheckpointError
from explorer.untrusted.files import human_size

if TYPE_CHECKING:
    import torch

MAX_HEADER_BYTES = 16 * 2**20  # a safetensors JSON header; an autoencoder's is a few KiB
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


class TensorEntry(NamedTuple):
    """One tensor as the header describes it; ``begin``/``end`` count from the start of the data section."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    """A validated header: the tensors by name, the string metadata, where the data section starts."""

    tensors: dict[str, TensorEntry]
    metadata: dict[str, str]
    data_start: int


def read_header(buf: bytes | memoryview, *, label: str | None = None) -> SafetensorsHeader:
    """The typed header of safetensors bytes; refused with the fault named as ``safetensors_header`` does."""
    header, start = safetensors_header(buf, label=label)
    tensors = {
        key: TensorEntry(info["dtype"], tuple(info["shape"]), *info["data_offsets"])
        for key, info in header.items()
        if key != "__metadata__"
    }
    return SafetensorsHeader(tensors, dict(header.get("__metadata__") or {}), start)


def read_document(metadata: dict[str, str], *, format: str, version: str) -> dict[str, Any]:
    """The JSON object a checkpoint of ``format`` keeps under ``"explorer"`` in its metadata, with a ``config``
    object; refused when the metadata is of another format or version, or the JSON is not such an object."""
    if metadata.get("format") != format:
        raise CheckpointError(
            "this safetensors file has no latent-explorer metadata (it may hold bare weights); "
            "convert it with `python -m explorer import FILE --out OUT.safetensors --kind KIND`"
        )
    found = metadata.get("format_version")
    if found != version:
        raise CheckpointError(f"checkpoint format version {found!r} is not supported; this build reads {version!r}")
    try:
        doc = json.loads(metadata.get("explorer", ""))
    except RecursionError:
        raise CheckpointError("the 'explorer' metadata is nested too deeply to be a checkpoint's") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"the 'explorer' metadata is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise CheckpointError("the 'explorer' metadata must be a JSON object with a 'config' object")
    return doc


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
    from safetensors.torch import load

    header, _ = safetensors_header(buf, label=label)
    try:
        tensors = load(buf)
    except SafetensorError:  # a check of the library's that ours lacks
        raise CheckpointError(
            f"{label or 'the file'}: the safetensors library refused the file although its header looked sound"
        ) from None
    return header, tensors
