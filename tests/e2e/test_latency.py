"""The latency benchmark, short (benchmarks/latency.py): the real app and the bare page, 3 box selections per
person, 1 and 2 people. It checks that the benchmark works: the selections show new thumbnails (all but the
share of misses the benchmark allows each page) without an error, and every figure is a finite time. How fast
is for reading (printed), never asserted."""

import math
from concurrent.futures import ThreadPoolExecutor

import pytest

from benchmarks import latency

pytestmark = [pytest.mark.e2e, pytest.mark.perf]  # a selection slower than its timeout counts as missed

RUNS = 3
PEOPLE = (1, 2)


def test_latency_benchmark_runs_short(chromium):
    # the browser tests' sync Playwright lives for the whole session and leaves its event loop marked as running
    # in this thread, where asyncio.run refuses to start: the benchmark's loop gets a thread of its own
    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(latency.measure, RUNS, PEOPLE).result()
    print(latency.table(result))
    for people in PEOPLE:
        for target in latency.TARGETS:
            assert len(result.selections_ms[people, target]) >= (1 - latency.MAX_MISSED[target]) * RUNS * people, (
                people,
                target,
            )
    assert {t: len(xs) for t, xs in result.loads_s.items()} == dict.fromkeys(latency.TARGETS, RUNS)
    assert all(math.isfinite(x) and x > 0 for x in result.figures())
