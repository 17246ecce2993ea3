"""Latents computed elsewhere (``explorer.maps.precomputed``): an ``encode`` folder and another program's
Parquet read as rows by image index, every way a file can be wrong refused with a message naming it, and
latents put where a map looks for them only when the checkpoint that made them is the one asked for."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from explorer.cli import main
from explorer.errors import DatasetError
from explorer.maps.pipeline import latents_key
from explorer.maps.precomputed import read_precomputed, seed_latents
from explorer.maps.shards import read_shards
from explorer.store import DiskCache, file_sha256

ROOT = Path(__file__).resolve().parents[2]
VAE = ROOT / "checkpoints" / "fashion-mnist-vae-conv16.safetensors"


def write(path: Path, **columns) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def vectors(rows: np.ndarray, fixed: bool = False) -> pa.Array:
    flat = pa.array(rows.ravel().astype(np.float32))
    if fixed:
        return pa.FixedSizeListArray.from_arrays(flat, rows.shape[1])
    return pa.ListArray.from_arrays(pa.array(np.arange(0, rows.size + 1, rows.shape[1], dtype=np.int32)), flat)


def test_an_encode_folder_is_read_with_its_checkpoint_and_statistics(tmp_path):
    out = tmp_path / "out"
    assert main(["encode", str(VAE), "--data", "digits", "--out", str(out), "--shard-size", "100"]) == 0
    pre = read_precomputed(out)
    shards = read_shards(out)
    assert pre.checkpoint == file_sha256(VAE) and pre.latent_dim == 16 and set(pre.stats) == {"kl", "sigma"}
    enc = pre.encoded(np.array([300, 2, 17]))  # in the order asked for
    np.testing.assert_array_equal(enc.latents, shards.latents[[300, 2, 17]])
    np.testing.assert_array_equal(enc.recon_error, shards.recon_error[[300, 2, 17]])
    np.testing.assert_array_equal(enc.stats["kl"], shards.stats["kl"][[300, 2, 17]])


@pytest.mark.parametrize("fixed", [False, True], ids=["list", "fixed-size list"])
def test_another_programs_parquet_is_read_by_image_index(tmp_path, fixed):
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(50, 8)).astype(np.float32)
    order = rng.permutation(50)  # written in any order, several files
    folder = tmp_path / "emb"
    folder.mkdir()
    for k, part in enumerate(np.array_split(order, 3)):
        write(folder / f"part-{k}.parquet", idx=pa.array(part, pa.int64()), emb=vectors(rows[part], fixed),
              err=pa.array(part / 100.0, pa.float32()))  # fmt: skip
    pre = read_precomputed(folder, latent_column="emb", id_column="idx", error_column="err")
    assert pre.checkpoint is None and np.array_equal(pre.ids, np.arange(50))
    enc = pre.encoded(np.array([49, 0, 7]))
    np.testing.assert_array_equal(enc.latents, rows[[49, 0, 7]])
    np.testing.assert_allclose(enc.recon_error, [0.49, 0.0, 0.07], rtol=1e-6)
    glob = read_precomputed(str(folder / "part-*.parquet"), latent_column="emb", id_column="idx")
    np.testing.assert_array_equal(glob.latents, rows)
    assert np.isnan(glob.recon_error).all()  # no error column: unknown, not zero


def test_a_column_named_like_a_latent_is_found_and_rows_are_ids_by_default(tmp_path):
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)
    pre = read_precomputed(write(tmp_path / "z.parquet", embedding=vectors(rows), name=["a", "b", "c", "d"]))
    np.testing.assert_array_equal(pre.ids, np.arange(4))
    np.testing.assert_array_equal(pre.encoded(np.array([3])).latents, rows[[3]])


def _not_parquet(tmp_path):
    (tmp_path / "a.parquet").write_bytes(b"PAR1 not really")
    return tmp_path / "a.parquet"


def _ragged(tmp_path):
    return write(tmp_path / "r.parquet", latent=pa.array([[1.0, 2.0], [1.0]]))


@pytest.mark.parametrize(
    ("make", "options", "message"),
    [
        (lambda p: write(p / "a.parquet", vec=pa.array([[1.0]])), {}, r"has no a latent column .*its columns: vec"),
        (lambda p: write(p / "a.parquet", vec=pa.array([[1.0]])), {"latent_column": "emb"}, r"has no 'emb'"),
        (_ragged, {}, r"vectors of different lengths \(2 in row 0, 1 in row 1\)"),
        (lambda p: write(p / "a.parquet", latent=pa.array([[1.0], [float("nan")]])), {}, r"1 vectors hold NaN"),
        (lambda p: write(p / "a.parquet", latent=pa.array([1.0, 2.0])), {}, r"holds double, not vectors"),
        (lambda p: write(p / "a.parquet", latent=pa.array([["x"]])), {}, r"holds lists of string, not numbers"),
        (
            lambda p: write(p / "a.parquet", latent=pa.array([[1.0], [2.0]]), i=pa.array([3, 3])),
            {"id_column": "i"},
            r"image 3 has 2 rows; each image needs one",
        ),
        (
            lambda p: write(p / "a.parquet", latent=pa.array([[1.0]]), i=pa.array([-1])),
            {"id_column": "i"},
            r"negative image indices",
        ),
        (
            lambda p: write(p / "a.parquet", latent=pa.array([[1.0]]), i=pa.array([0.5])),
            {"id_column": "i"},
            r"must hold an image index",
        ),
        (_not_parquet, {}, r"cannot be read as Parquet"),
        (lambda p: p / "nothing-here", {}, r"no Parquet file at"),
    ],
    ids=[
        "no latent column",
        "named column missing",
        "ragged",
        "NaN",
        "not lists",
        "not numbers",
        "duplicate id",
        "negative id",
        "fractional id",
        "not Parquet",
        "no file",
    ],  # fmt: skip
)
def test_latents_that_cannot_be_used_are_refused_with_the_reason(tmp_path, make, options, message):
    with pytest.raises(DatasetError, match=message):
        read_precomputed(make(tmp_path), **options)


def test_images_without_latents_are_named(tmp_path):
    pre = read_precomputed(write(tmp_path / "a.parquet", latent=vectors(np.ones((5, 2)))))
    with pytest.raises(DatasetError, match=r"no latents for 2 of the 3 images chosen \(image 9 first\)"):
        pre.encoded(np.array([1, 9, 12]))


def test_latents_are_used_only_for_the_checkpoint_that_made_them(tmp_path):
    pre = read_precomputed(write(tmp_path / "a.parquet", latent=vectors(np.ones((5, 16)))))
    cache = DiskCache(tmp_path / "cache")
    index, images = np.array([4, 0]), "images-digest"
    vae = ("fashion-mnist-vae-conv16", "d" * 64, 16)
    key, note = seed_latents((pre, None), checkpoint=vae, source_index=index, data_key=images, cache=cache)
    assert key is None and "do not say which checkpoint made them" in note
    key, note = seed_latents((pre, "other"), checkpoint=vae, source_index=index, data_key=images, cache=cache)
    assert key is None and "were made by other, not fashion-mnist-vae-conv16" in note
    with pytest.raises(DatasetError, match="holds 16-number latents; small makes 8"):
        seed_latents(
            (pre, "small"), checkpoint=("small", "e" * 64, 8), source_index=index, data_key=images, cache=cache
        )
    keys = set()
    for made_by in ("fashion-mnist-vae-conv16", "d" * 64):  # by name (the data file) or by digest (a manifest)
        key, note = seed_latents((pre, made_by), checkpoint=vae, source_index=index, data_key=images, cache=cache)
        assert key is not None and note.startswith("latents read from")
        keys.add(key)
    (key,) = keys  # one map key for one set of images and latents...
    assert key != images and latents_key("d" * 64, key) in cache  # ...never the key of the model's own encoding
    assert latents_key("d" * 64, images) not in cache
