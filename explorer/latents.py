"""Encode a dataset once: latents plus the per-image numbers the map can be coloured by."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from explorer.projection import Progress, _no_progress

LATENTS_VERSION = 1


@dataclass
class Encoded:
    latents: np.ndarray  # (N, L) float32; a VAE's posterior means
    recon_error: np.ndarray  # (N,) per-pixel MSE of each reconstruction
    sigma: np.ndarray | None = None  # vae: mean posterior std over dimensions, (N,)
    kl: np.ndarray | None = None  # vae: KL(q(z|x) || p(z)) in nats, (N,)
    l0: np.ndarray | None = None  # sae: active features, (N,)

    def fields(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in vars(self).items() if v is not None}

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, version=np.array(LATENTS_VERSION), **self.fields())
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Encoded:
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            if int(f["version"]) != LATENTS_VERSION:
                raise ValueError("latents cache from another version")
            return cls(**{k: f[k] for k in f.files if k != "version"})


def encode_dataset(model, images: np.ndarray, *, batch_size: int = 500, progress: Progress = _no_progress) -> Encoded:
    """Latents and reconstruction errors of uint8 images (N, H, W[, C]) in batches."""
    import torch

    from explorer.data import to_float

    device = next(model.parameters()).device
    parts: dict[str, list[np.ndarray]] = {"latents": [], "recon_error": [], "sigma": [], "kl": [], "l0": []}
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(to_float(images[start : start + batch_size])).to(device)  # (B, C, H, W)
            if model.kind == "vae":
                mu, logvar = model.posterior(x)
                z = mu
                parts["sigma"].append((0.5 * logvar).exp().mean(1).cpu().numpy())
                parts["kl"].append(model.kl(mu, logvar).cpu().numpy())
            else:
                z = model.encode(x)
            if model.kind == "sae":
                parts["l0"].append((z > 0).sum(1).float().cpu().numpy())
            x_hat = model.decode(z)
            parts["recon_error"].append((x_hat - x).pow(2).mean(dim=(1, 2, 3)).cpu().numpy())
            parts["latents"].append(z.float().cpu().numpy())
            progress(min(1.0, (start + batch_size) / len(images)), f"encoded {min(start + batch_size, len(images))}")
    out = {k: np.concatenate(v).astype(np.float32) for k, v in parts.items() if v}
    return Encoded(**out)
