"""The upload page offers the kinds the registry holds: a kind registered later appears with its title."""

from dataclasses import dataclass
from typing import ClassVar

import pytest
from streamlit.testing.v1 import AppTest

from explorer import models
from explorer.errors import ConfigError
from explorer.models.ae import AE, AEConfig
from explorer.models.backbones import ACTIVATIONS

PAGE = "from explorer.ui import upload\nupload.upload_view()\n"


@dataclass
class TinyConfig(AEConfig):
    kind: ClassVar[str] = "tiny"


class Tiny(AE):
    """A fifth kind, known to nothing but the registry."""

    kind = "tiny"
    title = "tiny test autoencoder"
    config_class = TinyConfig


@pytest.fixture
def tiny_kind():
    models.KINDS.register(Tiny)
    try:
        yield "tiny"
    finally:
        models.KINDS.unregister("tiny")


def upload_page() -> AppTest:
    """The page with one file dropped: the import options appear beside the file (which is refused)."""
    at = AppTest.from_string(PAGE, default_timeout=120).run()
    at.file_uploader(key="up_model").set_value(("model.bin", b"not a model", "application/octet-stream")).run()
    assert not at.exception, at.exception
    return at


def test_a_registered_kind_is_offered_with_its_title(tiny_kind):
    at = upload_page()
    options = at.selectbox(key="up_kind").options
    assert "tiny test autoencoder (tiny)" in options, options
    assert "denoising autoencoder (dae)" in options, options  # every kind a layer stack can become
    assert not any("(sae)" in o or "(onnx)" in o for o in options), options  # graphs and dictionaries cannot


def test_an_unregistered_kind_is_gone_and_activations_come_from_the_backbones():
    assert "tiny" not in models.kinds()
    at = upload_page()
    assert not any("(tiny)" in o for o in at.selectbox(key="up_kind").options)
    for key in ("up_activation", "up_latent_activation"):
        assert at.selectbox(key=key).options[1:] == list(ACTIVATIONS)


def test_registering_a_kind_twice_or_removing_an_unknown_one_is_refused(tiny_kind):
    with pytest.raises(ConfigError, match="registered twice"):
        models.KINDS.register(Tiny)
    with pytest.raises(ConfigError, match="unknown model kind"):
        models.KINDS.unregister("no-such-kind")
    assert models.title(tiny_kind) == "tiny test autoencoder"
