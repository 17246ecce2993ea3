"""``python -m explorer encode``: shards that hold what ``encode`` gives, resume after a kill, refuse another
checkpoint's folder, list skipped images, and the Ray engine writing the same latents as the local one."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from explorer.checkpoint import load_checkpoint
from explorer.cli import main
from explorer.data import load_dataset
from explorer.data.source import ArraySource, Read
from explorer.maps.encode import encode, per_image
from explorer.maps.encode_job import EncodeOptions, encode_local, plan
from explorer.maps.shards import SourceSpec, read_manifest, read_shards, read_skipped, shard_name, source_spec
from explorer.store import file_sha256

ROOT = Path(__file__).resolve().parents[2]
VAE = ROOT / "checkpoints" / "fashion-mnist-vae-conv16.safetensors"  # 28x28, reports sigma and kl
AE = ROOT / "checkpoints" / "mnist-ae-mlp32.safetensors"


def _encode(out: Path, *extra: str, checkpoint: Path = VAE) -> int:
    args = ["encode", str(checkpoint), "--data", "digits", "--out", str(out), "--shard-size", "100"]
    return main([*args, "--batch-size", "64", "--device", "cpu", *extra])


def _digits(model, n: int | None = None):
    source = ArraySource(load_dataset("digits", "test"))
    index = np.arange(len(source) if n is None else n)
    return source.read(index, model.input_shape).images, source.labels()[index]


def test_local_engine_writes_shards_that_hold_what_encode_gives(tmp_path, capsys):
    assert _encode(tmp_path / "out") == 0
    assert "encoded 359 images, skipped 0; shards written 4, reused 0" in capsys.readouterr().out
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["manifest.json", *(shard_name(k) for k in range(4))]
    manifest = read_manifest(tmp_path / "out")
    assert manifest.checkpoint == file_sha256(VAE) and manifest.count == manifest.length == 359
    assert manifest.stats == ("kl", "sigma") and manifest.columns[-2:] == ["label", "where"]

    model = load_checkpoint(VAE)
    images, labels = _digits(model)
    ids, latents, recon, stats, got_labels, where = read_shards(tmp_path / "out")
    assert np.array_equal(ids, np.arange(359)) and latents.dtype == np.float32
    np.testing.assert_allclose(latents, encode(model, images), atol=1e-5)
    expected = per_image(model, images)
    np.testing.assert_allclose(recon, expected.mse, atol=1e-6)
    np.testing.assert_allclose(stats["kl"], expected.stats["kl"], rtol=1e-5, atol=1e-5)
    assert np.array_equal(got_labels, labels) and where[5] == "digits:test[5]"


def test_a_killed_run_resumes_writing_only_the_missing_shards(tmp_path):
    model = load_checkpoint(VAE)
    spec = source_spec("digits")
    out = tmp_path / "out"
    manifest, todo, kept = plan(model, file_sha256(VAE), spec, spec.open(), out, EncodeOptions(64, 100))
    assert (todo, kept) == ([0, 1, 2, 3], [])

    def killed(k, rows):
        if k == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        encode_local(model, spec.open(), manifest, todo, out, batch_size=64, shard_written=killed)
    # shards 0 and 1 are whole; a kill while writing shard 2 left its temporary file behind
    (out / f".{shard_name(2)}.999.tmp").write_bytes(b"PAR1 half a shard")
    (out / shard_name(1)).write_bytes((out / shard_name(1)).read_bytes()[:300])  # and say 1 was cut short
    first = (out / shard_name(0)).stat().st_mtime_ns

    assert _encode(out) == 0
    assert (out / shard_name(0)).stat().st_mtime_ns == first  # kept, not written again
    assert not list(out.glob(".*.tmp"))
    assert _encode(tmp_path / "whole") == 0
    for a, b in zip(read_shards(out), read_shards(tmp_path / "whole")):
        if isinstance(a, dict):
            assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
        else:
            assert np.array_equal(a, b)


def test_a_rerun_reuses_every_shard(tmp_path, capsys):
    assert _encode(tmp_path) == 0
    assert _encode(tmp_path) == 0
    assert "encoded 0 images, skipped 0; shards written 0, reused 4" in capsys.readouterr().out


def test_a_limited_run_then_a_full_one(tmp_path):
    assert _encode(tmp_path, "--limit", "150") == 0
    assert len(read_shards(tmp_path).ids) == 150 and read_manifest(tmp_path).count == 150
    assert _encode(tmp_path) == 0  # shard 0 kept, shard 1 (half of it before) rewritten
    assert np.array_equal(read_shards(tmp_path).ids, np.arange(359))


def test_another_checkpoints_folder_is_refused_unless_overwrite(tmp_path, capsys):
    assert _encode(tmp_path) == 0
    assert _encode(tmp_path, checkpoint=AE) == 2
    err = capsys.readouterr().err
    assert "holds shards of another checkpoint" in err and "--overwrite" in err
    assert read_manifest(tmp_path).checkpoint == file_sha256(VAE)  # untouched
    assert _encode(tmp_path, "--overwrite", checkpoint=AE) == 0
    assert read_manifest(tmp_path).checkpoint == file_sha256(AE) and read_shards(tmp_path).latents.shape == (359, 32)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "no/such/place"], "no source the explorer reads"),
        (["--data", "digits:nope"], "unknown split"),
        (["--limit", "0"], "--limit must be at least 1"),
    ],
)
def test_user_errors_are_clear(tmp_path, capsys, args, message):
    base = ["encode", str(VAE), "--data", "digits", "--out", str(tmp_path / "out")]
    assert main([*base, *args]) == 2
    assert message in capsys.readouterr().err


def test_a_checkpoint_error_is_clear(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    assert main(["encode", str(bad), "--data", "digits", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert main(["encode", str(tmp_path / "missing.safetensors"), "--data", "digits", "--out", str(tmp_path)]) == 2
    assert "cannot read" in capsys.readouterr().err


class Flaky(ArraySource):
    """Digits where every seventh image cannot be read."""

    def read(self, index, shape=None):
        index = np.asarray(index, np.int64)
        bad = index % 7 == 3
        got = super().read(index[~bad], shape)
        return Read(got.images, got.index, [(int(i), "truncated file") for i in index[bad]])


def test_skipped_images_have_no_row_and_are_listed(tmp_path):
    model = load_checkpoint(VAE)
    source = Flaky(load_dataset("digits", "test"))
    spec = SourceSpec("table", "flaky", "flaky://digits")
    manifest, todo, _ = plan(model, file_sha256(VAE), spec, source, tmp_path, EncodeOptions(64, 100))
    summary = encode_local(model, source, manifest, todo, tmp_path, batch_size=64)
    bad = [i for i in range(359) if i % 7 == 3]
    assert summary.skipped == len(bad) and summary.encoded == 359 - len(bad)
    shards = read_shards(tmp_path)
    assert not set(bad) & set(shards.ids.tolist()) and len(shards.ids) == 359 - len(bad)
    assert read_skipped(tmp_path) == [(i, "truncated file") for i in bad]
    images, _ = _digits(model)
    np.testing.assert_allclose(shards.latents, encode(model, images[shards.ids]), atol=1e-5)
    meta = json.loads((tmp_path / "manifest.json").read_text())
    assert meta["source"] == {"kind": "table", "name": "flaky", "location": "flaky://digits"}


def _ray_importable() -> bool:
    try:
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(
    not _ray_importable() and os.environ.get("CI") != "true",
    reason="ray is not installed (pip install -e '.[scale]'); CI installs it and runs this test",
)
def test_ray_engine_writes_the_latents_of_the_local_engine(tmp_path, capsys):
    """Ray started locally on 2 CPUs, 2 workers with a model copy each; 200 images in shards of 64."""
    limit = ["--limit", "200", "--shard-size", "64"]
    assert _encode(tmp_path / "local", *limit) == 0
    assert _encode(tmp_path / "ray", *limit, "--engine", "ray", "--num-workers", "2") == 0
    printed = capsys.readouterr().out
    assert "shards written 4, reused 0" in printed and "(ray engine)" in printed
    local, ray = read_shards(tmp_path / "local"), read_shards(tmp_path / "ray")
    assert np.array_equal(local.ids, ray.ids) and np.array_equal(local.ids, np.arange(200))
    np.testing.assert_allclose(ray.latents, local.latents, atol=1e-5)
    np.testing.assert_allclose(ray.recon_error, local.recon_error, atol=1e-5)
    assert np.array_equal(ray.labels, local.labels) and list(ray.where) == list(local.where)
    assert read_manifest(tmp_path / "ray").stats == read_manifest(tmp_path / "local").stats
