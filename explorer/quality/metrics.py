"""How good is a model, beside PCA with as many numbers: the one evaluation of the explorer.

``python -m explorer metrics`` and ``evaluate``, the Metrics page and training's report all read
``model_quality``'s figures, so one checkpoint gets one set of numbers wherever it is shown. On one
split of a built-in dataset:

- reconstruction: per-pixel MSE and BCE (``evaluate``'s figures);
- for a model with a prior (a VAE): KL in nats and active units, the units whose posterior mean
  varies over the data by more than 0.01 (Burda et al., 2016, "Importance weighted autoencoders"),
  and the ELBO and importance-sampled log-likelihood;
- for sparse codes (an SAE): mean L0, the share of features never active on the data (dead) and
  of those active on more than ``dense_threshold`` of the images (dense);
- what the codes keep of the labels (``explorer.quality.probes``): 5-nearest-neighbour and
  linear-probe accuracy, both trained on the codes of at most ``max_train`` train-split images;
- the PCA baseline (``fit_pca``, the only one): PCA fitted on the train split with as many
  components as the model keeps numbers (``Autoencoder.baseline_components``), the same kNN and
  probe on its codes, and its error for a range of component counts;
- optionally, how well reconstruction error tells another dataset's images apart (AUROC).

``quality_report`` loads the data and caches the report on disk as JSON, keyed by the checkpoint's
digest, the digests of the images used and the options, so a second request is instant. Pages
import this module to show a cached report: torch and scikit-learn load only in the functions that
run a model or fit a probe.
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from explorer.data import Dataset, fit_to_shape, load_dataset, to_float
from explorer.errors import MetricsError
from explorer.maps.encode import PerImage, map_batches, per_image
from explorer.maps.neighbours import Progress, no_progress
from explorer.maps.pipeline import subset_for
from explorer.quality.anomaly import auroc
from explorer.quality.probes import knn_accuracy, probe_accuracy
from explorer.store import DiskCache, data_digest, sha256

if TYPE_CHECKING:
    import torch

    from explorer.models.base import Autoencoder

log = logging.getLogger(__name__)

QUALITY_VERSION = 2  # bump when a figure is computed differently: old cached reports are then ignored
PCA_CURVE = (1, 2, 4, 8, 16, 32, 64, 128)
SPLITS = ("test", "train")
BATCH = 1000  # images per batch of a metrics pass (batching can change a float's last bits: kept fixed)
EXACT_PCA_MAX_DIM = 4096  # up to here PCA is the eigendecomposition of the full covariance (D x D float64)


@dataclass(frozen=True)
class QualityOptions:
    """What a report is computed from, besides the checkpoint, dataset and split; part of the cache key."""

    limit: int = 0  # evaluated images: a seeded subset of this many (0 = the whole split)
    max_train: int = 10_000  # train images whose codes the kNN and the probe learn from
    k: int = 5  # neighbours of the kNN classifier
    dense_threshold: float = 0.10  # a feature active on more than this share of images is dense
    active_threshold: float = 0.01  # a unit whose posterior mean varies more than this is active
    curve: tuple[int, ...] = PCA_CURVE  # PCA component counts of the error curve
    ood: str | None = None  # a dataset whose images are scored as outliers against the split

    def __post_init__(self) -> None:
        ints = {"limit": (self.limit, 0), "max_train": (self.max_train, 1), "k": (self.k, 1)}
        for name, (value, low) in ints.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise MetricsError(f"{name} must be a whole number >= {low}, got {value!r}")
        dense, active = self.dense_threshold, self.active_threshold
        if not (isinstance(dense, (int, float)) and 0.0 <= dense <= 1.0):
            raise MetricsError(f"dense_threshold must be a share between 0 and 1, got {dense!r}")
        if not (isinstance(active, (int, float)) and math.isfinite(active) and active >= 0.0):
            raise MetricsError(f"active_threshold must be a finite number >= 0, got {active!r}")
        if not self.curve or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in self.curve):
            raise MetricsError(f"curve must list component counts >= 1, got {self.curve!r}")

    def key(self) -> str:
        """The options that change figures. Not ``limit``: the cache key holds the digests of the images used."""
        return json.dumps({k: v for k, v in asdict(self).items() if k != "limit"}, sort_keys=True)


# --- the figures, each a pure function of arrays -----------------------------------------------------


def active_units(codes: np.ndarray, *, threshold: float = 0.01) -> int:
    """Units whose value varies over the data (N, L) with a variance above ``threshold``.

    Given a VAE's posterior means this is Burda et al.'s activity statistic Cov_x(E_q[z_u]): a unit
    the decoder ignores collapses to the prior, its mean stays put whatever the image."""
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or len(codes) < 2:
        raise MetricsError(f"active units need codes of at least 2 images, (N, L); got shape {codes.shape}")
    return int((codes.var(axis=0) > threshold).sum())


def sparsity(codes: np.ndarray, *, dense_threshold: float = 0.10) -> dict[str, float]:
    """Sparse codes (N, F) -> mean L0, the share of features never active and of those active on more
    than ``dense_threshold`` of the images. Active means above zero."""
    on = np.asarray(codes) > 0  # (N, F)
    if on.ndim != 2 or not len(on):
        raise MetricsError(f"sparsity needs the codes of at least one image, (N, F); got shape {on.shape}")
    share = on.mean(axis=0)  # (F,) how often each feature fires
    return {
        "l0": float(on.sum(axis=1).mean()),
        "dead_fraction": float((share == 0).mean()),
        "dense_fraction": float((share > dense_threshold).mean()),
    }


def summarize(model: Autoencoder, result: PerImage) -> dict[str, float]:
    """The means of a ``per_image`` pass, named as ``evaluate`` names them."""
    n = len(result.mse)
    mean = lambda v: float(np.mean(v, dtype=np.float64)) if n else 0.0  # noqa: E731
    out = {"mse": mean(result.mse), "bce": mean(result.bce), **{k: mean(result.stats[k]) for k in model.summary_stats}}
    if model.sparse_codes and n:
        out["dead_fraction"] = 1.0 - float((result.codes > 0).any(0).mean())
    return out


def evaluate(model: Autoencoder, x: np.ndarray | torch.Tensor, *, batch_size: int = BATCH) -> dict[str, float]:
    """Test-split metrics of a model on float images x (N, C, H, W) in [0, 1].

    mse: per-pixel squared error; bce: per-pixel binary cross-entropy; plus the mean of each
    statistic the model names in ``summary_stats`` (a VAE's KL in nats, an SAE's L0); for sparse
    codes, dead_fraction: the share of code units never active on x.
    """
    model.eval()
    return summarize(model, per_image(model, x, batch_size=batch_size))


LIKELIHOOD_SAMPLES = 100  # k of the importance-sampled log-likelihood (Burda et al. use 5,000; 100 is within ~1 nat)
LIKELIHOOD_IMAGES = 1000  # images it is estimated on: k decodes each


def vae_likelihood(
    model: Autoencoder,
    x: np.ndarray | torch.Tensor,
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
    Both on the first ``max_images`` of x (any layout ``map_batches`` takes). None for a model without a posterior."""
    import torch  # the model is running: torch is loaded already

    posterior = getattr(model, "posterior", None)
    if not model.has_prior or posterior is None:
        return None
    x = x[:max_images]
    gen = torch.Generator().manual_seed(seed)
    log2pi = math.log(2 * math.pi)
    elbo, iw = [], []

    def step(xb: torch.Tensor) -> None:  # (B, C, H, W) on the model's device, in its dtype
        mu, logvar = (t.double() for t in posterior(xb))  # (B, L)
        std = (0.5 * logvar).exp()
        eps = torch.randn((k, *mu.shape), generator=gen, dtype=torch.float64).to(mu.device)  # (k, B, L)
        z = mu + std * eps
        # log q(z|x) and log p(z), each (k, B)
        log_q = (-0.5 * (eps.pow(2) + log2pi) - 0.5 * logvar).sum(-1)
        log_prior = (-0.5 * (z.pow(2) + log2pi)).sum(-1)
        logits = model.decode_logits(z.reshape(-1, z.shape[-1]).to(dtype=model.dtype)).float()
        target = xb.float().repeat(k, 1, 1, 1)
        log_px = -model.pixel_bce(logits, target).flatten(1).sum(1).double().reshape(k, len(xb))  # (k, B)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)  # (B,)
        elbo.append((log_px[0] - kl).cpu())
        iw.append((torch.logsumexp(log_px + log_prior - log_q, dim=0) - math.log(k)).cpu())

    map_batches(model, x, step, batch_size=100)
    return {
        "elbo": float(torch.cat(elbo).mean()),
        "log_likelihood": float(torch.cat(iw).mean()),
        "likelihood_k": int(k),
        "likelihood_images": int(len(x)),
    }


@dataclass
class PCABasis:
    """Principal axes of train images: ``mean`` (D,), ``components`` (K, D) orthonormal rows, largest first."""

    mean: np.ndarray
    components: np.ndarray

    def codes(self, x: np.ndarray, n: int) -> np.ndarray:
        """(N, D) -> coordinates on the first n axes, (N, n)."""
        return ((np.asarray(x, np.float32) - self.mean.astype(np.float32)) @ self.components[:n].T).astype(np.float32)

    def recon_mse(self, x: np.ndarray, counts: list[int]) -> dict[int, float]:
        """Per-pixel MSE of reconstructing x (N, D) from its first n coordinates, for every n in counts.

        The axes are orthonormal, so the error with n of them is |x - mean|^2 minus the squares of
        the first n coordinates: one projection gives every count."""
        top = max(counts)
        total, proj_sq = 0.0, np.zeros(top)
        for s in range(0, len(x), 8192):
            xc = np.asarray(x[s : s + 8192], np.float64) - self.mean  # (B, D)
            total += float((xc * xc).sum())
            proj_sq += ((xc @ self.components[:top].T) ** 2).sum(axis=0)  # (top,)
        cum = np.cumsum(proj_sq)
        size = max(1, x.shape[0] * x.shape[1])
        return {n: max(0.0, total - float(cum[n - 1])) / size for n in counts}


def fit_pca(x: np.ndarray, *, max_components: int) -> PCABasis:
    """PCA of train images x (N, D): up to ``max_components`` axes (fewer when N or D is smaller).

    Up to EXACT_PCA_MAX_DIM pixels the axes are the exact eigenvectors of the covariance, whose
    float32 chunk products are summed in float64 (60,000 images are never copied to float64 at once);
    beyond it a randomized SVD (scikit-learn) finds the first ones."""
    x = np.asarray(x, dtype=np.float32)
    n, d = x.shape
    k = min(max_components, n, d)
    if n < 2 or k < 1:
        raise MetricsError(f"PCA needs at least 2 train images, got {n}")
    mean = x.mean(axis=0, dtype=np.float64)  # (D,)
    if d > EXACT_PCA_MAX_DIM:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=k, svd_solver="randomized", random_state=0).fit(x)
        return PCABasis(mean, pca.components_.astype(np.float64))
    cov = np.zeros((d, d))
    for s in range(0, n, 8192):
        xc = (x[s : s + 8192] - mean).astype(np.float32)  # (B, D)
        cov += (xc.T @ xc).astype(np.float64)
    _, vecs = np.linalg.eigh(cov / n)  # ascending eigenvalues
    return PCABasis(mean, np.ascontiguousarray(vecs[:, ::-1][:, :k].T))


# --- the report --------------------------------------------------------------------------------------

# Every figure a report may hold, in the order tables list them: (key, title, PCA's key or None).
FIGURES = (
    ("recon_mse", "reconstruction MSE (per pixel)", "pca_recon_mse"),
    ("recon_bce", "reconstruction BCE (per pixel)", None),
    ("knn_accuracy", "5-NN accuracy", "pca_knn_accuracy"),
    ("probe_accuracy", "linear probe accuracy", "pca_probe_accuracy"),
    ("kl", "KL (nats)", None),
    ("elbo", "ELBO (nats per image)", None),
    ("log_likelihood", "log-likelihood, importance-sampled (nats)", None),
    ("active_units", "active units", None),
    ("l0", "L0 (active features)", None),
    ("dead_fraction", "dead features", None),
    ("dense_fraction", "dense features", None),
    ("ood_auroc", "outlier AUROC", None),
)
# what a report says about how it was made, beside the figures in its JSON
CONTEXT_KEYS = (
    "dataset", "split", "images", "train_images", "pca_train_images", "ood", "ood_images", "seconds",
    "likelihood_k", "likelihood_images",
)  # fmt: skip


@dataclass
class QualityReport:
    """Every figure of one model on one split. ``figures`` is what ``--json`` prints (None: not computable)."""

    figures: dict[str, float | int | None]
    pca_components: int  # the PCA the model is compared with
    pca_curve: list[tuple[int, float]]  # (components, per-pixel MSE), increasing components
    context: dict[str, Any] = field(default_factory=dict)  # dataset, split, image counts, ood dataset

    @property
    def model_point(self) -> tuple[int, float]:
        """Where the model sits on the PCA curve: (numbers it keeps per image, its MSE)."""
        return self.pca_components, float(self.figures["recon_mse"] or 0.0)

    def to_dict(self) -> dict[str, Any]:
        """One flat JSON object: the figures, then the PCA curve and the context."""
        return {
            **self.figures,
            "pca_components": self.pca_components,
            "pca_curve": [[n, mse] for n, mse in self.pca_curve],
            **self.context,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QualityReport:
        data = dict(data)
        curve = [(int(n), float(m)) for n, m in data.pop("pca_curve")]
        components = int(data.pop("pca_components"))
        context = {k: data.pop(k) for k in list(data) if k in CONTEXT_KEYS}
        return cls(data, components, curve, context)

    def rows(self) -> list[tuple[str, float | int | None, float | int | None]]:
        """(title, model's value, PCA's value or None) for each figure this report has, in table order."""
        fig = self.figures
        return [(title, fig[key], fig.get(pca) if pca else None) for key, title, pca in FIGURES if key in fig]


def model_quality(
    model: Autoencoder,
    evaluated: Dataset,
    reference: Dataset,
    pca_train: Dataset,
    *,
    options: QualityOptions = QualityOptions(),
    outliers: Dataset | None = None,
    progress: Progress = no_progress,
) -> QualityReport:
    """The report of ``model`` on ``evaluated`` images, every dataset already fitted to the model's input.

    ``reference``: labelled train images the kNN and the probe learn from; ``pca_train``: the
    images PCA is fitted on; ``outliers``: images scored against ``evaluated`` as inliers."""
    if len(evaluated) < 2:
        raise MetricsError(f"{evaluated.name} has {len(evaluated)} image(s); metrics need at least 2")

    def flat(ds: Dataset) -> np.ndarray:
        return to_float(ds.images).reshape(len(ds), -1)  # (N, D) in [0, 1]

    model.eval()
    progress(0.0, f"encoding {len(evaluated):,} images")
    run = per_image(model, evaluated.images, batch_size=BATCH)
    summary = summarize(model, run)
    figures: dict[str, float | int | None] = {"recon_mse": summary["mse"], "recon_bce": summary["bce"]}
    likelihood = None
    if model.has_prior:  # a posterior against a prior: its KL, which units it uses, and the likelihood
        figures["kl"] = summary.get("kl")
        figures["active_units"] = active_units(run.codes, threshold=options.active_threshold)
        progress(0.2, f"importance-sampled likelihood (k = {LIKELIHOOD_SAMPLES})")
        likelihood = vae_likelihood(model, evaluated.images)
        if likelihood is not None:
            figures["elbo"] = likelihood["elbo"]
            figures["log_likelihood"] = likelihood["log_likelihood"]
    if model.sparse_codes:
        figures.update(sparsity(run.codes, dense_threshold=options.dense_threshold))
    # the fair PCA keeps as many numbers per image as the model does (an SAE: its mean L0, rounded up)
    n_pca = model.baseline_components({**summary, **{k: v for k, v in figures.items() if v is not None}})

    progress(0.3, f"encoding {len(reference):,} train images")
    ref_codes = per_image(model, reference.images, batch_size=BATCH).codes  # (R, L)
    progress(0.5, "kNN on the codes")
    y_eval, y_ref = evaluated.labels, reference.labels
    figures["knn_accuracy"] = knn_accuracy(ref_codes, y_ref, run.codes, y_eval, k=options.k)
    progress(0.55, "linear probe on the codes")
    figures["probe_accuracy"] = probe_accuracy(ref_codes, y_ref, run.codes, y_eval)

    progress(0.7, f"PCA of {len(pca_train):,} train images")
    x_eval = flat(evaluated)
    basis = fit_pca(flat(pca_train), max_components=max(n_pca, *options.curve))
    counts = sorted({c for c in (*options.curve, n_pca) if c <= len(basis.components)})
    errors = basis.recon_mse(x_eval, counts)
    n_fair = min(n_pca, len(basis.components))
    figures["pca_recon_mse"] = errors[n_fair]
    ref_pca, eval_pca = basis.codes(flat(reference), n_fair), basis.codes(x_eval, n_fair)
    progress(0.8, "kNN and probe on PCA codes")
    figures["pca_knn_accuracy"] = knn_accuracy(ref_pca, y_ref, eval_pca, y_eval, k=options.k)
    figures["pca_probe_accuracy"] = probe_accuracy(ref_pca, y_ref, eval_pca, y_eval)

    context: dict[str, Any] = {"images": len(evaluated), "train_images": len(reference)}
    if likelihood is not None:
        context.update(likelihood_k=likelihood["likelihood_k"], likelihood_images=likelihood["likelihood_images"])
    context["pca_train_images"] = len(pca_train)
    if outliers is not None:
        progress(0.95, f"scoring {len(outliers):,} {outliers.name} images")
        figures["ood_auroc"] = auroc(run.mse, per_image(model, outliers.images, batch_size=BATCH).mse)
        context["ood_images"] = len(outliers)
    progress(1.0, "done")
    return QualityReport(figures, n_fair, [(n, errors[n]) for n in counts], context)


# --- from names to a report, cached ------------------------------------------------------------------


def _take(ds: Dataset, index: np.ndarray) -> Dataset:
    return Dataset(ds.name, ds.images[index], ds.labels[index], list(ds.class_names))


def split_images(
    name: str, split: str, input_shape: tuple[int, int, int], options: QualityOptions, *, root: str | None = None
) -> tuple[Dataset, Dataset, Dataset]:
    """(evaluated, reference, pca_train) images of a built-in dataset, fitted to a model's input.

    Test split: the same seeded subset a map of ``limit`` images shows. Train split: the images
    left after the reference is drawn, so no image is its own neighbour or a probe's training example."""
    if split not in SPLITS:
        raise MetricsError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    train = fit_to_shape(load_dataset(name, "train", root=root), input_shape)
    order = np.random.default_rng(0).permutation(len(train))
    reference = _take(train, np.sort(order[: options.max_train]))
    if split == "test":
        evaluated = subset_for(load_dataset(name, "test", root=root), options.limit, input_shape)
    else:
        rest = order[options.max_train :]
        if len(rest) < 2:
            raise MetricsError(
                f"the {name} train split has {len(train):,} images and the kNN and probe learn from "
                f"{min(options.max_train, len(train)):,} of them, which leaves none to evaluate; "
                "lower the train images (--max-train) or evaluate the test split"
            )
        evaluated = _take(train, np.sort(rest[: options.limit] if options.limit else rest))
    return evaluated, reference, train


def report_key(checkpoint_digest: str, *datasets: Dataset | None, options: QualityOptions) -> str:
    """The cache key: format version, checkpoint, the exact images used (digests) and the options."""
    parts = [f"quality/{QUALITY_VERSION}", checkpoint_digest, options.key()]
    parts += ["-" if ds is None else data_digest(ds.images, ds.labels) for ds in datasets]
    return sha256("/".join(parts).encode())


def _read(cache: DiskCache, key: str) -> QualityReport | None:
    raw = cache.get(key)
    if raw is None:
        return None
    try:  # an npz holding one JSON string: the cache folder's format, read without pickle
        with np.load(io.BytesIO(raw), allow_pickle=False) as f:
            return QualityReport.from_dict(json.loads(str(f["report"])))
    except Exception as exc:  # a damaged or foreign file is recomputed, never fatal
        log.warning("ignoring unreadable cached report %s: %r", cache.path(key), exc)
        return None


def _write(cache: DiskCache, key: str, report: QualityReport) -> None:
    buf = io.BytesIO()
    np.savez(buf, report=np.array(json.dumps(report.to_dict())))
    cache.put(key, buf.getvalue())


def quality_report(
    load_model: Callable[[], Autoencoder],
    checkpoint_digest: str,
    input_shape: tuple[int, int, int],
    dataset: str,
    *,
    split: str = "test",
    options: QualityOptions = QualityOptions(),
    cache: DiskCache | None = None,
    root: str | None = None,
    progress: Progress = no_progress,
) -> tuple[QualityReport, bool]:
    """The report of a checkpoint on a built-in dataset's split, and whether it came from the cache.

    ``load_model`` is called only on a cache miss, so a cached report needs no torch."""
    evaluated, reference, pca_train = split_images(dataset, split, input_shape, options, root=root)
    outliers = None
    if options.ood:
        if options.ood == dataset:
            raise MetricsError(f"--ood {options.ood} is the evaluated dataset itself; name another one")
        ood_split = split if split in SPLITS else "test"
        outliers = subset_for(load_dataset(options.ood, ood_split, root=root), options.limit, input_shape)
    key = report_key(checkpoint_digest, evaluated, reference, pca_train, outliers, options=options)
    if cache is not None and (hit := _read(cache, key)) is not None:
        return hit, True
    t0 = time.perf_counter()
    report = model_quality(
        load_model(), evaluated, reference, pca_train, options=options, outliers=outliers, progress=progress
    )
    report.context.update(dataset=dataset, split=split, seconds=round(time.perf_counter() - t0, 2))
    if options.ood:
        report.context["ood"] = options.ood
    if cache is not None:
        _write(cache, key, report)
    return report, False
