"""Undercomplete autoencoder: a bottleneck narrower than the input, trained to reconstruct it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from explorer.models.backbones import BACKBONES
from explorer.models.base import Autoencoder
from explorer.models.config import ModelConfig


@dataclass
class AEConfig(ModelConfig):
    kind: ClassVar[str] = "ae"


class AE(Autoencoder):
    kind = "ae"
    title = "autoencoder"
    config_class = AEConfig
    config: AEConfig

    def __init__(self, config: AEConfig) -> None:
        super().__init__(config)
        body = BACKBONES[config.backbone]
        self.encoder = body.encoder(config, config.latent_dim)
        self.decoder = body.decoder(config)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.to_body(x))  # (B, L)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)  # (B, C, H, W)

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        """Training-time input corruption; none for a plain autoencoder."""
        return x

    def loss(self, x: torch.Tensor, since_fired: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        x_in = self.corrupt(x) if self.training else x
        terms = self.recon_terms(self.decode_logits(self.encode(x_in)), x)
        return {"loss": terms["recon"], **terms}
