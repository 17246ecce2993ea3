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

    def run(args: argparse.Namespace) -> int:
        from explorer.evaluation import evaluate_checkpoints

        return evaluate_checkpoints(args.checkpoints, dataset=args.dataset, data_root=args.data_root)

    p.set_defaults(func=run)


COMMANDS = [_cmd_train, _cmd_evaluate]


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
