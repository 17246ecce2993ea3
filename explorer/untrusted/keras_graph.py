"""A Keras 3 ``config.json`` read as data: the model's layer graph, reduced to the chain from its input to its
reconstruction, and each layer's translation into ``explorer.models.layerstack`` specs.

Sequential and Functional models are expanded, nested models inlined (each layer remembers the top-level
sub-model it came from, so an encoder + decoder pair splits at their boundary). A Functional layer's inputs
are the ``keras_history`` entries ([layer, node, tensor]) in its one inbound node.

A VAE is recognised by two Dense layers reading the same tensor, named like ``z_mean`` and ``z_log_var``: the
encoder ends in them, and a layer that reads both (the keras.io example's custom ``Sampling``) is skipped: the
decoder reads its output, the latent.

Weights live in ``model.weights.h5`` under ``layers/<snake_case class>[_<n>]`` within each model, numbered per
class in the order of the model's layers (a Sequential does not count its InputLayer); nested models add
``layers/functional/layers/...``. Older writers used the layer's own name, tried second.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from explorer.errors import CheckpointError

MODELS = ("Sequential", "Functional", "Model")
PASSIVE = {"Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization"}
SUPPORTED = (
    "Conv2D, Conv2DTranspose, MaxPooling2D, UpSampling2D, ZeroPadding2D, Cropping2D, Flatten, Reshape, Dense, "
    "BatchNormalization, Dropout, Activation, ReLU, LeakyReLU, ELU, InputLayer, and nested Sequential or "
    "Functional models"
)
# Keras activation name -> (layerstack function, its alpha); "linear" adds no layer. Keras' leaky_relu
# function has slope 0.2 (the LeakyReLU layer's default is 0.3, read from its config); gelu is the exact form.
ACTIVATIONS: dict[str, tuple[str, float | None]] = {
    "relu": ("relu", None),
    "relu6": ("relu6", None),
    "leaky_relu": ("leaky_relu", 0.2),
    "elu": ("elu", 1.0),
    "gelu": ("gelu", None),
    "silu": ("silu", None),
    "swish": ("silu", None),
    "softplus": ("softplus", None),
    "tanh": ("tanh", None),
    "sigmoid": ("sigmoid", None),
}
MEAN = re.compile(r"mean|(^|_)mu($|_)", re.I)
LOG_VAR = re.compile(r"log_?var|log_?sigma|log_?std", re.I)
MAX_LAYERS = 2000
MAX_DEPTH = 8


@dataclass
class Op:
    """One layer on the graph: where its weights may be, what it reads (tensor ids)."""

    name: str  # path for messages: "encoder/conv2d_3"
    cls: str
    config: dict[str, Any]
    paths: list[str]  # candidate h5 groups
    inputs: list[str]
    group: str  # the top-level sub-model it came from; "" for the top model's own layers
    custom: bool = False  # a class of the user's own (registered as "Custom>..."), not a Keras layer

    @property
    def short(self) -> str:
        return self.name.rsplit("/", 1)[-1]


@dataclass
class Chain:
    """The layers from the input to the reconstruction, in order, and what the file says about the split."""

    input_dims: tuple[int | None, ...]  # Keras order, without the batch: (H, W, C), (H, W) or (N,)
    ops: list[Op]
    split: int | None = None  # the encoder is ops[:split] when the file fixes it
    heads: tuple[Op, Op] | None = None  # a VAE's (mean, log-variance) Dense layers, after ops[:split]
    skipped: list[str] = field(default_factory=list)


def _snake(name: str) -> str:
    """Keras' to_snake_case: the h5 group name of a layer class (Conv2DTranspose -> conv2d_transpose)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _dims(cfg: Any) -> tuple[int | None, ...] | None:
    """The dims after the batch of an InputLayer config (batch_shape) or of a shape list."""
    shape = (cfg.get("batch_shape") or cfg.get("batch_input_shape")) if isinstance(cfg, dict) else cfg
    if isinstance(shape, list) and 2 <= len(shape) <= 4 and all(d is None or _count(d) for d in shape[1:]):
        return tuple(shape[1:])
    return None


def _count(d: Any) -> bool:
    return isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 2**20


def _history(obj: Any, out: list[tuple[str, int]], depth: int = 0) -> None:
    """Collect the (layer, tensor index) of every Keras tensor inside a node's args and kwargs."""
    if depth > 8:  # Keras nests a layer's arguments a few levels deep at most
        return
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            cfg = obj.get("config")
            hist = cfg.get("keras_history") if isinstance(cfg, dict) else None
            if isinstance(hist, list) and len(hist) == 3 and isinstance(hist[0], str) and isinstance(hist[2], int):
                out.append((hist[0], hist[2]))
            return
        for value in obj.values():
            _history(value, out, depth + 1)
    elif isinstance(obj, list):
        for value in obj:
            _history(value, out, depth + 1)


def _refs(value: Any, source: str) -> list[tuple[str, int]]:
    """input_layers / output_layers: one [name, node, index], a list of them, or a dict of them."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        value = [value]
    if not isinstance(value, list) or not all(
        isinstance(v, list) and len(v) == 3 and isinstance(v[0], str) and isinstance(v[2], int) for v in value
    ):
        raise CheckpointError(f"{source}: the model's inputs or outputs are not listed as Keras writes them")
    return [(v[0], v[2]) for v in value]


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source
        self.ops: list[Op] = []
        self.input_dims: tuple[int | None, ...] | None = None

    def fail(self, message: str) -> CheckpointError:
        return CheckpointError(f"{self.source}: {message}")

    def new_input(self, dims: tuple[int | None, ...] | None) -> str:
        if self.input_dims is not None:
            raise self.fail("the model has more than one input; an autoencoder takes one image")
        if dims is None:
            raise self.fail("the file does not record the model's input shape (an InputLayer or a built model)")
        self.input_dims = dims
        return "input"

    def model(self, obj: dict[str, Any], h5: str, scope: str, inputs: list[str] | None, group: str, depth: int):
        """Expand a Sequential or Functional model; returns its output tensor ids."""
        cfg = obj.get("config")
        if not isinstance(cfg, dict) or not isinstance(cfg.get("layers"), list):
            raise self.fail(f"model {scope.rstrip('/') or 'at the top'} does not list its layers")
        layers = [e for e in cfg["layers"] if isinstance(e, dict)]
        if len(layers) != len(cfg["layers"]):
            raise self.fail(f"model {scope.rstrip('/') or 'at the top'} lists a layer that is not an object")
        if depth > MAX_DEPTH:
            raise self.fail(f"models are nested more than {MAX_DEPTH} deep")
        counters: dict[str, int] = {}

        def h5_paths(entry: dict[str, Any]) -> list[str]:
            snake = _snake(str(entry.get("class_name")))
            counters[snake] = counters.get(snake, -1) + 1
            group_name = snake if counters[snake] == 0 else f"{snake}_{counters[snake]}"
            return [f"{h5}layers/{group_name}", f"{h5}layers/{_name(entry)}"]

        if obj.get("class_name") == "Sequential":
            t = inputs[0] if inputs else None
            for entry in layers:
                if entry.get("class_name") == "InputLayer":
                    t = t or self.new_input(_dims(entry.get("config")))
                    continue  # Sequential.layers leaves its InputLayer out, so it takes no h5 name
                if t is None and entry.get("class_name") not in MODELS:  # a nested model brings its own Input
                    build = obj.get("build_config")
                    built = (build.get("input_shape") if isinstance(build, dict) else None) or cfg.get(
                        "build_input_shape"
                    )
                    t = self.new_input(_dims(entry.get("config")) or _dims(built))
                t = self.call(entry, [t] if t else None, h5_paths(entry), scope, group, depth)[0]
            if t is None:
                raise self.fail(f"model {scope.rstrip('/') or 'at the top'} has no layers")
            return [t]
        tensors: dict[tuple[str, int], str] = {}
        plain: dict[str, int] = {}
        by_name = {_name(entry): entry for entry in layers}
        for k, (name, _) in enumerate(_refs(cfg.get("input_layers"), self.source)):
            tensors[(name, 0)] = (
                inputs[k]
                if inputs and k < len(inputs)
                else self.new_input(_dims((by_name.get(name) or {}).get("config")))
            )

        def resolve(name: str, index: int) -> str | None:
            if name in plain:
                return f"{plain[name]}:{index}"
            return tensors.get((name, index))

        pending = []
        for entry in layers:
            paths = h5_paths(entry)  # every layer, the InputLayer too, takes a number in the model's order
            if entry.get("class_name") != "InputLayer":
                pending.append((entry, paths))
        while pending:
            waiting = []
            for entry, paths in pending:
                nodes = entry.get("inbound_nodes") or []
                if not isinstance(nodes, list):
                    raise self.fail(f"layer {scope}{_name(entry)!r} does not list its inputs as Keras writes them")
                if len(nodes) > 1:
                    raise self.fail(
                        f"layer {scope}{_name(entry)!r} is used more than once (a shared layer), "
                        "which the importer does not support"
                    )
                if not nodes:
                    continue  # built but never called: not part of the graph
                refs: list[tuple[str, int]] = []
                _history(nodes[0], refs)
                found = [resolve(name, index) for name, index in refs]
                if any(t is None for t in found):
                    waiting.append((entry, paths))
                    continue
                outs = self.call(entry, [t for t in found if t is not None], paths, scope, group, depth)
                if entry.get("class_name") in MODELS:
                    tensors.update({(_name(entry), i): t for i, t in enumerate(outs)})
                else:
                    plain[_name(entry)] = int(outs[0].split(":")[0])
            if len(waiting) == len(pending):
                raise self.fail(f"layer {scope}{_name(waiting[0][0])!r} reads a tensor no layer produces")
            pending = waiting
        outputs = [resolve(name, index) for name, index in _refs(cfg.get("output_layers"), self.source)]
        if any(t is None for t in outputs):
            raise self.fail(f"model {scope.rstrip('/') or 'at the top'} names an output no layer produces")
        return [t for t in outputs if t is not None]

    def call(
        self, entry: dict[str, Any], inputs: list[str] | None, paths: list[str], scope: str, group: str, depth: int
    ):
        cls = str(entry.get("class_name"))
        name = _name(entry)
        if cls in MODELS:
            inner_group = group or name
            return self.model(entry, f"{paths[0]}/", f"{scope}{name}/", inputs, inner_group, depth + 1)
        if len(self.ops) >= MAX_LAYERS:
            raise self.fail(f"the model has more than {MAX_LAYERS} layers")
        if inputs is None:
            raise self.fail(f"the file does not record the input shape of layer {scope}{name!r}")
        raw = entry.get("config")
        custom = not str(entry.get("module") or "").startswith("keras")
        self.ops.append(Op(f"{scope}{name}", cls, raw if isinstance(raw, dict) else {}, paths, inputs, group, custom))
        return [f"{len(self.ops) - 1}:0"]


def _name(entry: dict[str, Any]) -> str:
    cfg = entry.get("config")
    name = entry.get("name") or (cfg.get("name") if isinstance(cfg, dict) else None)
    return str(name) if name else "unnamed"


def unsupported(op: Op, source: str) -> CheckpointError:
    hint = ""
    if op.custom and len(op.inputs) == 2:
        hint = " (a VAE's encoder is recognised by two Dense layers named like z_mean and z_log_var)"
    return CheckpointError(
        f"{source}: layer {op.name!r} is a {op.cls}, which the importer does not support{hint}; supported: {SUPPORTED}"
    )


def _find_heads(ops: list[Op]) -> tuple[Op, Op] | None:
    """The (mean, log-variance) Dense pair reading one tensor, if the names say so."""
    readers: dict[str, list[Op]] = {}
    for op in ops:
        if op.cls == "Dense" and len(op.inputs) == 1:
            readers.setdefault(op.inputs[0], []).append(op)
    for group in readers.values():
        means = [op for op in group if MEAN.search(op.short) and not LOG_VAR.search(op.short)]
        log_vars = [op for op in group if LOG_VAR.search(op.short)]
        if len(means) == 1 and len(log_vars) == 1:
            return means[0], log_vars[0]
    return None


def read_chain(config: dict[str, Any], source: str) -> Chain:
    """The chain of layers from the model's input to its reconstruction; refuses any other graph."""
    top = config.get("class_name")
    if top not in MODELS:
        raise CheckpointError(
            f"{source}: the model is a {top!r}, a custom class whose layers the file does not list; save a model "
            "built from layers instead, e.g. keras.Model(inputs, decoder(encoder(inputs))) of an encoder and a "
            "decoder model"
        )
    reader = _Reader(source)
    outputs = reader.model(config, "", "", None, "", 0)
    ops = reader.ops
    assert reader.input_dims is not None  # a model with layers has an input, or new_input refused it
    heads = _find_heads(ops)
    head_outs = {f"{ops.index(op)}:0" for op in heads} if heads else set()
    index = {f"{i}:0": op for i, op in enumerate(ops)}
    latent_side = set(head_outs) | {f"{i}:0" for i, op in enumerate(ops) if head_outs & set(op.inputs)}
    recon = [t for t in dict.fromkeys(outputs) if t not in latent_side]
    if len(recon) != 1:
        names = ", ".join(index[t].name if t in index else t for t in outputs)
        raise CheckpointError(
            f"{source}: the model has {len(outputs)} outputs ({names}); expected one reconstruction (besides a "
            "VAE's mean, log-variance and sample)"
        )
    chain: list[Op] = []
    split: int | None = None
    skipped: list[str] = []
    t = recon[0]
    while t != "input":
        uid, _, out_index = t.partition(":")
        op = ops[int(uid)]
        if heads and (op is heads[0] or (len(op.inputs) == 2 and set(op.inputs) == head_outs)):
            if split is not None:
                raise CheckpointError(f"{source}: the decoder reads the VAE's heads twice ({op.name!r})")
            if op is not heads[0]:
                skipped.append(f"{op.name} ({op.cls}): draws the latent from the mean and log-variance")
            split = len(chain)
            t = heads[0].inputs[0]
            continue
        if op.cls in MODELS or len(op.inputs) != 1 or out_index != "0":
            raise unsupported(op, source)
        chain.append(op)
        t = op.inputs[0]
    chain.reverse()
    if split is not None:
        split = len(chain) - split
    else:
        groups = [op.group for op in chain]
        runs = [g for i, g in enumerate(groups) if i == 0 or g != groups[i - 1]]
        if len(runs) == 2 and all(runs):  # an encoder model, then a decoder model
            split = groups.index(runs[1])
    return Chain(reader.input_dims, chain, split, heads if split is not None and heads else None, skipped)


# --- layers -> layerstack specs ---------------------------------------------------------------------------


def _pair_of(value: Any, what: str, where: str) -> list[int]:
    if _count(value):
        return [int(value), int(value)]
    if isinstance(value, list) and len(value) == 2 and all(_count(v) or v == 0 for v in value):
        return [int(v) for v in value]
    raise CheckpointError(f"{where}: {what} {value!r} is not a pair of sizes")


def activation_specs(value: Any, where: str) -> list[dict[str, Any]]:
    """The layerstack spec of a Keras activation (none for linear)."""
    if isinstance(value, dict):  # a serialised function: {"class_name": "function", "config": "relu", ...}
        value = value.get("config") if isinstance(value.get("config"), str) else value.get("class_name")
    if value in (None, "linear"):
        return []
    if not isinstance(value, str) or value not in ACTIVATIONS:
        raise CheckpointError(
            f"{where} uses the activation {value!r}, which the importer does not support; supported: "
            f"linear, {', '.join(ACTIVATIONS)}"
        )
    fn, alpha = ACTIVATIONS[value]
    return [{"type": "activation", "fn": fn} | ({"alpha": alpha} if alpha is not None else {})]


def _check_image_layer(c: dict[str, Any], where: str) -> None:
    if c.get("data_format") not in (None, "channels_last"):
        raise CheckpointError(f"{where}: data_format {c.get('data_format')!r} is not supported; only channels_last")
    if "dilation_rate" in c and _pair_of(c.get("dilation_rate") or 1, "dilation_rate", where) != [1, 1]:
        raise CheckpointError(f"{where}: dilated convolutions are not supported")
    if c.get("groups", 1) != 1:
        raise CheckpointError(f"{where}: grouped convolutions are not supported")


def _padding(c: dict[str, Any], where: str) -> str:
    if c.get("padding", "valid") not in ("valid", "same"):
        raise CheckpointError(f"{where}: padding {c.get('padding')!r} is not supported; only valid and same")
    return str(c.get("padding", "valid"))


def _relu_specs(c: dict[str, Any], where: str) -> list[dict[str, Any]]:
    slope = c.get("negative_slope") or 0.0
    if c.get("max_value") is not None or c.get("threshold"):
        raise CheckpointError(f"{where}: a ReLU with max_value or threshold is not supported")
    return (
        [{"type": "activation", "fn": "leaky_relu", "alpha": float(slope)}]
        if slope
        else activation_specs("relu", where)
    )


def layer_specs(op: Op, source: str) -> list[dict[str, Any]]:
    """The layerstack specs of one Keras layer: its weight layer first, then its activation."""
    c, where = op.config, f"{source}: layer {op.name!r}"
    cls = op.cls
    if cls in ("Dense", "Conv2D", "Conv2DTranspose"):
        if c.get("lora_rank") or c.get("quantization_config"):
            raise CheckpointError(f"{where}: LoRA or quantised layers are not supported")
        bias = bool(c.get("use_bias", True))
        if cls == "Dense":
            if not _count(c.get("units")):
                raise CheckpointError(f"{where}: 'units' must be a positive integer, got {c.get('units')!r}")
            spec: dict[str, Any] = {"type": "dense", "units": c["units"], "bias": bias}
        else:
            _check_image_layer(c, where)
            if not _count(c.get("filters")):
                raise CheckpointError(f"{where}: 'filters' must be a positive integer, got {c.get('filters')!r}")
            spec = {
                "type": "conv2d" if cls == "Conv2D" else "conv2d_transpose",
                "filters": c["filters"],
                "kernel": _pair_of(c.get("kernel_size"), "kernel_size", where),
                "strides": _pair_of(c.get("strides", 1), "strides", where),
                "padding": _padding(c, where),
                "bias": bias,
            }
            if cls == "Conv2DTranspose":
                extra = c.get("output_padding")
                spec["output_padding"] = None if extra is None else _pair_of(extra, "output_padding", where)
        return [spec] + activation_specs(c.get("activation"), where)
    if cls in ("MaxPooling2D", "UpSampling2D", "ZeroPadding2D", "Cropping2D", "Flatten"):
        _check_image_layer(c, where)
    if cls == "MaxPooling2D":
        pool = _pair_of(c.get("pool_size", 2), "pool_size", where)
        strides = pool if c.get("strides") is None else _pair_of(c.get("strides"), "strides", where)
        return [{"type": "max_pool", "pool": pool, "strides": strides, "padding": _padding(c, where)}]
    if cls == "UpSampling2D":
        mode = c.get("interpolation", "nearest")
        if mode not in ("nearest", "bilinear"):
            raise CheckpointError(f"{where}: interpolation {mode!r} is not supported; only nearest and bilinear")
        return [{"type": "upsample", "size": _pair_of(c.get("size", 2), "size", where), "interpolation": mode}]
    if cls in ("ZeroPadding2D", "Cropping2D"):
        key = "padding" if cls == "ZeroPadding2D" else "cropping"
        value = c.get(key)
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, list) for v in value):
            pad = [*_pair_of(value[0], key, where), *_pair_of(value[1], key, where)]
        else:
            h, w = _pair_of(value, key, where)
            pad = [h, h, w, w]
        return [{"type": "pad", "pad": pad if cls == "ZeroPadding2D" else [-v for v in pad]}]
    if cls == "Flatten":
        return [{"type": "flatten"}]
    if cls == "Reshape":
        target = c.get("target_shape")
        if not (isinstance(target, list) and all(isinstance(v, int) for v in target)):
            raise CheckpointError(f"{where}: target_shape {target!r} is not a list of sizes")
        return [{"type": "reshape", "shape": target}]
    if cls == "BatchNormalization":
        if c.get("axis", -1) not in (-1, [-1], 3, [3]) or c.get("renorm"):
            raise CheckpointError(f"{where}: only batch normalisation over the last axis (channels) is supported")
        return [{"type": "batch_norm", "epsilon": c.get("epsilon", 1e-3)}]
    if cls in PASSIVE:
        return []
    if cls == "Activation":
        return activation_specs(c.get("activation"), where)
    if cls == "ReLU":
        return _relu_specs(c, where)
    if cls == "LeakyReLU":
        slope = c.get("negative_slope", c.get("alpha", 0.3))
        return [{"type": "activation", "fn": "leaky_relu", "alpha": slope}]
    if cls == "ELU":
        return [{"type": "activation", "fn": "elu", "alpha": c.get("alpha", 1.0)}]
    raise unsupported(op, source)
