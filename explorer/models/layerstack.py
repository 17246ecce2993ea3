"""A backbone described by data: the encoder and the decoder as lists of layer specs (``config.layers``).

It carries models imported from other frameworks whose layout is not the explorer's own. Nothing here knows
where the specs came from; the weights are ordinary torch parameters and buffers, so the checkpoint format
stores them like any other model's. Tensors between layers are (B, C, H, W) images or (B, N) vectors.

``config.layers = {"encoder": [spec, ...], "decoder": [spec, ...]}``; each spec is a JSON object with a
``type`` and that type's fields (pairs are [height, width]; ``bias`` defaults to true):

==================  ====================================================================================
conv2d              filters, kernel, strides, padding "valid" | "same", bias
conv2d_transpose    filters, kernel, strides, padding "valid" | "same", output_padding (pair or null), bias
max_pool            pool, strides, padding "valid" | "same"
upsample            size, interpolation "nearest" | "bilinear"
pad                 pad [top, bottom, left, right]; negative values crop
flatten             (none): (C, H, W) -> (H * W * C,), channels-last order
reshape             shape: [N] | [H, W] | [H, W, C], channels-last order (one size may be -1)
dense               units, bias: a vector -> (units,)
batch_norm          epsilon: inference only, from the running mean and variance
activation          fn (a key of ``FUNCTIONS``), alpha (the slope of leaky_relu, the alpha of elu)
heads               units, bias: two dense layers on one vector, concatenated as (mean, log-variance)
==================  ====================================================================================

"same" padding is TensorFlow's: when the total is odd, the extra row or column goes after (bottom, right).
A transposed convolution is computed in full and then cropped (or extended with zeros) to the size the
padding mode gives, before its bias is added. Flatten and reshape use channels-last order, so a dense layer
after a flatten sees its inputs in the order the model was trained with.

The encoder takes the model's input shape and ends in a vector of latent_dim values (2 x latent_dim after
``heads``); the decoder takes latent_dim values and ends in the input shape. ``hidden``, ``activation``,
``latent_activation`` and ``dense`` of the config are not read here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from explorer.errors import ConfigError

Shape = tuple[int, ...]  # (C, H, W) or (N,), without the batch
Pair = tuple[int, int]  # (height, width)
Sides = tuple[int, int, int, int]  # (left, right, top, bottom), F.pad's order for the last two dims
Factory = Callable[[], nn.Module]
# Bounds on what a config may ask for, so a hostile checkpoint cannot make the loader allocate without end
MAX_VALUES = 2**24  # per image, after any layer
MAX_SIDE = 2**12  # pixels: kernels, strides, pads, scale factors
MAX_PARAMETERS = 2**27  # weights of one part (512 MiB of float32)

FUNCTIONS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "relu": lambda x, a: F.relu(x),
    "relu6": lambda x, a: F.relu6(x),
    "leaky_relu": lambda x, a: F.leaky_relu(x, a),
    "elu": lambda x, a: F.elu(x, a),
    "gelu": lambda x, a: F.gelu(x),
    "silu": lambda x, a: F.silu(x),
    "softplus": lambda x, a: F.softplus(x),
    "tanh": lambda x, a: torch.tanh(x),
    "sigmoid": lambda x, a: torch.sigmoid(x),
}
DEFAULT_ALPHA = {"leaky_relu": 0.2, "elu": 1.0}


class StackSpec(Protocol):
    input_shape: tuple[int, int, int]
    latent_dim: int
    layers: dict[str, Any]


# --- modules: one per spec, so a spec's index is its module's index ----------------------------------------


class PaddedConv2d(nn.Conv2d):
    """Conv2d after an explicit (left, right, top, bottom) zero pad, which may be asymmetric."""

    def __init__(self, cin: int, cout: int, kernel: Pair, strides: Pair, pad: Sides, bias: bool):
        super().__init__(cin, cout, kernel, strides, bias=bias)
        self.pad4 = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.pad4) if any(self.pad4) else x)


class CroppedConvTranspose2d(nn.ConvTranspose2d):
    """The full transposed convolution ((H - 1) * s + k rows), then cropped by ``crop4`` (left, right, top,
    bottom; negative extends with zeros), then the bias."""

    def __init__(self, cin: int, cout: int, kernel: Pair, strides: Pair, crop: Sides, bias: bool):
        super().__init__(cin, cout, kernel, strides, bias=bias)
        self.crop4 = crop

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        y = F.conv_transpose2d(x, self.weight, None, self.stride)
        y = F.pad(y, tuple(-c for c in self.crop4))
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)


class PaddedMaxPool2d(nn.MaxPool2d):
    """Max pooling after padding with -inf, so padded cells never win."""

    def __init__(self, pool: Pair, strides: Pair, pad: Sides):
        super().__init__(pool, strides)
        self.pad4 = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.pad4, value=-math.inf) if any(self.pad4) else x)


class Pad(nn.Module):
    def __init__(self, pad: Sequence[int]):
        super().__init__()
        top, bottom, left, right = pad  # as the spec gives it
        self.pad4 = (left, right, top, bottom)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pad4)


class Upsample(nn.Module):
    def __init__(self, size: Pair, interpolation: str):
        super().__init__()
        self.scale, self.mode = (float(size[0]), float(size[1])), interpolation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest":
            return F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)


def channels_last_flat(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W*C) in channels-last order; a (B, N) vector is returned as is."""
    return x.permute(0, 2, 3, 1).flatten(1) if x.ndim == 4 else x


class ChannelsLastFlatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channels_last_flat(x)


class ChannelsLastReshape(nn.Module):
    def __init__(self, target: Shape):
        super().__init__()
        self.target = target  # channels-last: (N,) or (H, W, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = channels_last_flat(x)
        if len(self.target) == 1:
            return flat
        return flat.reshape(-1, *self.target).permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)


class FrozenBatchNorm(nn.Module):
    """Batch normalisation with its running statistics in train and eval mode alike (float buffers only)."""

    def __init__(self, channels: int, epsilon: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.running_mean: torch.Tensor
        self.running_var: torch.Tensor
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.epsilon = epsilon

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.epsilon)


class Activation(nn.Module):
    def __init__(self, fn: str, alpha: float):
        super().__init__()
        self.fn, self.alpha = fn, alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return FUNCTIONS[self.fn](x, self.alpha)

    def extra_repr(self) -> str:
        return f"{self.fn}, alpha={self.alpha}" if self.fn in DEFAULT_ALPHA else self.fn


class TwoHeads(nn.Module):
    """A VAE's mean and log-variance layers, both reading the same vector: (B, N) -> (B, 2 * units)."""

    def __init__(self, width: int, units: int, bias: bool):
        super().__init__()
        self.mean = nn.Linear(width, units, bias=bias)
        self.log_var = nn.Linear(width, units, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.mean(x), self.log_var(x)], dim=1)


class Stack(nn.Sequential):
    """The modules of one part ("encoder" or "decoder"), in the order of its specs."""

    def __init__(self, part: str, modules: list[nn.Module]):
        super().__init__(*modules)
        self.part = part


# --- specs: checking, shapes, building ----------------------------------------------------------------------


def _pair(spec: dict[str, Any], key: str, where: str, low: int = 1) -> tuple[int, int]:
    value = spec.get(key)
    if not (
        isinstance(value, list | tuple) and len(value) == 2 and all(_is_int(v) and low <= v <= MAX_SIDE for v in value)
    ):
        raise ConfigError(f"{where}: {key} must be two integers from {low} to {MAX_SIDE}, got {value!r}")
    return int(value[0]), int(value[1])


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _positive(spec: dict[str, Any], key: str, where: str) -> int:
    value = spec.get(key)
    if not (isinstance(value, int) and _is_int(value) and 1 <= value <= 2**20):
        raise ConfigError(f"{where}: {key} must be a positive integer, got {value!r}")
    return value


def _choice(spec: dict[str, Any], key: str, options: tuple[str, ...], where: str) -> str:
    value = spec.get(key)
    if value not in options:
        raise ConfigError(f"{where}: {key} must be one of {', '.join(options)}, got {value!r}")
    return str(value)


def _image(shape: Shape, where: str, kind: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ConfigError(f"{where}: a {kind} layer needs an image (H, W, C) input, got a vector of {shape[0]}")
    return shape[0], shape[1], shape[2]


def _vector(shape: Shape, where: str, kind: str) -> int:
    if len(shape) != 1:
        c, h, w = shape
        raise ConfigError(f"{where}: a {kind} layer needs a vector input (flatten first), got {h}x{w}x{c}")
    return shape[0]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """(output size, pad before, pad after) of TensorFlow's "same": ceil(size / stride) outputs, extra pad after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def transpose_window(size: int, kernel: int, stride: int, padding: str, output_padding: int | None) -> tuple[int, int]:
    """(output size, crop at the start) of a transposed convolution whose full output is (size-1)*stride+kernel."""
    full = (size - 1) * stride + kernel
    if padding == "valid":
        out = full - kernel + max(kernel, stride) if output_padding is None else full + output_padding
        return out, 0
    out = size * stride if output_padding is None else (size - 1) * stride + kernel % 2 + output_padding
    return out, max((full - out) // 2, 0)


def _windowed(spec: dict[str, Any], shape: Shape, where: str, kind: str) -> tuple[Shape, Factory]:
    c, h, w = _image(shape, where, kind)
    bias = bool(spec.get("bias", True))
    padding = _choice(spec, "padding", ("valid", "same"), where)
    kernel = _pair(spec, "pool" if kind == "max_pool" else "kernel", where)
    strides = _pair(spec, "strides", where)
    if kind == "conv2d_transpose":
        filters = _positive(spec, "filters", where)
        extra = spec.get("output_padding")
        pads = (None, None) if extra is None else _pair(spec, "output_padding", where, low=0)
        (oh, top), (ow, left) = (
            transpose_window(n, k, s, padding, p) for n, k, s, p in zip((h, w), kernel, strides, pads)
        )
        if min(oh, ow) < 1:
            raise ConfigError(f"{where}: output_padding leaves no output")
        crop = (left, (w - 1) * strides[1] + kernel[1] - left - ow, top, (h - 1) * strides[0] + kernel[0] - top - oh)
        return (filters, oh, ow), lambda: CroppedConvTranspose2d(c, filters, kernel, strides, crop, bias)
    if padding == "same":
        (oh, top, bottom), (ow, left, right) = (same_padding(n, k, s) for n, k, s in zip((h, w), kernel, strides))
    else:
        if h < kernel[0] or w < kernel[1]:
            raise ConfigError(f"{where}: a {kernel[0]}x{kernel[1]} window does not fit a {h}x{w} input")
        oh, ow = (h - kernel[0]) // strides[0] + 1, (w - kernel[1]) // strides[1] + 1
        top = bottom = left = right = 0
    pad = (left, right, top, bottom)
    if kind == "max_pool":
        return (c, oh, ow), lambda: PaddedMaxPool2d(kernel, strides, pad)
    filters = _positive(spec, "filters", where)
    return (filters, oh, ow), lambda: PaddedConv2d(c, filters, kernel, strides, pad, bias)


def _reshape(spec: dict[str, Any], shape: Shape, where: str) -> tuple[Shape, Factory]:
    target = spec.get("shape")
    if not (isinstance(target, list | tuple) and 1 <= len(target) <= 3 and all(_is_int(v) for v in target)):
        raise ConfigError(f"{where}: shape must be 1 to 3 integers, got {target!r}")
    size = math.prod(shape)
    dims = [int(v) for v in target]
    if dims.count(-1) == 1 and all(v > 0 for v in dims if v != -1) and size % -math.prod(dims) == 0:
        dims[dims.index(-1)] = size // -math.prod(dims)
    if any(v < 1 for v in dims) or math.prod(dims) != size:
        raise ConfigError(f"{where}: cannot reshape {size} values to {target}")
    keras = tuple(dims) if len(dims) != 2 else (dims[0], dims[1], 1)  # (H, W) is one channel
    ours = keras if len(keras) == 1 else (keras[2], keras[0], keras[1])
    return ours, lambda: ChannelsLastReshape(keras)


def _layer(spec: Any, shape: Shape, where: str) -> tuple[Shape, Factory]:
    """(output shape, module factory) of one spec applied to ``shape``; a ConfigError names what is wrong."""
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: a layer spec must be an object, got {type(spec).__name__}")
    kind = spec.get("type")
    if kind in ("conv2d", "conv2d_transpose", "max_pool"):
        return _windowed(spec, shape, where, kind)
    if kind == "upsample":
        c, h, w = _image(shape, where, kind)
        size = _pair(spec, "size", where)
        mode = _choice(spec, "interpolation", ("nearest", "bilinear"), where)
        return (c, h * size[0], w * size[1]), lambda: Upsample(size, mode)
    if kind == "pad":
        c, h, w = _image(shape, where, kind)
        pad = spec.get("pad")
        if not (
            isinstance(pad, list | tuple) and len(pad) == 4 and all(_is_int(v) and abs(v) <= MAX_SIDE for v in pad)
        ):
            raise ConfigError(f"{where}: pad must be four integers [top, bottom, left, right], got {pad!r}")
        if h + min(pad[0], 0) + min(pad[1], 0) < 1 or w + min(pad[2], 0) + min(pad[3], 0) < 1:
            raise ConfigError(f"{where}: cropping {pad} leaves nothing of a {h}x{w} input")
        out = (c, h + pad[0] + pad[1], w + pad[2] + pad[3])
        return out, lambda: Pad(pad)
    if kind == "flatten":
        return (math.prod(shape),), ChannelsLastFlatten
    if kind == "reshape":
        return _reshape(spec, shape, where)
    if kind == "dense":
        units, width = _positive(spec, "units", where), _vector(shape, where, kind)
        return (units,), lambda: nn.Linear(width, units, bias=bool(spec.get("bias", True)))
    if kind == "heads":
        units, width = _positive(spec, "units", where), _vector(shape, where, kind)
        return (2 * units,), lambda: TwoHeads(width, units, bool(spec.get("bias", True)))
    if kind == "batch_norm":
        eps = spec.get("epsilon")
        if not isinstance(eps, int | float) or isinstance(eps, bool) or not 0 < eps < 1:
            raise ConfigError(f"{where}: epsilon must be a number in (0, 1), got {eps!r}")
        return shape, lambda: FrozenBatchNorm(shape[0], float(eps))
    if kind == "activation":
        fn = _choice(spec, "fn", tuple(FUNCTIONS), where)
        alpha = spec.get("alpha", DEFAULT_ALPHA.get(fn, 0.0))
        if not isinstance(alpha, int | float) or isinstance(alpha, bool) or not math.isfinite(alpha):
            raise ConfigError(f"{where}: alpha must be a number, got {alpha!r}")
        return shape, lambda: Activation(fn, float(alpha))
    known = "conv2d, conv2d_transpose, max_pool, upsample, pad, flatten, reshape, dense, heads, batch_norm, activation"
    raise ConfigError(f"{where}: unknown layer type {kind!r}; known: {known}")


def output_shape(spec: Any, shape: Shape, where: str) -> Shape:
    """The shape one spec makes of ``shape``; nothing is allocated."""
    out = _layer(spec, shape, where)[0]
    if math.prod(out) > MAX_VALUES:
        raise ConfigError(f"{where}: outputs {math.prod(out)} values per image; at most {MAX_VALUES} are supported")
    return out


def _parameters(spec: dict[str, Any], shape: Shape, out: Shape) -> int:
    kind = spec.get("type")
    if kind in ("conv2d", "conv2d_transpose"):
        return shape[0] * out[0] * math.prod(spec["kernel"]) + out[0]
    if kind in ("dense", "heads"):
        return (shape[0] + 1) * out[0]
    return 4 * shape[0] if kind == "batch_norm" else 0


def shapes(specs: Any, shape: Shape, part: str) -> list[Shape]:
    """The output shape after every spec of one part, checked; nothing is allocated."""
    if not isinstance(specs, list) or not specs:
        raise ConfigError(f"layers.{part} must be a non-empty list of layer specs")
    if len(specs) > 1000:
        raise ConfigError(f"layers.{part} has {len(specs)} layers; at most 1000 are supported")
    out, weights = [], 0
    for i, spec in enumerate(specs):
        after = output_shape(
            spec, shape, f"layers.{part}[{i}] ({spec.get('type') if isinstance(spec, dict) else spec})"
        )
        weights += _parameters(spec, shape, after)
        out.append(shape := after)
    if weights > MAX_PARAMETERS:
        raise ConfigError(f"layers.{part} has {weights} weights; at most {MAX_PARAMETERS} are supported")
    return out


def build(specs: list[dict[str, Any]], shape: Shape, part: str) -> Stack:
    """The modules of a checked part (see ``shapes``)."""
    modules = []
    for i, spec in enumerate(specs):
        shape, factory = _layer(spec, shape, f"layers.{part}[{i}] ({spec['type']})")
        modules.append(factory())
    return Stack(part, modules)


class LayerStack:
    name = "layerstack"
    trainable_from_config = False  # the specs come from an imported file, not from flags

    @staticmethod
    def check(cfg: StackSpec) -> None:
        if not isinstance(cfg.layers, dict) or set(cfg.layers) != {"encoder", "decoder"}:
            raise ConfigError(
                "the layerstack backbone is read from an imported model: config.layers must hold 'encoder' and "
                "'decoder' layer lists"
            )
        encoded = shapes(cfg.layers["encoder"], cfg.input_shape, "encoder")[-1]
        heads = 2 if cfg.layers["encoder"][-1].get("type") == "heads" else 1
        if encoded != (heads * cfg.latent_dim,):
            raise ConfigError(
                f"layers.encoder ends in {math.prod(encoded)} values; expected {heads * cfg.latent_dim} "
                f"({'mean and log-variance of ' if heads == 2 else ''}latent_dim {cfg.latent_dim})"
            )
        decoded = shapes(cfg.layers["decoder"], (cfg.latent_dim,), "decoder")[-1]
        if decoded != tuple(cfg.input_shape):
            raise ConfigError(f"layers.decoder ends in shape {decoded}; expected the input shape {cfg.input_shape}")

    @staticmethod
    def encoder(cfg: StackSpec, out_dim: int) -> Stack:
        encoded = shapes(cfg.layers["encoder"], cfg.input_shape, "encoder")[-1]
        if encoded != (out_dim,):
            raise ConfigError(
                f"the layer stack's encoder outputs {math.prod(encoded)} values per image; this kind of model "
                f"needs {out_dim} ({out_dim // cfg.latent_dim} x latent_dim)"
            )
        return build(cfg.layers["encoder"], cfg.input_shape, "encoder")

    @staticmethod
    def decoder(cfg: StackSpec) -> Stack:
        return build(cfg.layers["decoder"], (cfg.latent_dim,), "decoder")
