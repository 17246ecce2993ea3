"""A model's architecture as a dataclass that knows its kind and round-trips through a dict."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from explorer.errors import ConfigError
from explorer.models.backbones import ACTIVATIONS, BACKBONES

RECON_LOSSES = ("bce", "mse")
# What the decoder's last layer is followed by. Trained here: always sigmoid. An imported model may end in
# tanh (with inputs in [-1, 1]) or in nothing at all.
OUTPUT_ACTIVATIONS = ("sigmoid", "tanh", "identity")
# The pixel scale the encoder was trained on: "unit" [0, 1] (ours), "symmetric" [-1, 1] (common with tanh).
INPUT_RANGES = ("unit", "symmetric")


def one_of(name: str, value: Any, options: tuple[str, ...] | list[str]) -> None:
    """Refuse a config field whose value is not one of ``options``, naming them."""
    if value not in options:
        raise ConfigError(f"{name} must be one of {', '.join(options)}, got {value!r}")


def in_range(name: str, value: float, lo: float, hi: float) -> None:
    """Refuse a config field outside [lo, hi]."""
    if not lo <= float(value) <= hi:
        raise ConfigError(f"{name} must be in [{lo:g}, {hi:g}], got {value}")


@dataclass
class ModelConfig:
    """Architecture of one model. Subclasses add the options of their kind."""

    kind: ClassVar[str] = ""

    input_shape: tuple[int, int, int] = (1, 28, 28)
    latent_dim: int = 32
    backbone: str = "mlp"
    # mlp: widths of the hidden layers, input side first (decoder mirrors them).
    # conv: channels of the stride-2 conv stages, input side first.
    hidden: tuple[int, ...] = (128, 64)
    activation: str = "relu"
    # Applied to the encoder's last layer (an imported model may end in ReLU).
    latent_activation: str = "identity"
    # conv only: width of the dense layer between the conv stages and the latent (0 = none).
    dense: int = 256
    recon_loss: str = "bce"
    output_activation: str = "sigmoid"
    input_range: str = "unit"
    # layerstack only: {"encoder": [layer spec, ...], "decoder": [...]} (explorer.models.layerstack), checked there.
    layers: dict[str, Any] = field(default_factory=dict)
    # Free-form provenance that does not change the architecture (e.g. "imported from keras").
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.input_shape = tuple(int(v) for v in self.input_shape)  # type: ignore[assignment]
        self.hidden = tuple(int(v) for v in self.hidden)
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ConfigError(f"input_shape must be (C, H, W) with positive sizes, got {self.input_shape}")
        if self.input_shape[0] not in (1, 3):
            raise ConfigError(f"input_shape must have 1 or 3 channels, got {self.input_shape[0]}")
        if not 1 <= int(self.latent_dim) <= 65536:
            raise ConfigError(f"latent_dim must be between 1 and 65536, got {self.latent_dim}")
        self.latent_dim = int(self.latent_dim)
        if any(h < 1 or h > 65536 for h in self.hidden):
            raise ConfigError(f"hidden sizes must be between 1 and 65536, got {self.hidden}")
        if self.backbone not in BACKBONES:
            raise ConfigError(f"unknown backbone {self.backbone!r}; known: {', '.join(BACKBONES)}")
        for name in ("activation", "latent_activation"):
            if getattr(self, name) not in ACTIVATIONS:
                raise ConfigError(f"unknown {name} {getattr(self, name)!r}; known: {', '.join(ACTIVATIONS)}")
        one_of("recon_loss", self.recon_loss, RECON_LOSSES)
        one_of("output_activation", self.output_activation, OUTPUT_ACTIVATIONS)
        one_of("input_range", self.input_range, INPUT_RANGES)
        if self.dense < 0:
            raise ConfigError(f"dense must be >= 0, got {self.dense}")
        BACKBONES[self.backbone].check(self)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        data = dict(data)
        kind = data.pop("kind", cls.kind)
        if kind != cls.kind:
            raise ConfigError(f"config is for kind {kind!r}, not {cls.kind!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"unknown config key(s) {', '.join(unknown)} for kind {cls.kind!r}; expected: {', '.join(sorted(names))}"
            )
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid {cls.kind} config: {exc}") from None

    @property
    def input_size(self) -> int:
        c, h, w = self.input_shape
        return c * h * w
