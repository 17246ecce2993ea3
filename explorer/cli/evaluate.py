"""Test-split metrics of checkpoints next to a PCA baseline.

``--card`` prints a markdown model card from each checkpoint's metadata instead.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--dataset", default=None, help="default: the dataset the checkpoint was trained on")
    p.add_argument("--data-root", default=None)
    p.add_argument("--card", action="store_true", help="print a markdown model card from the metadata instead")


def run(args: argparse.Namespace) -> int:
    from explorer.quality.evaluation import evaluate_checkpoints, model_card

    if args.card:
        print(model_card(args.checkpoints))
        return 0
    return evaluate_checkpoints(args.checkpoints, dataset=args.dataset, data_root=args.data_root)
