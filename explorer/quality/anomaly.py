"""Reconstruction error as an anomaly score: how well it tells unfamiliar images apart, and the worst ones.

An autoencoder reconstructs what resembles its training data and fails on the rest, so the
per-image reconstruction error ranks images by how unfamiliar they look to the model. ``auroc``
measures that ranking against known outliers (e.g. MNIST digits shown to a Fashion-MNIST
model); ``rank_by_error`` lists the images a page should show first. numpy only.
"""

from __future__ import annotations

import numpy as np

from explorer.errors import MetricsError


def _scores(values: np.ndarray | list[float], what: str) -> np.ndarray:
    out = np.asarray(values, dtype=np.float64).ravel()
    if out.size == 0:
        raise MetricsError(f"AUROC needs at least one {what} score, got none")
    if not np.isfinite(out).all():
        raise MetricsError(f"{what} scores must be finite numbers; {int((~np.isfinite(out)).sum())} are not")
    return out


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..N of ``values`` (N,), equal values sharing the mean of the ranks they span."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    # the start of every run of equal values, and the run each sorted position belongs to
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    run = np.cumsum(np.r_[True, ordered[1:] != ordered[:-1]]) - 1  # (N,)
    ends = np.r_[starts[1:], len(values)]  # one past the end of each run
    mean_rank = (starts + 1 + ends) / 2.0  # ranks starts+1 .. ends, averaged
    ranks = np.empty(len(values))
    ranks[order] = mean_rank[run]
    return ranks


def auroc(inlier_scores: np.ndarray | list[float], outlier_scores: np.ndarray | list[float]) -> float:
    """Area under the ROC curve of "score above a threshold means outlier".

    Equals the probability that a random outlier scores higher than a random inlier, a tie counting
    one half (the Mann-Whitney U statistic over the product of the two counts): 1.0 separates them
    perfectly, 0.5 is chance, below 0.5 the score points the wrong way. Rank-based, so any monotone
    change of the score leaves it unchanged. Raises MetricsError for an empty or non-finite side.
    """
    inl = _scores(inlier_scores, "inlier")
    out = _scores(outlier_scores, "outlier")
    ranks = _average_ranks(np.concatenate([inl, out]))
    n_in, n_out = len(inl), len(out)
    # U of the outliers: their rank sum minus the smallest rank sum n_out outliers could have
    u = ranks[n_in:].sum() - n_out * (n_out + 1) / 2.0
    return float(u / (n_in * n_out))


def rank_by_error(errors: np.ndarray | list[float], k: int) -> np.ndarray:
    """Indices of the ``k`` largest errors, largest first (all of them when k exceeds their number).

    Equal errors keep index order, so the answer is the same on every call. NaN errors (an image
    that could not be scored) rank last. Returns int64 (min(k, N),).
    """
    values = np.asarray(errors, dtype=np.float64).ravel()
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise MetricsError(f"k must be a whole number >= 0, got {k!r}")
    keyed = np.where(np.isnan(values), -np.inf, values)
    order = np.argsort(-keyed, kind="stable")  # stable on the negation: ties stay in index order
    return order[: int(k)].astype(np.int64)
