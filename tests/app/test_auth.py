"""Optional sign-in: nothing without [auth] secrets; with them, the page stops at a sign-in button per provider,
and a configuration that cannot work stops every page with a message instead of letting everyone in."""

import pytest
from streamlit.testing.v1 import AppTest

from explorer.ui import auth

SCRIPT = """
import streamlit as st
from explorer.ui import auth
auth.require_login()
st.write("the explorer")
"""
COMMON = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32}
PROVIDER = {"client_id": "id", "client_secret": "secret", "server_metadata_url": "https://id.example/.well-known"}


def run(secrets: dict | None = None) -> AppTest:
    at = AppTest.from_string(SCRIPT, default_timeout=30)
    for key, value in (secrets or {}).items():
        at.secrets[key] = value
    return at.run()


def shown(at: AppTest) -> bool:
    return any(m.value == "the explorer" for m in at.markdown)


@pytest.fixture
def authlib(monkeypatch):
    monkeypatch.setattr(auth, "_authlib_ready", lambda: True)


def test_without_auth_secrets_nothing_changes():
    at = run()
    assert not at.exception and not at.error and not at.button
    assert shown(at)


def test_other_secrets_do_not_switch_sign_in_on():
    at = run({"database": {"url": "postgres://example"}})  # a table: nothing is exported to the environment
    assert shown(at) and not at.button


def test_one_provider_asks_to_sign_in(authlib):
    at = run({"auth": {**COMMON, **PROVIDER}})
    assert not at.exception, at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    assert not shown(at), "nothing of the app before signing in"


def test_named_providers_get_a_button_each(authlib):
    at = run({"auth": {**COMMON, "google": PROVIDER, "microsoft": PROVIDER}})
    assert [b.label for b in at.button] == ["Sign in with Google", "Sign in with Microsoft"]
    assert not shown(at)


def test_a_configuration_without_provider_fails_closed(authlib):
    at = run({"auth": COMMON})
    assert any("names no provider" in e.value for e in at.error)
    assert not shown(at) and not at.button


def test_missing_authlib_fails_closed(monkeypatch):
    monkeypatch.setattr(auth, "_authlib_ready", lambda: False)
    at = run({"auth": {**COMMON, **PROVIDER}})
    assert any("Authlib is not installed" in e.value and "[auth]" in e.value for e in at.error)
    assert not shown(at)


def test_providers_are_read_from_the_section():
    assert auth.providers({**COMMON, **PROVIDER}) == ["default"]
    assert auth.providers({**COMMON, "okta": PROVIDER, "other": {"note": 1}}) == ["okta"]
    assert auth.providers(COMMON) == []
