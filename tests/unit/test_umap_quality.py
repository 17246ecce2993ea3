"""The built-in UMAP keeps the reference's quality on data it was not tuned on, and umap-learn works
as an engine on the project's neighbours.

Reference: umap-learn with its own neighbour search and defaults (n_neighbors 15, min_dist 0.1).
Scores: trustworthiness (k = 15, scikit-learn) and 15-NN label agreement in the map, each the
mean over seeds 0 and 1. Data: scikit-learn's digits (1,797 x 64) and 3,000 raw Fashion-MNIST
test images (784 pixels) from the copy shipped in checkpoints/data. umap-learn compiles its
numba functions on first use (up to a minute in a fresh process), hence ``slow``.
"""

import numpy as np
import pytest

from explorer.data.builtin import SHIPPED_FASHION_MNIST_DIR
from explorer.maps.neighbours import label_agreement
from explorer.maps.projection import ProjectionParams, fit, warm_reference_umap

pytestmark = pytest.mark.slow

K = 15
SEEDS = (0, 1)


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data.astype(np.float32), d.target


def _fashion_pixels():
    from explorer.data import load_dataset

    ds = load_dataset("fashion-mnist", "test", root=SHIPPED_FASHION_MNIST_DIR)
    s = np.sort(np.random.default_rng(0).permutation(len(ds))[:3000])
    return ds.images[s].reshape(len(s), -1).astype(np.float32) / 255, ds.labels[s]


DATASETS = {"digits": _digits, "fashion-mnist-pixels": _fashion_pixels}


def _scores(x, y, embed) -> tuple[float, float]:
    from sklearn.manifold import trustworthiness

    rows = []
    for seed in SEEDS:
        emb = embed(x, seed)
        rows.append((trustworthiness(x, emb, n_neighbors=K), label_agreement(emb, y, K)))
    t, a = np.mean(rows, axis=0)
    return float(t), float(a)


@pytest.mark.parametrize("name", DATASETS)
def test_builtin_umap_matches_umap_learn(name):
    import umap

    x, y = DATASETS[name]()
    builtin = _scores(x, y, lambda x, seed: fit(x, ProjectionParams(seed=seed)).embedding)
    reference = _scores(
        x, y, lambda x, seed: umap.UMAP(n_neighbors=K, min_dist=0.1, random_state=seed, n_jobs=1).fit_transform(x)
    )
    assert abs(builtin[0] - reference[0]) <= 0.01, (
        f"trustworthiness: builtin {builtin[0]:.4f}, umap-learn {reference[0]:.4f}"
    )
    assert abs(builtin[1] - reference[1]) <= 0.02, (
        f"label agreement: builtin {builtin[1]:.4f}, umap-learn {reference[1]:.4f}"
    )


@pytest.fixture
def no_umap_neighbour_search(monkeypatch):
    """umap-learn's own searches (pynndescent, and pairwise distances below 4,096 points) fail the test if called."""
    import umap.umap_

    def refuse(*args, **kwargs):
        raise AssertionError("umap-learn searched for neighbours itself")

    monkeypatch.setattr(umap.umap_, "nearest_neighbors", refuse)
    monkeypatch.setattr(umap.umap_, "pairwise_distances", refuse)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_umap_learn_engine_uses_the_project_neighbours(no_umap_neighbour_search, metric):
    x, y = _digits()
    steps = []
    proj = fit(x, ProjectionParams(engine="umap-learn", metric=metric), progress=lambda f, m: steps.append(f))
    assert proj.embedding.shape == (len(x), 2) and np.isfinite(proj.embedding).all()
    assert label_agreement(proj.embedding, y, K) > 0.9
    assert steps == sorted(steps) and steps[-1] == 1.0


def test_warm_reference_umap_runs_the_engine_path(no_umap_neighbour_search, monkeypatch):
    """The warm-up lays out its tiny input through the engine's own path (and on the given neighbours)."""
    from explorer.maps import projection

    laid_out = []
    fit_reference = projection._fit_reference

    def spy(z, idx, dist, params, progress):
        laid_out.append(fit_reference(z, idx, dist, params, progress))
        return laid_out[-1]

    monkeypatch.setattr(projection, "_fit_reference", spy)
    warm_reference_umap()
    (proj,) = laid_out
    assert proj.params.engine == "umap-learn"
    assert proj.embedding.shape == (300, 2) and np.isfinite(proj.embedding).all()


def test_warming_apart_leaves_this_process_without_umap_learn():
    import subprocess
    import sys

    # a fresh interpreter: this test process may have imported umap-learn already
    code = (
        "import sys; from explorer.maps.projection import warm_reference_umap_apart as w; s = w(); "
        "print(s, 'umap' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=900)
    _, umap_here, torch_here = out.stdout.split()  # the child's seconds, for reading
    assert umap_here == "False" and torch_here == "False"
