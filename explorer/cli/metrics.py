"""Quality metrics of one checkpoint beside PCA with as many numbers (cached).

On one split of a built-in dataset: reconstruction MSE and BCE; a VAE's KL and active units; an
SAE's L0, dead and dense features; kNN (k=5) and linear-probe accuracy of the codes, trained on
train-split codes; the same for PCA fitted on the train split, with its error for a range of
component counts; with --ood, the AUROC of reconstruction error as an outlier score for another
dataset's images. Computed once per checkpoint, images and options, then read from the cache.

    python -m explorer metrics checkpoints/fashion-mnist-vae-conv16.safetensors --ood mnist
    python -m explorer metrics checkpoints/mnist-ae-mlp32.safetensors --dataset digits --json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from explorer.checkpoint import load_checkpoint, read_metadata
from explorer.errors import CheckpointError, MetricsError
from explorer.maps.neighbours import no_progress
from explorer.quality.metrics import PCA_CURVE, SPLITS, QualityOptions, QualityReport, quality_report
from explorer.store import DiskCache, cache_dir, sha256


def add_arguments(p: argparse.ArgumentParser) -> None:
    default = QualityOptions()
    p.add_argument("checkpoint")
    p.add_argument("--dataset", default=None, help="a built-in dataset; default: the one the checkpoint was trained on")
    p.add_argument("--split", default="test", choices=SPLITS, help="the split evaluated (kNN and probe learn on train)")
    p.add_argument("--ood", default=None, metavar="DATASET", help="score this dataset's images as outliers (AUROC)")
    p.add_argument("--limit", type=int, default=0, help="evaluate a seeded subset of this many images (0 = all)")
    p.add_argument("--max-train", type=int, default=default.max_train, help="train images the kNN and probe learn from")
    p.add_argument(
        "--dense-threshold",
        type=float,
        default=default.dense_threshold,
        help="an SAE feature active on more than this share of images is dense",
    )
    p.add_argument(
        "--curve",
        default=",".join(map(str, PCA_CURVE)),
        help="PCA component counts of the error curve, comma-separated",
    )
    p.add_argument("--data-root", default=None, help="where the dataset files are (default: the usual places)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--no-cache", action="store_true", help="compute again and do not store the result")


def _curve(text: str) -> tuple[int, ...]:
    try:
        return tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
    except ValueError:
        raise MetricsError(f"--curve takes whole numbers separated by commas, e.g. 1,2,4,8; got {text!r}") from None


def _cell(value) -> str:
    if value is None:
        return "—"
    return f"{value:d}" if isinstance(value, int) else f"{value:.4g}"


def table(report, title: str) -> str:
    """The report as aligned text: one row per figure, the model beside PCA where PCA has one."""
    rows = [(title, _cell(model), "" if pca is None else _cell(pca)) for title, model, pca in report.rows()]
    header = ("", "model", f"PCA ({report.pca_components})")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(3)]
    line = lambda r: f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}".rstrip()  # noqa: E731
    curve = ", ".join(f"{n}: {mse:.4g}" for n, mse in report.pca_curve)
    return "\n".join([title, "", line(header), *map(line, rows), "", f"PCA MSE by components: {curve}"])


def report_of(
    checkpoint: str | Path,
    *,
    dataset: str | None = None,
    split: str = "test",
    options: QualityOptions | None = None,
    data_root: str | None = None,
    use_cache: bool = True,
    progress: Callable[[float, str], None] | None = None,
) -> tuple[QualityReport, bool, dict[str, Any], str]:
    """(report, whether it was cached, the checkpoint's metadata, the dataset) of one checkpoint file.

    The one path from a file to its figures: ``metrics`` prints the whole report, ``evaluate`` a line of it."""
    path = Path(checkpoint)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    meta = read_metadata(raw)
    dataset = dataset or meta.get("dataset", {}).get("name") or "fashion-mnist"
    report, cached = quality_report(
        lambda: load_checkpoint(raw),
        sha256(raw),
        tuple(meta["config"]["input_shape"]),
        dataset,
        split=split,
        options=options or QualityOptions(),
        cache=DiskCache(cache_dir()) if use_cache else None,
        root=data_root,
        progress=progress or no_progress,
    )
    return report, cached, meta, dataset


def run(args: argparse.Namespace) -> int:
    options = QualityOptions(
        limit=args.limit,
        max_train=args.max_train,
        dense_threshold=args.dense_threshold,
        curve=_curve(args.curve),
        ood=args.ood,
    )

    def progress(fraction: float, message: str) -> None:
        if not args.json:
            print(f"  {100 * fraction:3.0f}%  {message}", flush=True)

    report, cached, meta, dataset = report_of(
        args.checkpoint,
        dataset=args.dataset,
        split=args.split,
        options=options,
        data_root=args.data_root,
        use_cache=not args.no_cache,
        progress=progress,
    )
    if args.json:
        print(json.dumps(report.to_dict()))
        return 0
    ctx = report.context
    title = (
        f"{Path(args.checkpoint).name}: {meta['config']['kind']} on {dataset} {args.split} "
        f"({ctx.get('images', '?'):,} images; kNN and probe trained on {ctx.get('train_images', '?'):,} train images"
        + (f"; outliers: {ctx.get('ood_images', '?'):,} {args.ood} images" if args.ood else "")
        + ")"
        + (" [cached]" if cached else f" [{ctx.get('seconds', 0):.1f} s]")
    )
    print(table(report, title))
    return 0
