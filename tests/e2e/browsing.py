"""What the browser tests do again and again on a page of the app: wait for the map and for a run to end,
find points on the screen, drag boxes, pick a checkpoint. Plain functions of a Playwright page, imported by
name (tests/e2e is on the path); conftest.py holds the fixtures."""

MAP = ".js-plotly-plot"
# the page is done with its script run (Streamlit marks the app element)
IDLE = "() => document.querySelector('[data-testid=\"stApp\"]')?.dataset.testScriptState === 'notRunning'"
# the map figure's revision: none while the page redraws, a new one for a new map
REVISION = "() => document.querySelector('.js-plotly-plot')?.layout?.uirevision ?? null"


def wait_for_map(page, timeout=120_000) -> None:
    """The first map on the page is drawn: its drag layer exists and it holds at least one trace."""
    page.wait_for_selector(f"{MAP} .nsewdrag", timeout=timeout)
    page.wait_for_function(
        "() => { const g = document.querySelector('.js-plotly-plot'); return g && g.data && g.data.length >= 1; }",
        timeout=timeout,
    )


def plot_area(page) -> dict:
    """The screen box of the first map's plotting area (big enough to drag in)."""
    box = page.locator(f"{MAP} .nsewdrag").first.bounding_box()
    assert box and box["width"] > 200 and box["height"] > 200, box
    return box


def drag(page, x0, y0, x1, y1) -> None:
    """A mouse drag from (x0, y0) to (x1, y1) in a few steps, as a hand makes it."""
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=5)
    page.mouse.move(x1, y1, steps=5)
    page.mouse.up()


def trace_names(page) -> list[str]:
    return page.evaluate("() => document.querySelector('.js-plotly-plot').data.map(t => t.name)")


def point_on_screen(page, trace=0, i=5) -> dict:
    """Screen position and row id of point i of a trace of the 2-D map (from Plotly's own axes)."""
    return page.evaluate(
        """([trace, i]) => { const g = document.querySelector('.js-plotly-plot');
        const t = g._fullData[trace], xa = g._fullLayout.xaxis, ya = g._fullLayout.yaxis;
        const box = g.querySelector('.nsewdrag').getBoundingClientRect();
        return {x: box.left + xa.l2p(t.x[i]), y: box.top + ya.l2p(t.y[i]), id: t.customdata[i]}; }""",
        [trace, i],
    )


def choose_checkpoint(page, name: str) -> None:
    """Pick a checkpoint in the sidebar's Checkpoint box."""
    box = page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").filter(has_text="Checkpoint")
    box.click()
    page.get_by_role("option", name=name).click()


def new_map_drawn(page, before, timeout=180_000) -> None:
    """A map other than the one whose revision was ``before`` is drawn, and the page's run has ended."""
    page.wait_for_function(
        f"() => {{ const r = ({REVISION})(); return r !== null && r !== {before!r}; }}", timeout=timeout
    )
    page.wait_for_function(IDLE, timeout=120_000)
    wait_for_map(page)
