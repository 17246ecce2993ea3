"""Quality metrics (explorer.quality.metrics, .probes, .anomaly) against values worked out by hand or by an
independent computation (numpy's SVD), on tiny models whose weights the tests set; and the
``metrics`` command on a shipped checkpoint."""

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from explorer import models
from explorer.data import Dataset
from explorer.errors import MetricsError
from explorer.maps.pipeline import REPO, DiskCache
from explorer.quality.anomaly import auroc, rank_by_error
from explorer.quality.metrics import (
    QualityOptions,
    active_units,
    fit_pca,
    model_quality,
    quality_report,
    sparsity,
    split_images,
)
from explorer.quality.probes import knn_accuracy, probe_accuracy

SHAPE = (1, 4, 4)  # 16 pixels: small enough to reason about every weight


def dataset(x: np.ndarray, labels: np.ndarray, name: str = "synthetic") -> Dataset:
    """Float images (N, 16) in [0, 1] -> a Dataset of 4x4 uint8 images."""
    images = np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8).reshape(-1, 4, 4)
    return Dataset(name, images, np.asarray(labels, dtype=np.int64), [str(i) for i in range(int(labels.max()) + 1)])


def floats(ds: Dataset) -> np.ndarray:
    return ds.images.reshape(len(ds), -1).astype(np.float64) / 255.0


@pytest.fixture
def low_rank():
    """Train and test images near a 3-D plane in pixel space, labelled by their strongest factor."""
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(16, 3)))[0].T  # (3, 16) orthonormal
    scale = np.array([0.12, 0.08, 0.05])  # distinct variances: the principal axes are well defined

    def make(n):
        factors = rng.normal(size=(n, 3)) * scale
        x = 0.5 + factors @ basis + rng.normal(scale=0.01, size=(n, 16))
        return dataset(x, np.argmax(np.abs(factors) / scale, axis=1))

    return make(600), make(300)


def linear_ae(latent: int, encoder_w, encoder_b, decoder_w, decoder_b):
    """An AE of one linear layer each way with no output squashing: x_hat = W_d (W_e x + b_e) + b_d."""
    cfg = models.config_class("ae")(
        input_shape=SHAPE, latent_dim=latent, backbone="mlp", hidden=(), output_activation="identity"
    )
    model = models.build(cfg).eval()
    enc, dec = model.encoder[-1], model.decoder[0]
    with torch.no_grad():
        for param, value in ((enc.weight, encoder_w), (enc.bias, encoder_b), (dec.weight, decoder_w), (dec.bias, decoder_b)):  # fmt: skip
            param.copy_(torch.as_tensor(np.asarray(value), dtype=torch.float32))
    return model


# --- reconstruction, on models whose answer is known ------------------------------------------------


def test_identity_autoencoder_reconstructs_perfectly(low_rank):
    train, test = low_rank
    eye = np.eye(16)
    report = model_quality(linear_ae(16, eye, np.zeros(16), eye, np.zeros(16)), test, train, train)
    assert report.figures["recon_mse"] < 1e-12
    # its codes are the pixels, so PCA with all 16 components is as exact, and the kNN sees the same space
    assert report.pca_components == 16 and report.figures["pca_recon_mse"] < 1e-12
    assert report.figures["knn_accuracy"] == pytest.approx(report.figures["pca_knn_accuracy"], abs=0.01)


def test_constant_decoder_has_hand_computed_errors(low_rank):
    """A decoder that paints every pixel 0.5: MSE is the mean of (x - 0.5)^2 and BCE is exactly ln 2."""
    train, test = low_rank
    model = linear_ae(2, np.zeros((2, 16)), np.zeros(2), np.zeros((16, 2)), np.full(16, 0.5))
    figures = model_quality(model, test, train, train).figures
    assert figures["recon_mse"] == pytest.approx(np.mean((floats(test) - 0.5) ** 2), rel=1e-6)
    assert figures["recon_bce"] == pytest.approx(np.log(2.0), rel=1e-6)


def test_linear_autoencoder_equal_to_pca_scores_as_pca(low_rank):
    """Weights from numpy's SVD of the train images: the model is PCA with 3 components, so every
    figure of the model equals PCA's, and both equal a reconstruction done here by hand."""
    train, test = low_rank
    x_train, x_test = floats(train), floats(test)
    mean = x_train.mean(0)
    v = np.linalg.svd(x_train - mean, full_matrices=False)[2][:3]  # (3, 16) principal axes
    model = linear_ae(3, v, -v @ mean, v.T, mean)
    report = model_quality(model, test, train, train, options=QualityOptions(curve=(1, 2, 3, 8)))
    by_hand = np.mean(((x_test - mean) @ v.T @ v + mean - x_test) ** 2)
    f = report.figures
    assert report.pca_components == 3
    assert f["recon_mse"] == pytest.approx(by_hand, rel=1e-4)
    assert f["pca_recon_mse"] == pytest.approx(by_hand, rel=1e-6)
    assert f["knn_accuracy"] == pytest.approx(f["pca_knn_accuracy"], abs=0.01)
    assert f["probe_accuracy"] == pytest.approx(f["pca_probe_accuracy"], abs=0.01)
    assert f["knn_accuracy"] > 0.5, "the labels follow the factors: the codes must carry them"
    assert report.model_point == (3, pytest.approx(f["recon_mse"]))
    assert [n for n, _ in report.pca_curve] == [1, 2, 3, 8]
    assert "kl" not in f and "l0" not in f  # a plain autoencoder has neither a prior nor sparse codes


def test_pca_curve_matches_numpy_svd_and_scikit_learn(low_rank):
    train, test = low_rank
    x_train, x_test = floats(train), floats(test)
    basis = fit_pca(x_train, max_components=8)
    mean = x_train.mean(0)
    v = np.linalg.svd(x_train - mean, full_matrices=False)[2]
    errors = basis.recon_mse(x_test, [1, 2, 3, 8])
    for n in (1, 2, 3, 8):
        by_svd = np.mean(((x_test - mean) @ v[:n].T @ v[:n] + mean - x_test) ** 2)
        assert errors[n] == pytest.approx(by_svd, rel=1e-6), n
    from sklearn.decomposition import PCA

    sk = PCA(n_components=3, svd_solver="full").fit(x_train)
    assert errors[3] == pytest.approx(np.mean((sk.inverse_transform(sk.transform(x_test)) - x_test) ** 2), rel=1e-4)
    # the leading axes are the same lines (up to sign) as the SVD's
    np.testing.assert_allclose(np.abs(np.sum(basis.components[:3] * v[:3], axis=1)), 1.0, atol=1e-6)


# --- sparse codes ---------------------------------------------------------------------------------------


def test_sparsity_by_hand():
    codes = np.zeros((10, 4))
    codes[:, 0] = 1.0  # every image: dense
    codes[0, 1] = 0.3  # one image in ten, exactly the threshold: not dense
    codes[:2, 2] = 2.0  # two in ten: dense
    # feature 3 never fires: dead
    assert sparsity(codes) == pytest.approx({"l0": 1.3, "dead_fraction": 0.25, "dense_fraction": 0.5})
    assert sparsity(codes, dense_threshold=0.5)["dense_fraction"] == 0.25
    with pytest.raises(MetricsError):
        sparsity(np.zeros((0, 4)))


def test_sae_with_a_feature_forced_off_reports_it_dead_and_one_always_on_dense():
    """Features read single pixels (active when the pixel is above 0.9); feature 0 is always on, feature 5
    always off. Pixel 1 is bright in half the images, pixel 2 in one of 20, the others never."""
    cfg = models.config_class("sae")(input_shape=SHAPE, latent_dim=8, k=4, hidden=(), sparsity="l1")
    sae = models.build(cfg).eval()
    w, b = torch.zeros(8, 16), torch.full((8,), -0.9)
    for f in (1, 2, 3, 4, 6, 7):
        w[f, f] = 1.0
    b[0], b[5] = 1.0, -1.0
    with torch.no_grad():
        sae.encoder[-1].weight.copy_(w)
        sae.encoder[-1].bias.copy_(b)
    x = np.zeros((20, 16))
    x[:10, 1] = 1.0
    x[0, 2] = 1.0
    images = dataset(x, np.arange(20) % 2)
    f = model_quality(sae, images, images, images).figures
    # active per image: feature 0 always, 1 in half, 2 in one -> (20 + 10 + 1) / 20
    assert f["l0"] == pytest.approx(1.55)
    assert f["dead_fraction"] == pytest.approx(5 / 8)  # 3, 4, 5 (forced off), 6, 7
    assert f["dense_fraction"] == pytest.approx(2 / 8)  # 0 and 1
    assert "active_units" not in f


# --- a posterior: active units ---------------------------------------------------------------------------


def test_active_units_by_hand():
    variances = np.array([0.0, 0.005, 0.02, 1.0])
    codes = np.sqrt(variances) * np.array([[1.0], [-1.0]]).repeat(5, axis=0)  # (10, 4), each column ± its std
    np.testing.assert_allclose(codes.var(0), variances)
    assert active_units(codes) == 2
    assert active_units(codes, threshold=0.001) == 3
    with pytest.raises(MetricsError):
        active_units(codes[:1])


def test_vae_with_constant_dimensions_has_them_inactive(low_rank):
    train, test = low_rank
    cfg = models.config_class("vae")(input_shape=SHAPE, latent_dim=4, hidden=())
    vae = models.build(cfg).eval()
    head = vae.encoder[-1]  # (mu, logvar) = W x + b, mu the first 4 rows
    with torch.no_grad():
        head.weight[:4] = torch.randn(4, 16) * 3.0
        head.weight[[1, 3]] = 0.0  # the posterior means of dimensions 1 and 3 ignore the image
    report = model_quality(vae, test, train, train)
    f = report.figures
    assert f["active_units"] == 2
    x = torch.from_numpy(floats(test)).float().view(-1, *SHAPE)
    with torch.no_grad():
        kl = vae.kl(*vae.posterior(x)).mean().item()
    assert f["kl"] == pytest.approx(kl, rel=1e-5)
    assert report.pca_components == 4


# --- kNN --------------------------------------------------------------------------------------------------


def test_knn_accuracy_by_hand():
    z_train = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [12.0]])
    y_train = np.array([0, 0, 0, 1, 1, 1])
    # 5.9: nearest 2 (class 0), 10 (1), 1 (0): voted 0, labelled 1 -> one mistake in three
    assert knn_accuracy(z_train, y_train, np.array([[0.5], [11.5], [5.9]]), np.array([0, 1, 1]), k=3) == pytest.approx(
        2 / 3
    )
    # k = 2 at 6.1: one vote each, the tie goes to the nearer neighbour (10, class 1)
    assert knn_accuracy(z_train, y_train, np.array([[6.1]]), np.array([1]), k=2) == 1.0
    assert knn_accuracy(z_train, y_train, np.array([[5.9]]), np.array([0]), k=2) == 1.0
    # unlabelled images (-1) are left out; nothing labelled: no figure
    assert knn_accuracy(z_train, y_train, np.array([[0.0], [5.0]]), np.array([0, -1]), k=1) == 1.0
    assert knn_accuracy(z_train, -np.ones(6, int), z_train, y_train) is None


def test_probe_accuracy_on_separable_and_unlearnable_codes():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 40)
    z = np.column_stack([y + 0.1 * rng.standard_normal(120), np.zeros(120)])  # the second column is dead
    assert probe_accuracy(z[::2], y[::2], z[1::2], y[1::2]) == 1.0
    # the labels are a coin toss the codes know nothing of: about chance, never perfect
    coin = rng.integers(0, 2, 120)
    assert probe_accuracy(rng.standard_normal((120, 2)), coin, rng.standard_normal((60, 2)), coin[:60]) < 0.8
    # unlabelled images (-1) are left out; one class to learn or nothing to score: no figure
    assert probe_accuracy(z, y, np.array([[0.0, 0.0], [5.0, 0.0]]), np.array([0, -1])) == 1.0
    assert probe_accuracy(z, np.zeros(120, int), z, y) is None
    assert probe_accuracy(z, y, z, -np.ones(120, int)) is None


# --- anomaly scores ---------------------------------------------------------------------------------------


def test_auroc_constructed_cases():
    assert auroc([0.1, 0.2, 0.3], [0.5, 0.9]) == 1.0  # perfectly separated
    assert auroc([0.5, 0.9], [0.1, 0.2, 0.3]) == 0.0  # the score points the wrong way
    assert auroc([0.4, 0.4, 0.4], [0.4, 0.4]) == 0.5  # identical: chance
    same = np.random.default_rng(0).random(50)
    assert auroc(same, same) == 0.5
    # by hand: the outlier 2 beats 1, ties 2 (one half), loses to 3; the outlier 4 beats all three
    assert auroc([1, 2, 3], [2, 4]) == pytest.approx((1 + 0.5 + 0 + 3) / 6)


def test_auroc_equals_counting_every_pair():
    rng = np.random.default_rng(1)
    inl, out = rng.integers(0, 6, 40), rng.integers(2, 9, 25)  # small integers: many ties
    pairs = [1.0 if o > i else 0.5 if o == i else 0.0 for i, o in itertools.product(inl, out)]
    assert auroc(inl, out) == pytest.approx(np.mean(pairs))
    assert auroc(np.log1p(inl), np.log1p(out)) == pytest.approx(np.mean(pairs)), "rank-based: monotone maps keep it"


def test_auroc_refuses_empty_or_non_finite_scores():
    with pytest.raises(MetricsError, match="at least one outlier"):
        auroc([1.0], [])
    with pytest.raises(MetricsError, match="finite"):
        auroc([1.0, np.nan], [2.0])


def test_rank_by_error():
    errors = [0.1, 0.5, 0.5, 0.2, np.nan]
    assert rank_by_error(errors, 3).tolist() == [1, 2, 3]  # largest first, ties in index order
    assert rank_by_error(errors, 10).tolist() == [1, 2, 3, 0, 4]  # all of them, NaN last
    assert rank_by_error(errors, 0).tolist() == []
    assert rank_by_error(errors, 2).dtype == np.int64
    with pytest.raises(MetricsError):
        rank_by_error(errors, -1)


# --- options, splits and the cache -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [{"k": 0}, {"max_train": 0}, {"limit": -1}, {"dense_threshold": 1.5}, {"active_threshold": -1.0}, {"curve": ()}],
)
def test_options_are_checked(bad):
    with pytest.raises(MetricsError):
        QualityOptions(**bad)


def test_train_split_leaves_out_the_reference_images():
    evaluated, reference, pca_train = split_images("digits", "train", (1, 8, 8), QualityOptions(max_train=400))
    assert len(reference) == 400 and len(evaluated) == len(pca_train) - 400
    seen = {im.tobytes() + bytes([lab]) for im, lab in zip(reference.images, reference.labels)}
    both = sum(im.tobytes() + bytes([lab]) in seen for im, lab in zip(evaluated.images, evaluated.labels))
    assert both <= 5, "only images that happen to be duplicates may appear on both sides"
    with pytest.raises(MetricsError, match="leaves none to evaluate"):
        split_images("digits", "train", (1, 8, 8), QualityOptions(max_train=100_000))
    with pytest.raises(MetricsError, match="split must be"):
        split_images("digits", "all", (1, 8, 8), QualityOptions())


def test_report_is_cached_and_found_without_the_model(tmp_path):
    cfg = models.config_class("ae")(input_shape=(1, 8, 8), latent_dim=4, hidden=(16,))
    model = models.build(cfg)
    cache = DiskCache(tmp_path)
    options = QualityOptions(limit=60, max_train=300, ood="mnist", curve=(1, 2, 4))
    first, cached = quality_report(lambda: model, "d" * 64, (1, 8, 8), "digits", options=options, cache=cache)
    assert not cached and 0.0 <= first.figures["ood_auroc"] <= 1.0
    assert first.context["images"] == 60 and first.context["ood_images"] == 60

    def no_model():
        raise AssertionError("a cached report must not load the model")

    again, cached = quality_report(no_model, "d" * 64, (1, 8, 8), "digits", options=options, cache=cache)
    assert cached and again.to_dict() == first.to_dict()
    # another checkpoint, other options or a damaged file: computed again
    other, cached = quality_report(lambda: model, "e" * 64, (1, 8, 8), "digits", options=options, cache=cache)
    assert not cached
    for path in tmp_path.glob("*.npz"):
        path.write_bytes(b"not an archive")
    _, cached = quality_report(lambda: model, "d" * 64, (1, 8, 8), "digits", options=options, cache=cache)
    assert not cached
    with pytest.raises(MetricsError, match="is the evaluated dataset itself"):
        quality_report(lambda: model, "d" * 64, (1, 8, 8), "digits", options=QualityOptions(ood="digits"))


def test_shipped_mnist_model_agrees_with_its_model_card(tmp_path):
    """The metadata's test figures were written at training time; PCA's is scikit-learn's, computed here."""
    from sklearn.decomposition import PCA

    from explorer.checkpoint import load_checkpoint
    from explorer.data import load_dataset, to_float

    model = load_checkpoint(str(REPO / "checkpoints" / "mnist-ae-mlp32.safetensors"))
    report, _ = quality_report(lambda: model, "f" * 64, model.input_shape, "mnist", cache=DiskCache(tmp_path))
    card = model.info["metrics"]
    assert report.figures["recon_mse"] == pytest.approx(card["mse"], rel=1e-4)
    assert report.figures["recon_bce"] == pytest.approx(card["bce"], rel=1e-4)
    assert report.figures["probe_accuracy"] == pytest.approx(card["probe_accuracy"], abs=0.02)
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    flat = lambda ds: to_float(ds.images).reshape(len(ds), -1)  # noqa: E731
    sk = PCA(n_components=32, svd_solver="randomized", random_state=0).fit(flat(train))
    by_sklearn = np.mean((sk.inverse_transform(sk.transform(flat(test))) - flat(test)) ** 2)
    assert report.figures["pca_recon_mse"] == pytest.approx(by_sklearn, rel=1e-3)


# --- the command --------------------------------------------------------------------------------------------


KEYS = {"recon_mse", "recon_bce", "knn_accuracy", "probe_accuracy", "pca_recon_mse", "pca_knn_accuracy"}
KEYS |= {"pca_probe_accuracy"}


def _metrics(*args: str, cache) -> subprocess.CompletedProcess:
    env = {**os.environ, "EXPLORER_CACHE_DIR": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "explorer", "metrics", *args], capture_output=True, text=True, timeout=120, env=env
    )


@pytest.mark.parametrize(
    ("checkpoint", "extra"),
    [("fashion-mnist-sae-topk1024", {"l0", "dead_fraction", "dense_fraction"}), ("fashion-mnist-vae-conv16", {"kl", "active_units", "ood_auroc"})],
)  # fmt: skip
def test_metrics_command_prints_one_json_object(tmp_path, checkpoint, extra):
    args = [str(REPO / "checkpoints" / f"{checkpoint}.safetensors"), "--dataset", "digits", "--limit", "100"]
    args += ["--max-train", "500"] + (["--ood", "mnist"] if "ood_auroc" in extra else [])
    done = _metrics(*args, "--json", cache=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) >= KEYS | extra
    assert all(isinstance(report[k], float) for k in KEYS)
    assert report["images"] == 100 and report["dataset"] == "digits"
    again = _metrics(*args, "--json", cache=tmp_path)
    assert json.loads(again.stdout) == report, "the second call reads the cached report"
    table = _metrics(*args, cache=tmp_path)
    assert table.returncode == 0 and "[cached]" in table.stdout and "PCA (" in table.stdout


def test_evaluate_is_a_line_of_the_metrics_report(tmp_path, monkeypatch, capsys):
    """The two commands give one checkpoint the same figures: ``evaluate`` reads the report ``metrics`` prints."""
    from explorer.checkpoint import save_checkpoint
    from explorer.cli import main

    monkeypatch.setenv("EXPLORER_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(0)
    cfg = models.config_class("ae")(input_shape=(1, 8, 8), backbone="mlp", hidden=(16,), latent_dim=3)
    path = str(tmp_path / "digits-ae.safetensors")
    save_checkpoint(models.build(cfg), path, dataset={"name": "digits"})
    assert main(["metrics", path, "--json", "--no-cache"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert main(["evaluate", path, "--no-cache"]) == 0  # computed again, not read from a cache
    line = capsys.readouterr().out
    assert f"mse={report['recon_mse']:.5f} | PCA(3) mse={report['pca_recon_mse']:.5f} |" in line, (line, report)
    assert f"probe_accuracy={report['probe_accuracy']:.4g}" in line
    assert report["pca_components"] == 3 and report["images"] > 100


def test_metrics_command_explains_bad_input(tmp_path):
    done = _metrics(str(tmp_path / "missing.safetensors"), cache=tmp_path)
    assert done.returncode == 2 and "error: cannot read" in done.stderr
    ckpt = str(REPO / "checkpoints" / "mnist-ae-mlp32.safetensors")
    done = _metrics(ckpt, "--dataset", "digits", "--curve", "1,two", cache=tmp_path)
    assert done.returncode == 2 and "--curve takes whole numbers" in done.stderr
