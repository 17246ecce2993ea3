"""``python -m benchmarks [--runs N] [--only PARTS] [--checkpoint PATH] [--people 1,4]``: prints the figures.

Every part prints medians, except latency, which prints its own table of p50 and p95 (benchmarks/latency.py).
``python -m benchmarks load [--people 8] [--seconds 60]`` runs the load test instead (benchmarks/load.py).
"""

from __future__ import annotations

import argparse
import os
import sys

from benchmarks import hover, latency, load, speed
from explorer.cli.bench import add_arguments, people_of


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=speed.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.suite == "load":
        return load.report(load.measure(max(people_of(args)), args.seconds, args.rss_limit or load.RSS_LIMIT_MB))
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
    if results:
        width = max(len(k) for k in results)
        print(f"medians over {args.runs} runs (fresh map: {fresh_runs}) on {os.cpu_count()} CPU cores")
        for k, v in results.items():
            print(f"{k:<{width}}  {v:10.3f}")
    if "hover" in args.only:
        hovers = hover.measure(args.runs)
        print(f"\n{args.runs} hovers per map, on {os.cpu_count()} CPU cores")
        print(hover.table(hovers))
    if "latency" in args.only:
        figures = latency.measure(args.runs, people_of(args))
        print(f"\n{args.runs} selections per person and {args.runs} page loads per page, on {os.cpu_count()} CPU cores")
        print(latency.table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
