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

    mse: per-pixel squared error; bce: per-pixel binary cross-entropy; vae adds kl
    (nats per image); sae adds l0 (mean active features) and dead_fraction (features
    never active on x).
    """
    model.eval()
    device = next(model.parameters()).device
    sums = {"mse": 0.0, "bce": 0.0, "kl": 0.0, "l0": 0.0}
    ever_active = None
    for xb in _batches(x, batch_size):
        xb = xb.to(device, dtype=torch.float32)
        if model.kind == "vae":
            mu, logvar = model.posterior(xb)
            z = mu
            sums["kl"] += float(model.kl(mu, logvar).sum())
        else:
            z = model.encode(xb)
        logits = model.decode_logits(z).float()
        x_hat = torch.sigmoid(logits)
        sums["mse"] += float((x_hat - xb).pow(2).mean(dim=(1, 2, 3)).sum())
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, xb, reduction="none")
        sums["bce"] += float(bce.mean(dim=(1, 2, 3)).sum())
        if model.kind == "sae":
            active = z > 0
            sums["l0"] += float(active.sum())
            hit = active.any(0)
            ever_active = hit if ever_active is None else ever_active | hit
    n = len(x)
    out = {"mse": sums["mse"] / n, "bce": sums["bce"] / n}
    if model.kind == "vae":
        out["kl"] = sums["kl"] / n
    if model.kind == "sae" and ever_active is not None:
        out["l0"] = sums["l0"] / n
        out["dead_fraction"] = 1.0 - float(ever_active.float().mean())
    return out


@torch.no_grad()
def encode_all(model: Autoencoder, x: torch.Tensor, *, batch_size: int = 1000) -> np.ndarray:
    """Latents of every image, (N, L) float32."""
    device = next(model.parameters()).device
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
