"""The importers' table: a format added as a new one would be (a sniff and a loader, one row) is detected,
labelled, accepted and loaded through the public entry points, and leaves with its fixture."""

from __future__ import annotations

import pytest

from explorer import importers, models
from explorer.checkpoint import checkpoint_bytes, load_checkpoint
from explorer.errors import CheckpointError
from explorer.importers import formats
from explorer.importers.formats import Format, Probe
from explorer.importers.options import ImportOptions, ImportReport, SampleImages
from explorer.models.base import Autoencoder

# --- the new format's module: a checkpoint of ours behind a magic of its own

MAGIC = b"FAKEAE\x00"


def sniff(probe: Probe) -> bool:
    return probe.data.startswith(MAGIC)


def load(
    files: list[tuple[str, bytes]], options: ImportOptions, sample: SampleImages | None
) -> tuple[Autoencoder, ImportReport]:
    ((name, data),) = files
    return load_checkpoint(data[len(MAGIC) :]), ImportReport("fake", [name], remarks=["read by the fake loader"])


ROW = Format("fake", "fake autoencoder", sniff, load, (".fake",), "a .fake file of the test's own format")


@pytest.fixture
def fake_format():
    before = list(formats.TABLE)
    formats.register(ROW)
    yield ROW
    formats.TABLE[:] = before  # in place: every module holding the table sees it restored


@pytest.fixture(scope="module")
def blob() -> bytes:
    model = models.build(models.config_class("ae")(hidden=(16,), latent_dim=4))
    return MAGIC + checkpoint_bytes(model)


def test_a_registered_format_is_detected_labelled_accepted_and_loaded(fake_format, blob):
    assert importers.detect_format("model.fake", blob) == "fake"
    assert importers.detect_format("model.bin", blob) == "fake"  # by content, not by name
    assert importers.labels()["fake"] == "fake autoencoder"
    assert importers.LABELS["fake"] == "fake autoencoder"
    assert "a .fake file of the test's own format" in importers.accepted()
    assert "a .fake file of the test's own format" in importers.ACCEPTED
    assert ".fake" in importers.extensions()
    model, report = importers.import_files([("model.fake", blob)])
    assert report.source == "fake autoencoder" and report.files == ["model.fake"]
    assert model.latent_dim == 4 and not model.training
    assert model.config.notes["imported_from"] == "fake autoencoder"
    assert model.config.notes["remarks"] == ["read by the fake loader"]
    # a refusal lists the new format among the accepted ones
    with pytest.raises(CheckpointError, match="not a model format the explorer reads; accepted: .*a .fake file"):
        importers.import_model([("notes.txt", b"hello world, not a model")])


def test_without_its_row_the_format_is_unknown(blob):
    assert "fake" not in importers.labels() and ".fake" not in importers.extensions()
    assert importers.detect_format("model.fake", blob) == "unknown"
    with pytest.raises(CheckpointError, match="model.fake: the file is not a model format the explorer reads"):
        importers.import_model([("model.fake", blob)])


def test_one_file_format_refuses_a_pair(fake_format, blob):
    with pytest.raises(
        CheckpointError, match=r"each file is a whole model; import one; got a.fake \(fake autoencoder\)"
    ):
        importers.import_model([("a.fake", blob), ("b.fake", blob)])


def test_register_keeps_names_unique_and_can_go_first(fake_format, blob):
    with pytest.raises(ValueError, match="already registered"):
        formats.register(ROW)
    with pytest.raises(ValueError, match="no format called 'nope'"):
        formats.register(Format("other", "other", sniff, load), before="nope")
    formats.register(Format("first", "first of all", lambda p: p.lower.endswith(".fake"), load), before="empty")
    assert formats.TABLE[0].name == "first"
    assert importers.detect_format("x.fake", b"") == "first"  # before the empty-file refusal


def test_every_row_is_complete():
    names = [r.name for r in formats.TABLE]
    assert len(names) == len(set(names))
    for r in formats.TABLE:
        assert (r.load is None) != (not r.refusal), r.name  # a loader, or a reason to refuse
        if r.load is not None:
            assert r.label and r.accepts and r.extensions and all(e.startswith(".") for e in r.extensions), r.name
