"""A checkpoint's model card: how to train it again and what it scored, from its own metadata.

``python -m explorer evaluate --card`` prints it; nothing here runs the model.
"""

from __future__ import annotations

from explorer.checkpoint import read_metadata


def training_command(path: str, meta: dict) -> str:
    """The `python -m explorer train` line that reproduces a checkpoint, from its own metadata."""
    from explorer import models  # the kind's defaults: its config class (a heavy import, for this line alone)

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
