"""People who open a freshly started server at the same moment all get their map.

Their first script runs go side by side in one process, and whatever one of them imports for the first time is
half-initialized for the others while it loads: plotly, which reads pandas from sys.modules without importing
it, failed one of two simultaneous first visits that way. A fresh server per try, since only a server's first
pages import anything."""

import pytest

from explorer.devserver import running_app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PEOPLE = 3
TRIES = 3
# every page drawn: a map, or an exception shown in its place
SETTLED = """() => {
  const error = document.querySelector('[data-testid="stException"]');
  if (error) return error.innerText;
  const g = document.querySelector('.js-plotly-plot');
  return g && g._fullData && g.querySelector('.nsewdrag') ? 'map' : false;
}"""


@pytest.mark.parametrize("attempt", range(TRIES))
def test_people_arriving_together_at_a_fresh_server_all_see_a_map(browser, tmp_path, attempt):
    with running_app(tmp_path / "cache", tmp_path / "streamlit.log") as url:
        contexts = [browser.new_context(viewport={"width": 1500, "height": 950}) for _ in range(PEOPLE)]
        try:
            pages = [context.new_page() for context in contexts]
            for page in pages:  # every request sent before any page is awaited: the first runs overlap
                page.goto(url, wait_until="commit")
            shown = [page.wait_for_function(SETTLED, timeout=120_000).json_value() for page in pages]
        finally:
            for context in contexts:
                context.close()
    assert shown == ["map"] * PEOPLE, shown
