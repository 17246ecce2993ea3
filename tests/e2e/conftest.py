"""A real `streamlit run app.py` on a free loopback port, and Debian's Chromium driven by Playwright.

Without Chromium or Playwright the browser tests skip on a developer's machine, but fail under
``CI=true``: a CI run that silently skipped them would pass without testing what people click.
"""

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from explorer.devserver import CHROMIUM, CHROMIUM_ARGS, running_app

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def browser_missing(chromium: str, playwright_installed: bool) -> str | None:
    """What the browser tests lack here, in words, or None when they can run."""
    if not Path(chromium).exists():
        return f"no Chromium at {chromium} (install Debian's chromium, or set EXPLORER_CHROMIUM)"
    if not playwright_installed:
        return "Playwright is not installed (pip install -e '.[test]')"
    return None


def in_ci(env: Mapping[str, str]) -> bool:
    """CI services set CI=true (some CI=1)."""
    return env.get("CI", "").strip().lower() in ("true", "1")


def missing_browser_verdict(missing: str | None, env: Mapping[str, str]) -> tuple[str, str] | None:
    """("fail" | "skip", message) when something is missing, None when the browser tests run."""
    if missing is None:
        return None
    if in_ci(env):
        return "fail", f"{missing}; under CI=true the browser tests must run, not skip"
    return "skip", missing


def require_browser(chromium: str, env: Mapping[str, str]) -> str:
    """``chromium`` when the browser tests can run; else a skip, or under CI a failure, saying what is missing."""
    missing = browser_missing(chromium, importlib.util.find_spec("playwright") is not None)
    verdict = missing_browser_verdict(missing, env)
    if verdict is not None:
        action, message = verdict
        if action == "fail":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return chromium


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium the browser tests drive (every browser test asks for it, through ``browser`` or directly)."""
    return require_browser(CHROMIUM, os.environ)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("server")
    with running_app(tmp / "cache", tmp / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="session")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
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
