"""What codes keep of the labels: a k-nearest-neighbour vote and a linear probe, both learnt on train codes.

The one kNN and the one probe: the metrics report, the Metrics page and training's report all use these,
for a model's codes and for PCA's alike.
"""

from __future__ import annotations

import numpy as np

from explorer.maps.neighbours import knn


def _labelled(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.asarray(y) >= 0  # -1: unknown label
    return np.asarray(z)[keep], np.asarray(y)[keep]


def knn_accuracy(
    z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray, *, k: int = 5
) -> float | None:
    """Accuracy of a k-nearest-neighbour vote (Euclidean) in code space; None without labelled images.

    Each test code takes the most common label among its k nearest train codes; a tie goes to the
    tied class whose member comes nearest."""
    z_train, y_train = _labelled(z_train, y_train)
    z_test, y_test = _labelled(z_test, y_test)
    if not len(z_test) or not len(z_train):
        return None
    k = min(k, len(z_train))
    idx, _ = knn(z_train, z_test, k)  # (M, k) nearest first
    near = y_train[idx]  # (M, k) their labels
    classes = int(max(y_train.max(), y_test.max())) + 1
    votes = np.zeros((len(near), classes), dtype=np.int64)
    np.add.at(votes, (np.arange(len(near))[:, None], near), 1)
    tied = votes == votes.max(axis=1, keepdims=True)  # (M, C): the classes with the most votes
    first = np.argmax(tied[np.arange(len(near))[:, None], near], axis=1)  # nearest neighbour of a tied class
    predicted = near[np.arange(len(near)), first]
    return float((predicted == y_test).mean())


def probe_accuracy(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray) -> float | None:
    """Accuracy of a logistic-regression probe trained on codes: how much class information they keep
    in a linear form. Images labelled -1 (unknown) are left out; None without two classes to learn or
    an image to score."""
    from sklearn.linear_model import LogisticRegression  # 1.9 s to import: only when a probe is fitted
    from sklearn.preprocessing import StandardScaler

    z_train, y_train = _labelled(z_train, y_train)
    z_test, y_test = _labelled(z_test, y_test)
    if not len(z_test) or len(np.unique(y_train)) < 2:
        return None
    # Columns constant on the train codes (an SAE's dead features: most of them) standardise to zero,
    # so their weights stay zero: leaving them out gives the same probe, 3x faster on the shipped SAE.
    varies = z_train.std(axis=0) > 0
    if varies.any():
        z_train, z_test = z_train[:, varies], z_test[:, varies]
    scaler = StandardScaler().fit(z_train)
    clf = LogisticRegression(max_iter=300).fit(scaler.transform(z_train), y_train)
    return float(clf.score(scaler.transform(z_test), y_test))
