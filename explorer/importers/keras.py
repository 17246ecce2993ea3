"""Import a Keras 3 ``.keras`` file (a zip of ``config.json`` + ``model.weights.h5``) without Keras.

``config.json`` is read as data: a ``Sequential`` of ``Dense`` layers, flat or as two nested ``Sequential``
models (encoder, decoder), with optional ``InputLayer``, ``Flatten``, ``Reshape``, ``Dropout`` and
``Activation`` layers. The weights come from ``model.weights.h5`` via h5py, where Keras 3 stores each layer's
variables at ``layers/<snake_case class name>[_<n>]/vars/<i>`` (nested models: ``layers/sequential/layers/
dense/vars/0``); kernel is ``vars/0`` with shape (in, out), bias ``vars/1``. Every dataset's shape, dtype
and size is checked before it is read, and only plain (hard-linked, in-file) datasets are read.

Keras lays images out channels-last (H, W, C); for 3-channel models the first layer's input columns and the
last layer's output rows are permuted to the explorer's (C, H, W) order.
"""

from __future__ import annotations

import io
import json
import math
import re
import zipfile
from typing import TYPE_CHECKING, Any

from explorer.errors import CheckpointError
from explorer.importers.torch_state import Layer, default_input_shape, model_from_layers

if TYPE_CHECKING:
    from explorer.models.base import Autoencoder

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.weights.h5"
MAX_CONFIG_BYTES = 16 * 2**20
MAX_WEIGHT_BYTES = 512 * 2**20  # all Dense kernels and biases together
MAX_H5_FILE_BYTES = MAX_WEIGHT_BYTES + 64 * 2**20  # the weights plus HDF5 bookkeeping and optimizer state
MAX_COMPRESSION_RATIO = 200

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


class _Spec:
    """A Dense layer from config.json and where its variables live in the h5 file."""

    def __init__(self, name: str, paths: list[str], units: int, use_bias: bool, activation: str) -> None:
        self.name, self.paths, self.units, self.use_bias, self.activation = name, paths, units, use_bias, activation


def _read_zip(data: bytes, name: str) -> tuple[dict[str, Any], bytes, dict[str, Any]]:
    """(config, weights h5 bytes, metadata) after checking member sizes and compression ratios."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = {i.filename: i for i in zf.infolist()}
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(f"{name}: the .keras zip archive is truncated or corrupt ({exc})") from None
    limits = {CONFIG_NAME: MAX_CONFIG_BYTES, WEIGHTS_NAME: MAX_H5_FILE_BYTES, "metadata.json": 2**20}
    for member, limit in limits.items():
        info = infos.get(member)
        if info is None:
            if member == "metadata.json":
                continue
            raise CheckpointError(f"{name}: the .keras archive has no {member}; it is not a Keras 3 model file")
        if info.file_size > limit:
            raise CheckpointError(f"{name}: {member} is {info.file_size} bytes; the limit is {limit}")
        if info.file_size > 2**20 and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            raise CheckpointError(f"{name}: {member} expands {info.file_size}-fold; refused as a possible zip bomb")
    try:
        config = json.loads(zf.read(CONFIG_NAME).decode("utf-8"))
        meta = json.loads(zf.read("metadata.json").decode("utf-8")) if "metadata.json" in infos else {}
        weights = zf.read(WEIGHTS_NAME)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise CheckpointError(f"{name}: the .keras zip archive is truncated or corrupt ({exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{name}: config.json or metadata.json is not valid JSON ({exc!r:.200})") from None
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
        cfg = entry.get("config") if isinstance(entry.get("config"), dict) else {}
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


def _node(h5: Any, path: str, where: str) -> Any:
    """The object at ``path``, following hard links only (an HDF5 soft or external link could point anywhere)."""
    import h5py

    node = h5
    for part in path.split("/"):
        if not part or not isinstance(node, h5py.Group) or part not in node:
            return None
        link = node.get(part, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise CheckpointError(f"{where}: {path} is a {type(link).__name__}; only data inside the file is read")
        node = node[part]
    return node


def _dataset(h5: Any, path: str, where: str) -> Any:
    """The dataset at ``path``; refused if its data lives outside the file (external or virtual storage)."""
    import h5py

    node = _node(h5, path, where)
    if node is None:
        return None
    if not isinstance(node, h5py.Dataset):
        raise CheckpointError(f"{where}: {path} is not a dataset")
    if node.external or node.is_virtual:
        raise CheckpointError(f"{where}: {path} points at data outside the file; refused")
    return node


def _vars_group(h5: Any, spec: _Spec, name: str) -> tuple[str, Any]:
    import h5py

    candidates = []
    for path in spec.paths:
        candidates += [path, path.replace("layers/", "_layer_checkpoint_dependencies/")]
    for path in candidates:
        node = _node(h5, f"{path}/vars", f"{name}: layer {spec.name!r}")
        if isinstance(node, h5py.Group):
            return f"{path}/vars", node
    top = sorted(h5.keys())
    raise CheckpointError(
        f"{name}: model.weights.h5 has no weights for layer {spec.name!r} (looked for {spec.paths[0]}/vars); its "
        f"top-level groups are {top}; expected the Keras 3 'layers/...' layout"
    )


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def _read_specs(weights: bytes, groups: list[list[_Spec]], name: str) -> list[list[Layer]]:
    """Dense layers with their weights; every dataset is checked (shape, dtype, total size) before any is read."""
    import h5py
    import numpy as np
    import torch

    try:
        h5 = h5py.File(io.BytesIO(weights), "r")
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{name}: model.weights.h5 is not a readable HDF5 file ({exc})") from None
    with h5:
        planned: list[list[tuple[_Spec, list[Any]]]] = []
        total = 0
        for group in groups:
            planned.append([])
            for spec in group:
                base, vars_group = _vars_group(h5, spec, name)
                where = f"{name}: layer {spec.name!r}"
                count = 2 if spec.use_bias else 1
                extra = sorted(set(vars_group.keys()) - {str(i) for i in range(count)})
                if extra:
                    raise CheckpointError(
                        f"{where}: unexpected variables {extra} under {base} (quantised or LoRA Dense layers are not "
                        "supported)"
                    )
                datasets = []
                for index in range(count):
                    ds = _dataset(h5, f"{base}/{index}", where)
                    if ds is None:
                        raise CheckpointError(f"{where}: {base}/{index} is missing from model.weights.h5")
                    if ds.dtype.kind != "f" or ds.dtype.itemsize not in (2, 4, 8):
                        raise CheckpointError(f"{where}: {base}/{index} has dtype {ds.dtype}; expected float")
                    if len(ds.shape) != (2 if index == 0 else 1) or ds.shape[-1] != spec.units:
                        expected = f"(inputs, {spec.units})" if index == 0 else f"({spec.units},)"
                        raise CheckpointError(f"{where}: {base}/{index} has shape {ds.shape}; expected {expected}")
                    size = math.prod(ds.shape) * ds.dtype.itemsize
                    total += size
                    if total > MAX_WEIGHT_BYTES:
                        raise CheckpointError(
                            f"{where}: {base}/{index} declares {_mb(size)} ({_mb(total)} so far); the weights may take "
                            f"at most {_mb(MAX_WEIGHT_BYTES)}, so the file was refused before reading"
                        )
                    datasets.append(ds)
                planned[-1].append((spec, datasets))
        out: list[list[Layer]] = []
        for group_plan in planned:
            layers = []
            for spec, datasets in group_plan:
                where = f"{name}: layer {spec.name!r}"
                arrays = []
                for ds, what in zip(datasets, ("kernel", "bias")):
                    try:
                        array = np.asarray(ds[()], dtype=np.float32)
                    except (OSError, ValueError, TypeError) as exc:
                        raise CheckpointError(f"{where}: the {what} could not be read ({exc})") from None
                    if not np.isfinite(array).all():
                        raise CheckpointError(f"{where}: the {what} contains NaN or Inf values; the model is unusable")
                    arrays.append(array)
                bias = torch.from_numpy(arrays[1]) if spec.use_bias else None
                # Keras keeps kernels as (in, out); torch Linear weights are (out, in)
                kernel = torch.from_numpy(np.ascontiguousarray(arrays[0].T))
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
    groups = [g for g in _read_specs(weights, specs, name) if g]
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
