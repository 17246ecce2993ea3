"""Variational autoencoder (beta-VAE): a Gaussian posterior per input, a standard normal prior."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from explorer.models.backbones import BACKBONES
from explorer.models.base import Autoencoder
from explorer.models.config import ModelConfig, in_range


@dataclass
class VAEConfig(ModelConfig):
    kind: ClassVar[str] = "vae"
    beta: float = 1.0  # weight of the KL term; 1 is the evidence lower bound

    def __post_init__(self) -> None:
        super().__post_init__()
        in_range("beta", self.beta, 0.0, 1000.0)  # 1 is the evidence lower bound


class VAE(Autoencoder):
    kind = "vae"
    title = "variational autoencoder"
    config_class = VAEConfig
    config: VAEConfig
    encoder_heads = 2
    has_prior = True
    stat_titles = {"sigma": "posterior σ", "kl": "KL (nats)"}
    summary_stats = ("kl",)

    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        body = BACKBONES[config.backbone]
        self.encoder = body.encoder(config, self.encoder_heads * config.latent_dim)  # -> (mu, logvar)
        self.decoder = body.decoder(config)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z|x), each (B, L)."""
        mu, logvar = self.encoder(self.to_body(x)).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]  # the posterior mean: deterministic

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    @staticmethod
    def kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) || N(0, I)) per input, (B,)."""
        return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)

    def image_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mu, logvar = self.posterior(x)
        sigma = (0.5 * logvar).exp().mean(1)  # (B,) mean posterior std over dimensions
        return mu, {"sigma": sigma, "kl": self.kl(mu, logvar)}

    def loss(self, x: torch.Tensor, since_fired: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        mu, logvar = self.posterior(x)
        # reparameterisation: z = mu + sigma * eps keeps the sample differentiable in mu, sigma
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu) if self.training else mu
        terms = self.recon_terms(self.decode_logits(z), x)
        kl = self.kl(mu.float(), logvar.float()).mean()
        return {"loss": terms["recon"] + self.config.beta * kl, "kl": kl, **terms}

    def sample_prior(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """n latent vectors from the prior N(0, temperature^2 I), (n, L). Decode them to get images."""
        eps = torch.randn((n, self.latent_dim), generator=generator, device="cpu")  # CPU: same draws on any device
        return (temperature * eps).to(self.device)
