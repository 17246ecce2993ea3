"""One long session in Chromium: every page for every shipped checkpoint, then the server's resident memory.

A hosted explorer serves many people for days; what one long session leaves behind (models, maps, figures,
decoded grids) must stay within the caches' byte bounds. The figures this test prints are the ones in
docs/BENCHMARKS.md, "Memory over a long session"."""

import re
import time

import pytest
from browsing import IDLE, choose_checkpoint, wait_for_map  # tests/e2e is on the path: pytest imports by name

from benchmarks.load import process_tree, server_pid, tree_rss_mb
from explorer.devserver import running_app
from explorer.maps.pipeline import CHECKPOINT_DIR
from explorer.settings import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MAX_RSS_MB = 800
# (top-bar section or None, link text, url path, heading the page shows once it has run); Map & decode has none
PAGES = (
    (None, "Map & decode", "decode", None),
    (None, "Interpolate", "interpolate", "Interpolate"),
    (None, "Sample", "sample", "Sample"),
    (None, "Traverse", "traverse", "Traverse"),
    ("Understand", "Metrics", "metrics", "Metrics of"),
    ("Understand", "Features", "features", re.compile(r"^Feature")),  # "Feature atlas" for a sparse one
    ("Understand", "Anomalies", "anomalies", "Anomalies"),
    ("Understand", "Denoising", "denoise", "Denoising"),
    ("Understand", "Compression", "compression", "Compression"),
    ("Understand", "Compare", "compare", "Two checkpoints side by side"),
    ("Yours", "Your image", "image", "Your image"),
    ("Yours", "Export", "export", "Export"),
)
# what counts as a page's result: an image, a chart, a table, a number or a notice in the main area
RESULT = (
    "() => { const m = document.querySelector('[data-testid=\"stMain\"]'); return !!m && !!m.querySelector("
    '\'[data-testid="stImage"], .js-plotly-plot, [data-testid="stDataFrame"], [data-testid="stTable"], '
    '[data-testid="stMetric"], [data-testid="stAlert"], [data-testid="stDownloadButton"], '
    '[data-testid="stFileUploader"]\'); }'
)


def _checkpoints() -> list[str]:
    default = Settings().default_checkpoint
    return sorted((p.stem for p in CHECKPOINT_DIR.glob("*.safetensors")), key=lambda s: (s != default, s))


def _open(page, section, link, path, heading) -> None:
    if section:
        page.get_by_test_id("stTopNavSection").filter(has_text=section).first.click()
        page.get_by_test_id("stTopNavDropdownLink").filter(has_text=link).first.click()
    else:
        page.get_by_test_id("stTopNavLink").filter(has_text=link).first.click()
    at = "['/', '/decode']" if path == "decode" else f"['/{path}']"  # the default page's address is the root
    page.wait_for_function(f"() => {at}.includes(location.pathname)", timeout=60_000)
    if heading:
        page.get_by_role("heading", name=heading).first.wait_for(timeout=120_000)
    else:
        wait_for_map(page)
    page.wait_for_function(IDLE, timeout=240_000)
    page.wait_for_function(RESULT, timeout=120_000)
    errors = page.locator("[data-testid='stException']")
    assert errors.count() == 0, f"{path}: {errors.first.inner_text()}"


def settled_rss_mb(pid: int, timeout_s: float = 900.0) -> float:
    """The resident memory of the server and its children once its passing children are gone.

    A server starts one child of its own: umap-learn's compile, once per install, at the lowest CPU priority
    (about 400 MB while it runs, then it exits; ``ui.warmup``). On a loaded 2-core machine it
    can run for minutes; what it holds meanwhile is not what the session leaves behind, so the measurement
    waits for it to end (at most ``timeout_s``; then it counts, as anything still running does)."""
    deadline = time.monotonic() + timeout_s
    while len(process_tree(pid)) > 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    return tree_rss_mb(pid)


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory):
    """A server of its own: the session's server has served every other browser test before this one, and
    what those left (uploads, other maps) is not this session's to measure."""
    tmp = tmp_path_factory.mktemp("long-session")
    with running_app(tmp / "cache", tmp / "streamlit.log") as url:
        yield url


def test_every_page_of_every_checkpoint_stays_within_the_memory_bound(fresh_server, page):
    server = fresh_server
    pid = server_pid(server)  # RSS of it and its children, from /proc
    names = _checkpoints()
    page.goto(server)
    wait_for_map(page)
    page.wait_for_function(IDLE, timeout=120_000)
    seen: list[tuple[str, float]] = [("first map", settled_rss_mb(pid))]
    for i, name in enumerate(names):
        if i:  # the session's checkpoint changes on the map page; the other pages follow it
            _open(page, *PAGES[0])
            choose_checkpoint(page, name)
            page.wait_for_function(f"() => location.search.includes('ckpt={name}')", timeout=60_000)
            page.wait_for_function(IDLE, timeout=240_000)
            wait_for_map(page)
        for where in PAGES:
            _open(page, *where)
        seen.append((name, settled_rss_mb(pid)))
        print(f"{name}: server RSS {seen[-1][1]:.0f} MB", flush=True)
    print("\nserver RSS (MB) after each checkpoint's pages: " + ", ".join(f"{n} {mb:.0f}" for n, mb in seen))
    peak = max(mb for _, mb in seen)
    assert seen[-1][1] <= MAX_RSS_MB and peak <= MAX_RSS_MB, seen
