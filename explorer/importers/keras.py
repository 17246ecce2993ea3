"""Import a Keras 3 ``.keras`` file (a zip of ``config.json`` + ``model.weights.h5``) without Keras.

``config.json`` is read as data (``explorer.untrusted.keras_graph``): a Sequential or Functional model of
common image layers, or an encoder and a decoder model inside one, becomes the chain of layers from the
input to the reconstruction. The chain is split where the file says (between an encoder and a decoder model,
or at a VAE's ``z_mean`` / ``z_log_var`` heads) or else at its bottleneck, the narrowest intermediate output.
Both halves become ``explorer.models.layerstack`` specs; the model runs channels-first inside, with
flatten and reshape in Keras' channels-last order, so its numbers are Keras'.

Every byte of the file is read by ``explorer.untrusted.keras`` (the archive, the JSON, and through the
limited child process the HDF5 weights); this module works on what it hands back: the chain of layers, their
specs, and the variables as arrays.

The file records every activation: what the user left open is taken from it, and a choice that contradicts
it is refused. Two choices no file records are the user's or tried on sample images
(``explorer.importers.infer``): the input pixel range, and the output activation after a linear last layer
(pixels, or logits trained "from_logits").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from explorer import models
from explorer.errors import CheckpointError, ConfigError
from explorer.importers.infer import settle_choices
from explorer.importers.layers import DEFAULT_SHAPES, importable_kinds
from explorer.importers.options import Decision, ImportOptions, ImportReport, OptionError, SampleImages
from explorer.models.backbones import ACTIVATIONS
from explorer.models.layerstack import Stack, output_shape, shapes
from explorer.untrusted import keras_graph
from explorer.untrusted.keras import H5Layer, read_h5_variables, read_keras
from explorer.untrusted.keras_graph import Chain, Op

if TYPE_CHECKING:
    from explorer.models.base import Autoencoder

# Layers that only move values around: an activation before them can be taken as the model's last.
SHAPE_ONLY = ("reshape", "flatten")
DECISION_ORDER = [
    "kind",
    "input_shape",
    "activation",
    "latent_activation",
    "output_activation",
    "input_range",
    "dataset",
]


def _input_shape(
    dims: tuple[int | None, ...], given: tuple[int, int, int] | None, source: str
) -> tuple[tuple[int, int, int], list[dict[str, Any]], str]:
    """(C, H, W), the specs that bring it to the Keras input (a flatten for a vector input), where it came from."""
    if len(dims) == 1:
        n = dims[0]
        if given is not None:
            if n is not None and math.prod(given) != n:
                raise OptionError(
                    f"{source}: the model takes {n} values per image but the input shape asked for, "
                    f"{','.join(map(str, given))}, has {math.prod(given)}",
                    option="input_shape",
                )
            return given, [{"type": "flatten"}], "user"
        if n not in DEFAULT_SHAPES:
            raise OptionError(
                f"{source}: the model takes a vector of {n} values, which is not a known image size; give its input "
                f"shape C,H,W with C*H*W = {n} and C = 1 or 3",
                option="input_shape",
            )
        return DEFAULT_SHAPES[n], [{"type": "flatten"}], "inferred"
    h, w, c = dims if len(dims) == 3 else (*dims, 1)
    if h is None or w is None or c is None:
        if given is None or (c is not None and given[0] != c):
            raise OptionError(
                f"{source}: the model takes images of any size with {c or 'any number of'} channel(s); give its "
                "input shape C,H,W",
                option="input_shape",
            )
        return given, [], "user"
    found = (c, h, w)
    if given is not None and tuple(given) != found:
        raise OptionError(
            f"{source}: the file says the input is {','.join(map(str, found))} (C,H,W) but "
            f"{','.join(map(str, given))} was asked for the input shape; leave that choice to the file",
            option="input_shape",
        )
    if found[0] not in (1, 3):
        raise CheckpointError(f"{source}: the model takes {found[0]} channels; only 1 (grey) or 3 (RGB) are shown")
    return found, [], "file"


@dataclass
class _Weighted:
    """A layer with variables: its place in a part's specs and what ``model.weights.h5`` holds for it."""

    ops: list[Op]  # one, or a VAE's two heads (mean, log-variance)
    part: str
    index: int
    spec: dict[str, Any]
    fan_in: tuple[int, ...]  # the layer's input shape, explorer order


def _shape_after(specs: list[dict[str, Any]], shape: tuple[int, ...], op: Op, source: str) -> tuple[int, ...]:
    for spec in specs:
        try:
            shape = output_shape(spec, shape, f"{source}: layer {op.name!r}")
        except ConfigError as exc:
            raise CheckpointError(str(exc)) from None
    return shape


def _keras_channels_last(shape: tuple[int, ...]) -> list[int]:
    return list(shape) if len(shape) == 1 else [shape[1], shape[2], shape[0]]


def _split_at(chain: Chain, sizes: list[int], source: str) -> tuple[int, str]:
    """(number of encoder layers, why there)."""
    if chain.split is not None:
        first, last = chain.ops[0].group, chain.ops[-1].group
        if chain.heads:
            return chain.split, f"the VAE heads {chain.heads[0].name!r} and {chain.heads[1].name!r}"
        return chain.split, f"the boundary of the models {first!r} and {last!r}"
    if len(chain.ops) < 2:
        raise CheckpointError(f"{source}: the model has one layer; an autoencoder needs an encoder and a decoder")
    narrowest = min(sizes[:-1])
    k = sizes.index(narrowest)
    while k + 2 < len(sizes) and sizes[k + 1] == narrowest:  # an activation or normalisation of the code
        k += 1
    return k + 1, f"the narrowest layer output, {chain.ops[k].name!r} ({narrowest} values)"


def _assemble(
    chain: Chain, shape: tuple[int, int, int], lead: list[dict[str, Any]], source: str
) -> tuple[dict[str, list[dict[str, Any]]], list[_Weighted], int, str]:
    """Encoder and decoder specs, the weighted layers, the latent size, and why the split is where it is."""
    per_op = [keras_graph.layer_specs(op, source) for op in chain.ops]
    current = _shape_after(lead, tuple(shape), chain.ops[0], source)
    units = 0
    before, after = [], []  # each layer's input and output shape, explorer order
    for i, (op, specs) in enumerate(zip(chain.ops, per_op)):
        if chain.heads and i == chain.split:
            units = _heads_units(*chain.heads, current, source)
            current = (units,)  # the decoder reads a latent drawn from the heads
        before.append(current)
        current = _shape_after(specs, current, op, source)
        after.append(current)
    if math.prod(current) != math.prod(shape) or (len(current) == 3 and current != tuple(shape)):
        got = "x".join(map(str, _keras_channels_last(current)))
        raise CheckpointError(
            f"{source}: the model outputs {got} values per image but takes "
            f"{'x'.join(map(str, _keras_channels_last(shape)))}; an autoencoder's output must match its input"
        )
    split, why = _split_at(chain, [math.prod(s) for s in after], source)
    parts: dict[str, list[dict[str, Any]]] = {"encoder": list(lead), "decoder": []}
    weighted: list[_Weighted] = []
    for i, (op, specs) in enumerate(zip(chain.ops, per_op)):
        part = "encoder" if i < split else "decoder"
        if part == "decoder" and not parts["decoder"] and len(before[i]) == 3:
            # the code is a (C, H, W) map: the latent is its channels-last flattening
            parts["decoder"].append({"type": "reshape", "shape": _keras_channels_last(before[i])})
        if specs and specs[0]["type"] in ("dense", "conv2d", "conv2d_transpose", "batch_norm"):
            weighted.append(_Weighted([op], part, len(parts[part]), specs[0], before[i]))
        parts[part] += specs
    if split == len(chain.ops):
        raise CheckpointError(f"{source}: splitting at {why} leaves no decoder layers")
    if chain.heads:
        code = after[split - 1] if split else _shape_after(lead, tuple(shape), chain.ops[0], source)
        bias = bool(chain.heads[0].config.get("use_bias", True))
        weighted.append(_Weighted(list(chain.heads), "encoder", len(parts["encoder"]), {"type": "heads"}, code))
        parts["encoder"].append({"type": "heads", "units": units, "bias": bias})
        latent = units
    else:
        code = after[split - 1]
        if len(code) == 3:
            parts["encoder"].append({"type": "flatten"})
        latent = math.prod(code)
    if len(current) == 1:
        parts["decoder"].append({"type": "reshape", "shape": _keras_channels_last(shape)})
    return parts, weighted, latent, why


def _heads_units(mean: Op, log_var: Op, code: tuple[int, ...], source: str) -> int:
    units, other = mean.config.get("units"), log_var.config.get("units")
    if len(code) != 1:
        raise CheckpointError(f"{source}: the VAE heads {mean.name!r} and {log_var.name!r} must read a flat vector")
    if (
        not isinstance(units, int)
        or units != other
        or mean.config.get("use_bias", True) != log_var.config.get("use_bias", True)
    ):
        raise CheckpointError(
            f"{source}: the VAE heads {mean.name!r} and {log_var.name!r} must have the same units and bias"
        )
    for op in (mean, log_var):
        if keras_graph.activation_specs(op.config.get("activation"), f"{source}: layer {op.name!r}"):
            raise CheckpointError(f"{source}: the VAE head {op.name!r} has an activation; the heads must be linear")
    return units


def _variables(w: _Weighted) -> list[tuple[int, str, list[int]]]:
    """(op number, variable, Keras shape) of one weighted layer, in Keras' saving order."""
    kind, spec, fan_in = w.spec["type"], w.spec, w.fan_in
    cfg = w.ops[0].config
    if kind in ("dense", "heads"):
        units = cfg["units"]
        bias = [("bias", [units])] if cfg.get("use_bias", True) else []
        return [(n, what, shape) for n in range(len(w.ops)) for what, shape in [("kernel", [fan_in[0], units]), *bias]]
    if kind == "batch_norm":
        c = fan_in[0]
        names = ["gamma"] * bool(cfg.get("scale", True)) + ["beta"] * bool(cfg.get("center", True))
        return [(0, what, [c]) for what in [*names, "moving_mean", "moving_variance"]]
    kh, kw = spec["kernel"]
    order = [fan_in[0], spec["filters"]] if kind == "conv2d" else [spec["filters"], fan_in[0]]
    return [(0, "kernel", [kh, kw, *order])] + ([(0, "bias", [spec["filters"]])] if spec["bias"] else [])


def _torch_params(kind: str, found: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keras variables -> the layerstack module's parameters (torch layout)."""
    if kind == "dense":
        return {"weight": found["kernel"].T, **({"bias": found["bias"]} if "bias" in found else {})}
    if kind == "batch_norm":
        mean = found["moving_mean"]
        return {
            "weight": found.get("gamma", torch.ones_like(mean)),
            "bias": found.get("beta", torch.zeros_like(mean)),
            "running_mean": mean,
            "running_var": found["moving_variance"],
        }
    # Conv2D (kh, kw, in, out) -> (out, in, kh, kw); Conv2DTranspose (kh, kw, out, in) -> (in, out, kh, kw)
    kernel = found["kernel"].permute(3, 2, 0, 1)
    return {"weight": kernel, **({"bias": found["bias"]} if "bias" in found else {})}


def _read_weights(weights: bytes, weighted: list[_Weighted], source: str) -> dict[tuple[str, int], dict]:
    """{(part, index): module parameters} from the variables the limited child read."""
    layers, owners = [], []
    for w in weighted:
        variables = _variables(w)
        for n, op in enumerate(w.ops):
            layers.append(H5Layer(op.name, op.paths, [(v, s) for m, v, s in variables if m == n]))
            owners.append((w, n))
    out: dict[tuple[str, int], dict] = {}
    for (w, n), arrays in zip(owners, read_h5_variables(weights, layers, label=source)):
        found = {k: torch.from_numpy(a) for k, a in arrays.items()}
        kind = w.spec["type"]
        params = _torch_params("dense" if kind == "heads" else kind, found)
        if kind == "heads":
            params = {f"{('mean', 'log_var')[n]}.{k}": v for k, v in params.items()}
        out.setdefault((w.part, w.index), {}).update(params)
    return out


def _activations(parts: dict[str, list[dict[str, Any]]]) -> tuple[str, str, str | None]:
    """(hidden, latent, output) activations as the file records them; a sigmoid or tanh output is taken off the
    decoder (the model applies it), any other stays in it (output "identity"); output None: a linear last layer."""
    decoder = parts["decoder"]
    end = len(decoder) - 1
    while end > 0 and decoder[end]["type"] in SHAPE_ONLY:
        end -= 1
    output = None if decoder[end]["type"] != "activation" else "identity"
    if decoder[end]["type"] == "activation" and decoder[end]["fn"] in ("sigmoid", "tanh"):
        output = decoder.pop(end)["fn"]
    encoder = parts["encoder"]
    last = next((s for s in reversed(encoder) if s["type"] not in SHAPE_ONLY), encoder[-1])
    latent = last["fn"] if last["type"] == "activation" else "identity"
    hidden = [s["fn"] for s in encoder + decoder if s["type"] == "activation" and s is not last]
    return ", ".join(dict.fromkeys(hidden)) or "identity", latent, output


def _decide(report: ImportReport, name: str, found: str, asked: str | None, what: str, source: str) -> None:
    if asked is not None and asked != found:
        raise OptionError(
            f"{source}: the file says {found!r} but {asked!r} was asked for the {what}; leave that choice to the file",
            option=name,
        )
    report.decisions.append(Decision(name, found, "file"))


def _kind(heads: bool, asked: str | None, source: str) -> tuple[str, str]:
    """(kind, where it came from): the file's encoder has one output per latent value, or two (a VAE)."""
    need = 2 if heads else 1
    fitting = [k for k in importable_kinds() if models.model_class(k).encoder_heads == need]
    if asked is None:
        return fitting[0], "file"
    if asked not in fitting:
        said = "a mean and a log-variance per latent value (a VAE)" if heads else "one value per latent dimension"
        raise OptionError(
            f"{source}: the file's encoder outputs {said}, which a model of kind {asked!r} cannot use (it can be "
            f"{' or '.join(fitting)}); leave that choice to the file",
            option="kind",
        )
    return asked, "user"


def _summary(specs: list[dict[str, Any]], shape: tuple[int, ...]) -> str:
    """'28x28x1 -> conv2d 28x28x32 -> max_pool 14x14x32 -> ...': the layers with their outputs, Keras order."""
    steps = ["x".join(map(str, _keras_channels_last(shape)))]
    for spec, out in zip(specs, shapes(specs, shape, "summary")):
        if spec["type"] != "activation":
            steps.append(f"{spec['type']} {'x'.join(map(str, _keras_channels_last(out)))}")
    return " -> ".join(steps)


def _build(cfg: Any, params: dict[tuple[str, int], dict[str, torch.Tensor]], source: str) -> Autoencoder:
    """The model of ``cfg`` holding the file's weights (built on the meta device: nothing is initialised)."""
    with torch.device("meta"):
        model = models.build(cfg)
    prefixes = {m.part: prefix for prefix, m in model.named_modules() if isinstance(m, Stack)}
    state = {f"{prefixes[part]}.{i}.{k}": v.contiguous() for (part, i), p in params.items() for k, v in p.items()}
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{source}: the weights do not fit the layers the config describes: {exc}") from None
    return model.eval()


def import_keras(name: str, data: bytes, options: ImportOptions) -> tuple[Autoencoder, ImportReport]:
    """An explorer model (eval mode) from a ``.keras`` file, and what was read and decided.

    What the file records (kind, input shape, activations) is followed, and an option that contradicts it is
    refused; what it leaves open is the user's or tried on sample images of ``options.dataset`` (default: a
    built-in dataset of the model's input shape).
    """
    file = read_keras(data, name)
    chain = file.chain
    shape, lead, shape_source = _input_shape(chain.input_dims, options.input_shape, name)
    parts, weighted, latent, why = _assemble(chain, shape, lead, name)
    report = ImportReport(source="keras", files=[name])
    kind, kind_source = _kind(chain.heads is not None, options.kind, name)
    report.decisions += [
        Decision("kind", kind, kind_source),
        Decision("input_shape", ",".join(map(str, shape)), shape_source),
    ]
    hidden, latent_act, output = _activations(parts)
    _decide(report, "activation", hidden, options.activation, "hidden activation", name)
    _decide(report, "latent_activation", latent_act, options.latent_activation, "latent activation", name)
    # A linear last layer gives pixels, or logits for a loss "from_logits": the file does not say which, so the
    # output activation is then as open as the input pixel range, which no file records.
    choices = ["input_range"]
    if output is None:
        choices.insert(0, "output_activation")
    else:
        _decide(report, "output_activation", output, options.output_activation, "output activation", name)
    chosen = {c: str(getattr(options, c)) for c in choices if getattr(options, c) is not None}
    report.decisions += [Decision(c, value, "user") for c, value in chosen.items()]
    report.shapes = {"encoder": _summary(parts["encoder"], shape), "decoder": _summary(parts["decoder"], (latent,))}
    report.remarks.append(f"split into encoder and decoder at {why}; latent size {latent}")
    report.remarks += [f"skipped {s}" for s in chain.skipped]
    try:
        cfg = models.config_class(kind)(
            input_shape=shape,
            latent_dim=latent,
            backbone="layerstack",
            hidden=(),
            dense=0,
            # not read by this backbone; the file's own where the explorer has a name for them, for the record
            activation=hidden if hidden in ACTIVATIONS else "relu",
            latent_activation=latent_act if latent_act in ACTIVATIONS else "identity",
            output_activation=chosen.get("output_activation", output or "identity"),
            # what is assumed when no sample images fit: a tanh output usually comes with [-1, 1] inputs
            input_range=chosen.get("input_range", "symmetric" if output == "tanh" else "unit"),
            layers=parts,
        )
    except ConfigError as exc:
        raise CheckpointError(f"{name}: the model does not fit the explorer: {exc}") from None
    model = _build(cfg, _read_weights(file.weights, weighted, name), name)
    open_choices = [c for c in choices if c not in chosen]
    model, decisions, remarks = settle_choices(model, open_choices, dataset=options.dataset)
    report.decisions = sorted(report.decisions + decisions, key=lambda d: DECISION_ORDER.index(d.name))
    report.remarks += remarks
    if file.keras_version is not None:
        report.remarks.append(f"saved by Keras {file.keras_version}")
    return model.eval(), report


def load_keras(
    files: list[tuple[str, bytes]], options: ImportOptions, sample: SampleImages | None
) -> tuple[Autoencoder, ImportReport]:
    """The importer's loader: one ``.keras`` file; the open choices are tried on ``options.dataset``, since the
    file records the input shape that picks the sample images."""
    ((name, data),) = files
    return import_keras(name, data, options)
