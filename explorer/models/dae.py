"""Denoising autoencoder: sees a corrupted input while training, reconstructs the clean one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from explorer.errors import ConfigError
from explorer.models.ae import AE, AEConfig
from explorer.models.config import in_range, one_of

NOISES = ("gaussian", "salt_pepper")


@dataclass
class DAEConfig(AEConfig):
    kind: ClassVar[str] = "dae"
    # gaussian: std of added noise; salt_pepper: fraction of pixels set to 0 or 1.
    noise: str = "gaussian"
    noise_level: float = 0.3

    def __post_init__(self) -> None:
        super().__post_init__()
        one_of("noise", self.noise, NOISES)
        in_range("noise_level", self.noise_level, 0.0, 1.0)


class DAE(AE):
    kind = "dae"
    title = "denoising autoencoder"
    config_class = DAEConfig
    config: DAEConfig

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        return corrupt(x, self.config.noise, self.config.noise_level)


def corrupt(x: torch.Tensor, noise: str, level: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Return a corrupted copy of x (pixels in [0, 1]); also used by the app's denoising view."""
    if noise == "gaussian":
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (x + level * eps).clamp(0.0, 1.0)
    if noise == "salt_pepper":
        u = torch.rand(x.shape, generator=generator, device=x.device)
        salt = torch.rand(x.shape, generator=generator, device=x.device) < 0.5
        noisy = torch.where(salt, torch.ones_like(x), torch.zeros_like(x))
        return torch.where(u < level, noisy, x)
    raise ConfigError(f"noise must be one of {', '.join(NOISES)}, got {noise!r}")
