"""``python -m benchmarks [--runs N] [--only PARTS] [--checkpoint PATH]``: prints the medians of each figure."""

from __future__ import annotations

import argparse
import os
import sys

from benchmarks import speed
from explorer.cli.bench import add_arguments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=speed.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    fresh_runs = max(1, args.runs // 2)  # each fresh map costs a whole process and a UMAP fit
    results: dict[str, float] = {}
    if "inverse" in args.only:
        results.update(speed.inverse_quality())
    if "interactions" in args.only:
        results.update(speed.interactions(args.runs))
    if "fresh" in args.only:
        results.update(speed.fresh_map(fresh_runs, args.checkpoint))
    if "cold" in args.only:
        results.update(speed.cold_start(args.runs))
    width = max(len(k) for k in results)
    print(f"medians over {args.runs} runs (fresh map: {fresh_runs}) on {os.cpu_count()} CPU cores")
    for k, v in results.items():
        print(f"{k:<{width}}  {v:10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
