"""EXPLORER_* settings: defaults, every kind of value, and errors that name each bad variable at once."""

from pathlib import Path

import pytest

from explorer import settings, untrusted
from explorer.settings import Settings, SettingsError, load


def test_defaults_with_nothing_set():
    s = load({})
    assert s == Settings()
    assert s.allow_uploads and not s.keep_uploads
    assert s.max_upload_mb == 200
    assert s.cache_dir == Path("~/.cache/latent-explorer").expanduser()
    assert s.kept_dir == s.cache_dir / "uploads"
    assert s.default_checkpoint == "fashion-mnist-vae-conv16"


def test_empty_values_mean_the_default():
    assert load(dict.fromkeys(settings.VARIABLES, "  ")) == Settings()


@pytest.mark.parametrize(("text", "value"), [("1", True), ("true", True), ("YES", True), (" on ", True),
                                             ("0", False), ("False", False), ("no", False), ("off", False)])  # fmt: skip
def test_switches(text, value):
    assert load({"EXPLORER_ALLOW_UPLOADS": text}).allow_uploads is value
    assert load({"EXPLORER_KEEP_UPLOADS": text}).keep_uploads is value


def test_every_setting_read(tmp_path):
    s = load(
        {
            "EXPLORER_ALLOW_UPLOADS": "off",
            "EXPLORER_KEEP_UPLOADS": "on",
            "EXPLORER_KEPT_MAX_MB": "64",
            "EXPLORER_KEPT_MAX_DAYS": "0.5",
            "EXPLORER_MAX_UPLOAD_MB": "50",
            "EXPLORER_CACHE_DIR": str(tmp_path),
            "EXPLORER_CACHE_MAX_MB": "100",
            "EXPLORER_DEFAULT_CHECKPOINT": "mnist-ae-mlp32.safetensors",
            "EXPLORER_MAX_CONCURRENT_MAPS": "2",
        }
    )
    assert s == Settings(False, True, 64, 0.5, 50, tmp_path, 100, "mnist-ae-mlp32", 2)
    assert s.max_upload_bytes == 50 * 2**20 and s.kept_max_bytes == 64 * 2**20
    assert s.kept_max_age_s == 43200


def test_a_relative_cache_folder_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load({"EXPLORER_CACHE_DIR": "cache"}).cache_dir == tmp_path / "cache"


def test_every_bad_value_is_named_in_one_error():
    with pytest.raises(SettingsError) as err:
        load(
            {
                "EXPLORER_ALLOW_UPLOADS": "maybe",
                "EXPLORER_MAX_UPLOAD_MB": "5000",
                "EXPLORER_KEPT_MAX_MB": "lots",
                "EXPLORER_KEPT_MAX_DAYS": "nan",
                "EXPLORER_DEFAULT_CHECKPOINT": "../secrets",
            }
        )
    message = str(err.value)
    assert "EXPLORER_ALLOW_UPLOADS='maybe' is not a switch" in message
    assert "EXPLORER_MAX_UPLOAD_MB='5000' must be between 1 and 2048 MB (unset it for the default, 200)" in message
    assert "EXPLORER_KEPT_MAX_MB='lots' is not a whole number of MB" in message
    assert "EXPLORER_KEPT_MAX_DAYS='nan' must be more than 0" in message
    assert "EXPLORER_DEFAULT_CHECKPOINT='../secrets' must be the name of a file in checkpoints/" in message


@pytest.mark.parametrize("name", [".hidden", "a/b", "a b", "x" * 201, "café"])
def test_checkpoint_names_cannot_leave_the_folder(name):
    with pytest.raises(SettingsError):
        load({"EXPLORER_DEFAULT_CHECKPOINT": name})


def test_current_reads_the_environment(monkeypatch):
    monkeypatch.setenv("EXPLORER_MAX_UPLOAD_MB", "7")
    assert settings.current().max_upload_mb == 7
    assert untrusted.max_upload_bytes() == 7 * 2**20


def test_upload_cap_never_exceeds_the_server_limit():
    assert settings.upload_cap_mb(load({"EXPLORER_MAX_UPLOAD_MB": "500"}), 200) == 200
    assert settings.upload_cap_mb(load({"EXPLORER_MAX_UPLOAD_MB": "20"}), 200) == 20


def test_the_upload_ceiling_is_the_largest_file_any_reader_accepts():
    assert settings.MAX_UPLOAD_MB_CEILING * 2**20 == untrusted.MAX_FILE_BYTES


def test_the_cache_follows_the_settings(tmp_path, monkeypatch):
    from explorer.store import DiskCache, cache_dir

    monkeypatch.setenv("EXPLORER_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("EXPLORER_CACHE_MAX_MB", "32")
    assert cache_dir() == tmp_path
    assert DiskCache(tmp_path).max_bytes == 32 * 2**20
