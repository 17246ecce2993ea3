"""``python -m explorer <command>``: train, evaluate, and the other tools of the explorer.

Each command is one module here with a docstring (its first line is the command's help),
``add_arguments(parser)`` and ``run(args) -> exit code``. A run imports the chosen
command's module only; modules keep heavy imports (torch, umap) inside their functions,
so ``python -m explorer --help``, which reads every docstring, stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from explorer.errors import ExplorerError

# command name -> module in explorer/cli/
COMMANDS = {
    "train": "train",
    "evaluate": "evaluate",
    "metrics": "metrics",
    "project": "project",
    "encode": "encode",
    "import": "import_model",
    "bench": "bench",
}


def command_module(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{COMMANDS[name]}")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``command`` alone, or, for any other word, of every command (for help and errors)."""
    parser = argparse.ArgumentParser(prog="python -m explorer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in [command] if command in COMMANDS else COMMANDS:
        module = command_module(name)
        doc = (module.__doc__ or "").strip()
        p = sub.add_parser(
            name,
            help=doc.splitlines()[0] if doc else None,
            description=doc or None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if name == command:
            module.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # the top-level parser has no options of its own, so a command, if any, comes first
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    try:
        return int(command_module(args.command).run(args) or 0)
    except ExplorerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
