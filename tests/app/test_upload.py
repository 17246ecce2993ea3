"""Uploads live in the uploading session only; hostile files are refused with a message, the app keeps running."""

import pickle

import pytest
from apptests import page_app, upload_app
from streamlit.testing.v1 import AppTest

from explorer import models
from explorer.checkpoint import checkpoint_bytes


def test_two_sessions_with_the_same_file_name_see_only_their_own(checkpoint_file):
    a = upload_app(checkpoint_file("a", "ae", hidden=(32,), latent_dim=4), name="model.safetensors").run()
    b = upload_app(checkpoint_file("b", "vae", hidden=(32,), latent_dim=6), name="model.safetensors").run()
    for at in (a, b):
        assert not at.exception, at.exception
        options = at.sidebar.selectbox(key="ckpt").options
        assert options.count("⬆ model.safetensors") == 1, options
    assert any("latent 4" in c.value and "AE" in c.value for c in a.sidebar.caption)
    assert any("latent 6" in c.value and "VAE" in c.value for c in b.sidebar.caption)
    # a fresh session has no uploads at all
    fresh = page_app("views", "decode_view", timeout=240).run()
    assert not any(o.startswith("⬆") for o in fresh.sidebar.selectbox(key="ckpt").options)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_hostile_upload_is_refused_and_the_app_stays_up(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.safetensors"
    bad.write_bytes(pickle.dumps(_Payload(marker)))
    at = upload_app(bad).run()
    assert not at.exception, at.exception
    assert any("Refused" in e.value and "pickle" in e.value for e in at.error), [e.value for e in at.error]
    assert not marker.exists()
    assert len(at.get("plotly_chart")) == 1, "the default map is still drawn"


def test_uploaded_dataset_is_mapped_with_the_default_model(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "mine.npz"
    # 32x32 RGB images: converted to the model's 1x28x28 on upload
    np.savez(path, images=rng.integers(0, 256, (400, 32, 32, 3), dtype=np.uint8), labels=rng.integers(0, 4, 400))
    script = f"""
from pathlib import Path
import streamlit as st
from explorer.ui import state, views
if "uploaded" not in st.session_state:
    st.session_state["uploaded"] = True
    st.session_state["ds"] = state.add_dataset("mine.npz", Path({str(path)!r}).read_bytes(), (1, 28, 28))
views.decode_view()
"""
    at = AppTest.from_string(script, default_timeout=240).run()
    assert not at.exception, at.exception
    assert at.sidebar.selectbox(key="ds").value == "⬆ mine.npz"
    assert "400 images" in at.sidebar.caption[-1].value


def test_dataset_that_does_not_fit_is_refused_with_sizes(tmp_path):
    import numpy as np

    from explorer.data import load_user_dataset
    from explorer.errors import DatasetError

    path = tmp_path / "tiny.npz"
    np.savez(path, images=np.zeros((10, 5, 5), np.uint8))
    with pytest.raises(DatasetError, match="5"):
        load_user_dataset(path.read_bytes(), filename="tiny.npz", input_shape=(1, 28, 28))


@pytest.mark.parametrize(("trained_on", "shown"), [("fashion-mnist", "fashion-mnist"), ("digits", "digits")])
def test_upload_preview_uses_the_dataset_the_checkpoint_names(tmp_path, trained_on, shown):
    from explorer.ui import state

    shape = (1, 8, 8) if trained_on == "digits" else (1, 28, 28)
    model = models.build(models.config_class("ae")(input_shape=shape, hidden=(16,), latent_dim=3))
    data = checkpoint_bytes(model, dataset={"name": trained_on})
    pending = state.prepare_import([("m.safetensors", data)], {})
    # a 28x28 model without a named dataset would be previewed on MNIST first (importers.infer.default_datasets)
    assert pending.preview is not None and pending.preview_note.startswith(shown), pending.preview_note
    unnamed = checkpoint_bytes(model, dataset={"name": "my own data"})
    assert state.prepare_import([("m.safetensors", unnamed)], {}).preview is not None  # falls back to a guess
