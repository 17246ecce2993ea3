"""Measure cold start, interactions, fresh maps and browser latency against a bare page; prints the figures.

Runs ``python -m benchmarks`` from the source checkout in a child process, so the explorer
package never imports benchmark code (the benchmarks are not part of an installed package).
What each figure means and the figures measured so far: docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from explorer.errors import ExplorerError

REPO = Path(__file__).resolve().parents[2]
PARTS = ("inverse", "interactions", "fresh", "cold", "latency")


def _parts(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        raise argparse.ArgumentTypeError(f"expected a comma list of {', '.join(PARTS)}; got {text!r}")
    return parts


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return value


def _people(text: str) -> list[int]:
    counts = sorted({_positive(p) for p in text.split(",") if p.strip()})
    if not counts:
        raise argparse.ArgumentTypeError(f"expected a comma list of head counts, e.g. 1,4; got {text!r}")
    return counts


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--runs",
        type=_positive,
        default=5,
        help="figures are medians of this many runs (latency: box selections per person, and page loads)",
    )
    p.add_argument("--only", type=_parts, default=list(PARTS), help=f"comma list of: {', '.join(PARTS)}")
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=REPO / "checkpoints" / "fashion-mnist-ae-conv32.safetensors",
        help="checkpoint for the fresh-map figure (one without a precomputed bundle)",
    )
    p.add_argument(
        "--people",
        type=_people,
        default=[1, 4],
        help="latency: comma list of how many people select at once (one browser context each)",
    )


def run(args: argparse.Namespace) -> int:
    if not (REPO / "benchmarks" / "__main__.py").is_file():
        raise ExplorerError(
            f"no benchmarks/ next to the explorer package ({REPO}): "
            "the benchmarks run from a source checkout of the repository, not from an installed package"
        )
    # the child runs in the repository root: a relative checkpoint path would change meaning there
    argv = ["--runs", str(args.runs), "--only", ",".join(args.only), "--checkpoint", str(args.checkpoint.resolve())]
    argv += ["--people", ",".join(map(str, args.people))]
    return subprocess.run([sys.executable, "-m", "benchmarks", *argv], cwd=REPO).returncode
