"""Encode images: the one batched loop over a model, and a dataset's latents plus the per-image numbers a map is coloured by.

Every pass of a model over many images (maps, metrics, ops, probes, training's report) goes through
``map_batches``, so each batch reaches the model on its device and in its dtype the same way.
``Encoded`` is read by pages that never run a model: torch is imported inside the functions that run one.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from explorer.data import to_float
from explorer.maps.neighbours import Progress, no_progress

if TYPE_CHECKING:
    import torch

    from explorer.models.base import Autoencoder

T = TypeVar("T")

LATENTS_VERSION = 1
_TITLES = "stat_titles"  # (K, 2) strings: statistic name, display title
_CODE_NAME = "code_name"


@dataclass
class Encoded:
    """Latents (N, L) float32 (a VAE's posterior means), per-image reconstruction MSE (N,), and the
    model's per-image statistics (each (N,), e.g. a VAE's sigma and KL, an SAE's L0) with their titles."""

    latents: np.ndarray
    recon_error: np.ndarray
    stats: dict[str, np.ndarray] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)
    code_name: str = "latent dimension"

    def title(self, name: str) -> str:
        return self.titles.get(name, name)

    def fields(self) -> dict[str, np.ndarray]:
        """Every array, flat and named, for an ``np.savez`` archive (read back by ``from_fields``)."""
        out = {"latents": self.latents, "recon_error": self.recon_error, **self.stats}
        out[_TITLES] = np.array([[k, self.title(k)] for k in self.stats], dtype=str).reshape(-1, 2)
        out[_CODE_NAME] = np.array(self.code_name)
        return out

    @classmethod
    def from_fields(cls, arrays: dict[str, np.ndarray]) -> Encoded:
        arrays = dict(arrays)
        titles = {str(k): str(v) for k, v in arrays.pop(_TITLES, np.zeros((0, 2), str))}
        code_name = str(arrays.pop(_CODE_NAME, "latent dimension"))
        latents, recon = arrays.pop("latents"), arrays.pop("recon_error")
        return cls(latents, recon, arrays, titles, code_name)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        arrays: dict[str, Any] = {"version": np.array(LATENTS_VERSION), **self.fields()}
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Encoded:
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            if int(f["version"]) != LATENTS_VERSION:
                raise ValueError("latents cache from another version")
            return cls.from_fields({k: f[k] for k in f.files if k != "version"})


def map_batches(
    model: Autoencoder,
    images: np.ndarray | torch.Tensor,
    step: Callable[[torch.Tensor], T],
    *,
    batch_size: int = 500,
    progress: Progress = no_progress,
) -> list[T]:
    """``step(x)`` on each batch x (B, C, H, W) of images, on the model's device and in its dtype, without gradients.

    ``images``: uint8 as datasets hold them, (N, H, W) or (N, H, W, C), converted a batch at a time; or
    float pixels in [0, 1] already in the model's layout (N, C, H, W), numpy or torch. Returns the
    step's results in order. The model's train/eval mode is left alone (pages may share one model)."""
    import torch

    n, size = len(images), max(1, int(batch_size))
    out = []
    with torch.no_grad():
        for start in range(0, n, size):
            chunk = images[start : start + size]
            if isinstance(chunk, np.ndarray) and chunk.dtype == np.uint8:
                chunk = to_float(chunk)  # (B, C, H, W) float32 in [0, 1]
            x = torch.as_tensor(chunk).to(model.device, dtype=model.dtype)  # (B, C, H, W)
            out.append(step(x))
            done = min(start + size, n)
            progress(done / max(1, n), f"encoded {done:,}")
    return out


def encode(model: Autoencoder, images: np.ndarray | torch.Tensor, *, batch_size: int = 500) -> np.ndarray:
    """Codes of images (see ``map_batches`` for the layouts taken): (N, L) float32, a VAE's posterior means."""
    parts = map_batches(model, images, lambda x: model.encode(x).float().cpu().numpy(), batch_size=batch_size)
    return np.concatenate(parts) if parts else np.zeros((0, model.latent_dim), np.float32)


@dataclass
class PerImage:
    """One pass of a model over images: codes and per-image errors and statistics, numpy."""

    codes: np.ndarray  # (N, L) float32: what ``encode`` gives (a VAE's posterior means)
    mse: np.ndarray  # (N,) per-pixel squared error, averaged over each image's pixels
    bce: np.ndarray  # (N,) per-pixel binary cross-entropy, averaged likewise
    stats: dict[str, np.ndarray] = field(default_factory=dict)  # the model's summary_stats, each (N,)


def per_image(
    model: Autoencoder, images: np.ndarray | torch.Tensor, *, batch_size: int = 500, progress: Progress = no_progress
) -> PerImage:
    """Codes, reconstruction errors against the [0, 1] pixels and the model's per-image statistics of images."""

    def step(x: torch.Tensor) -> dict[str, np.ndarray]:
        z, stats = model.image_stats(x)  # (B, L), {name: (B,)}
        logits = model.decode_logits(z).float()
        pixels = x.float()  # the errors are measured in float32 whatever the model computes in
        x_hat = model.to_pixels(logits)
        return {
            "codes": z.float().cpu().numpy(),
            "mse": (x_hat - pixels).pow(2).mean(dim=(1, 2, 3)).cpu().numpy(),
            "bce": model.pixel_bce(logits, pixels).mean(dim=(1, 2, 3)).cpu().numpy(),
            **{name: values.float().cpu().numpy() for name, values in stats.items()},
        }

    parts = map_batches(model, images, step, batch_size=batch_size, progress=progress)
    names = sorted({k for p in parts for k in p} - {"codes", "mse", "bce"})
    joined = {k: np.concatenate([p[k] for p in parts]).astype(np.float32) for k in ("mse", "bce", *names) if parts}
    empty = np.zeros(0, np.float32)
    codes = np.concatenate([p["codes"] for p in parts]) if parts else np.zeros((0, model.latent_dim), np.float32)
    return PerImage(
        codes.astype(np.float32).reshape(-1, model.latent_dim),
        joined.pop("mse", empty),
        joined.pop("bce", empty),
        joined,
    )


def encode_dataset(
    model: Autoencoder, images: np.ndarray, *, batch_size: int = 500, progress: Progress = no_progress
) -> Encoded:
    """Latents, reconstruction errors and the model's per-image statistics of uint8 images (N, H, W[, C])."""
    run = per_image(model, images, batch_size=batch_size, progress=progress)
    return Encoded(
        latents=run.codes,
        recon_error=run.mse,
        stats=run.stats,
        titles=dict(model.stat_titles),
        code_name=model.code_name,
    )
