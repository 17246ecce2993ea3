"""A real `streamlit run app.py` on a free loopback port, and Debian's Chromium driven by Playwright."""

from pathlib import Path

import pytest

from explorer.devserver import CHROMIUM, CHROMIUM_ARGS, running_app

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("server")
    with running_app(tmp / "cache", tmp / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1500, "height": 950})
    pg = context.new_page()
    yield pg
    context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """The tests' pictures go to an ignored folder, so a test run leaves tracked files alone;
    scripts/screenshots.sh copies them over the README's pictures in docs/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
