"""Links through the real page script: the view's values in the URL, kept uploads reopened by digest."""

from apptests import page_app
from streamlit.testing.v1 import AppTest

from explorer import kept, settings
from explorer.ui import state


def _open(params: dict[str, str]) -> AppTest:
    at = page_app("views", "decode_view")
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def test_the_url_follows_the_sidebar_and_a_link_restores_it():
    at = _open({})
    assert not at.exception
    at.sidebar.radio(key="proj").set_value("PCA 2-D").run()
    at.sidebar.selectbox(key="color").select("reconstruction error").run()
    params = {k: at.query_params[k] for k in at.query_params}
    assert params.get("proj") == ["PCA 2-D"] or params.get("proj") == "PCA 2-D"
    fresh = _open({k: (v[0] if isinstance(v, list) else v) for k, v in params.items()})
    assert not fresh.exception and not fresh.error
    assert fresh.sidebar.radio(key="proj").value == "PCA 2-D"
    assert fresh.sidebar.selectbox(key="color").value == "reconstruction error"


def test_a_kept_upload_opens_from_its_digest_and_an_unknown_one_is_explained(monkeypatch):
    data = state.shipped_checkpoints()[1].read_bytes()
    monkeypatch.setenv("EXPLORER_KEEP_UPLOADS", "1")
    digest = kept.from_settings(settings.current()).put(data)
    at = _open({"model": digest})
    assert not at.exception and not at.warning, [w.value for w in at.warning]
    assert at.sidebar.selectbox(key="ckpt").value.startswith("⬆")
    other = _open({"model": "0" * 64})
    assert any("not on this server" in w.value for w in other.warning)
    assert other.sidebar.selectbox(key="ckpt").value == state.DEFAULT_CHECKPOINT
