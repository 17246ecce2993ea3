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
  concatenated.

Activations a file does not record (a state_dict records none) default to ReLU for hidden layers and identity
for the latent; the output is always a sigmoid (the explorer's contract). Every mismatch is a
``CheckpointError`` that lists the layers found.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from explorer.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    import torch

    from explorer.models.base import Autoencoder

# Known flat input sizes and the image shape they almost always are.
DEFAULT_SHAPES: dict[int, tuple[int, int, int]] = {784: (1, 28, 28), 1024: (1, 32, 32), 3072: (3, 32, 32)}


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


def _natural_key(key: str) -> tuple:
    """Sort key that puts fc10 after fc2 and an encoder before its decoder."""
    first = key.split(".", 1)[0].lower()
    rank = 1 if first.startswith("dec") else 0
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", key) if p)
    return (rank, parts)


def state_to_layers(state: dict[str, torch.Tensor], order: list[str], source: str) -> list[Layer]:
    """Group ``*.weight`` / ``*.bias`` pairs into layers in ``order``; refuse anything else by name."""
    import torch

    for key in order:
        t = state[key]
        if not t.is_floating_point():
            continue  # reported below as an unsupported parameter
        if not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{source}: tensor {key!r} contains NaN or Inf values; the model is unusable")
    layers: list[Layer] = []
    used: set[str] = set()
    for key in order:
        t = state[key]
        if not (key == "weight" or key.endswith(".weight")) or t.ndim not in (2, 4) or not t.is_floating_point():
            continue
        prefix = key[: -len("weight")]
        bias = state.get(prefix + "bias")
        if bias is not None and (bias.ndim != 1 or not bias.is_floating_point()):
            bias = None  # left over, reported below
        if bias is not None:
            used.add(prefix + "bias")
        used.add(key)
        layers.append(Layer(prefix.rstrip(".") or "weight", t.detach().float(), None if bias is None else bias.float()))
    left = [k for k in order if k not in used]
    if left:
        shown = ", ".join(f"{k} {tuple(state[k].shape)}" for k in left[:8]) + (" ..." if len(left) > 8 else "")
        raise CheckpointError(
            f"{source}: unsupported parameters: {shown}; only Linear layers (and the explorer's own conv layout) "
            "can be imported, not BatchNorm, LayerNorm, embeddings or other layers"
        )
    if not layers:
        raise CheckpointError(f"{source}: the state_dict has no Linear or Conv weights")
    return layers


def natural_order(order: list[str]) -> list[str]:
    return sorted(order, key=_natural_key)


# --- architecture -------------------------------------------------------------------------------


def widths(layers: list[Layer]) -> str:
    """'784-128-64-32' for a chain of Linear layers."""
    if not layers:
        return ""
    return "-".join(str(v) for v in [layers[0].in_features] + [layer.out_features for layer in layers])


def _listing(layers: list[Layer]) -> str:
    return ", ".join(layer.describe() for layer in layers)


def default_input_shape(size: int, given: tuple[int, int, int] | None, source: str) -> tuple[int, int, int]:
    """The (C, H, W) of a model whose first layer takes ``size`` values."""
    if given is not None:
        shape = tuple(int(v) for v in given)
        if len(shape) != 3 or math.prod(shape) != size:
            raise CheckpointError(
                f"{source}: input shape {shape} has {math.prod(shape)} values but the model's first layer takes "
                f"{size}; pass --input-shape C,H,W with C*H*W = {size}"
            )
        return shape
    if size in DEFAULT_SHAPES:
        return DEFAULT_SHAPES[size]
    known = ", ".join(f"{n} = {'x'.join(map(str, s))}" for n, s in DEFAULT_SHAPES.items())
    raise CheckpointError(
        f"{source}: the model takes {size} input values, which is not a known image size ({known}); "
        f"pass --input-shape C,H,W (input_shape=(C, H, W)) with C*H*W = {size} and C = 1 or 3"
    )


def importable_kinds() -> list[str]:
    """Kinds a layer stack can become: all but those with sparse codes, whose decoder is a dictionary."""
    from explorer import models

    return [kind for kind in models.kinds() if not models.model_class(kind).sparse_codes]


def _encoder_heads(kind: str) -> int:
    from explorer import models

    return int(models.model_class(kind).encoder_heads)


def _two_head_hint() -> str:
    """'pass --kind vae': the kinds whose encoder emits a mean and a log-variance per latent."""
    return "pass --kind " + " or --kind ".join(k for k in importable_kinds() if _encoder_heads(k) == 2)


def _merge_heads(layers: list[Layer], merge: bool) -> tuple[list[Layer], list[str]]:
    """Join two parallel heads (same shape, both reading the same input) into one mean+log-variance layer.

    With ``merge`` false, only say that the layers look like such heads.
    """
    import torch

    for i in range(len(layers) - 1):
        a, b = layers[i], layers[i + 1]
        if a.weight.ndim != 2 or a.weight.shape != b.weight.shape or a.out_features == b.in_features:
            continue
        if i > 0 and layers[i - 1].out_features != a.in_features:
            continue
        if not merge:
            return layers, [f"{a.name} and {b.name} look like a VAE's mean and log-variance heads; {_two_head_hint()}"]
        # a two-head encoder's output is chunked as (mean, log-variance)
        if re.search(r"var|sigma|std", a.name, re.I) and not re.search(r"var|sigma|std", b.name, re.I):
            a, b = b, a
        bias_a = a.bias if a.bias is not None else torch.zeros(a.out_features)
        bias_b = b.bias if b.bias is not None else torch.zeros(b.out_features)
        merged = Layer(f"{a.name}+{b.name}", torch.cat([a.weight, b.weight]), torch.cat([bias_a, bias_b]), a.activation)
        note = f"joined the heads {a.name} (mean) and {b.name} (log-variance) into one layer"
        return layers[:i] + [merged] + layers[i + 2 :], [note]
    return layers, []


def _chain_error(layers: list[Layer], k: int, source: str, hints: list[str]) -> CheckpointError:
    a, b = layers[k], layers[k + 1]
    hint = ""
    if hints:
        hint = "; " + "; ".join(hints)
    elif a.out_features == 2 * b.in_features:
        hint = f"; the encoder's last layer outputs twice the decoder's input, as a VAE's does: {_two_head_hint()}"
    return CheckpointError(
        f"{source}: the layers do not form a chain: {a.name} outputs {a.out_features} features but the next layer "
        f"{b.name} takes {b.in_features}; layers found: {_listing(layers)}{hint}"
    )


def _check_chain(layers: list[Layer], source: str, hints: list[str]) -> None:
    for k in range(len(layers) - 1):
        if layers[k].out_features != layers[k + 1].in_features:
            raise _chain_error(layers, k, source, hints)


def split_mlp(groups: list[list[Layer]], kind: str, source: str) -> tuple[list[Layer], list[Layer], list[str]]:
    """Encoder and decoder layers of an MLP autoencoder, checked against the explorer's mirrored layout."""
    heads = _encoder_heads(kind)  # encoder outputs per latent value: 2 for a mean and a log-variance
    two_heads = heads == 2
    remarks: list[str] = []
    if len(groups) != 2:  # only an (encoder, decoder) pair fixes the split; anything else is one chain
        groups = [[layer for group in groups for layer in group]]
    if len(groups) == 1:
        layers, notes = _merge_heads(groups[0], two_heads)
        hints = [] if two_heads else notes
        remarks += notes if two_heads else []
        if len(layers) < 2:
            raise CheckpointError(
                f"{source}: found only {_listing(layers)}; an autoencoder needs at least an encoder and a decoder layer"
            )
        breaks = [k for k in range(len(layers) - 1) if layers[k].out_features != layers[k + 1].in_features]
        if heads > 1:
            junctions = [k for k in breaks if layers[k].out_features == heads * layers[k + 1].in_features]
            if not junctions:
                raise CheckpointError(
                    f"{source}: kind {kind} needs an encoder whose last layer outputs {heads} x latent values (mean and "
                    f"log-variance) before a decoder that takes latent values; layers found: {_listing(layers)}"
                )
            k = junctions[0]
            for j in breaks:
                if j != k:
                    raise _chain_error(layers, j, source, [])
        else:
            if breaks:
                raise _chain_error(layers, breaks[0], source, hints)
            outs = [layer.out_features for layer in layers[:-1]]
            k = outs.index(min(outs))  # the bottleneck
        encoder, decoder = layers[: k + 1], layers[k + 1 :]
    else:
        encoder, notes = _merge_heads(groups[0], two_heads)
        decoder = groups[1]
        remarks += notes if two_heads else []
        for part in (encoder, decoder):
            _check_chain(part, source, [] if two_heads else notes)
        if encoder[-1].out_features != heads * decoder[0].in_features:
            need = f"{heads} x " if heads > 1 else ""
            raise CheckpointError(
                f"{source}: the encoder outputs {encoder[-1].out_features} values but the decoder takes "
                f"{decoder[0].in_features} (kind {kind} needs {need}the decoder's input); encoder "
                f"{_listing(encoder)}; decoder {_listing(decoder)}"
            )
    if encoder[0].in_features != decoder[-1].out_features:
        raise CheckpointError(
            f"{source}: the encoder takes {encoder[0].in_features} values but the decoder produces "
            f"{decoder[-1].out_features}; an autoencoder's output must match its input (layers: "
            f"{_listing(encoder + decoder)})"
        )
    hidden = [layer.out_features for layer in encoder[:-1]]
    mirrored = [layer.out_features for layer in decoder[:-1]]
    if mirrored != hidden[::-1]:
        latent = decoder[0].in_features
        expected = "-".join(str(v) for v in [latent, *hidden[::-1], decoder[-1].out_features])
        raise CheckpointError(
            f"{source}: the decoder does not mirror the encoder: encoder widths {widths(encoder)}, decoder widths "
            f"{widths(decoder)}; the explorer's MLP decoder uses the encoder's hidden widths in reverse "
            f"(expected decoder {expected})"
        )
    return encoder, decoder, remarks


def _resolve_activations(
    encoder: list[Layer],
    decoder: list[Layer],
    activation: str | None,
    latent_activation: str | None,
    source: str,
) -> tuple[str, str, bool]:
    """(hidden, latent, assumed): read from the layers when the file records them, else the arguments/defaults."""
    recorded = [layer.activation for layer in encoder + decoder]
    if any(a is None for a in recorded):
        return activation or "relu", latent_activation or "identity", True
    out = decoder[-1].activation
    if out != "sigmoid":
        raise CheckpointError(
            f"{source}: the decoder's last layer ({decoder[-1].name}) has activation {out!r}; the explorer's "
            "decoders end in a sigmoid (pixels in [0, 1]), so only models whose output layer uses sigmoid can be "
            "imported"
        )
    hidden_acts = {layer.activation for layer in encoder[:-1] + decoder[:-1]}
    if len(hidden_acts) > 1:
        per_layer = ", ".join(f"{layer.name}: {layer.activation}" for layer in encoder[:-1] + decoder[:-1])
        raise CheckpointError(
            f"{source}: the hidden layers use different activations ({per_layer}); the explorer's MLP uses one "
            "activation for all hidden layers"
        )
    hidden = hidden_acts.pop() if hidden_acts else (activation or "relu")
    latent = str(encoder[-1].activation)
    for flag, given, found in (
        ("--activation", activation, hidden),
        ("--latent-activation", latent_activation, latent),
    ):
        if given is not None and given != found:
            raise CheckpointError(f"{source}: the file says {found!r} but {flag} asks for {given!r}; drop the flag")
    return str(hidden), latent, False


def _build(kind: str, source: str, **fields: Any) -> Autoencoder:
    from explorer import models

    try:
        return models.build(models.config_class(kind)(**fields))
    except ConfigError as exc:
        raise CheckpointError(f"{source}: the inferred architecture is not valid here: {exc}") from None


def copy_weights(model: Autoencoder, layers: list[Layer], source: str) -> None:
    """Load ``layers`` into ``model``'s Linear/Conv layers in order (strict: every key, every shape)."""
    import torch
    from torch import nn

    targets = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))]
    ours = ", ".join(f"{n} {'x'.join(str(d) for d in m.weight.shape)}" for n, m in targets)
    if len(targets) != len(layers) or any(
        tuple(m.weight.shape) != tuple(layer.weight.shape) for (_, m), layer in zip(targets, layers)
    ):
        raise CheckpointError(
            f"{source}: the layers found ({_listing(layers)}) do not match the explorer's layout for this "
            f"architecture ({ours})"
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
    except RuntimeError as exc:
        raise CheckpointError(f"{source}: the weights do not fit the inferred model: {exc}") from None


def _mlp_model(
    groups: list[list[Layer]],
    *,
    kind: str,
    input_shape: tuple[int, int, int] | None,
    activation: str | None,
    latent_activation: str | None,
    source: str,
) -> tuple[Autoencoder, dict[str, Any]]:
    encoder, decoder, remarks = split_mlp(groups, kind, source)
    shape = default_input_shape(encoder[0].in_features, input_shape, source)
    hidden, latent, assumed = _resolve_activations(encoder, decoder, activation, latent_activation, source)
    model = _build(
        kind,
        source,
        input_shape=shape,
        latent_dim=decoder[0].in_features,
        backbone="mlp",
        hidden=tuple(layer.out_features for layer in encoder[:-1]),
        activation=hidden,
        latent_activation=latent,
    )
    copy_weights(model, encoder + decoder, source)
    missing_bias = [layer.name for layer in encoder + decoder if layer.bias is None]
    if missing_bias:
        remarks.append(f"layers without a bias got a zero bias: {', '.join(missing_bias)}")
    info = {
        "encoder": widths(encoder),
        "decoder": widths(decoder),
        "activations": {"hidden": hidden, "latent": latent, "output": "sigmoid"},
        "activations_assumed": assumed,
        "remarks": remarks,
    }
    return model, info


def _conv_model(
    groups: list[list[Layer]],
    *,
    kind: str,
    input_shape: tuple[int, int, int] | None,
    activation: str | None,
    latent_activation: str | None,
    source: str,
) -> tuple[Autoencoder, dict[str, Any]]:
    layers = [layer for group in groups for layer in group]
    pattern = "".join("c" if layer.weight.ndim == 4 else "l" for layer in layers)
    match = re.fullmatch(r"(c+)(l+)(c+)", pattern)
    supported = (
        "only the explorer's own conv layout can be imported: Conv2d(kernel 4, stride 2, padding 1) stages, "
        "then Linear layers (optionally a dense layer each side), then ConvTranspose2d(kernel 4, stride 2, "
        "padding 1) stages back"
    )
    if not match or len(match.group(1)) != len(match.group(3)) or len(match.group(2)) not in (2, 4):
        raise CheckpointError(f"{source}: conv layout not recognised; layers found: {_listing(layers)}; {supported}")
    n = len(match.group(1))
    convs, linears = layers[:n], layers[n : n + len(match.group(2))]
    hidden = tuple(layer.out_features for layer in convs)
    channels = convs[0].in_features
    dense = linears[0].out_features if len(linears) == 4 else 0
    latent = linears[len(linears) // 2].in_features
    flat = linears[0].in_features
    if input_shape is None:
        side = math.isqrt(flat // hidden[-1]) if flat % hidden[-1] == 0 else 0
        if side < 1 or side * side * hidden[-1] != flat:
            raise CheckpointError(
                f"{source}: cannot work out the image size from a flattened conv output of {flat} values; "
                "pass --input-shape C,H,W"
            )
        input_shape = (channels, side * 2**n, side * 2**n)
    hidden_act, latent_act = activation or "relu", latent_activation or "identity"
    model = _build(
        kind,
        source,
        input_shape=input_shape,
        latent_dim=latent,
        backbone="conv",
        hidden=hidden,
        dense=dense,
        activation=hidden_act,
        latent_activation=latent_act,
    )
    try:
        copy_weights(model, layers, source)
    except CheckpointError:
        raise CheckpointError(
            f"{source}: conv layout not recognised; layers found: {_listing(layers)}; {supported}"
        ) from None
    info = {
        "encoder": f"conv {channels}->{'->'.join(map(str, hidden))}, dense {dense or 'none'}, latent {latent}",
        "decoder": "mirrored (ConvTranspose2d)",
        "activations": {"hidden": hidden_act, "latent": latent_act, "output": "sigmoid"},
        "activations_assumed": True,
        "remarks": [],
    }
    return model, info


def model_from_layers(
    groups: list[list[Layer]],
    *,
    kind: str = "ae",
    input_shape: tuple[int, int, int] | None = None,
    activation: str | None = None,
    latent_activation: str | None = None,
    source: str = "model",
) -> tuple[Autoencoder, dict[str, Any]]:
    """Build an explorer model from layers in forward order.

    ``groups`` is one list (the split is inferred) or two (encoder, decoder). Returns the model in eval mode and
    a JSON-ready description of what was inferred.
    """
    from explorer.models.backbones import ACTIVATIONS

    if kind not in importable_kinds():
        raise CheckpointError(
            f"kind {kind!r} cannot be imported; importable kinds: {', '.join(importable_kinds())} "
            "(a sparse autoencoder's decoder is a dictionary, not a layer stack)"
        )
    for flag, value in (("--activation", activation), ("--latent-activation", latent_activation)):
        if value is not None and value not in ACTIVATIONS:
            raise CheckpointError(f"unknown {flag} {value!r}; known: {', '.join(ACTIVATIONS)}")
    layers = [layer for group in groups for layer in group]
    opts = dict(
        kind=kind, input_shape=input_shape, activation=activation, latent_activation=latent_activation, source=source
    )
    if any(layer.weight.ndim == 4 for layer in layers):
        model, info = _conv_model(groups, **opts)  # type: ignore[arg-type]
    else:
        model, info = _mlp_model(groups, **opts)  # type: ignore[arg-type]
    return model.eval(), info
