"""Fixtures every AppTest file shares: a cache folder of its own per test, and small checkpoints made here.

Plain helpers (pages to run, what a page shows) are in apptests.py, imported by name.
"""

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Maps and metrics computed by one test are never read by another."""
    monkeypatch.setenv("EXPLORER_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def checkpoint_file(tmp_path_factory):
    """Make an untrained checkpoint file: ``checkpoint_file("a", "ae", latent_dim=4)`` -> its path.

    The config keywords go to the kind's config class; the checkpoint names Fashion-MNIST as its dataset.
    """
    from explorer import models
    from explorer.checkpoint import checkpoint_bytes

    folder = tmp_path_factory.mktemp("checkpoints")

    def make(name: str, kind: str, **config) -> Path:
        model = models.build(models.config_class(kind)(**config))
        path = folder / f"{name}.safetensors"
        path.write_bytes(checkpoint_bytes(model, dataset={"name": "fashion-mnist"}))
        return path

    return make
