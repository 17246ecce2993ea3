"""The bytes of a Keras 3 ``.keras`` file: a zip of ``config.json``, ``model.weights.h5`` and ``metadata.json``.

``read_keras`` checks the archive and each member's size before unpacking, parses the JSON and reads the
config as data (``explorer.untrusted.keras_graph``) into the chain of layers; ``read_h5_variables`` hands
``model.weights.h5`` to the limited child process (``explorer.untrusted.child``, mode keras-h5), since HDF5 is
parsed by native code: it is told every variable's path and Keras shape, checks them all before reading any,
and reads only plain datasets inside the file. Callers get the chain, the weights as numpy arrays, and plain
values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from explorer.errors import CheckpointError
from explorer.untrusted.archive import open_zip, read_member
from explorer.untrusted.files import MAX_FILE_BYTES, human_size
from explorer.untrusted.keras_graph import Chain, read_chain
from explorer.untrusted.sandbox import run_child

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.weights.h5"
METADATA_NAME = "metadata.json"
MAX_CONFIG_BYTES = 16 * 2**20
MAX_WEIGHT_BYTES = 512 * 2**20  # every variable read, together
MAX_H5_FILE_BYTES = MAX_WEIGHT_BYTES + 64 * 2**20  # the weights plus HDF5 bookkeeping and optimizer state
MAX_METADATA_BYTES = 2**20


@dataclass(frozen=True)
class KerasFile:
    """What a ``.keras`` file says: its chain of layers, its (still unparsed) HDF5 weights, the Keras version."""

    chain: Chain
    weights: bytes
    keras_version: str | None


class H5Layer(NamedTuple):
    """One layer whose variables are read: its name, the h5 groups it may be under, (variable, Keras shape)."""

    name: str
    paths: list[str]
    variables: list[tuple[str, list[int]]]


def is_keras_archive(names: list[str]) -> bool:
    """Whether a zip's member names are those of a Keras 3 model file."""
    return CONFIG_NAME in names and WEIGHTS_NAME in names


def read_keras(data: bytes, name: str) -> KerasFile:
    """The chain of layers and the weights of a ``.keras`` file; refused with the fault named."""
    config, weights, meta = _read_zip(data, name)
    chain = read_chain(config, name)
    if not chain.ops:
        raise CheckpointError(f"{name}: the model has no layers between its input and its output")
    version = meta.get("keras_version")
    return KerasFile(chain, weights, version[:20] if isinstance(version, str) else None)


def read_h5_variables(weights: bytes, layers: list[H5Layer], *, label: str) -> list[dict[str, np.ndarray]]:
    """For each layer, its variables as float32 arrays in Keras' layout, read by the limited child process."""
    entries = [
        {"name": layer.name, "paths": layer.paths, "vars": [[v, s] for v, s in layer.variables]} for layer in layers
    ]
    request = {"layers": [entries], "max_weight_bytes": MAX_WEIGHT_BYTES}
    tensors, _ = run_child("keras-h5", weights, label=label, request=request)
    out: list[dict[str, np.ndarray]] = [{} for _ in layers]
    for key, tensor in tensors.items():
        _, index, variable = key.split(".", 2)  # "0.{layer}.{variable}"
        out[int(index)][variable] = tensor.numpy()
    return out


def _read_zip(data: bytes, name: str) -> tuple[dict[str, Any], bytes, dict[str, Any]]:
    """(config, weights h5 bytes, metadata), each member's size checked before it is unpacked."""
    with open_zip(data, label=name, max_unpacked=MAX_FILE_BYTES, error=CheckpointError) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        limits = {CONFIG_NAME: MAX_CONFIG_BYTES, WEIGHTS_NAME: MAX_H5_FILE_BYTES, METADATA_NAME: MAX_METADATA_BYTES}
        for member, limit in limits.items():
            info = infos.get(member)
            if info is None and member != METADATA_NAME:
                raise CheckpointError(f"{name}: the .keras archive has no {member}; it is not a Keras 3 model file")
            if info is not None and info.file_size > limit:
                raise CheckpointError(
                    f"{name}: {member} is {human_size(info.file_size)}; the limit is {human_size(limit)}"
                )
        config_text = read_member(archive, CONFIG_NAME, label=name, error=CheckpointError)
        meta_text = (
            read_member(archive, METADATA_NAME, label=name, error=CheckpointError) if METADATA_NAME in infos else b"{}"
        )
        weights = read_member(archive, WEIGHTS_NAME, label=name, error=CheckpointError)
    try:
        config = json.loads(config_text.decode("utf-8"))
        meta = json.loads(meta_text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CheckpointError(f"{name}: config.json or metadata.json is not valid JSON") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{name}: config.json must hold a JSON object")
    return config, weights, meta if isinstance(meta, dict) else {}
