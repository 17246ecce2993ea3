"""``python -m explorer <command>``: train, evaluate, and the other tools of the explorer."""

from __future__ import annotations

import argparse
import sys

from explorer.errors import ExplorerError


def _cmd_train(sub: argparse._SubParsersAction) -> None:
    from explorer import train

    p = sub.add_parser("train", help="train a model and write a checkpoint")
    train.add_arguments(p)
    p.set_defaults(func=train.main)


def _cmd_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="test-split metrics of checkpoints next to a PCA baseline")
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--dataset", default=None, help="default: the dataset the checkpoint was trained on")
    p.add_argument("--data-root", default=None)
    p.add_argument("--card", action="store_true", help="print a markdown model card from the metadata instead")

    def run(args: argparse.Namespace) -> int:
        from explorer.evaluation import evaluate_checkpoints, model_card

        if args.card:
            print(model_card(args.checkpoints))
            return 0
        return evaluate_checkpoints(args.checkpoints, dataset=args.dataset, data_root=args.data_root)

    p.set_defaults(func=run)


def _cmd_project(sub: argparse._SubParsersAction) -> None:
    from explorer.projection import METRICS

    p = sub.add_parser("project", help="precompute a map (latents + projection) for a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--dataset", default=None, help="default: the dataset the checkpoint was trained on")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--n", type=int, default=10000, help="images to map (0 = all)")
    p.add_argument("--method", default="umap", choices=["umap", "pca"])
    p.add_argument("--dims", type=int, default=2, choices=[2, 3])
    p.add_argument("--neighbors", type=int, default=15)
    p.add_argument("--min-dist", type=float, default=0.1)
    p.add_argument("--metric", default="euclidean", choices=METRICS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--engine", default="builtin", choices=["builtin", "umap-learn"])
    p.add_argument(
        "--bundle", action="store_true", help="write into checkpoints/bundles (shipped) instead of the cache"
    )

    def run(args: argparse.Namespace) -> int:
        from explorer.mapping import project_checkpoint

        return project_checkpoint(args)

    p.set_defaults(func=run)


def _cmd_bench(sub: argparse._SubParsersAction) -> None:
    from explorer.ui import bench

    p = sub.add_parser("bench", help="measure cold start, interactions and fresh maps; prints medians")
    bench.add_arguments(p)
    p.set_defaults(func=bench.main)


def _cmd_import(sub: argparse._SubParsersAction) -> None:
    from explorer import importers

    p = sub.add_parser("import", help="convert a PyTorch state_dict or a Keras .keras file into a checkpoint")
    importers.add_arguments(p)
    p.set_defaults(func=importers.main)


COMMANDS = [_cmd_train, _cmd_evaluate, _cmd_project, _cmd_bench, _cmd_import]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m explorer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ExplorerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
