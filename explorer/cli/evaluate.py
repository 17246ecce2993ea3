"""Test-split metrics of checkpoints next to a PCA baseline: one line each from ``metrics``' report.

The figures are those of ``python -m explorer metrics`` (the same computation and the same cache),
on the whole test split; ``metrics`` prints every figure, this command one line per checkpoint.
``--card`` prints a markdown model card from each checkpoint's metadata instead.
"""

from __future__ import annotations

import argparse
import math

from explorer.cli.metrics import report_of
from explorer.quality.card import model_card


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--dataset", default=None, help="default: the dataset the checkpoint was trained on")
    p.add_argument("--data-root", default=None)
    p.add_argument("--card", action="store_true", help="print a markdown model card from the metadata instead")
    p.add_argument("--no-cache", action="store_true", help="compute again and do not store the results")


def line(path: str, kind: str, dataset: str, figures: dict, pca_components: int, images: int) -> str:
    """One checkpoint's report as a line: its MSE, PCA's with as many numbers, and the other figures."""
    mse, pca = figures["recon_mse"], figures["pca_recon_mse"]
    extra = ", ".join(
        f"{k}={v:.4g}" for k, v in figures.items() if v is not None and k != "recon_mse" and not k.startswith("pca_")
    )
    return (
        f"{path}: {kind} on {dataset} test ({images} images): mse={mse:.5f} | PCA({pca_components}) mse={pca:.5f} | "
        f"{100 * (1.0 - mse / pca):+.1f}% better than PCA | {extra}"
    )


def run(args: argparse.Namespace) -> int:
    if args.card:
        print(model_card(args.checkpoints))
        return 0
    ok = True
    for path in args.checkpoints:
        report, _, meta, dataset = report_of(
            path, dataset=args.dataset, data_root=args.data_root, use_cache=not args.no_cache
        )
        figures = report.figures
        ok = ok and math.isfinite(float(figures["recon_mse"] or math.nan))
        kind = meta["config"]["kind"]
        print(line(path, kind, dataset, figures, report.pca_components, report.context.get("images", 0)), flush=True)
    return 0 if ok else 1
