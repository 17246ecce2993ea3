"""Optional sign-in: ``require_login()`` asks visitors to sign in when, and only when, the host configured it.

A host turns it on by putting an ``[auth]`` section in ``.streamlit/secrets.toml`` (or the platform's
secrets box): ``redirect_uri``, ``cookie_secret`` and either one provider's ``client_id``,
``client_secret`` and ``server_metadata_url``, or one sub-table per provider (``[auth.google]``, ...).
Streamlit does the OpenID Connect dance (``st.login``) and needs Authlib for it: ``pip install
'latent-explorer[auth]'``. Without an ``[auth]`` section, or without any secrets file at all, this
does nothing, so a laptop and the test servers never see a sign-in page. docs/DEPLOY.md, "Sign-in".

It fails closed: sign-in configured but unusable (no provider, Authlib missing) stops every page
with a message for the host, rather than letting everyone in.
"""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st

DEFAULT = "default"  # Streamlit's name for the provider whose settings sit directly in [auth]


def auth_section() -> Mapping | None:
    """The ``[auth]`` secrets, or None when there are none (no secrets file, or no such section)."""
    try:
        section = st.secrets.get("auth")
    except FileNotFoundError:  # Streamlit's "no secrets file" error derives from it
        return None
    return section if isinstance(section, Mapping) and section else None


def providers(section: Mapping) -> list[str]:
    """The configured sign-in providers: ``default`` when [auth] holds a client_id, then each sub-table that does."""
    found = [DEFAULT] if "client_id" in section else []
    return found + [name for name, value in section.items() if isinstance(value, Mapping) and "client_id" in value]


def _authlib_ready() -> bool:
    try:
        import authlib  # noqa: F401  (Streamlit's own check also wants >= 1.3.2; its error then names the version)
    except ImportError:
        return False
    return True


def _stop(message: str) -> None:
    st.error(message)
    st.stop()


def require_login() -> None:
    """Nothing without an [auth] section; with one, the page stops here until the visitor has signed in."""
    section = auth_section()
    if section is None:
        return
    names = providers(section)
    if not names:
        _stop(
            "Sign-in is switched on ([auth] in the app's secrets) but names no provider: add client_id, "
            "client_secret and server_metadata_url to [auth], or a sub-table such as [auth.google]. "
            "See docs/DEPLOY.md, “Sign-in”."
        )
    if not _authlib_ready():
        _stop(
            "Sign-in is switched on ([auth] in the app's secrets) but Authlib is not installed on the server: "
            "pip install 'latent-explorer[auth]' (or Authlib>=1.3.2), then restart."
        )
    if st.user.get("is_logged_in", False):  # .get: a session the server knows nothing about has no such key
        who = st.user.get("email") or st.user.get("name") or "signed in"
        st.sidebar.caption(f"Signed in: {who}")
        st.sidebar.button("Sign out", on_click=st.logout, key="exp_sign_out")
        return
    st.title("Latent space explorer")
    st.markdown("This explorer is private to its host's people. Sign in to continue.")
    for name in names:
        label = "Sign in" if name == DEFAULT else f"Sign in with {name.capitalize()}"
        st.button(label, on_click=st.login, args=(None if name == DEFAULT else name,), key=f"exp_sign_in_{name}")
    st.stop()
