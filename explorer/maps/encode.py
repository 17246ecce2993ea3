"""Encode a dataset once: latents plus the per-image numbers the map can be coloured by."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from explorer.maps.projection import Progress, _no_progress

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


def encode_dataset(model, images: np.ndarray, *, batch_size: int = 500, progress: Progress = _no_progress) -> Encoded:
    """Latents, reconstruction errors and the model's per-image statistics of uint8 images (N, H, W[, C])."""
    import torch

    from explorer.data import to_float

    device = model.device
    latents, errors = [], []
    stats: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(to_float(images[start : start + batch_size])).to(device)  # (B, C, H, W)
            z, batch_stats = model.image_stats(x)  # (B, L), {name: (B,)}
            x_hat = model.decode(z)
            errors.append((x_hat - x).pow(2).mean(dim=(1, 2, 3)).cpu().numpy())
            latents.append(z.float().cpu().numpy())
            for name, values in batch_stats.items():
                stats.setdefault(name, []).append(values.float().cpu().numpy())
            done = min(start + batch_size, len(images))
            progress(done / max(1, len(images)), f"encoded {done}")
    empty = np.zeros((0, model.latent_dim), np.float32)
    return Encoded(
        latents=np.concatenate(latents).astype(np.float32) if latents else empty,
        recon_error=np.concatenate(errors).astype(np.float32) if errors else np.zeros(0, np.float32),
        stats={k: np.concatenate(v).astype(np.float32) for k, v in stats.items()},
        titles=dict(model.stat_titles),
        code_name=model.code_name,
    )
