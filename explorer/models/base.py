"""The model contract every kind answers, and the hooks through which the rest of the explorer
asks a model what it can do instead of asking for its kind's name.

Contract (read by the app, the CLI and the tests):

- ``encode(x) -> z``: deterministic; x is (B, C, H, W) float in [0, 1], z is (B, latent_dim).
- ``decode(z) -> x_hat``: (B, C, H, W) with pixels in [0, 1].
- ``loss(x, since_fired=None) -> dict``: named terms; ``"loss"`` is what the optimiser minimises.
- ``latent_dim``, ``kind``, ``input_shape`` (C, H, W).

Hooks (defaults here; a kind overrides what differs):

- ``image_stats(x)``: codes plus per-image statistics (a VAE's sigma and KL, an SAE's L0); their
  display names in ``stat_titles``; the ones averaged into test metrics in ``summary_stats``.
- ``has_prior`` / ``sample_prior``: whether samples come from a prior or from fitted data.
- ``sparse_codes`` / ``sample_sparsity``: codes that are non-negative and mostly zero, and how
  many non-zeros a sampled code may keep.
- ``title``: the kind in words, as the UI names it ("variational autoencoder").
- ``is_variational(config)``: whether a model of this config has a posterior (a mean and a spread per code)
  to report, answered from the config alone, before any weights are loaded.
- ``code_name``: what one coordinate of a code is called in the UI ("latent dimension", "feature").
- ``baseline_components``: how many PCA components make a fair comparison.
- ``init_from_data``: called by the trainer once before training, with the training images.
- ``after_step``: called by the trainer after every optimiser step, with the trainer's counters.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from explorer.errors import ConfigError
from explorer.models.config import RECON_LOSSES, ModelConfig

__all__ = ["RECON_LOSSES", "Autoencoder", "ModelConfig"]


class Autoencoder(nn.Module):
    """Base class. Subclasses set ``kind`` and ``config_class``; ``explorer.models`` lists them."""

    kind: ClassVar[str] = ""
    title: ClassVar[str] = ""
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    # Plain class attributes, not ClassVars: a model whose graph decides (an imported ONNX pair) sets
    # them per instance. The encoder's last layer emits encoder_heads x latent_dim numbers (a VAE: mean
    # and log-variance).
    encoder_heads: int = 1
    has_prior: bool = False
    sparse_codes: bool = False
    code_name: str = "latent dimension"
    # False for kinds that are imported, never trained here (the train command does not offer them)
    trainable: ClassVar[bool] = True
    stat_titles: dict[str, str] = {}
    summary_stats: tuple[str, ...] = ()

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

    @property
    def device(self) -> torch.device:
        """Where inputs go: the device of the weights (the CPU for a model without torch weights)."""
        first = next(iter(self.parameters()), None)
        return first.device if first is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The float type inputs are cast to: that of the weights (float32 without torch weights)."""
        first = next(iter(self.parameters()), None)
        return first.dtype if first is not None else torch.float32

    # --- the contract -------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.to_pixels(self.decode_logits(z))

    # --- the pixel scale the weights expect ---------------------------------------------------
    @property
    def sigmoid_output(self) -> bool:
        """True when decode_logits are logits of [0, 1] pixels (every model trained here)."""
        return self.config.output_activation == "sigmoid" and self.config.input_range == "unit"

    def to_body(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] -> the scale the encoder was trained on."""
        return x if self.config.input_range == "unit" else 2.0 * x - 1.0

    def to_pixels(self, y: torch.Tensor) -> torch.Tensor:
        """The decoder's last layer output -> pixels in [0, 1]."""
        act = self.config.output_activation
        out = torch.sigmoid(y) if act == "sigmoid" else torch.tanh(y) if act == "tanh" else y
        if self.config.input_range == "symmetric":
            out = 0.5 * (out + 1.0)
        return out if act == "sigmoid" and self.config.input_range == "unit" else out.clamp(0.0, 1.0)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def loss(self, x: torch.Tensor, since_fired: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Training terms. ``since_fired`` (F,): steps since each code unit was last active, kept by the
        trainer for models with sparse codes; such a model adds a ``"fired"`` term, (F,) bool."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, since_fired: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        # forward() is the loss so that DistributedDataParallel sees the whole step.
        return self.loss(x, since_fired)

    # --- hooks ----------------------------------------------------------------------------
    @classmethod
    def is_variational(cls, config: dict[str, Any]) -> bool:
        """From a checkpoint's config dict (its metadata; no weights loaded): does the model have a posterior?"""
        return bool(cls.has_prior)

    def image_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Codes (B, L) and per-image statistics, each (B,), named as in ``stat_titles``."""
        return self.encode(x), {}

    def sample_prior(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """n latents (n, L) from the model's prior; only kinds with ``has_prior`` have one."""
        raise ConfigError(f"a {self.kind} model has no prior to sample from")

    def sample_sparsity(self, latents: np.ndarray) -> int | None:
        """For sparse codes: how many non-zeros a sampled code keeps, given encoded data (N, L); else None."""
        return None

    def baseline_components(self, metrics: dict[str, float]) -> int:
        """PCA components that make a fair comparison: as many as the code has numbers."""
        return self.latent_dim

    def init_from_data(self, x: torch.Tensor) -> None:
        """Called once before training (not on a resume) with training images x (N, C, H, W) in [0, 1]: a kind
        whose good starting point depends on the data sets it here (the SAE: its input mean and decoder bias)."""

    def after_step(self, *, step: int, x: torch.Tensor, since_fired: torch.Tensor | None) -> torch.Tensor | None:
        """Called after optimiser step ``step`` on batch x (the SAE renormalises and resamples here).

        Returns the code units it re-initialised, (L,) bool, so the trainer restarts their counters; or None."""
        return None

    # --- shared helpers -----------------------------------------------------------------
    def recon_terms(self, logits: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reconstruction loss summed over pixels, averaged over the batch, plus per-pixel MSE."""
        logits = logits.float()
        pixels = self.to_pixels(logits)
        if self.config.recon_loss == "bce":
            per_image = self.pixel_bce(logits, x).flatten(1).sum(1)
        else:
            per_image = (pixels - x).pow(2).flatten(1).sum(1)
        mse = (pixels.detach() - x).pow(2).mean()
        return {"recon": per_image.mean(), "mse": mse}

    def pixel_bce(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel binary cross-entropy of the reconstruction, same shape as x."""
        if self.sigmoid_output:  # exact even where the sigmoid saturates
            return F.binary_cross_entropy_with_logits(logits.float(), x, reduction="none")
        return F.binary_cross_entropy(self.to_pixels(logits.float()).clamp(1e-6, 1 - 1e-6), x, reduction="none")
