"""The layer-list -> model engine shared by the importers: foreign weights in forward order become an explorer model.

An importer turns its file into ``Layer``s (a torch state_dict by its ``*.weight`` / ``*.bias`` names, a Keras
file by its config); ``model_from_layers`` infers the architecture and copies the weights:

- MLP: 2-D weights in forward order form a chain D -> h1 -> ... -> L -> ... -> h1 -> D; the narrowest layer is
  the bottleneck (or the file boundary when the encoder and decoder come as two groups). The decoder must
  mirror the encoder's widths, because the explorer's MLP decoder does.
- conv: only the explorer's own conv layout (stride-2 kernel-4 ``Conv2d`` stages, one or two ``Linear``
  layers each side, ``ConvTranspose2d`` stages back), checked shape by shape.
- two-head kinds (a VAE: ``encoder_heads == 2``): the encoder's last layer outputs mean and log-variance
  (2 x latent), either as one layer or as two parallel heads (e.g. ``fc_mu``/``fc_logvar``), which are
  concatenated. Without a kind given, the shapes decide: such heads make a two-head kind, anything else a
  one-head kind.

The choices a file may leave open (hidden, latent and output activation, input pixel range; ``infer.CHOICES``)
are each the user's when given, else the file's when it records them (a Keras layer's activation), else open:
built with the explorer's convention and listed in ``info["open"]`` for ``infer.settle_choices``. Every
mismatch is a ``CheckpointError`` that lists the layers found; one the user resolves by setting an option is
an ``OptionError`` naming that option.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from explorer import models
from explorer.errors import CheckpointError, ConfigError
from explorer.importers.infer import CHOICES, CONVENTION
from explorer.importers.options import Decision, ImportOptions, OptionError, option_label
from explorer.models.config import OUTPUT_ACTIVATIONS

if TYPE_CHECKING:
    from explorer.models.base import Autoencoder

# Known flat input sizes and the image shape they almost always are.
DEFAULT_SHAPES: dict[int, tuple[int, int, int]] = {
    64: (1, 8, 8),
    784: (1, 28, 28),
    1024: (1, 32, 32),
    3072: (3, 32, 32),
    4096: (1, 64, 64),
    12288: (3, 64, 64),
}


@dataclass
class Layer:
    """One weight layer in forward order.

    ``weight`` is in torch layout: Linear (out, in); Conv2d (out, in, k, k); ConvTranspose2d (in, out, k, k).
    ``activation`` is what follows the layer when the file records it (Keras); None for a state_dict.
    """

    name: str
    weight: torch.Tensor
    bias: torch.Tensor | None
    activation: str | None = None

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    def describe(self) -> str:
        if self.weight.ndim == 2:
            return f"{self.name} {self.in_features}->{self.out_features}"
        return f"{self.name} {'x'.join(str(d) for d in self.weight.shape)}"


def widths(layers: list[Layer]) -> str:
    """'784-128-64-32' for a chain of Linear layers."""
    if not layers:
        return ""
    return "-".join(str(v) for v in [layers[0].in_features] + [layer.out_features for layer in layers])


def _listing(layers: list[Layer]) -> str:
    return ", ".join(layer.describe() for layer in layers)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in shape)


def default_input_shape(size: int, given: tuple[int, int, int] | None, source: str) -> tuple[int, int, int]:
    """The (C, H, W) of a model whose first layer takes ``size`` values."""
    if given is not None:
        shape = tuple(int(v) for v in given)
        if len(shape) != 3 or math.prod(shape) != size:
            raise OptionError(
                f"{source}: the input shape {_shape_text(shape)} has {math.prod(shape)} values but the model's first "
                f"layer takes {size}; give an input shape C,H,W with C*H*W = {size}.",
                option="input_shape",
            )
        return shape
    if size in DEFAULT_SHAPES:
        return DEFAULT_SHAPES[size]
    known = ", ".join(f"{n} = {_shape_text(s)}" for n, s in DEFAULT_SHAPES.items())
    raise OptionError(
        f"{source}: the model takes {size} input values, which is not a known image size ({known}); "
        f"give its input shape C,H,W with C*H*W = {size} and C = 1 or 3.",
        option="input_shape",
    )


def importable_kinds() -> list[str]:
    """Kinds a layer stack can become: those built from layers here (not a graph runner such as an ONNX pair),
    but for sparse codes, whose decoder is a dictionary."""
    return [kind for kind in models.trainable_kinds() if not models.model_class(kind).sparse_codes]


def _encoder_heads(kind: str) -> int:
    return int(models.model_class(kind).encoder_heads)


def _two_head_hint() -> str:
    """'choose the kind vae': the kinds whose encoder emits a mean and a log-variance per latent."""
    return "choose the kind " + " or ".join(k for k in importable_kinds() if _encoder_heads(k) == 2)


def _parallel_heads(layers: list[Layer]) -> int | None:
    """Index of the first of two parallel heads (same shape, both reading the same input), if any."""
    for i in range(len(layers) - 1):
        a, b = layers[i], layers[i + 1]
        if a.weight.ndim != 2 or a.weight.shape != b.weight.shape or a.out_features == b.in_features:
            continue
        if i > 0 and layers[i - 1].out_features != a.in_features:
            continue
        return i
    return None


def _merge_heads(layers: list[Layer]) -> tuple[list[Layer], list[str]]:
    """Join two parallel heads into one mean+log-variance layer."""
    i = _parallel_heads(layers)
    if i is None:
        return layers, []
    a, b = layers[i], layers[i + 1]
    # a two-head encoder's output is chunked as (mean, log-variance)
    if re.search(r"var|sigma|std", a.name, re.I) and not re.search(r"var|sigma|std", b.name, re.I):
        a, b = b, a
    bias_a = a.bias if a.bias is not None else torch.zeros(a.out_features)
    bias_b = b.bias if b.bias is not None else torch.zeros(b.out_features)
    merged = Layer(f"{a.name}+{b.name}", torch.cat([a.weight, b.weight]), torch.cat([bias_a, bias_b]), a.activation)
    note = f"joined the heads {a.name} (mean) and {b.name} (log-variance) into one layer"
    return layers[:i] + [merged] + layers[i + 2 :], [note]


def _heads_in(groups: list[list[Layer]]) -> int:
    """2 when the shapes show a mean and a log-variance per latent (parallel heads, or a Linear layer whose output
    is twice the next one's input), else 1."""
    dense = [layer for group in groups for layer in group if layer.weight.ndim == 2]
    if _parallel_heads(dense) is not None:
        return 2
    pairs = zip(dense[:-1], dense[1:])
    return 2 if any(a.out_features == 2 * b.in_features for a, b in pairs) else 1


def _kind(groups: list[list[Layer]], kind: str | None) -> tuple[str, Decision]:
    if kind is not None:
        if kind not in importable_kinds():
            raise OptionError(
                f"these layers cannot become a model of kind {kind}; choose one of {', '.join(importable_kinds())}.",
                option="kind",
            )
        return kind, Decision("kind", kind, "user")
    heads = _heads_in(groups)
    found = next(k for k in importable_kinds() if _encoder_heads(k) == heads)
    return found, Decision("kind", found, "file")


def _chain_error(layers: list[Layer], k: int, source: str) -> CheckpointError:
    a, b = layers[k], layers[k + 1]
    text = (
        f"{source}: the layers do not form a chain: {a.name} outputs {a.out_features} features but the next layer "
        f"{b.name} takes {b.in_features}; layers found: {_listing(layers)}"
    )
    if _parallel_heads(layers) is not None:
        hint = f"they look like a VAE's mean and log-variance heads: {_two_head_hint()}"
        return OptionError(f"{text}; {hint}.", option="kind")
    if a.out_features == 2 * b.in_features:
        hint = f"the encoder's last layer outputs twice the decoder's input, as a VAE's does: {_two_head_hint()}"
        return OptionError(f"{text}; {hint}.", option="kind")
    return CheckpointError(f"{text}.")


def split_mlp(groups: list[list[Layer]], kind: str, source: str) -> tuple[list[Layer], list[Layer], list[str]]:
    """Encoder and decoder layers of an MLP autoencoder, checked against the explorer's mirrored layout."""
    heads = _encoder_heads(kind)  # encoder outputs per latent value: 2 for a mean and a log-variance
    remarks: list[str] = []
    if len(groups) != 2:  # only an (encoder, decoder) pair fixes the split; anything else is one chain
        groups = [[layer for group in groups for layer in group]]
    if len(groups) == 1:
        layers = groups[0]
        if heads == 2:
            layers, remarks = _merge_heads(layers)
        if len(layers) < 2:
            raise CheckpointError(
                f"{source}: found only {_listing(layers)}; an autoencoder needs at least an encoder and a decoder "
                "layer."
            )
        breaks = [k for k in range(len(layers) - 1) if layers[k].out_features != layers[k + 1].in_features]
        if heads > 1:
            junctions = [k for k in breaks if layers[k].out_features == heads * layers[k + 1].in_features]
            if not junctions:
                raise OptionError(
                    f"{source}: a {kind} needs an encoder whose last layer outputs {heads} x latent values (mean and "
                    f"log-variance) before a decoder that takes latent values; layers found: {_listing(layers)}.",
                    option="kind",
                )
            k = junctions[0]
            for j in breaks:
                if j != k:
                    raise _chain_error(layers, j, source)
        else:
            if breaks:
                raise _chain_error(layers, breaks[0], source)
            outs = [layer.out_features for layer in layers[:-1]]
            k = outs.index(min(outs))  # the bottleneck
        encoder, decoder = layers[: k + 1], layers[k + 1 :]
    else:
        encoder, decoder = groups
        if heads == 2:
            encoder, remarks = _merge_heads(encoder)
        for part in (encoder, decoder):
            for k in range(len(part) - 1):
                if part[k].out_features != part[k + 1].in_features:
                    raise _chain_error(part, k, source)
        if encoder[-1].out_features != heads * decoder[0].in_features:
            need = f"{heads} x " if heads > 1 else ""
            raise OptionError(
                f"{source}: the encoder outputs {encoder[-1].out_features} values but the decoder takes "
                f"{decoder[0].in_features} (a {kind} needs {need}the decoder's input); encoder "
                f"{_listing(encoder)}; decoder {_listing(decoder)}.",
                option="kind",
            )
    if encoder[0].in_features != decoder[-1].out_features:
        raise CheckpointError(
            f"{source}: the encoder takes {encoder[0].in_features} values but the decoder produces "
            f"{decoder[-1].out_features}; an autoencoder's output must match its input (layers: "
            f"{_listing(encoder + decoder)})."
        )
    hidden = [layer.out_features for layer in encoder[:-1]]
    mirrored = [layer.out_features for layer in decoder[:-1]]
    if mirrored != hidden[::-1]:
        latent = decoder[0].in_features
        expected = "-".join(str(v) for v in [latent, *hidden[::-1], decoder[-1].out_features])
        raise CheckpointError(
            f"{source}: the decoder does not mirror the encoder: encoder widths {widths(encoder)}, decoder widths "
            f"{widths(decoder)}; the explorer's MLP decoder uses the encoder's hidden widths in reverse "
            f"(expected decoder {expected}). Export the encoder and the decoder to ONNX instead."
        )
    return encoder, decoder, remarks


def _recorded(encoder: list[Layer], decoder: list[Layer], source: str) -> dict[str, str]:
    """What the file says about each choice: the layers' activations, when every layer records one (Keras)."""
    if any(layer.activation is None for layer in encoder + decoder):
        return {}
    out = str(decoder[-1].activation)
    if out not in OUTPUT_ACTIVATIONS:
        raise CheckpointError(
            f"{source}: the decoder's last layer ({decoder[-1].name}) is followed by {out}; an imported decoder must "
            f"end in {', '.join(OUTPUT_ACTIVATIONS[:-1])} or no activation, so that its output can be read as pixels."
        )
    inner = encoder[:-1] + decoder[:-1]
    hidden = {str(layer.activation) for layer in inner}
    if len(hidden) > 1:
        per_layer = ", ".join(f"{layer.name}: {layer.activation}" for layer in inner)
        raise CheckpointError(
            f"{source}: the hidden layers use different activations ({per_layer}); the explorer's MLP uses one "
            "activation for all hidden layers."
        )
    found = {"latent_activation": str(encoder[-1].activation), "output_activation": out}
    return found | ({"activation": hidden.pop()} if hidden else {})


def _settle(
    recorded: dict[str, str], given: dict[str, str | None], has_hidden: bool
) -> tuple[dict[str, str], list[Decision], list[str], list[str]]:
    """(values, decisions, open choices, remarks): per choice, the user's value, else the file's, else open."""
    values: dict[str, str] = {}
    decisions: list[Decision] = []
    open_choices: list[str] = []
    remarks: list[str] = []
    for name in CHOICES:
        user, found = given.get(name), recorded.get(name)
        if name == "activation" and not has_hidden:
            values[name] = user or CONVENTION[name]  # no hidden layer: nothing it could change
        elif user is not None:
            values[name] = user
            decisions.append(Decision(name, user, "user"))
            if found is not None and found != user:
                remarks.append(f"the file records {found} for the {option_label(name)}; your choice {user} is used")
        elif found is not None:
            values[name] = found
            decisions.append(Decision(name, found, "file"))
        else:
            values[name] = CONVENTION[name]
            open_choices.append(name)
    return values, decisions, open_choices, remarks


def _build(kind: str, source: str, **fields: Any) -> Autoencoder:
    try:
        return models.build(models.config_class(kind)(**fields))
    except ConfigError as exc:
        raise CheckpointError(
            f"{source}: the inferred architecture is not valid here: {str(exc).rstrip('.')}."
        ) from None


def copy_weights(model: Autoencoder, layers: list[Layer], source: str) -> None:
    """Load ``layers`` into ``model``'s Linear/Conv layers in order (strict: every key, every shape)."""
    targets = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))]
    ours = ", ".join(f"{n} {'x'.join(str(d) for d in m.weight.shape)}" for n, m in targets)
    if len(targets) != len(layers) or any(
        tuple(m.weight.shape) != tuple(layer.weight.shape) for (_, m), layer in zip(targets, layers)
    ):
        raise CheckpointError(
            f"{source}: the layers found ({_listing(layers)}) do not match the explorer's layout for this "
            f"architecture ({ours})."
        )
    expected = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    for (tname, _), layer in zip(targets, layers):
        state[f"{tname}.weight"] = layer.weight.to(torch.float32)
        # a layer saved without a bias is the same function as one with a zero bias
        bias = layer.bias if layer.bias is not None else torch.zeros_like(expected[f"{tname}.bias"])
        state[f"{tname}.bias"] = bias.to(torch.float32)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:  # a bias whose length is not its layer's output count
        lengths = ", ".join(f"{layer.name} {layer.bias.shape[0]}" for layer in layers if layer.bias is not None)
        raise CheckpointError(
            f"{source}: a bias does not match its layer's outputs (layers: {_listing(layers)}; biases: {lengths})."
        ) from None


def _mlp_model(
    groups: list[list[Layer]], kind: str, shape: tuple[int, int, int] | None, given: dict, source: str
) -> tuple[Autoencoder, dict[str, Any]]:
    encoder, decoder, remarks = split_mlp(groups, kind, source)
    shape = default_input_shape(encoder[0].in_features, shape, source)
    values, decisions, open_choices, notes = _settle(_recorded(encoder, decoder, source), given, len(encoder) > 1)
    model = _build(
        kind,
        source,
        input_shape=shape,
        latent_dim=decoder[0].in_features,
        backbone="mlp",
        hidden=tuple(layer.out_features for layer in encoder[:-1]),
        **values,
    )
    copy_weights(model, encoder + decoder, source)
    missing_bias = [layer.name for layer in encoder + decoder if layer.bias is None]
    if missing_bias:
        remarks.append(f"layers without a bias got a zero bias: {', '.join(missing_bias)}")
    info = {
        "encoder": widths(encoder),
        "decoder": widths(decoder),
        "decisions": decisions,
        "open": open_choices,
        "remarks": remarks + notes,
    }
    return model, info


def _conv_model(
    groups: list[list[Layer]], kind: str, shape: tuple[int, int, int] | None, given: dict, source: str
) -> tuple[Autoencoder, dict[str, Any]]:
    layers = [layer for group in groups for layer in group]
    pattern = "".join("c" if layer.weight.ndim == 4 else "l" for layer in layers)
    match = re.fullmatch(r"(c+)(l+)(c+)", pattern)
    refusal = (
        f"{source}: this conv layout is not one the explorer can rebuild (layers found: {_listing(layers)}); "
        "a state_dict can hold only the explorer's own conv layout: Conv2d(kernel 4, stride 2, padding 1) stages, "
        "Linear layers (optionally a dense layer each side), then ConvTranspose2d(kernel 4, stride 2, padding 1) "
        "stages back. Export the encoder and the decoder to ONNX instead."
    )
    if not match or len(match.group(1)) != len(match.group(3)) or len(match.group(2)) not in (2, 4):
        raise CheckpointError(refusal)
    n = len(match.group(1))
    convs, linears = layers[:n], layers[n : n + len(match.group(2))]
    hidden = tuple(layer.out_features for layer in convs)
    dense = linears[0].out_features if len(linears) == 4 else 0
    flat = linears[0].in_features
    if shape is None:
        side = math.isqrt(flat // hidden[-1]) if flat % hidden[-1] == 0 else 0
        if side < 1 or side * side * hidden[-1] != flat:
            raise OptionError(
                f"{source}: the image size cannot be worked out from a flattened conv output of {flat} values; "
                "give the model's input shape C,H,W.",
                option="input_shape",
            )
        shape = (convs[0].in_features, side * 2**n, side * 2**n)
    values, decisions, open_choices, notes = _settle({}, given, True)
    fields = dict(input_shape=shape, backbone="conv", hidden=hidden, dense=dense, **values)
    model = _build(kind, source, latent_dim=linears[len(linears) // 2].in_features, **fields)
    try:
        copy_weights(model, layers, source)
    except CheckpointError:
        raise CheckpointError(refusal) from None
    info = {
        "encoder": f"conv {convs[0].in_features}->{'->'.join(map(str, hidden))}, dense {dense or 'none'}, "
        f"latent {model.latent_dim}",
        "decoder": "mirrored (ConvTranspose2d)",
        "decisions": decisions,
        "open": open_choices,
        "remarks": notes,
    }
    return model, info


def model_from_layers(
    groups: list[list[Layer]], options: ImportOptions | None = None, *, source: str = "model"
) -> tuple[Autoencoder, dict[str, Any]]:
    """Build an explorer model from layers in forward order.

    ``groups`` is one list (the split is inferred) or two (encoder, decoder). Each option left at None comes
    from the file, or stays open. Returns the model in eval mode and what was found: ``encoder`` and ``decoder``
    (their widths), ``decisions`` (kind, input shape and every choice settled by the user or the file), ``open``
    (the choices to settle from data, built with the explorer's convention) and ``remarks``.
    """
    options = options or ImportOptions()
    input_shape = options.input_shape
    chosen_kind, kind_decision = _kind(groups, options.kind)
    given = {name: getattr(options, name) for name in CHOICES}
    if any(layer.weight.ndim == 4 for group in groups for layer in group):
        model, info = _conv_model(groups, chosen_kind, input_shape, given, source)
    else:
        model, info = _mlp_model(groups, chosen_kind, input_shape, given, source)
    shape_decision = Decision(
        "input_shape", _shape_text(model.input_shape), "user" if input_shape is not None else "inferred"
    )
    info["decisions"] = [kind_decision, shape_decision, *info["decisions"]]
    return model.eval(), info
