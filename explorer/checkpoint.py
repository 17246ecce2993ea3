"""The checkpoint format: one ``.safetensors`` file, weights plus JSON metadata.

Layout of the file (safetensors): 8-byte little-endian header length N, N bytes of
JSON header, then the raw tensor bytes. The header's ``__metadata__`` holds

    format          "latent-explorer"
    format_version  "1"
    explorer        JSON: {"config": ..., "dataset": ..., "training": ..., "metrics": ...}

Loading reads at most ``explorer.untrusted.MAX_FILE_BYTES``; the header (sizes, offsets,
dtypes) and the metadata document are parsed by ``explorer.untrusted.safetensors_file``
before any tensor is allocated; then every key and shape is checked against the model
that the config describes. Nothing here unpickles.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from explorer.errors import CheckpointError, ConfigError
from explorer.untrusted.files import Source, read_bounded, sniff
from explorer.untrusted.safetensors_file import SafetensorsHeader, read_document, read_header

if TYPE_CHECKING:  # torch is imported when a model is built, so reading metadata stays light
    import torch

    from explorer.models.base import Autoencoder

FORMAT = "latent-explorer"
FORMAT_VERSION = "1"
FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}

# Formats people hand the loader by mistake, and what to do instead.
_FOREIGN = {
    "pickle": (
        "this is a Python pickle (e.g. a torch.save file), which is never unpickled here; "
        "convert it with `python -m explorer import FILE --out OUT.safetensors`"
    ),
    "zip": (
        "this is a zip archive (a torch.save file, TorchScript, a .keras file or a dataset), not a "
        "safetensors checkpoint; convert a model with `python -m explorer import FILE --out OUT.safetensors`"
    ),
    "hdf5": "this is an HDF5 file; import a Keras model with `python -m explorer import`",
}


def _read(source: Source) -> tuple[bytes, SafetensorsHeader]:
    """(the file's bytes, its validated safetensors header); foreign formats are named, not parsed."""
    label = None if isinstance(source, bytes | bytearray | memoryview) else Path(source).name
    buf = read_bounded(source, what="checkpoint file")
    hint = _FOREIGN.get(sniff(buf) or "")
    if hint:
        raise CheckpointError(f"{label}: {hint}" if label else hint)
    return buf, read_header(buf, label=label)


def _metadata(header: SafetensorsHeader) -> dict[str, Any]:
    return read_document(header.metadata, format=FORMAT, version=FORMAT_VERSION)


def read_metadata(source: Source) -> dict[str, Any]:
    """The checkpoint's metadata (config, dataset, training, metrics) without building the model."""
    _, header = _read(source)
    return _metadata(header)


def load_checkpoint(source: Source, *, device: str | torch.device = "cpu") -> Autoencoder:
    """Load a checkpoint from a path or bytes; returns the model in eval mode with ``model.info`` set."""
    import torch
    from safetensors.torch import load as st_load

    buf, header = _read(source)
    doc = _metadata(header)
    try:
        from explorer import models  # torch: only when a model is built, so reading metadata stays light

        model = models.build(models.config_from_dict(doc["config"]))
    except ConfigError as exc:
        raise CheckpointError(f"invalid model config in checkpoint: {exc}") from None

    expected = model.state_dict()
    found = header.tensors
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
        shape = list(found[key].shape)
        if list(tensor.shape) != shape:
            raise CheckpointError(f"tensor {key!r} has shape {shape}, expected {list(tensor.shape)} for this config")
        byte_buffer = tensor.dtype == torch.uint8  # raw bytes a model keeps as state (an ONNX model's graphs)
        dtype = found[key].dtype
        if (dtype != "U8") if byte_buffer else (dtype not in FLOAT_DTYPES):
            want = "U8 (bytes)" if byte_buffer else "a float type"
            raise CheckpointError(f"tensor {key!r} has dtype {dtype}, expected {want}")

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
    return _canonical(st_save(state, metadata=meta))


def _canonical(raw: bytes) -> bytes:
    """The same file with its JSON header's keys sorted: safetensors writes the metadata in hash-map order, which
    differs between runs, and a checkpoint is named by the SHA-256 of its bytes (an upload's link, the caches).
    Tensor offsets count from the end of the header, so a header of another length changes nothing else."""
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data stays 8-byte aligned, as safetensors writes it
    return len(text).to_bytes(8, "little") + text + raw[8 + n :]


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
