"""How good is a model: reconstruction error, KL, sparsity, a linear probe, and the PCA baseline."""

from __future__ import annotations

import numpy as np
import torch

from explorer.models.base import Autoencoder


def _batches(x: np.ndarray | torch.Tensor, batch_size: int):
    for i in range(0, len(x), batch_size):
        yield x[i : i + batch_size]


@torch.no_grad()
def evaluate(model: Autoencoder, x: torch.Tensor, *, batch_size: int = 1000) -> dict[str, float]:
    """Test-split metrics of a model on float images x (N, C, H, W) in [0, 1].

    mse: per-pixel squared error; bce: per-pixel binary cross-entropy; plus the mean of each
    statistic the model names in ``summary_stats`` (a VAE's KL in nats, an SAE's L0); for sparse
    codes, dead_fraction: the share of code units never active on x.
    """
    model.eval()
    device = model.device
    sums = {"mse": 0.0, "bce": 0.0, **{name: 0.0 for name in model.summary_stats}}
    ever_active = torch.zeros(model.latent_dim, dtype=torch.bool, device=device)  # (L,)
    for xb in _batches(x, batch_size):
        xb = xb.to(device, dtype=torch.float32)
        z, stats = model.image_stats(xb)  # (B, L), {name: (B,)}
        logits = model.decode_logits(z).float()
        x_hat = model.to_pixels(logits)
        sums["mse"] += float((x_hat - xb).pow(2).mean(dim=(1, 2, 3)).sum())
        sums["bce"] += float(model.pixel_bce(logits, xb).mean(dim=(1, 2, 3)).sum())
        for name in model.summary_stats:
            sums[name] += float(stats[name].sum())
        ever_active |= (z > 0).any(0)
    n = max(1, len(x))
    out = {k: v / n for k, v in sums.items()}
    if model.sparse_codes and len(x):
        out["dead_fraction"] = 1.0 - float(ever_active.float().mean())
    return out


@torch.no_grad()
def encode_all(model: Autoencoder, x: torch.Tensor, *, batch_size: int = 1000) -> np.ndarray:
    """Latents of every image, (N, L) float32."""
    device = model.device
    parts = [model.encode(xb.to(device, dtype=torch.float32)).float().cpu().numpy() for xb in _batches(x, batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, model.latent_dim), np.float32)


def probe_accuracy(
    z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray, *, max_train: int = 10000
) -> float:
    """Accuracy of a logistic-regression probe trained on latents: how much class information they keep."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    keep = y_train >= 0
    z_train, y_train = z_train[keep][:max_train], y_train[keep][:max_train]
    scaler = StandardScaler().fit(z_train)
    clf = LogisticRegression(max_iter=300).fit(scaler.transform(z_train), y_train)
    return float(clf.score(scaler.transform(z_test), y_test))


def pca_baseline_mse(train_flat: np.ndarray, test_flat: np.ndarray, n_components: int) -> float:
    """Per-pixel MSE of PCA with n_components fitted on train, reconstructing test (both (N, D) in [0, 1])."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=n_components, svd_solver="randomized", random_state=0).fit(train_flat)
    recon = pca.inverse_transform(pca.transform(test_flat))
    return float(np.mean((recon - test_flat) ** 2))
