"""The load test, short (benchmarks/load.py): 2 people for 20 s against one server, each selecting, decoding a
spot, interpolating, returning to the map and uploading a model of their own. It checks what must hold for any
number of people: no errors, no session ever lists another session's upload, each person's own upload listed,
every interaction measured. Speed and memory are printed for reading; memory is only held to a bound far above
what two people need, which catches memory that grows per session or per request, not a slow machine."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from benchmarks import load

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.perf]  # a bound on memory

PEOPLE = 2
SECONDS = 20
RSS_LIMIT_MB = load.RSS_LIMIT_MB  # the limit eight people keep (docs/BENCHMARKS.md): two must too


def test_load_short_has_no_errors_and_no_cross_session_uploads(chromium):
    # the browser tests' sync Playwright leaves its event loop marked as running in this thread (test_latency.py)
    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(load.measure, PEOPLE, SECONDS, RSS_LIMIT_MB).result()
    print(load.table(result))
    assert result.errors == []
    assert result.leaks == []
    for step in load.STEPS:
        assert result.times_ms[step], f"no {step!r} was measured"
    assert len(result.times_ms["upload -> map"]) == PEOPLE, "every person's upload was mapped"
    assert result.rss_mb and result.max_rss_mb < RSS_LIMIT_MB
