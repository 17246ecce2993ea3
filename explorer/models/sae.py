"""Sparse autoencoder: an overcomplete dictionary of features, few active per input.

The encoder (the chosen backbone) gives one pre-activation per feature. Sparsity is
either TopK (keep the k largest, ReLU them) or ReLU with an L1 penalty. The decoder
is a linear dictionary whose atoms (rows of ``W_dec``) are kept at unit norm, so a
feature's activation is its contribution's size; pixels come out through a sigmoid.
``latent_dim`` is the number of features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from explorer.errors import ConfigError
from explorer.models.backbones import BACKBONES
from explorer.models.base import Autoencoder, ModelConfig
from explorer.registry import register

SPARSITY = ("topk", "l1")


@dataclass
class SAEConfig(ModelConfig):
    kind: ClassVar[str] = "sae"
    latent_dim: int = 1024
    hidden: tuple[int, ...] = ()
    sparsity: str = "topk"
    k: int = 32  # topk: active features per input
    l1_coeff: float = 1e-3  # l1: weight of sum |activation| per input
    # Dead features (silent for dead_steps training steps) get a second chance through an
    # auxiliary loss: their top aux_k pre-activations, added to the live code, must lower the
    # reconstruction error. Without it most of an overcomplete dictionary never fires.
    aux_k: int = 256
    aux_coeff: float = 1 / 32
    dead_steps: int = 200
    # Every resample_every steps, features still dead are re-pointed at the worst-reconstructed
    # inputs of the last batch (0 = never).
    resample_every: int = 500

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sparsity not in SPARSITY:
            raise ConfigError(f"sparsity must be one of {', '.join(SPARSITY)}, got {self.sparsity!r}")
        if self.aux_k < 1 or self.aux_coeff < 0 or self.dead_steps < 1:
            raise ConfigError("aux_k and dead_steps must be >= 1 and aux_coeff >= 0")
        if not 1 <= int(self.k) <= self.latent_dim:
            raise ConfigError(f"k must be between 1 and latent_dim ({self.latent_dim}), got {self.k}")
        if float(self.l1_coeff) < 0:
            raise ConfigError(f"l1_coeff must be >= 0, got {self.l1_coeff}")


@register
class SAE(Autoencoder):
    kind = "sae"
    config_class = SAEConfig

    def __init__(self, config: SAEConfig) -> None:
        super().__init__(config)
        self.encoder = BACKBONES[config.backbone].encoder(config, config.latent_dim)
        atoms = torch.randn(config.latent_dim, config.input_size)
        self.W_dec = nn.Parameter(atoms / atoms.norm(dim=1, keepdim=True))  # (F, D), unit rows
        self.b_dec = nn.Parameter(torch.zeros(config.input_size))  # (D,)
        # training-only bookkeeping, not saved: steps since each feature last fired
        self.register_buffer("since_fired", torch.zeros(config.latent_dim), persistent=False)
        self._steps = 0
        self._last_batch: tuple[torch.Tensor, torch.Tensor] | None = None  # (x, x_hat) for resampling
        last = self.encoder[-1]
        if isinstance(last, nn.Linear) and last.in_features == config.input_size:
            # a one-layer encoder starts as the dictionary's transpose, which avoids dead features
            with torch.no_grad():
                last.weight.copy_(self.W_dec)
                last.bias.zero_()

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)  # (B, F)

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        if self.config.sparsity == "topk":
            values, idx = pre.topk(self.config.k, dim=-1)
            return torch.zeros_like(pre).scatter(-1, idx, torch.relu(values))
        return torch.relu(pre)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations (B, F); mostly zeros."""
        return self.activate(self.pre_activations(x))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        out = z @ self.W_dec + self.b_dec  # (B, D)
        return out.view(-1, *self.config.input_shape)

    @property
    def atoms(self) -> torch.Tensor:
        """Decoder atoms, one unit-norm row per feature, (F, D)."""
        return self.W_dec

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        pre = self.pre_activations(x)  # (B, F)
        z = self.activate(pre)
        terms = self.recon_terms(self.decode_logits(z), x)
        l0 = (z > 0).float().sum(1).mean().detach()
        total = terms["recon"]
        if self.training:
            self._last_batch = (x.detach(), torch.sigmoid(self.decode_logits(z.detach())).detach())
        if self.training and self.config.aux_coeff > 0:
            with torch.no_grad():
                self.since_fired += 1
                self.since_fired[(z > 0).any(0)] = 0
            dead = self.since_fired > self.config.dead_steps  # (F,)
            n_dead = int(dead.sum())
            if n_dead:
                masked = pre.masked_fill(~dead, float("-inf"))
                values, idx = masked.topk(min(self.config.aux_k, n_dead), dim=-1)
                z_aux = torch.zeros_like(pre).scatter(-1, idx, torch.relu(values))
                aux = self.recon_terms(self.decode_logits(z.detach() + z_aux), x)["recon"]
                total = total + self.config.aux_coeff * aux
                terms["dead"] = torch.tensor(float(n_dead) / self.latent_dim)
        if self.config.sparsity == "l1":
            l1 = z.abs().sum(1).mean()
            total = total + self.config.l1_coeff * l1
            return {"loss": total, "l1": l1, "l0": l0, **terms}
        return {"loss": total, "l0": l0, **terms}

    @torch.no_grad()
    def post_step(self) -> None:
        self._steps += 1
        every = self.config.resample_every
        if every and self._steps % every == 0:
            self.resample_dead()
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def resample_dead(self) -> int:
        """Point dead features at what the model reconstructs worst; returns how many were reset."""
        dead = self.since_fired > self.config.dead_steps
        n_dead = int(dead.sum())
        if not n_dead or self._last_batch is None:
            return 0
        x, x_hat = self._last_batch
        resid = (x - x_hat).flatten(1).float()  # (B, D): what the live features miss
        score = resid.pow(2).sum(1)
        if float(score.sum()) <= 0:
            return 0
        pick = torch.multinomial(score / score.sum(), n_dead, replacement=True)
        atoms = resid[pick] / resid[pick].norm(dim=1, keepdim=True).clamp_min(1e-8)  # (n_dead, D)
        self.W_dec[dead] = atoms.to(self.W_dec.dtype)
        last = self.encoder[-1]
        if isinstance(last, nn.Linear) and last.in_features == self.config.input_size:
            alive = ~dead
            scale = last.weight[alive].norm(dim=1).mean() * 0.2 if alive.any() else 0.2
            last.weight[dead] = atoms.to(last.weight.dtype) * scale
            last.bias[dead] = 0.0
        self.since_fired[dead] = 0
        return n_dead
