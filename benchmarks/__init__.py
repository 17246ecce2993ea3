"""Speed and quality benchmarks of the explorer, run as ``python -m benchmarks`` from the repository root.

Also reachable as ``python -m explorer bench``. Nothing in ``explorer/`` imports this package.
"""
