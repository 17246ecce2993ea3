"""Import a Keras 3 ``.keras`` file (a zip of ``config.json`` + ``model.weights.h5``) without Keras.

``config.json`` is read as data: a ``Sequential`` of ``Dense`` layers, flat or as two nested ``Sequential``
models (encoder, decoder), with optional ``InputLayer``, ``Flatten``, ``Reshape``, ``Dropout`` and
``Activation`` layers. Keras 3 stores each layer's variables in ``model.weights.h5`` at
``layers/<snake_case class name>[_<n>]/vars/<i>`` (nested models: ``layers/sequential/layers/dense/vars/0``);
kernel is ``vars/0`` with shape (in, out), bias ``vars/1``. HDF5 is parsed by native code, so the weights are
read in the limited child process (``explorer.untrusted.child``, mode keras-h5), which checks every dataset's
shape, dtype and size before reading any, and reads only plain datasets inside the file.

Keras lays images out channels-last (H, W, C); for 3-channel models the first layer's input columns and the
last layer's output rows are permuted to the explorer's (C, H, W) order.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from explorer.errors import CheckpointError
from explorer.importers.layers import Layer, default_input_shape, model_from_layers
from explorer.untrusted import MAX_FILE_BYTES, human_size, open_zip, read_member
from explorer.untrusted.sandbox import run_child

if TYPE_CHECKING:
    from explorer.models.base import Autoencoder

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.weights.h5"
METADATA_NAME = "metadata.json"
MAX_CONFIG_BYTES = 16 * 2**20
MAX_WEIGHT_BYTES = 512 * 2**20  # all Dense kernels and biases together
MAX_H5_FILE_BYTES = MAX_WEIGHT_BYTES + 64 * 2**20  # the weights plus HDF5 bookkeeping and optimizer state
MAX_METADATA_BYTES = 2**20

# Keras activation names -> the explorer's ACTIVATIONS. Keras 3's leaky_relu defaults to slope 0.2, as ours does;
# its gelu defaults to the exact form, as torch's does.
KERAS_ACTIVATIONS = {
    "linear": "identity",
    "relu": "relu",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "elu": "elu",
    "gelu": "gelu",
    "silu": "silu",
    "swish": "silu",
    "leaky_relu": "leaky_relu",
}
# Layers without weights that change nothing at inference time (or only the shape, handled separately).
PASSIVE = {"Flatten", "Reshape", "Dropout", "GaussianNoise", "GaussianDropout", "AlphaDropout", "SpatialDropout1D"}


def _snake(name: str) -> str:
    """Keras' to_snake_case: the h5 group name of a layer class (InputLayer -> input_layer)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _activation(value: Any, where: str) -> str:
    if isinstance(value, dict):  # a serialised function: {"class_name": "function", "config": "relu", ...}
        value = value.get("config") if isinstance(value.get("config"), str) else value.get("class_name")
    if value is None:
        value = "linear"
    if not isinstance(value, str) or value not in KERAS_ACTIVATIONS:
        raise CheckpointError(
            f"{where} uses the activation {value!r}, which the explorer has no equivalent for; "
            f"supported: {', '.join(sorted(KERAS_ACTIVATIONS))}"
        )
    return KERAS_ACTIVATIONS[value]


@dataclass
class _Spec:
    """A Dense layer from config.json and where its variables may live in the h5 file."""

    name: str
    paths: list[str]  # candidate groups, each holding vars/0 (kernel) and vars/1 (bias)
    units: int
    use_bias: bool
    activation: str


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


def _layer_list(obj: dict[str, Any], where: str) -> list[dict[str, Any]]:
    cfg = obj.get("config")
    layers = cfg.get("layers") if isinstance(cfg, dict) else None
    if not isinstance(layers, list) or not all(isinstance(entry, dict) for entry in layers):
        raise CheckpointError(f"{where}: a Sequential model's config must list its layers")
    return layers


def _input_dims(cfg: dict[str, Any]) -> tuple[int, ...] | None:
    shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
    if isinstance(shape, list) and len(shape) >= 2 and all(isinstance(d, int) and d > 0 for d in shape[1:]):
        return tuple(shape[1:])
    return None


def _parse_sequential(
    obj: dict[str, Any], prefix: str, name: str, trail: str, depth: int, shapes: list[tuple[int, ...]]
) -> list[list[_Spec]]:
    """Dense specs of a Sequential; one list per nested Sequential (or one for a flat model).

    ``prefix`` is the model's h5 path ("" or "layers/sequential/"); ``trail`` its layer path for messages.
    """
    where = f"{name}: layer {trail.rstrip('/')!r}" if trail else name
    if obj.get("class_name") != "Sequential":
        raise CheckpointError(
            f"{where}: only Sequential models can be imported (found {obj.get('class_name')!r}); build the "
            "autoencoder as keras.Sequential([...]) of Dense layers, or of an encoder and a decoder Sequential"
        )
    if depth > 2:
        raise CheckpointError(f"{where}: Sequential models nested more than two deep are not supported")
    groups: list[list[_Spec]] = []
    flat: list[_Spec] = []
    counters: dict[str, int] = {}
    for index, entry in enumerate(_layer_list(obj, where)):
        cls = str(entry.get("class_name"))
        raw = entry.get("config")
        cfg: dict[str, Any] = raw if isinstance(raw, dict) else {}
        lname = str(cfg.get("name", f"layer {index}"))
        label = f"{trail}{lname}"
        if cls == "InputLayer":
            dims = _input_dims(cfg)
            if dims:
                shapes.append(dims)
            continue  # Sequential.layers skips its InputLayer, so it takes no h5 group
        snake = _snake(cls)
        count = counters.get(snake, -1) + 1
        counters[snake] = count
        group = snake if count == 0 else f"{snake}_{count}"
        # Keras 3 addresses a layer by class name; older writers used the layer's own name
        paths = [f"{prefix}layers/{group}", f"{prefix}layers/{lname}"]
        here = f"{name}: layer {label!r}"
        if cls == "Dense":
            units = cfg.get("units")
            if not isinstance(units, int) or isinstance(units, bool) or units < 1:
                raise CheckpointError(f"{here}: 'units' must be a positive integer, got {units!r}")
            act = _activation(cfg.get("activation"), here)
            flat.append(_Spec(label, paths, units, bool(cfg.get("use_bias", True)), act))
        elif cls == "Sequential":
            inner = _parse_sequential(entry, f"{paths[0]}/", name, f"{label}/", depth + 1, shapes)
            groups.append([spec for part in inner for spec in part])
        elif cls in ("Activation", "ReLU"):
            act = "relu" if cls == "ReLU" else _activation(cfg.get("activation"), here)
            if cls == "ReLU" and (
                cfg.get("max_value") is not None or cfg.get("negative_slope") or cfg.get("threshold")
            ):
                raise CheckpointError(f"{here}: ReLU with max_value, negative_slope or threshold is not supported")
            target = flat[-1] if flat else (groups[-1][-1] if groups and groups[-1] else None)
            if target is None or target.activation != "identity":
                raise CheckpointError(
                    f"{here}: an Activation layer must follow a Dense layer without its own activation"
                )
            target.activation = act
        elif cls in PASSIVE:
            target_shape = cfg.get("target_shape")
            if cls == "Reshape" and isinstance(target_shape, list) and all(isinstance(d, int) for d in target_shape):
                shapes.append(tuple(target_shape))
            build = entry.get("build_config")
            if cls == "Flatten" and isinstance(build, dict):
                dims = _input_dims({"batch_shape": build.get("input_shape")})
                if dims:
                    shapes.append(dims)
        else:
            raise CheckpointError(
                f"{here} is a {cls}, which is not supported; only Dense, InputLayer, Flatten, Reshape, Dropout, "
                "Activation and nested Sequential layers can be imported"
            )
    if flat and groups:
        raise CheckpointError(
            f"{where}: mixing Dense layers with nested Sequential models at one level is not supported; use either "
            "a flat Sequential of Dense layers or an encoder Sequential followed by a decoder Sequential"
        )
    return groups if groups else [flat]


def _read_weights(weights: bytes, groups: list[list[_Spec]], name: str) -> list[list[Layer]]:
    """Dense layers with their weights, read from ``model.weights.h5`` by the limited child process."""
    request = {
        "layers": [
            [{"name": s.name, "paths": s.paths, "units": s.units, "use_bias": s.use_bias} for s in group]
            for group in groups
        ],
        "max_weight_bytes": MAX_WEIGHT_BYTES,
    }
    tensors, _ = run_child("keras-h5", weights, label=name, request=request)
    out = []
    for g, group in enumerate(groups):
        layers = []
        for i, spec in enumerate(group):
            bias = tensors[f"{g}.{i}.bias"] if spec.use_bias else None
            # Keras keeps kernels as (in, out); torch Linear weights are (out, in)
            kernel = tensors[f"{g}.{i}.kernel"].T.contiguous()
            layers.append(Layer(spec.name, kernel, bias, spec.activation))
        out.append(layers)
    return out


def _channels_last_to_first(layers: list[Layer], shape: tuple[int, int, int]) -> None:
    """Permute the first layer's inputs and the last layer's outputs from (H, W, C) to (C, H, W) order."""
    import numpy as np

    c, h, w = shape
    # perm[i] = the Keras (H, W, C) flat index of the explorer's (C, H, W) flat index i
    perm = np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).ravel()
    first, last = layers[0], layers[-1]
    first.weight = first.weight[:, perm]
    last.weight = last.weight[perm, :]
    if last.bias is not None:
        last.bias = last.bias[perm]


def _image_shape(shapes: list[tuple[int, ...]]) -> tuple[int, int, int] | None:
    """(C, H, W) from a Keras (H, W) or (H, W, C) input or reshape target, if any."""
    for dims in shapes:
        if len(dims) == 2:
            return (1, dims[0], dims[1])
        if len(dims) == 3 and dims[2] in (1, 3):
            return (dims[2], dims[0], dims[1])
    return None


def import_keras(
    name: str,
    data: bytes,
    *,
    kind: str = "ae",
    input_shape: tuple[int, int, int] | None = None,
    activation: str | None = None,
    latent_activation: str | None = None,
) -> tuple[Autoencoder, dict[str, Any]]:
    """Build an explorer model from a ``.keras`` file; returns the model and what was inferred."""
    config, weights, meta = _read_zip(data, name)
    shapes: list[tuple[int, ...]] = []
    specs = _parse_sequential(config, "", name, "", 0, shapes)
    if not any(specs):
        raise CheckpointError(f"{name}: the model has no Dense layers")
    groups = [g for g in _read_weights(weights, specs, name) if g]
    layers = [layer for group in groups for layer in group]
    size = layers[0].in_features
    found = _image_shape(shapes)
    if input_shape is None and found is not None and math.prod(found) == size:
        input_shape = found
    shape = default_input_shape(size, input_shape, name)
    remarks = []
    if shape[0] == 3 and layers[-1].out_features == size:  # a mismatch is reported by model_from_layers
        # Keras image arrays are (N, H, W, C), so a flat 3-channel input is almost surely in H, W, C order
        _channels_last_to_first(layers, shape)
        remarks.append("reordered the input and output pixels from Keras' channels-last to channels-first")
    model, info = model_from_layers(
        groups,
        kind=kind,
        input_shape=shape,
        activation=activation,
        latent_activation=latent_activation,
        source=name,
    )
    version = meta.get("keras_version")
    if isinstance(version, str):
        remarks.append(f"saved by Keras {version[:20]}")
    info["remarks"] = remarks + info["remarks"]
    return model, info
