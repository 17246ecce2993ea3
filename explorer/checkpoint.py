"""The checkpoint format: one ``.safetensors`` file, weights plus JSON metadata.

Layout of the file (safetensors): 8-byte little-endian header length N, N bytes of
JSON header, then the raw tensor bytes. The header's ``__metadata__`` holds

    format          "latent-explorer"
    format_version  "1"
    explorer        JSON: {"config": ..., "dataset": ..., "training": ..., "metrics": ...}

Loading validates the header by hand before any tensor is allocated (sizes,
offsets, dtypes), then checks every key and shape against the model that the
config describes. Nothing here unpickles.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from explorer import registry
from explorer.errors import CheckpointError, ConfigError

if TYPE_CHECKING:  # torch is imported when a model is built, so reading metadata stays light
    import torch

    from explorer.models.base import Autoencoder

FORMAT = "latent-explorer"
FORMAT_VERSION = "1"
MAX_FILE_BYTES = 2 * 2**30  # 2 GiB: far above any model this app can display
MAX_HEADER_BYTES = 16 * 2**20

DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}

Source = str | os.PathLike | bytes | bytearray | memoryview


def _describe_foreign(head: bytes) -> str | None:
    """A hint when the bytes are a known non-safetensors format."""
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return (
            "this is a Python pickle (e.g. a torch.save file), which is never unpickled here; "
            "convert it with `python -m explorer import FILE --out OUT.safetensors`"
        )
    if head[:4] == b"PK\x03\x04":
        return (
            "this is a zip archive (a torch.save file, TorchScript, a .keras file or a dataset), not a "
            "safetensors checkpoint; convert a model with `python -m explorer import FILE --out OUT.safetensors`"
        )
    if head[:4] == b"\x89HDF":
        return "this is an HDF5 file; import a Keras model with `python -m explorer import`"
    return None


def read_header(buf: bytes | memoryview) -> tuple[dict[str, Any], int]:
    """Parse and validate a safetensors header. Returns (header, offset of the data section).

    Every size is checked against the real file length before anything is allocated,
    so a header that claims 2**62 bytes or a terabyte tensor is refused cheaply.
    """
    size = len(buf)
    if size == 0:
        raise CheckpointError("the checkpoint file is empty")
    n = struct.unpack("<Q", bytes(buf[:8]))[0] if size >= 8 else 0
    plausible = size >= 10 and 2 <= n <= size - 8 and bytes(buf[8:9]) == b"{"
    # a real header length can start with the same bytes as a pickle (e.g. 640 = 0x80 0x02): look for
    # foreign formats only when the file does not already look like safetensors
    hint = None if plausible else _describe_foreign(bytes(buf[:8]))
    if hint:
        raise CheckpointError(hint)
    if size < 8:
        raise CheckpointError(f"the file is {size} bytes long: too short for a safetensors header (truncated?)")
    if n > MAX_HEADER_BYTES or n > size - 8:
        raise CheckpointError(
            f"the header claims {n} bytes but the file has {size - 8} after the length field "
            f"(limit {MAX_HEADER_BYTES}); the file is truncated or not a safetensors checkpoint"
        )
    try:
        header = json.loads(bytes(buf[8 : 8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"the safetensors header is not valid JSON ({exc}); not a safetensors checkpoint"
        ) from None
    if not isinstance(header, dict):
        raise CheckpointError("the safetensors header must be a JSON object")
    data_start = 8 + n
    data_len = size - data_start
    spans = []
    for key, info in header.items():
        if key == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise CheckpointError("__metadata__ must map strings to strings")
            continue
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointError(f"tensor {key!r}: entry must have exactly dtype, shape and data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPE_BYTES:
            raise CheckpointError(f"tensor {key!r}: unsupported dtype {dtype!r}; expected one of {sorted(DTYPE_BYTES)}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and 0 <= d for d in shape):
            raise CheckpointError(f"tensor {key!r}: shape must be a list of non-negative integers, got {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            raise CheckpointError(
                f"tensor {key!r}: data_offsets must be [begin, end] with begin <= end, got {offsets!r}"
            )
        need = math.prod(shape) * DTYPE_BYTES[dtype]
        if need != offsets[1] - offsets[0]:
            raise CheckpointError(
                f"tensor {key!r}: shape {shape} of {dtype} needs {need} bytes but its offsets span "
                f"{offsets[1] - offsets[0]}"
            )
        if offsets[1] > data_len:
            raise CheckpointError(
                f"tensor {key!r}: data ends at byte {offsets[1]} but the data section has only {data_len} bytes "
                "(truncated file?)"
            )
        spans.append((offsets[0], offsets[1], key))
    spans.sort()
    pos = 0
    for begin, end, key in spans:
        if begin != pos:
            what = "overlaps the previous tensor" if begin < pos else f"leaves a gap at byte {pos}"
            raise CheckpointError(f"tensor {key!r}: data at [{begin}, {end}) {what}; the offsets are corrupt")
        pos = end
    if pos != data_len:
        raise CheckpointError(f"the data section has {data_len} bytes but the tensors cover {pos}; the file is corrupt")
    return header, data_start


def _read_source(source: Source) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > MAX_FILE_BYTES:
            raise CheckpointError(f"checkpoint is {len(data)} bytes; the limit is {MAX_FILE_BYTES}")
        return data
    return read_bounded(source, what="checkpoint file")


def read_bounded(source: str | os.PathLike, *, what: str = "file") -> bytes:
    """A file's bytes, refused (CheckpointError) when missing or larger than MAX_FILE_BYTES."""
    path = Path(source)
    if not path.is_file():
        raise CheckpointError(f"no {what} at {path}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise CheckpointError(f"{path.name} is {size} bytes; the limit is {MAX_FILE_BYTES} (2 GiB)")
    return path.read_bytes()


def _metadata(header: dict[str, Any]) -> dict[str, Any]:
    meta = header.get("__metadata__") or {}
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            "this safetensors file has no latent-explorer metadata (it may hold bare weights); "
            "convert it with `python -m explorer import FILE --out OUT.safetensors --kind KIND`"
        )
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint format version {version!r} is not supported; this build reads {FORMAT_VERSION!r}"
        )
    try:
        doc = json.loads(meta.get("explorer", ""))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"the 'explorer' metadata is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise CheckpointError("the 'explorer' metadata must be a JSON object with a 'config' object")
    return doc


def read_metadata(source: Source) -> dict[str, Any]:
    """The checkpoint's metadata (config, dataset, training, metrics) without building the model."""
    header, _ = read_header(_read_source(source))
    return _metadata(header)


def load_checkpoint(source: Source, *, device: str | torch.device = "cpu") -> Autoencoder:
    """Load a checkpoint from a path or bytes; returns the model in eval mode with ``model.info`` set."""
    import torch
    from safetensors.torch import load as st_load

    buf = _read_source(source)
    header, _ = read_header(buf)
    doc = _metadata(header)
    try:
        model = registry.build(registry.config_from_dict(doc["config"]))
    except ConfigError as exc:
        raise CheckpointError(f"invalid model config in checkpoint: {exc}") from None

    expected = model.state_dict()
    found = {k: v for k, v in header.items() if k != "__metadata__"}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
        raise CheckpointError(f"weights do not match a {model.kind} model of this config: " + "; ".join(parts))
    for key, tensor in expected.items():
        shape = found[key]["shape"]
        if list(tensor.shape) != shape:
            raise CheckpointError(f"tensor {key!r} has shape {shape}, expected {list(tensor.shape)} for this config")
        if found[key]["dtype"] not in FLOAT_DTYPES:
            raise CheckpointError(f"tensor {key!r} has dtype {found[key]['dtype']}, expected a float type")

    tensors = st_load(buf)  # the header was validated above, so this allocates only what the file holds
    for key, tensor in tensors.items():
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"tensor {key!r} contains NaN or Inf values; the model is unusable")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()}, strict=True)
    model.info = {k: v for k, v in doc.items() if k != "config"}
    return model.to(device).eval()


def checkpoint_bytes(
    model: Autoencoder,
    *,
    dataset: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> bytes:
    """Serialise a model and its metadata to the checkpoint format."""
    from safetensors.torch import save as st_save

    doc = {
        "config": model.config.to_dict(),
        "dataset": dataset if dataset is not None else model.info.get("dataset", {}),
        "training": training if training is not None else model.info.get("training", {}),
        "metrics": metrics if metrics is not None else model.info.get("metrics", {}),
    }
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "explorer": json.dumps(doc, sort_keys=True)}
    return st_save(state, metadata=meta)


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write via a temporary file and rename, so a kill never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_checkpoint(model: Autoencoder, path: str | os.PathLike, **metadata: Any) -> None:
    """Write ``model`` to ``path`` atomically; keyword arguments as for ``checkpoint_bytes``."""
    atomic_write(path, checkpoint_bytes(model, **metadata))
