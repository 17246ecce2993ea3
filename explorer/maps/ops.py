"""Latent-space operations the app runs on a model: interpolate, decode, sample, traverse, find neighbours.

Arrays cross this module's boundary as numpy (latents float32, images uint8); torch is
used only inside, for the model. Every random operation takes a seed and its own
generator, so the same call gives the same answer on every rerun of the UI.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from explorer.data import to_float
from explorer.errors import ExplorerError
from explorer.maps.encode import map_batches
from explorer.maps.projection import knn
from explorer.models.base import Autoencoder

METHODS = ("lerp", "slerp")
MAX_STEPS = 256
MAX_SAMPLES = 100_000
_EPS = 1e-8


class LatentError(ExplorerError):
    """A latent-space operation got arguments it cannot use (bad sizes, steps, dimension)."""


# ----------------------------------------------------------------------------------- interpolation


def _vectors(z0: np.ndarray, z1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(z0, dtype=np.float64)
    b = np.asarray(z1, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise LatentError(f"interpolation needs two 1-D latents of the same length, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise LatentError("interpolation endpoints must be finite")
    return a, b


def _pin_endpoints(out: np.ndarray, t: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # rounding in the formulas can move the endpoints by an ulp; t == 0 / 1 must give z0 / z1 exactly
    out[t == 0.0] = a
    out[t == 1.0] = b
    return out.astype(np.float32)


def lerp(z0: np.ndarray, z1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Straight-line points (1 - t) z0 + t z1 for each fraction in t: (T, L) float32."""
    a, b = _vectors(z0, z1)
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    out = (1.0 - t)[:, None] * a + t[:, None] * b  # (T, L), in float64 so the float32 result is correctly rounded
    return _pin_endpoints(out, t, a, b)


def slerp(z0: np.ndarray, z1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation: (T, L) float32.

    The direction moves along the great circle from z0's to z1's direction at a constant
    angular speed, and the norm moves linearly from |z0| to |z1|; so when the endpoints
    have equal norms every point has that norm. Falls back to lerp when either vector is
    ~0 or the angle between them is ~0 or ~180 degrees (no unique great circle).
    """
    a, b = _vectors(z0, z1)
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na < _EPS or nb < _EPS:
        return lerp(a, b, t)
    ua, ub = a / na, b / nb  # (L,) unit directions
    omega = math.acos(float(np.clip(ua @ ub, -1.0, 1.0)))
    sin_omega = math.sin(omega)
    if sin_omega < 1e-6:
        return lerp(a, b, t)
    wa = np.sin((1.0 - t) * omega) / sin_omega  # (T,)
    wb = np.sin(t * omega) / sin_omega
    direction = wa[:, None] * ua + wb[:, None] * ub  # (T, L), unit length
    # renormalise: removes the rounding drift so equal-norm endpoints give equal norms to ~1 ulp
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    norm = (1.0 - t) * na + t * nb  # (T,)
    return _pin_endpoints(direction * norm[:, None], t, a, b)


def interpolate(z0: np.ndarray, z1: np.ndarray, steps: int, method: str = "slerp") -> np.ndarray:
    """``steps`` evenly spaced points from z0 to z1 inclusive, (steps, L) float32; row 0 is z0, the last z1."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 2 <= steps <= MAX_STEPS:
        raise LatentError(f"steps must be an integer between 2 and {MAX_STEPS}, got {steps!r}")
    funcs = {"lerp": lerp, "slerp": slerp}
    if method not in funcs:
        raise LatentError(f"unknown interpolation method {method!r}; known: {', '.join(METHODS)}")
    t = np.linspace(0.0, 1.0, int(steps))  # exact 0.0 and 1.0 at the ends
    return funcs[method](z0, z1, t)


# ----------------------------------------------------------------------------------- decode and reconstruct


def to_uint8(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Pixels (B, C, H, W) in [0, 1], a tensor or an array -> uint8 (B, H, W) for one channel, (B, H, W, 3) for three."""
    x = torch.as_tensor(x)
    px = (x.float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu().numpy()
    return px[:, 0] if px.shape[1] == 1 else np.ascontiguousarray(px.transpose(0, 2, 3, 1))


def _check_latents(model: Autoencoder, z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float32)
    if z.ndim == 1:
        z = z[None]  # a single latent: (1, L)
    if z.ndim != 2 or z.shape[1] != model.latent_dim:
        raise LatentError(f"latents must be (N, {model.latent_dim}) for this model, got {z.shape}")
    if not np.isfinite(z).all():
        raise LatentError("latents must be finite (found NaN or inf)")
    return z


@torch.no_grad()
def decode(model: Autoencoder, z: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Images the decoder makes from latents z (N, L): uint8 (N, H, W) or (N, H, W, 3).

    Runs on the device and dtype of the model's parameters. The model's train/eval mode is
    left alone (no kind has dropout or batch norm, and the UI may share one model between sessions).
    """
    z = _check_latents(model, z)
    c, h, w = model.input_shape
    parts = [np.zeros((0, h, w) if c == 1 else (0, h, w, 3), np.uint8)]
    bs = max(1, int(batch_size))
    for i in range(0, len(z), bs):
        zb = torch.from_numpy(z[i : i + bs]).to(model.device, dtype=model.dtype)  # (B, L)
        parts.append(to_uint8(model.decode(zb)))  # (B, H, W[, 3])
    return np.concatenate(parts)


def _checked_images(model: Autoencoder, images: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W[, 3]) whose layout the model takes."""
    images = np.asarray(images)
    shape = to_float(images[:1]).shape[1:]  # (C, H, W)
    if shape != tuple(model.input_shape):
        raise LatentError(f"images are {shape} (C, H, W) but the model takes {tuple(model.input_shape)}")
    return images


def reconstruct(model: Autoencoder, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Encode then decode uint8 images: (reconstructions uint8 like ``decode``, per-image MSE float32 (N,)).

    The MSE is the mean over pixels and channels in [0, 1] units, taken before rounding to uint8.
    """

    def step(xb: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        x_hat = model.decode(model.encode(xb)).float()  # (B, C, H, W)
        return to_uint8(x_hat), (x_hat - xb.float()).pow(2).mean(dim=(1, 2, 3)).cpu().numpy()  # (B, ...), (B,)

    parts = map_batches(model, _checked_images(model, images), step, batch_size=batch_size)
    if not parts:
        return decode(model, np.zeros((0, model.latent_dim), np.float32)), np.zeros(0, np.float32)
    return np.concatenate([r for r, _ in parts]), np.concatenate([e for _, e in parts]).astype(np.float32)


def posterior_sigma(model: Autoencoder, images: np.ndarray, batch_size: int = 256) -> np.ndarray | None:
    """A variational model's posterior standard deviations of uint8 images, (N, L) float32; None for other models."""
    posterior = getattr(model, "posterior", None)
    if not model.has_prior or posterior is None:
        return None
    step = lambda xb: (0.5 * posterior(xb)[1].float()).exp().cpu().numpy()  # noqa: E731  (B, L)
    parts = map_batches(model, np.asarray(images), step, batch_size=batch_size)
    return np.concatenate([np.zeros((0, model.latent_dim), np.float32), *parts])


# ----------------------------------------------------------------------------------- sampling


def _check_count(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_SAMPLES:
        raise LatentError(f"number of samples must be an integer between 1 and {MAX_SAMPLES}, got {n!r}")
    return int(n)


def _check_temperature(temperature: float) -> float:
    temperature = float(temperature)
    if not (math.isfinite(temperature) and 0.0 <= temperature <= 100.0):
        raise LatentError(f"temperature must be between 0 and 100, got {temperature}")
    return temperature


def sample_prior(model: Autoencoder, n: int, *, temperature: float = 1.0, seed: int = 0) -> np.ndarray:
    """n latents from a VAE's prior N(0, temperature^2 I): (n, L) float32; same seed, same latents."""
    if not model.has_prior:
        raise LatentError(f"a {model.kind} model has no prior to sample from")
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    z = model.sample_prior(_check_count(n), _check_temperature(temperature), gen)  # (n, L)
    return z.detach().float().cpu().numpy()


def project_sparse(z: np.ndarray, k: int) -> np.ndarray:
    """Make rows valid TopK codes: keep each row's k largest entries, ReLU them, zero the rest. (N, L) float32."""
    z = np.asarray(z, dtype=np.float32)
    k = int(k)
    if k >= z.shape[1]:
        return np.maximum(z, 0.0)
    idx = np.argpartition(-z, k - 1, axis=1)[:, :k]  # (N, k) column indices of the k largest
    out = np.zeros_like(z)
    rows = np.arange(len(z))[:, None]
    out[rows, idx] = np.maximum(z[rows, idx], 0.0)
    return out


class AggregatePosterior:
    """A Gaussian mixture fitted to encoded data: where the encoder actually puts inputs.

    Models without a prior (AE, DAE, SAE) are sampled from this instead. The mixture is
    fitted on a seeded subset of at most ``max_rows`` latents (full covariances for L <= 64,
    diagonal above), after dividing by one global scale so the covariance regulariser is
    relative to the data. ``post`` is an optional projection applied to every sample; for an
    SAE pass ``sparse_k`` (or use :meth:`for_model`) so samples become valid codes:
    non-negative with at most k non-zeros (see :func:`project_sparse`).
    """

    def __init__(
        self,
        means: np.ndarray,
        chols: np.ndarray,
        weights: np.ndarray,
        *,
        scale: float = 1.0,
        post: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.means = means  # (K, L) in scaled units
        self.chols = chols  # (K, L, L) lower Cholesky factors, or (K, L) standard deviations (diagonal)
        self.weights = weights / weights.sum()  # (K,)
        self.scale = float(scale)
        self.post = post

    @property
    def latent_dim(self) -> int:
        return int(self.means.shape[1])

    @property
    def n_components(self) -> int:
        return int(self.means.shape[0])

    @classmethod
    def fit(
        cls,
        z: np.ndarray,
        *,
        n_components: int = 10,
        max_rows: int = 5000,
        seed: int = 0,
        sparse_k: int | None = None,
        post: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> AggregatePosterior:
        """Fit on latents z (N, L). ``sparse_k`` and ``post`` select the projection applied to samples."""
        # scikit-learn (with scipy, about 1 s more than torch) only when an aggregate posterior is fitted
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture

        z = np.asarray(z)
        if z.ndim != 2 or len(z) < 2 or not np.isfinite(z).all():
            raise LatentError(f"the aggregate posterior needs finite latents (N >= 2, L), got shape {z.shape}")
        if sparse_k is not None and post is not None:
            raise LatentError("pass either sparse_k or post, not both")
        if sparse_k is not None:
            if not 1 <= int(sparse_k) <= z.shape[1]:
                raise LatentError(f"sparse_k must be between 1 and {z.shape[1]}, got {sparse_k}")
            post = partial(project_sparse, k=int(sparse_k))
        rng = np.random.default_rng(seed)
        if len(z) > max_rows:
            z = z[np.sort(rng.choice(len(z), size=max_rows, replace=False))]  # (max_rows, L)
        z = z.astype(np.float64)  # after subsetting: converting a big array first would copy all of it
        scale = float(z.std()) or 1.0
        zs = z / scale
        # at least 20 points per component, so each covariance is estimated from real data
        k = max(1, min(int(n_components), len(zs) // 20))
        diag = zs.shape[1] > 64
        # float32 halves the EM time; float64 is the fallback if a covariance is not positive definite in float32
        for dtype in (np.float32, np.float64):
            gmm = GaussianMixture(
                n_components=k,
                covariance_type="diag" if diag else "full",
                reg_covar=1e-4,
                # samples need a good-enough mixture, not a converged one: loose tolerance, few iterations
                tol=1e-2,
                max_iter=30,
                init_params="k-means++",  # cheaper than a full k-means run
                random_state=seed,
            )
            try:
                # one thread: these matrices are small, and threaded BLAS next to a busy process (a
                # training job, other sessions) was 20x slower than one thread in measurements
                with threadpool_limits(1), warnings.catch_warnings():
                    # an unconverged mixture still samples sensibly; the UI should not show the warning
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    gmm.fit(zs.astype(dtype))
                break
            except ValueError as exc:
                if dtype is np.float64:
                    raise LatentError(f"could not fit the aggregate posterior: {exc}") from None
        means = gmm.means_.astype(np.float64)
        cov = gmm.covariances_.astype(np.float64)
        chols = np.sqrt(cov) if diag else np.linalg.cholesky(cov)
        return cls(means, chols, gmm.weights_.astype(np.float64), scale=scale, post=post)

    @classmethod
    def for_model(cls, model: Autoencoder, z: np.ndarray, **kwargs) -> AggregatePosterior:
        """Fit for ``model``: sparse codes get the projection to as many non-zeros as the model keeps."""
        if "post" not in kwargs and "sparse_k" not in kwargs:
            kwargs["sparse_k"] = model.sample_sparsity(np.asarray(z))
        return cls.fit(z, **kwargs)

    def sample(self, n: int, *, temperature: float = 1.0, seed: int = 0) -> np.ndarray:
        """n latents (n, L) float32. ``temperature`` scales the spread around each component's mean (0: the means)."""
        n, temperature = _check_count(n), _check_temperature(temperature)
        rng = np.random.default_rng(seed)
        comp = rng.choice(self.n_components, size=n, p=self.weights)  # (n,)
        eps = rng.standard_normal((n, self.latent_dim))  # (n, L)
        if self.chols.ndim == 2:
            noise = eps * self.chols[comp]  # diagonal: (n, L) * (n, L)
        else:
            noise = np.einsum("nij,nj->ni", self.chols[comp], eps)  # full: L_c @ eps per row
        z = ((self.means[comp] + temperature * noise) * self.scale).astype(np.float32)
        return self.post(z).astype(np.float32) if self.post is not None else z


def sample(
    model: Autoencoder,
    n: int,
    *,
    temperature: float = 1.0,
    seed: int = 0,
    posterior: AggregatePosterior | None = None,
) -> np.ndarray:
    """n latents for ``model``: its prior if it has one, otherwise the aggregate posterior fitted on its encoded data."""
    if model.has_prior:
        return sample_prior(model, n, temperature=temperature, seed=seed)
    if posterior is None:
        raise LatentError(
            f"a {model.kind} model has no prior to sample from; fit an AggregatePosterior on encoded data first"
        )
    if posterior.latent_dim != model.latent_dim:
        raise LatentError(f"the posterior has {posterior.latent_dim} latent dims, the model {model.latent_dim}")
    return posterior.sample(n, temperature=temperature, seed=seed)


# ----------------------------------------------------------------------------------- traversal


def _check_dim(dim: int, latent_dim: int) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not 0 <= dim < latent_dim:
        raise LatentError(f"latent dimension must be an integer from 0 to {latent_dim - 1}, got {dim!r}")
    return int(dim)


def traverse(z: np.ndarray, dim: int, values: np.ndarray) -> np.ndarray:
    """Copies of z (L,), one per value, with z[dim] set to that value: (len(values), L) float32."""
    z = np.asarray(z, dtype=np.float32)
    if z.ndim != 1:
        raise LatentError(f"traverse needs one latent (L,), got {z.shape}")
    dim = _check_dim(dim, len(z))
    values = np.asarray(values, dtype=np.float32).reshape(-1)  # (T,)
    out = np.repeat(z[None], len(values), axis=0)  # (T, L)
    out[:, dim] = values
    return out


def traverse_range(
    latents: np.ndarray, dim: int, n: int = 12, spread: float = 3.0, *, sparse: bool | None = None
) -> np.ndarray:
    """n values (float32) worth visiting along latent ``dim``, from the data's latents (N, L).

    Dense dims: mean +- spread * std. Sparse dims (SAE features or ReLU codes: never negative,
    sometimes exactly zero; ``sparse=None`` detects this): 0 up to 1.5 x the 99th percentile of
    the non-zero activations, or up to 1.0 for a feature that never fires.
    """
    latents = np.asarray(latents, dtype=np.float64)
    if latents.ndim != 2 or len(latents) == 0:
        raise LatentError(f"traverse_range needs latents (N, L) with N >= 1, got {latents.shape}")
    dim = _check_dim(dim, latents.shape[1])
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 2 <= n <= MAX_STEPS:
        raise LatentError(f"n must be an integer between 2 and {MAX_STEPS}, got {n!r}")
    col = latents[:, dim]  # (N,)
    if sparse is None:
        sparse = bool(col.min() >= 0.0 and (col == 0.0).any())
    if sparse:
        active = col[col > 0]
        top = 1.5 * float(np.percentile(active, 99)) if len(active) else 1.0
        return np.linspace(0.0, top, n).astype(np.float32)
    std = float(col.std())
    std = std if std > _EPS else 1.0  # a constant dim still gets a visible sweep
    mean = float(col.mean())
    return np.linspace(mean - spread * std, mean + spread * std, n).astype(np.float32)


def traverse_all(
    latents: np.ndarray, z: np.ndarray, dims: list[int], n: int = 9, *, sparse: bool = False
) -> np.ndarray:
    """One traversal per dimension in ``dims`` of the code z (L,): (len(dims) * n, L) float32, dimension by
    dimension, each over ``traverse_range`` of the data's latents (N, L). Decoded and laid out n to a row, the
    rows show what each dimension does to this image."""
    rows = [traverse(z, d, traverse_range(latents, d, n=n, sparse=sparse)) for d in dims]
    return np.concatenate(rows) if rows else np.zeros((0, len(np.asarray(z))), np.float32)


def kl_per_dimension(model: Autoencoder, images: np.ndarray, batch_size: int = 256) -> np.ndarray | None:
    """A variational model's KL(q(z|x) || N(0, I)) of each latent dimension in nats, averaged over uint8 images:
    (L,) float64; None for other models. Dimensions near 0 carry no information about the image (they
    collapsed to the prior); the sum is the model's mean KL."""
    posterior = getattr(model, "posterior", None)
    if not model.has_prior or posterior is None:
        return None

    def step(xb: torch.Tensor) -> np.ndarray:
        mu, logvar = (t.double() for t in posterior(xb))  # (B, L)
        return (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).sum(0).cpu().numpy()  # (L,)

    total = np.zeros(model.latent_dim)
    for part in map_batches(model, np.asarray(images), step, batch_size=batch_size):
        total += part
    return total / max(1, len(images))


# ----------------------------------------------------------------------------------- nearest neighbours


def nearest(latents: np.ndarray, z: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest rows of latents (N, L) for each query z (M, L): (indices (M, k) int64, distances (M, k) float32).

    Euclidean, nearest first; the search itself is ``explorer.maps.projection.knn`` (the one used for maps).
    """
    data = np.asarray(latents, dtype=np.float32)
    queries = np.asarray(z, dtype=np.float32)
    if queries.ndim == 1:
        queries = queries[None]
    if data.ndim != 2 or queries.ndim != 2 or data.shape[1] != queries.shape[1]:
        raise LatentError(f"nearest needs latents (N, L) and queries (M, L), got {data.shape} and {queries.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(data):
        raise LatentError(f"k must be an integer between 1 and the number of latents ({len(data)}), got {k!r}")
    idx, dist = knn(data, queries, int(k))
    return idx.astype(np.int64), dist
