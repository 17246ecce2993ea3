"""What every autoencoder shares: its config dataclass and the model contract.

Contract (read by the app, the CLI and the tests):

- ``encode(x) -> z``: deterministic; x is (B, C, H, W) float in [0, 1], z is (B, latent_dim).
- ``decode(z) -> x_hat``: (B, C, H, W) with pixels in [0, 1].
- ``loss(x) -> dict``: named scalar terms; ``"loss"`` is what the optimiser minimises.
- ``latent_dim``, ``kind``, ``input_shape`` (C, H, W).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from explorer.errors import ConfigError

RECON_LOSSES = ("bce", "mse")


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
    # Free-form provenance that does not change the architecture (e.g. "imported from keras").
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from explorer.models.backbones import ACTIVATIONS, BACKBONES

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
        if self.recon_loss not in RECON_LOSSES:
            raise ConfigError(f"recon_loss must be one of {', '.join(RECON_LOSSES)}, got {self.recon_loss!r}")
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


class Autoencoder(nn.Module):
    """Base class. Subclasses set ``kind`` and ``config_class`` and register themselves."""

    kind: ClassVar[str] = ""
    config_class: ClassVar[type[ModelConfig]] = ModelConfig

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config
        # Filled by checkpoint.load_checkpoint: dataset, training and metrics metadata.
        self.info: dict[str, Any] = {}

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.config.input_shape

    # --- the contract -------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(z))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        # forward() is the loss so that DistributedDataParallel sees the whole step.
        return self.loss(x)

    def post_step(self) -> None:
        """Called after every optimiser step (the SAE renormalises its atoms here)."""

    # --- shared helpers -----------------------------------------------------------------
    def recon_terms(self, logits: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reconstruction loss summed over pixels, averaged over the batch, plus per-pixel MSE."""
        logits = logits.float()
        if self.config.recon_loss == "bce":
            per_image = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        else:
            per_image = (torch.sigmoid(logits) - x).pow(2).flatten(1).sum(1)
        mse = (torch.sigmoid(logits).detach() - x).pow(2).mean()
        return {"recon": per_image.mean(), "mse": mse}
