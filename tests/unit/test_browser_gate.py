"""When Chromium or Playwright is missing the browser tests skip on a developer's machine and fail under
CI=true (tests/e2e/conftest.py), so a CI run cannot pass by skipping them."""

import importlib.util
from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parents[1] / "e2e" / "conftest.py"


@pytest.fixture(scope="module")
def gate():
    # loaded under a name of its own: "conftest" in sys.modules belongs to whichever folder pytest read last
    spec = importlib.util.spec_from_file_location("e2e_conftest", CONFTEST)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_what_is_missing_is_named(gate, tmp_path):
    chromium = tmp_path / "chromium"
    assert "no Chromium at" in gate.browser_missing(str(chromium), playwright_installed=True)
    chromium.write_text("")
    assert "Playwright" in gate.browser_missing(str(chromium), playwright_installed=False)
    assert gate.browser_missing(str(chromium), playwright_installed=True) is None


@pytest.mark.parametrize("ci", ["true", "True", "1"])
def test_under_ci_a_missing_browser_fails(gate, ci):
    action, message = gate.missing_browser_verdict("no Chromium at /usr/bin/chromium", {"CI": ci})
    assert action == "fail"
    assert "no Chromium at /usr/bin/chromium" in message and "CI=true" in message


@pytest.mark.parametrize("env", [{}, {"CI": ""}, {"CI": "false"}, {"CI": "0"}])
def test_elsewhere_a_missing_browser_skips(gate, env):
    assert gate.missing_browser_verdict("Playwright is not installed", env) == ("skip", "Playwright is not installed")


@pytest.mark.parametrize("env", [{}, {"CI": "true"}])
def test_with_everything_there_the_browser_tests_run(gate, env):
    assert gate.missing_browser_verdict(None, env) is None


def test_the_gate_fails_under_ci_and_skips_elsewhere(gate, tmp_path):
    """What the ``chromium`` fixture, which every browser test asks for, does with a missing browser."""
    absent = str(tmp_path / "absent")
    with pytest.raises(pytest.fail.Exception, match="must run, not skip"):
        gate.require_browser(absent, {"CI": "true"})
    with pytest.raises(pytest.skip.Exception, match="no Chromium at"):
        gate.require_browser(absent, {})
    present = tmp_path / "chromium"
    present.write_text("")
    if importlib.util.find_spec("playwright") is not None:
        assert gate.require_browser(str(present), {"CI": "true"}) == str(present)
