"""Measure cold start, interactions, fresh maps and browser latency against a bare page; prints the figures.

``python -m explorer bench load [--people 8] [--seconds 60]`` instead runs the load test: several people at
once in one Chromium against one server, each selecting, decoding, interpolating and uploading a model of
their own; it fails on errors, on an upload seen by another session, or above --rss-limit MB of server memory.

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
PARTS = ("inverse", "interactions", "fresh", "cold", "latency", "hover")
SUITES = ("figures", "load")  # the speed figures (PARTS), or the load test
DEFAULT_PEOPLE = {"figures": [1, 4], "load": [8]}


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


def _seconds(text: str) -> float:
    value = float(text)
    if not 1 <= value <= 3600:
        raise argparse.ArgumentTypeError("between 1 and 3600 seconds")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "suite",
        nargs="?",
        choices=SUITES,
        default="figures",
        help="figures (default): the speed figures of --only; load: many people at once (--people, --seconds)",
    )
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
        default=None,
        help="latency: comma list of how many people select at once, one browser context each (default 1,4); "
        "load: how many people (default 8; of a list, the largest)",
    )
    p.add_argument("--seconds", type=_seconds, default=60.0, help="load: how long the people keep going")
    p.add_argument(
        "--rss-limit", type=float, default=None, help="load: MB of server memory above which it fails (default 800)"
    )


def people_of(args: argparse.Namespace) -> list[int]:
    """``--people``, or the suite's default."""
    return args.people or DEFAULT_PEOPLE[args.suite]


def run(args: argparse.Namespace) -> int:
    if not (REPO / "benchmarks" / "__main__.py").is_file():
        raise ExplorerError(
            f"no benchmarks/ next to the explorer package ({REPO}): "
            "the benchmarks run from a source checkout of the repository, not from an installed package"
        )
    # the child runs in the repository root: a relative checkpoint path would change meaning there
    argv = [args.suite, "--runs", str(args.runs), "--only", ",".join(args.only)]
    argv += ["--checkpoint", str(args.checkpoint.resolve()), "--people", ",".join(map(str, people_of(args)))]
    argv += ["--seconds", str(args.seconds)] + (["--rss-limit", str(args.rss_limit)] if args.rss_limit else [])
    return subprocess.run([sys.executable, "-m", "benchmarks", *argv], cwd=REPO).returncode
