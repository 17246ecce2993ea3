"""``python -m explorer evaluate``: each checkpoint's test metrics beside PCA with as many components.

The PCA gets as many components as the model says makes a fair comparison
(``Autoencoder.baseline_components``): the latent size, or for an SAE its mean L0 rounded up.
"""

from __future__ import annotations

import numpy as np
import torch

from explorer.checkpoint import load_checkpoint
from explorer.data import load_dataset, to_float
from explorer.quality.metrics import evaluate, pca_baseline_mse


def evaluate_checkpoints(paths: list[str], *, dataset: str | None = None, data_root: str | None = None) -> int:
    rows = []
    pca_cache: dict[tuple[str, int], float] = {}
    for path in paths:
        model = load_checkpoint(path)
        name = dataset or model.info.get("dataset", {}).get("name", "fashion-mnist")
        train_ds = load_dataset(name, "train", root=data_root)
        test_ds = load_dataset(name, "test", root=data_root)
        x_test = torch.from_numpy(to_float(test_ds.images))
        metrics = evaluate(model, x_test)
        n_comp = model.baseline_components(metrics)
        key = (name, n_comp)
        if key not in pca_cache:
            flat_tr = to_float(train_ds.images).reshape(len(train_ds), -1)
            flat_te = x_test.numpy().reshape(len(test_ds), -1)
            pca_cache[key] = pca_baseline_mse(flat_tr, flat_te, n_comp)
        pca = pca_cache[key]
        gain = 1.0 - metrics["mse"] / pca
        rows.append((path, model.kind, name, len(test_ds), metrics, n_comp, pca, gain))
    for path, kind, name, n, m, n_comp, pca, gain in rows:
        extra = ", ".join(f"{k}={v:.4g}" for k, v in m.items() if k != "mse")
        print(
            f"{path}: {kind} on {name} test ({n} images): mse={m['mse']:.5f} | PCA({n_comp}) mse={pca:.5f} | "
            f"{100 * gain:+.1f}% better than PCA | {extra}"
        )
    return 0 if all(np.isfinite(r[4]["mse"]) for r in rows) else 1


def training_command(path: str, meta: dict) -> str:
    """The `python -m explorer train` line that reproduces a checkpoint, from its own metadata."""
    from explorer import models

    cfg = dict(meta["config"])
    kind = cfg.pop("kind")
    defaults = models.config_class(kind)().to_dict()
    parts = ["python -m explorer train", f"--kind {kind}"]
    for key, value in cfg.items():
        if key in ("notes", "input_shape") or (value == defaults.get(key) and key != "latent_dim"):
            continue
        text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
        parts.append(f"--{key.replace('_', '-')} {text or chr(34) * 2}")
    train = meta.get("training", {})
    parts.append(f"--dataset {meta.get('dataset', {}).get('name', '?')} --epochs {train.get('epochs')}")
    if train.get("batch_size", 128) != 128:
        parts.append(f"--batch-size {train['batch_size']}")
    parts.append(f"--out {path}")
    return " ".join(parts)


def model_card(paths: list[str]) -> str:
    """Markdown: one section per checkpoint with its command, device, time and test metrics."""
    from explorer.checkpoint import read_metadata

    lines = []
    for path in paths:
        meta = read_metadata(path)
        cfg, train, metrics = meta["config"], meta.get("training", {}), meta.get("metrics", {})
        ds = meta.get("dataset", {})
        lines += [
            f"### `{path.split('/')[-1]}`",
            "",
            f"{cfg['kind'].upper()}, {cfg['backbone']} backbone (hidden {cfg['hidden']}), latent {cfg['latent_dim']}, "
            f"{cfg['recon_loss'].upper()} loss; trained on {ds.get('name')} ({ds.get('train_images')} train images) "
            f"on **{train.get('device')}** for {train.get('epochs')} epochs in {train.get('wall_time_s', 0) / 60:.1f} min "
            f"(torch {train.get('torch')}).",
            "",
            "```bash",
            training_command(path, meta),
            "```",
            "",
            f"Test split ({ds.get('test_images')} images): " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()),
            "",
        ]
    return "\n".join(lines)
