"""How good is a model: reconstruction error, KL, sparsity, a linear probe, and the PCA baseline."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from explorer.models.base import Autoencoder


def _batches(x: np.ndarray | torch.Tensor, batch_size: int):
    for i in range(0, len(x), batch_size):
        yield x[i : i + batch_size]


@dataclass
class PerImage:
    """One pass of a model over images: codes and per-image errors and statistics, numpy."""

    codes: np.ndarray  # (N, L) float32: what ``encode`` gives (a VAE's posterior means)
    mse: np.ndarray  # (N,) per-pixel squared error, averaged over each image's pixels
    bce: np.ndarray  # (N,) per-pixel binary cross-entropy, averaged likewise
    stats: dict[str, np.ndarray] = field(default_factory=dict)  # the model's summary_stats, each (N,)


@torch.no_grad()
def per_image(model: Autoencoder, x: torch.Tensor, *, batch_size: int = 1000) -> PerImage:
    """Codes, reconstruction errors and the model's summary statistics of every image of x (N, C, H, W) in [0, 1]."""
    model.eval()
    device = model.device
    parts: dict[str, list[np.ndarray]] = {"codes": [], "mse": [], "bce": [], **{k: [] for k in model.summary_stats}}
    for xb in _batches(x, batch_size):
        xb = xb.to(device, dtype=torch.float32)
        z, stats = model.image_stats(xb)  # (B, L), {name: (B,)}
        logits = model.decode_logits(z).float()
        x_hat = model.to_pixels(logits)
        parts["codes"].append(z.float().cpu().numpy())
        parts["mse"].append((x_hat - xb).pow(2).mean(dim=(1, 2, 3)).cpu().numpy())
        parts["bce"].append(model.pixel_bce(logits, xb).mean(dim=(1, 2, 3)).cpu().numpy())
        for name in model.summary_stats:
            parts[name].append(stats[name].float().cpu().numpy())
    joined = {k: np.concatenate(v) if v else np.zeros(0, np.float32) for k, v in parts.items()}
    codes = joined.pop("codes").reshape(-1, model.latent_dim)
    return PerImage(codes, joined.pop("mse"), joined.pop("bce"), joined)


def summarize(model: Autoencoder, result: PerImage) -> dict[str, float]:
    """The means of a ``per_image`` pass, named as ``evaluate`` names them."""
    n = len(result.mse)
    mean = lambda v: float(np.mean(v, dtype=np.float64)) if n else 0.0  # noqa: E731
    out = {"mse": mean(result.mse), "bce": mean(result.bce), **{k: mean(v) for k, v in result.stats.items()}}
    if model.sparse_codes and n:
        out["dead_fraction"] = 1.0 - float((result.codes > 0).any(0).mean())
    return out


def evaluate(model: Autoencoder, x: torch.Tensor, *, batch_size: int = 1000) -> dict[str, float]:
    """Test-split metrics of a model on float images x (N, C, H, W) in [0, 1].

    mse: per-pixel squared error; bce: per-pixel binary cross-entropy; plus the mean of each
    statistic the model names in ``summary_stats`` (a VAE's KL in nats, an SAE's L0); for sparse
    codes, dead_fraction: the share of code units never active on x.
    """
    return summarize(model, per_image(model, x, batch_size=batch_size))


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
    # Columns constant on the train codes (an SAE's dead features: most of them) standardise to zero,
    # so their weights stay zero: leaving them out gives the same probe, 3x faster on the shipped SAE.
    varies = z_train.std(axis=0) > 0
    if varies.any():
        z_train, z_test = z_train[:, varies], z_test[:, varies]
    scaler = StandardScaler().fit(z_train)
    clf = LogisticRegression(max_iter=300).fit(scaler.transform(z_train), y_train)
    return float(clf.score(scaler.transform(z_test), y_test))


def pca_baseline_mse(train_flat: np.ndarray, test_flat: np.ndarray, n_components: int) -> float:
    """Per-pixel MSE of PCA with n_components fitted on train, reconstructing test (both (N, D) in [0, 1])."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=n_components, svd_solver="randomized", random_state=0).fit(train_flat)
    recon = pca.inverse_transform(pca.transform(test_flat))
    return float(np.mean((recon - test_flat) ** 2))


LIKELIHOOD_SAMPLES = 100  # k of the importance-sampled log-likelihood (Burda et al. use 5,000; 100 is within ~1 nat)
LIKELIHOOD_IMAGES = 1000  # images it is estimated on: k decodes each


def vae_likelihood(
    model: Autoencoder,
    x: torch.Tensor,
    *,
    k: int = LIKELIHOOD_SAMPLES,
    max_images: int = LIKELIHOOD_IMAGES,
    seed: int = 0,
) -> dict[str, float | int] | None:
    """A variational model's evidence lower bound and its importance-sampled log-likelihood, in nats per image.

    The decoder is read as a Bernoulli per pixel on [0, 1] (the binary cross-entropy the explorer trains with):
    log p(x|z) = -sum of the pixels' BCE. ELBO = E_q[log p(x|z)] - KL(q(z|x) || N(0, I)), the expectation from one
    draw per image, the KL exact. log p(x) ~ log mean_i p(x|z_i) p(z_i) / q(z_i|x) over k draws z_i ~ q(z|x)
    (Burda et al., 2016); it is never below the ELBO in expectation and approaches log p(x) as k grows.
    Both on the first ``max_images`` of x (N, C, H, W). None for a model without a posterior."""
    import torch

    posterior = getattr(model, "posterior", None)
    if not model.has_prior or posterior is None:
        return None
    x = x[:max_images]
    gen = torch.Generator().manual_seed(seed)
    log2pi = math.log(2 * math.pi)
    elbo, iw = [], []
    with torch.no_grad():
        for start in range(0, len(x), 100):
            xb = x[start : start + 100].to(model.device, dtype=torch.float32)  # (B, C, H, W)
            mu, logvar = (t.double() for t in posterior(xb))  # (B, L)
            std = (0.5 * logvar).exp()
            eps = torch.randn((k, *mu.shape), generator=gen, dtype=torch.float64).to(mu.device)  # (k, B, L)
            z = mu + std * eps
            # log q(z|x) and log p(z), each (k, B)
            log_q = (-0.5 * (eps.pow(2) + log2pi) - 0.5 * logvar).sum(-1)
            log_prior = (-0.5 * (z.pow(2) + log2pi)).sum(-1)
            logits = model.decode_logits(z.reshape(-1, z.shape[-1]).to(dtype=model.dtype)).float()
            target = xb.repeat(k, 1, 1, 1)
            log_px = -model.pixel_bce(logits, target).flatten(1).sum(1).double().reshape(k, len(xb))  # (k, B)
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)  # (B,)
            elbo.append((log_px[0] - kl).cpu())
            iw.append((torch.logsumexp(log_px + log_prior - log_q, dim=0) - math.log(k)).cpu())
    return {
        "elbo": float(torch.cat(elbo).mean()),
        "log_likelihood": float(torch.cat(iw).mean()),
        "likelihood_k": int(k),
        "likelihood_images": int(len(x)),
    }
