"""Sparse autoencoder: an overcomplete dictionary of features, few active per input.

The encoder (the chosen backbone) gives one pre-activation per feature. Sparsity is
either TopK (keep the k largest, ReLU them) or ReLU with an L1 penalty. The decoder
is a linear dictionary whose atoms (rows of ``W_dec``) are kept at unit norm, so a
feature's activation is its contribution's size; pixels come out through a sigmoid.
``latent_dim`` is the number of features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from explorer.errors import ConfigError
from explorer.models.backbones import BACKBONES
from explorer.models.base import Autoencoder
from explorer.models.config import ModelConfig, one_of

SPARSITY = ("topk", "l1")


@dataclass
class SAEConfig(ModelConfig):
    kind: ClassVar[str] = "sae"
    latent_dim: int = 1024
    hidden: tuple[int, ...] = ()
    sparsity: str = "topk"
    k: int = 32  # topk: active features per input
    l1_coeff: float = 1e-3  # l1: weight of sum |activation| per input
    # The encoder sees each image minus the training images' mean pixel values (set before training,
    # kept with the weights). Pixels are all positive, so without it the features that happen to point
    # along the mean image win every top-k and most of the dictionary never fires (measured on
    # Fashion-MNIST, 1,024 features, k = 32, 15 epochs: 63 % dead without, about 2 % with, together with
    # the auxiliary loss below). Files from before this option load as False: encoder on raw pixels.
    center_input: bool = True
    # Dead features (silent for dead_steps training steps) get a second chance through an
    # auxiliary loss (Gao et al., 2024, "Scaling and evaluating sparse autoencoders"): their top aux_k
    # pre-activations, added to the live code, must lower the reconstruction error.
    aux_k: int = 256
    aux_coeff: float = 1 / 4
    dead_steps: int = 200
    # Every resample_every steps, features still dead are re-pointed at the worst-reconstructed
    # inputs of the last batch (0 = never: with the auxiliary loss, resampling left more dead features).
    resample_every: int = 0

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        data = dict(data)
        data.setdefault("center_input", False)  # saved before the option existed: the encoder read raw pixels
        return super().from_dict(data)

    def __post_init__(self) -> None:
        super().__post_init__()
        one_of("sparsity", self.sparsity, SPARSITY)
        if self.aux_k < 1 or self.aux_coeff < 0 or self.dead_steps < 1:
            raise ConfigError("aux_k and dead_steps must be >= 1 and aux_coeff >= 0")
        if not 1 <= int(self.k) <= self.latent_dim:
            raise ConfigError(f"k must be between 1 and latent_dim ({self.latent_dim}), got {self.k}")
        if float(self.l1_coeff) < 0:
            raise ConfigError(f"l1_coeff must be >= 0, got {self.l1_coeff}")


class SAE(Autoencoder):
    kind = "sae"
    title = "sparse autoencoder"
    config_class = SAEConfig
    config: SAEConfig
    sparse_codes = True
    code_name = "feature"
    stat_titles = {"l0": "active features (L0)"}
    summary_stats = ("l0",)

    def __init__(self, config: SAEConfig) -> None:
        super().__init__(config)
        self.encoder = BACKBONES[config.backbone].encoder(config, config.latent_dim)
        atoms = torch.randn(config.latent_dim, config.input_size)
        self.W_dec = nn.Parameter(atoms / atoms.norm(dim=1, keepdim=True))  # (F, D), unit rows
        self.b_dec = nn.Parameter(torch.zeros(config.input_size))  # (D,)
        if config.center_input:  # the training images' mean, subtracted before the encoder (see the config)
            self.register_buffer("x_mean", torch.zeros(config.input_shape))  # (C, H, W)
        last = self.encoder[-1]
        if isinstance(last, nn.Linear) and last.in_features == config.input_size:
            # a one-layer encoder starts as the dictionary's transpose, which avoids dead features
            with torch.no_grad():
                last.weight.copy_(self.W_dec)
                last.bias.zero_()

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        body = self.to_body(x)
        if self.config.center_input:
            body = body - self.get_buffer("x_mean")
        return self.encoder(body)  # (B, F)

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        """The encoder's input mean, and the decoder bias that draws the mean image when no feature fires."""
        mean = self.to_body(x.float()).mean(0)  # (C, H, W)
        if self.config.center_input:
            self.get_buffer("x_mean").copy_(mean)
        pixels = x.float().mean(0).flatten().clamp(1e-3, 1 - 1e-3)  # (D,) in [0, 1]
        if self.sigmoid_output and self.config.input_range == "unit":
            self.b_dec.copy_(torch.logit(pixels))

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

    # --- hooks ------------------------------------------------------------------------------
    def image_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        z = self.encode(x)
        return z, {"l0": (z > 0).sum(1).float()}

    def sample_sparsity(self, latents: np.ndarray) -> int | None:
        if self.config.sparsity == "topk":
            return int(self.config.k)
        l0 = float((np.asarray(latents) > 0).sum(axis=1).mean()) if len(latents) else 1.0
        return max(1, min(self.latent_dim, math.ceil(l0)))

    def baseline_components(self, metrics: dict[str, float]) -> int:
        # as many components as the SAE keeps numbers per image: its mean L0, rounded up
        return max(1, math.ceil(metrics.get("l0", float(self.config.k))))

    # --- training -----------------------------------------------------------------------------
    def loss(self, x: torch.Tensor, since_fired: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        pre = self.pre_activations(x)  # (B, F)
        z = self.activate(pre)
        terms = self.recon_terms(self.decode_logits(z), x)
        terms["fired"] = (z > 0).any(0).detach()  # (F,) for the trainer's since-fired counters
        l0 = (z > 0).float().sum(1).mean().detach()
        total = terms["recon"]
        if since_fired is not None and self.training and self.config.aux_coeff > 0:
            dead = since_fired > self.config.dead_steps  # (F,)
            n_dead = int(dead.sum())
            if n_dead:
                # the dead features' largest pre-activations must explain what the live ones miss
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
    def after_step(self, *, step: int, x: torch.Tensor, since_fired: torch.Tensor | None) -> torch.Tensor | None:
        every = self.config.resample_every
        reset = None
        if every and since_fired is not None and step % every == 0:
            reset = since_fired > self.config.dead_steps  # (F,)
            if not self.resample_dead(reset, x):
                reset = None
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))
        return reset

    @torch.no_grad()
    def resample_dead(self, dead: torch.Tensor, x: torch.Tensor) -> int:
        """Point the features in ``dead`` (F,) bool at what the model reconstructs worst in x; returns how many."""
        n_dead = int(dead.sum())
        if not n_dead:
            return 0
        x_hat = self.decode(self.encode(x))
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
        return n_dead
