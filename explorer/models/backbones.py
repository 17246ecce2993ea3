"""Encoder and decoder bodies shared by every kind.

``mlp`` works on any flattened input and can express the classic
784-128-64-32 ReLU encoder with a 32-64-128-784 sigmoid decoder.
``conv`` uses stride-2 convolutions; H and W must be divisible by 2**len(hidden)
(28x28 and 32x32 with two stages, 1 or 3 channels).
``layerstack`` (``explorer.models.layerstack``) is read from an imported model's layer list.
Decoders return logits; ``Autoencoder.decode`` applies the sigmoid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from torch import nn

from explorer.errors import ConfigError
from explorer.models.layerstack import LayerStack

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "identity": nn.Identity,
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


class BodySpec(Protocol):
    """What a backbone reads from a model config (``explorer.models.config.ModelConfig`` has it all)."""

    input_shape: tuple[int, int, int]
    latent_dim: int
    hidden: tuple[int, ...]
    activation: str
    latent_activation: str
    dense: int

    @property
    def input_size(self) -> int: ...


def _act(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


def _code_layer(cfg: BodySpec, width: int, out_dim: int) -> list[nn.Module]:
    """The encoder's last layer, from ``width`` features to the code (and the latent activation, if any)."""
    act = [] if cfg.latent_activation == "identity" else [_act(cfg.latent_activation)]
    return [nn.Linear(width, out_dim), *act]


class MLP:
    name = "mlp"
    trainable_from_config = True

    @staticmethod
    def check(cfg: BodySpec) -> None:
        pass

    @staticmethod
    def encoder(cfg: BodySpec, out_dim: int) -> nn.Sequential:
        layers: list[nn.Module] = [nn.Flatten()]
        width = cfg.input_size
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), _act(cfg.activation)]
            width = h
        return nn.Sequential(*layers, *_code_layer(cfg, width, out_dim))

    @staticmethod
    def decoder(cfg: BodySpec) -> nn.Sequential:
        layers: list[nn.Module] = []
        width = cfg.latent_dim
        for h in reversed(cfg.hidden):
            layers += [nn.Linear(width, h), _act(cfg.activation)]
            width = h
        layers += [nn.Linear(width, cfg.input_size), nn.Unflatten(1, cfg.input_shape)]
        return nn.Sequential(*layers)


class Conv:
    name = "conv"
    trainable_from_config = True

    @staticmethod
    def check(cfg: BodySpec) -> None:
        if not cfg.hidden:
            raise ConfigError("conv backbone needs at least one channel count in hidden")
        _, h, w = cfg.input_shape
        f = 2 ** len(cfg.hidden)
        if h % f or w % f:
            raise ConfigError(
                f"conv backbone with {len(cfg.hidden)} stages needs H and W divisible by {f}; got {h}x{w}"
            )

    @staticmethod
    def _grid(cfg: BodySpec) -> tuple[int, int, int]:
        _, h, w = cfg.input_shape
        f = 2 ** len(cfg.hidden)
        return cfg.hidden[-1], h // f, w // f

    @staticmethod
    def encoder(cfg: BodySpec, out_dim: int) -> nn.Sequential:
        layers: list[nn.Module] = []
        ch = cfg.input_shape[0]
        for c in cfg.hidden:
            # kernel 4, stride 2, padding 1 halves H and W exactly
            layers += [nn.Conv2d(ch, c, 4, 2, 1), _act(cfg.activation)]
            ch = c
        c, h, w = Conv._grid(cfg)
        layers.append(nn.Flatten())
        width = c * h * w
        if cfg.dense:
            layers += [nn.Linear(width, cfg.dense), _act(cfg.activation)]
            width = cfg.dense
        return nn.Sequential(*layers, *_code_layer(cfg, width, out_dim))

    @staticmethod
    def decoder(cfg: BodySpec) -> nn.Sequential:
        c, h, w = Conv._grid(cfg)
        layers: list[nn.Module] = []
        width = cfg.latent_dim
        if cfg.dense:
            layers += [nn.Linear(width, cfg.dense), _act(cfg.activation)]
            width = cfg.dense
        layers += [nn.Linear(width, c * h * w), _act(cfg.activation), nn.Unflatten(1, (c, h, w))]
        chans = list(reversed(cfg.hidden[:-1])) + [cfg.input_shape[0]]
        ch = c
        for i, out in enumerate(chans):
            layers.append(nn.ConvTranspose2d(ch, out, 4, 2, 1))
            if i < len(chans) - 1:
                layers.append(_act(cfg.activation))
            ch = out
        return nn.Sequential(*layers)


BACKBONES: dict[str, type[MLP] | type[Conv] | type[LayerStack]] = {
    MLP.name: MLP,
    Conv.name: Conv,
    LayerStack.name: LayerStack,
}
